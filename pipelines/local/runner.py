"""The local runner: walks the graph, runs ready steps in parallel, records everything."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from pipelines.errors import StepFailed
from pipelines.fsutil import hash_json, hash_path
from pipelines.graph import Graph
from pipelines.local.cache import StepCache
from pipelines.local.context import LocalResult, StepContext
from pipelines.local.state import DONE_OK, RunState
from pipelines.refs import MetricRef, OutputRef, ParamRef, resolve
from pipelines.spec import PipelineSpec
from pipelines.tracking import NullTracker

Reporter = Callable[[str, str, dict[str, Any]], None]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class LocalRunner:
    """Runs a PipelineSpec on this machine under `<state_root>/runs/<run-id>/`."""

    def __init__(self, spec: PipelineSpec, state_root: Path, *, use_cache: bool = True,
                 max_parallel: int | None = None, report: Reporter | None = None,
                 tracker: NullTracker | None = None):
        self.spec = spec
        self.state_root = state_root.resolve()
        self.repo_root = Path(spec.repo_root)
        self.use_cache = use_cache
        self.max_parallel = max(1, max_parallel or os.cpu_count() or 1)
        self.report = report or (lambda name, status, info: None)
        self.graph = Graph(spec)
        self.cache = StepCache(self.state_root / "cache")
        self._procs: set[subprocess.Popen] = set()
        self._procs_lock = threading.Lock()
        self._cancel = threading.Event()
        self._code_hashes: dict[str, str] = {}
        self.tracker = tracker or NullTracker()
        self._step_env: dict[str, dict[str, str]] = {}

    # --- public -------------------------------------------------------------------------------
    def run(self, run_id: str | None = None, extra: dict[str, Any] | None = None) -> RunState:
        """A new run; `extra` is recorded in its state header (an emulated execution's ARN, say)."""
        run_id = run_id or new_run_id()
        run_dir = self.state_root / "runs" / run_id
        run_dir.mkdir(parents=True)
        header = {"run_id": run_id, "pipeline": self.spec.name, "config": self.spec.source_file,
                  "config_path": str(Path(self.spec.source_file).resolve()), "env": self.spec.env,
                  "params": self.spec.param_values, "use_cache": self.use_cache, **(extra or {})}
        self.state = RunState.create(run_dir, header, self.graph.names)
        self.tracker.pipeline_started(self.state)
        return self._drive()

    def resume(self, state: RunState) -> RunState:
        """Continue a run: steps that succeeded stay done; everything else runs again."""
        self.state = state
        for name in self.graph.names:
            if state.status(name) not in DONE_OK:
                state.update_step(name, status="pending", attempts=0, error=None)
        for name in self.graph.names:
            if state.status(name) in DONE_OK:
                self._skip_all(state.step(name).get("skip", []), "branch not taken")
        state.update(status="running", ended_at=None, resumed_at=time.time())
        self.tracker.pipeline_started(state)
        return self._drive()

    # --- scheduling ---------------------------------------------------------------------------
    def _drive(self) -> RunState:
        state = self.state
        restore = self._install_signal_handlers()
        running: dict[Future, str] = {}
        try:
            with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
                while True:
                    self._propagate_skips()
                    if not self._cancel.is_set():
                        for name in self._ready(running.values()):
                            if len(running) >= self.max_parallel:
                                break
                            state.update_step(name, status="running", started_at=time.time())
                            self.report(name, "running", {})
                            running[pool.submit(self._execute, name)] = name
                    if not running:
                        break
                    done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        running.pop(future)
        finally:
            restore()
        statuses = [state.status(n) for n in self.graph.names]
        if self._cancel.is_set() or "interrupted" in statuses:
            final = "interrupted"
        elif "failed" in statuses:
            final = "failed"
        else:
            final = "succeeded"
        state.update(status=final, ended_at=time.time())
        self.tracker.pipeline_finished(state)
        return state

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
        step_dir = self.state.path.parent / name
        step_dir.mkdir(parents=True, exist_ok=True)
        log_path = step_dir / "log.txt"
        started = time.time()
        self._step_env[name] = self.tracker.step_started(name, step.type)
        params: dict[str, Any] = {}
        try:
            with open(log_path, "a") as log:
                ctx = self._context(step, step_dir, log)
                params = _tracked_params(step, ctx)
                self._execute_in(step, ctx, started)
        except StepFailed as exc:
            self._finish(name, "interrupted" if self._cancel.is_set() else "failed", started, error=str(exc))
        except Exception as exc:  # a bug in a step type: keep the traceback in the log, not on screen
            with open(log_path, "a") as log:
                log.write(traceback.format_exc())
            self._finish(name, "failed", started, error=f"internal error: {exc!r} (see {log_path})")
        self.tracker.step_finished(name, self.state.step(name), params, log_path)

    def _execute_in(self, step: Any, ctx: StepContext, started: float) -> None:
        is_script = hasattr(step, "local_output_dirs")
        inputs: dict[str, Path] = self._inputs(step, ctx) if is_script else {}
        cache_cfg = (step.cache or self.spec.defaults.cache) if is_script else None
        key = None
        if is_script:
            payload = self._cache_payload(step, ctx, inputs)
            self.state.update_step(step.name, code_hash=payload["code"], input_digests=payload["inputs"])
        if cache_cfg is not None and cache_cfg.enabled:
            key = StepCache.key(payload)
            # --no-cache skips reuse but still records the fresh outputs for later runs
            entry = self.cache.lookup(key, cache_cfg.expire_after) if self.use_cache else None
            if entry is not None:
                targets = step.local_output_dirs(ctx.step_dir)
                self.cache.restore(key, targets)
                self._finish(step.name, "cached", started, cache_key=key, metrics=entry.get("metrics"),
                             outputs={n: str(p) for n, p in targets.items()},
                             output_digests=entry["output_digests"])
                return
        retry = step.retry or self.spec.defaults.retry
        result = self._attempts(step, ctx, inputs, retry)
        digests = {n: hash_path(p) for n, p in result.outputs.items()}
        if key is not None:
            self.cache.store(key, result.outputs, {"step": step.name, "metrics": result.metrics,
                                                   "output_digests": digests})
        self._finish(step.name, "succeeded", started, cache_key=key, metrics=result.metrics,
                     outputs={n: str(p) for n, p in result.outputs.items()}, output_digests=digests,
                     note=result.note, skip=result.skip)
        self._skip_all(result.skip, f"branch not taken ({step.name}: {result.note})")

    def _attempts(self, step: Any, ctx: StepContext, inputs: dict[str, Path], retry: Any) -> LocalResult:
        delay = retry.backoff_s
        for attempt in range(1, retry.attempts + 1):
            self.state.update_step(step.name, attempts=attempt)
            try:
                return step.run_local(ctx, inputs)
            except StepFailed as exc:
                ctx.log(f"[sagepipe] attempt {attempt}/{retry.attempts} failed: {exc}")
                if attempt == retry.attempts or self._cancel.is_set():
                    raise
                self.report(step.name, "retrying", {"attempt": attempt + 1, "error": str(exc)})
                if self._cancel.wait(delay):
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

        return StepContext(
            pipeline=self.spec, run_id=self.state.data["run_id"], step_dir=step_dir,
            repo_root=self.repo_root, state_root=self.state_root,
            resolve=lambda value: resolve(value, self._lookup),
            run_process=lambda argv, env, cwd: self._run_process(argv, env, cwd, log, step.name),
            log=write_log, step_record=self.state.step, tracking_env=self._step_env.get(step.name, {}),
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

    def _inputs(self, step: Any, ctx: StepContext) -> dict[str, Path]:
        found = {}
        for name, value in step.inputs.items():
            resolved = ctx.resolve(value)
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

    def _cache_payload(self, step: Any, ctx: StepContext, inputs: dict[str, Path]) -> dict[str, Any]:
        known = {path: digest for record in self.state.data["steps"].values()
                 for out, path in (record.get("outputs") or {}).items()
                 for digest in [(record.get("output_digests") or {}).get(out)] if digest}
        return {
            "type": step.type, "code": self._code_hash(step.code), "config": step.local_fingerprint(ctx),
            "inputs": {n: known.get(str(p)) or hash_path(p) for n, p in inputs.items()},
        }

    def _code_hash(self, code: str) -> str:
        """The script plus the Python files beside it (helpers it may import)."""
        if code not in self._code_hashes:
            script = self.repo_root / code
            parts = [hash_path(script)] + [hash_path(p) for p in sorted(script.parent.glob("*.py")) if p != script]
            self._code_hashes[code] = hash_json(parts)
        return self._code_hashes[code]

    # --- processes and signals ----------------------------------------------------------------
    def _run_process(self, argv: list[str], env: dict[str, str], cwd: Path, log: Any, step: str) -> int:
        if self._cancel.is_set():
            raise StepFailed("run interrupted")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "SAGEPIPE_RUN_ID": self.state.data["run_id"],
                    "SAGEPIPE_STEP": step, **self._step_env.get(step, {}), **env}
        log.write(f"[sagepipe] $ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        with self._procs_lock:
            self._procs.add(proc)
        try:
            code, peak_mb = _wait_with_peak_rss(proc)
        finally:
            with self._procs_lock:
                self._procs.discard(proc)
        if peak_mb is not None:
            previous = self.state.step(step).get("peak_rss_mb") or 0.0
            self.state.update_step(step, peak_rss_mb=max(previous, peak_mb))
        if self._cancel.is_set():
            raise StepFailed("run interrupted")
        return code

    def cancel(self) -> None:
        """Stop: no new steps; running child process groups get SIGTERM, then SIGKILL."""
        self._cancel.set()
        with self._procs_lock:
            procs = list(self._procs)
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        threading.Thread(target=self._kill_stragglers, args=(procs,), daemon=True).start()

    @staticmethod
    def _kill_stragglers(procs: list[subprocess.Popen]) -> None:
        deadline = time.time() + 5
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, lambda signum, frame: self.cancel())

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return restore


def _tracked_params(step: Any, ctx: StepContext) -> dict[str, Any]:
    """What a step ran with (its resolved config), as recorded in MLflow."""
    try:
        return step.local_fingerprint(ctx) if hasattr(step, "local_fingerprint") else {}
    except StepFailed:
        return {}


def _wait_with_peak_rss(proc: subprocess.Popen) -> tuple[int, float | None]:
    """Exit code and peak RSS in MB of the process and the descendants it waited for."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # reaped elsewhere (a concurrent Popen.wait): no usage to report
        return proc.wait(), None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, round(usage.ru_maxrss / 1024, 1)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

