"""The local runner: walks the graph, runs ready steps in parallel, records everything."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterator

from pipelines.errors import StepFailed
from pipelines.fsutil import UnsafePath, hash_json, hash_path, inside, stat_signature
from pipelines.graph import Graph
from pipelines.local.cache import StepCache
from pipelines.local.processes import Supervisor, stop_leftover
from pipelines.local.resume import param_change, replay
from pipelines.local.services import RunServices
from pipelines.local.state import DONE_OK, RunLock, RunState, RunUnavailable
from pipelines.refs import MetricRef, OutputRef, ParamRef, resolve
from pipelines.spec import PipelineSpec, Retry
from pipelines.step_api import LocalResult, Step, StepContext
from pipelines.tracking import NullTracker

Reporter = Callable[[str, str, dict[str, Any]], None]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class LocalRunner:
    """Runs a PipelineSpec on this machine under `<state_root>/runs/<run-id>/`, holding the run's lock."""

    def __init__(self, spec: PipelineSpec, state_root: Path, *, use_cache: bool = True,
                 max_parallel: int | None = None, report: Reporter | None = None,
                 tracker: NullTracker | None = None, warn: Callable[[str], None] | None = None,
                 services: RunServices | None = None):
        self.spec = spec
        self.state_root = state_root.resolve()
        self.repo_root = Path(spec.repo_root)
        self.use_cache = use_cache
        self.max_parallel = max(1, max_parallel or os.cpu_count() or 1)
        self.report = report or (lambda name, status, info: None)
        self.warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))
        self.graph = Graph(spec)
        self.cache = StepCache(self.state_root / "cache", self.warn)
        self.processes = Supervisor()
        self._lock: RunLock | None = None
        self._code_hashes: dict[str, str] = {}
        self.tracker = tracker or NullTracker()
        self.services = services or RunServices(spec, self.state_root)  # what steps use, opened on first use
        self._step_env: dict[str, dict[str, str]] = {}

    # --- public -------------------------------------------------------------------------------
    def run(self, run_id: str | None = None, extra: dict[str, Any] | None = None) -> RunState:
        """A new run; `extra` is recorded in its state header (an emulated execution's ARN, say)."""
        run_id = run_id or new_run_id()
        run_dir = self.state_root / "runs" / run_id
        header = {"run_id": run_id, "pipeline": self.spec.name, "config": self.spec.source_file,
                  "config_path": str(Path(self.spec.source_file).resolve()), "env": self.spec.env,
                  "params": self.spec.param_values, "use_cache": self.use_cache, **(extra or {})}
        with self._opening(run_dir):
            run_dir.mkdir(parents=True)
            self._lock = RunLock(run_dir)
            self.state = RunState.create(run_dir, header, self.graph.names)
        self.tracker.pipeline_started(self.state)
        return self._drive()

    def resume(self, state: RunState) -> RunState:
        """Continue a run: first end any process its previous attempt left running; steps that succeeded
        stay done unless their inputs' content or their outputs changed since; the rest runs again."""
        self.state = state
        with self._opening(state.path.parent):
            self._lock = RunLock(state.path.parent)
            for name in self.graph.names:
                self._stop_leftovers(name)
                if state.status(name) not in DONE_OK:
                    state.update_step(name, status="pending", attempts=0, error=None, reason=None,
                                      duration_s=None)
            before = state.data.get("params") or {}
            for name in self.graph.topological():
                done = state.status(name) in DONE_OK
                why = done and (param_change(self.spec.step(name), before, self.spec.param_values)
                                or self._changed(name))
                if why:
                    self.warn(f"step '{name}' runs again: {why}")
                    self._reset_from(name)
            for name in self.graph.names:
                if state.status(name) in DONE_OK:
                    self._skip_all(state.step(name).get("skip", []), "branch not taken")
            state.update(status="running", ended_at=None, resumed_at=time.time(), error=None,
                         params=self.spec.param_values)
            replay(state, self.graph.names, self.report)
        self.tracker.pipeline_started(state)
        return self._drive()

    # --- the run's lifetime -------------------------------------------------------------------
    @contextlib.contextmanager
    def _opening(self, run_dir: Path) -> Iterator[None]:
        """Starting: a state folder that cannot be written, or a leftover process that will not end, is
        RunUnavailable (one line for the user), and the lock is let go."""
        try:
            yield
        except BaseException as exc:
            self._release()
            if isinstance(exc, OSError):
                raise RunUnavailable(f"cannot write the run state in {run_dir}: {exc.strerror or exc}") from None
            if isinstance(exc, StepFailed):
                raise RunUnavailable(f"cannot resume run {run_dir.name}: {exc}") from None
            raise

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _stop_leftovers(self, name: str) -> None:
        for child in self.state.step(name).get("processes") or []:
            if stop_leftover(child):
                self.warn(f"stopped process group {child['pid']}, left running by the previous attempt of "
                          f"step '{name}'")
            self.state.track_process(name, child, False)

    def _changed(self, name: str) -> str | None:
        """Why a finished step is stale: an input's content or one of its outputs differs from its record."""
        step, record = self.spec.step(name), self.state.step(name)
        recorded = record.get("input_digests")
        if recorded is not None and step.runs_script:
            try:
                current = self._input_digests(self._inputs(step))
            except StepFailed as exc:
                return str(exc)
            changed = sorted(n for n in {*recorded, *current} if recorded.get(n) != current.get(n))
            if changed:
                return f"the content of input {', '.join(changed)} changed since it ran"
        for output, digest in (record.get("output_digests") or {}).items():
            if self._digest(Path(record["outputs"][output])) != digest:
                return f"its output '{output}' changed or went missing since it ran"
        return None

    def _reset_from(self, name: str) -> None:
        todo, seen = [name], set()
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                self.state.update_step(current, status="pending", attempts=0, error=None, reason=None,
                                       duration_s=None)
                todo += self.graph.downstream(current)

    def _drive(self) -> RunState:
        self.state.on_write_error = self._unwritable
        finished = False
        try:
            with self.processes.signals_cancel():
                self._schedule()
            finished = True
        finally:
            self._close(finished)
        self.tracker.pipeline_finished(self.state)
        return self.state

    def _unwritable(self, exc: OSError) -> None:
        self.warn(f"error: cannot write {self.state.path}: {exc.strerror or exc}; stopping the run")
        self.processes.cancel()

    def _close(self, finished: bool) -> None:
        """The final status, written whenever it can be, and the lock let go."""
        state = self.state
        statuses = [state.status(n) for n in self.graph.names]
        error = state.write_error and f"cannot write the run state: {state.write_error.strerror or state.write_error}"
        if error or not finished:
            final = "failed"
        elif self.processes.cancelled.is_set() or "interrupted" in statuses:
            final = "interrupted"
        elif "pending" in statuses:  # nothing was ever ready for them: never a success
            never = [n for n in self.graph.names if state.status(n) == "pending"]
            final, error = "failed", f"steps never ran (each waits for another that never finished): {', '.join(never)}"
        else:
            final = "failed" if "failed" in statuses else "succeeded"
        try:
            state.update(status=final, ended_at=time.time(), **({"error": error} if error else {}))
        finally:
            self._release()

    # --- scheduling ---------------------------------------------------------------------------
    def _schedule(self) -> None:
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            while True:
                self._propagate_skips()
                if not self.processes.cancelled.is_set():
                    for name in self._ready(running.values()):
                        if len(running) >= self.max_parallel:
                            break
                        self.state.update_step(name, status="running", started_at=time.time())
                        self.report(name, "running", {"log": str(self.state.path.parent / name / "log.txt")})
                        running[pool.submit(self._execute, name)] = name
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)

    def _ready(self, running: Any) -> list[str]:
        busy = set(running)
        return [n for n in self.graph.names
                if self.state.status(n) == "pending" and n not in busy
                and all(self.state.status(u) in DONE_OK for u in self.graph.upstream[n])]

    def _propagate_skips(self) -> None:
        changed = True
        while changed:
            changed = False
            for name in self.graph.names:
                if self.state.status(name) != "pending":
                    continue
                bad = [u for u in self.graph.upstream[name]
                       if self.state.status(u) in {"failed", "skipped", "interrupted"}]
                if bad:
                    why = "upstream " + ", ".join(f"{u} {self.state.status(u)}" for u in sorted(bad))
                    self.state.update_step(name, status="skipped", reason=why)
                    self.report(name, "skipped", {"reason": why})
                    changed = True

    def _skip_all(self, names: list[str], reason: str) -> None:
        for name in names:
            if self.state.status(name) == "pending":
                self.state.update_step(name, status="skipped", reason=reason)
                self.report(name, "skipped", {"reason": reason})

    # --- one step -----------------------------------------------------------------------------
    def _execute(self, name: str) -> None:
        step = self.spec.step(name)
        run_dir = self.state.path.parent
        step_dir = run_dir / name
        log_path = step_dir / "log.txt"
        started = time.time()
        self._step_env[name] = self.tracker.step_started(name, step.type)
        params: dict[str, Any] = {}
        try:
            inside(step_dir, run_dir, follow=True)
            step_dir.mkdir(parents=True, exist_ok=True)
            inside(log_path, run_dir, follow=True)
            with open(log_path, "a") as log:
                ctx = self._context(step, step_dir, log)
                params = _tracked_params(step, ctx)
                self._execute_in(step, ctx, started)
        except (StepFailed, UnsafePath) as exc:
            cancelled = self.processes.cancelled.is_set()
            self._finish(name, "interrupted" if cancelled else "failed", started, error=str(exc))
        except Exception as exc:  # a bug in a step type: keep the traceback in the log, not on screen
            with contextlib.suppress(OSError), open(log_path, "a") as log:
                log.write(traceback.format_exc())
            self._finish(name, "failed", started, error=f"internal error: {exc!r} (see {log_path})")
        self.tracker.step_finished(name, self.state.step(name), params, log_path)

    def _execute_in(self, step: Step, ctx: StepContext, started: float) -> None:
        key = None
        if step.runs_script:  # staged inputs; a cache keyed on code, resolved config and input content
            ctx.inputs = self._inputs(step)
            payload = self._cache_payload(step, ctx, ctx.inputs)
            self.state.update_step(step.name, code_hash=payload["code"], input_digests=payload["inputs"])
            cache_cfg = step.settled_cache()
            key = StepCache.key(payload) if cache_cfg.enabled else None
        if key is not None:
            # --no-cache skips reuse but still records the fresh outputs for later runs
            targets = step.local_output_dirs(ctx.step_dir)
            entry = self.cache.fetch(key, cache_cfg.expire_after, targets, ctx.run_dir) if self.use_cache else None
            if entry is not None:
                self._finish(step.name, "cached", started, cache_key=key, metrics=entry.get("metrics"),
                             cached_from=entry.get("run_id"), **_recorded(targets, entry["output_digests"]))
                return
        result = self._attempts(step, ctx, step.settled_retry())
        recorded = _recorded(result.outputs)
        if key is not None:
            self.cache.store(key, result.outputs, recorded["output_digests"],
                             {"step": step.name, "metrics": result.metrics, "run_id": self.state.data["run_id"]})
        extra = {field: value for field, value in (("decision", result.decision), ("registered", result.registered),
                                                   ("cached_from", result.cached_from), ("emulated", result.emulated))
                 if value}
        self._finish(step.name, "cached" if result.cached_from else "succeeded", started, cache_key=key,
                     metrics=result.metrics, **recorded, note=result.note, skip=result.skip, **extra)
        self._skip_all(result.skip, f"branch not taken ({step.name}: {result.note})")

    def _attempts(self, step: Step, ctx: StepContext, retry: Retry) -> LocalResult:
        delay = retry.backoff_s
        for attempt in range(1, retry.attempts + 1):
            self.state.update_step(step.name, attempts=attempt)
            try:
                return step.run_local(ctx)
            except StepFailed as exc:
                ctx.log(f"[sagepipe] attempt {attempt}/{retry.attempts} failed: {exc}")
                if attempt == retry.attempts or self.processes.cancelled.is_set():
                    raise
                self.report(step.name, "retrying", {"attempt": attempt + 1, "error": str(exc)})
                if self.processes.cancelled.wait(delay):
                    raise
                delay *= retry.backoff_rate
        raise AssertionError("unreachable")

    def _finish(self, name: str, status: str, started: float, **fields: Any) -> None:
        duration = round(time.time() - started, 3)
        self.state.update_step(name, status=status, ended_at=time.time(), duration_s=duration,
                               cached=status == "cached", **fields)
        self.report(name, status, {"duration_s": duration, **fields})

    def _context(self, step: Any, step_dir: Path, log: Any) -> StepContext:
        def write_log(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        tracking_env = self._step_env.get(step.name, {})
        return StepContext(
            pipeline=self.spec, run_id=self.state.data["run_id"], step_dir=step_dir,
            repo_root=self.repo_root, state_root=self.state_root,
            resolve=lambda value: resolve(value, self._lookup),
            run_process=lambda argv, env, cwd: self._run_process(argv, env, cwd, log, step.name),
            log=write_log, step_record=self.state.step, tracking_env=tracking_env,
            services=self.services.for_step(tracking_env, write_log),
        )

    # --- references, inputs, cache keys -------------------------------------------------------
    def _lookup(self, ref: Any) -> Any:
        if isinstance(ref, ParamRef):
            return self.spec.param_values[ref.name]
        record = self.state.step(ref.step)
        if isinstance(ref, OutputRef):
            return record["outputs"][ref.output]
        assert isinstance(ref, MetricRef)
        value: Any = record.get("metrics") or {}
        for i, part in enumerate(ref.key.split(".")):
            if not isinstance(value, dict) or part not in value:
                have = ", ".join(sorted(value)) if isinstance(value, dict) else repr(value)
                raise StepFailed(f"{ref}: the report of step '{ref.step}' has no "
                                 f"'{'.'.join(ref.key.split('.')[:i + 1])}' (it has: {have})")
            value = value[part]
        return value

    def _inputs(self, step: Step) -> dict[str, Path]:
        found = {}
        for name, value in step.input_values().items():
            resolved = resolve(value, self._lookup)
            if resolved in ("", None):
                continue
            text = str(resolved)
            if "://" in text:
                raise StepFailed(f"input '{name}' is a URI ({text}); the local backend reads local paths — "
                                 "pass a local folder with --param, or run on SageMaker")
            path = Path(text) if Path(text).is_absolute() else self.repo_root / text
            if not path.exists():
                raise StepFailed(f"input '{name}': {text} does not exist")
            found[name] = path.resolve()
        return found

    def _cache_payload(self, step: Step, ctx: StepContext, inputs: dict[str, Path]) -> dict[str, Any]:
        return {"type": step.type, "code": self._code_hash(step.code_path() or ""), "config": step.local_fingerprint(ctx),
                "inputs": self._input_digests(inputs)}

    def _input_digests(self, inputs: dict[str, Path]) -> dict[str, str | None]:
        return {name: self._digest(path) for name, path in inputs.items()}

    def _digest(self, path: Path) -> str | None:
        """path's content digest: the one recorded with an output while its stat signature is unchanged
        (sizes, times, inodes), else computed; None when it is missing."""
        signature = stat_signature(path)
        if signature is None:
            return None
        for record in self.state.data["steps"].values():
            for output, recorded in (record.get("outputs") or {}).items():
                if recorded == str(path) and (record.get("output_stats") or {}).get(output) == signature:
                    return record["output_digests"][output]
        return hash_path(path)

    def _code_hash(self, code: str) -> str:
        """The script plus the Python files beside it (helpers it may import)."""
        if code not in self._code_hashes:
            script = self.repo_root / code
            parts = [hash_path(script)] + [hash_path(p) for p in sorted(script.parent.glob("*.py")) if p != script]
            self._code_hashes[code] = hash_json(parts)
        return self._code_hashes[code]

    # --- processes ---------------------------------------------------------------------------
    def _run_process(self, argv: list[str], env: dict[str, str], cwd: Path, log: Any, step: str) -> int:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "SAGEPIPE_RUN_ID": self.state.data["run_id"],
                    "SAGEPIPE_STEP": step, **self._step_env.get(step, {}), **env}
        log.write(f"[sagepipe] $ {' '.join(argv)}\n")
        log.flush()
        code, peak_mb, child = self.processes.run(argv, full_env, cwd, log,
                                                  lambda child: self.state.track_process(step, child, True))
        self.state.track_process(step, child, False)
        if peak_mb is not None:
            self.state.update_step(step, peak_rss_mb=max(self.state.step(step).get("peak_rss_mb") or 0.0, peak_mb))
        if self.processes.cancelled.is_set():
            raise StepFailed("run interrupted")
        return code


def _tracked_params(step: Any, ctx: StepContext) -> dict[str, Any]:
    """What a step ran with (its resolved config), as recorded in MLflow."""
    try:
        return step.local_fingerprint(ctx)
    except StepFailed:
        return {}


def _recorded(outputs: dict[str, Path], digests: dict[str, str] | None = None) -> dict[str, Any]:
    """Outputs as the state records them: paths, stat signatures (taken before the digests, so that a
    change while hashing shows) and content digests (computed unless given)."""
    stats = {name: stat_signature(path) for name, path in outputs.items()}
    digests = digests or {name: hash_path(path) for name, path in outputs.items()}
    return {"outputs": {name: str(path) for name, path in outputs.items()},
            "output_digests": {name: digests[name] for name in outputs}, "output_stats": stats}
