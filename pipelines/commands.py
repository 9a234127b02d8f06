"""What the CLI commands do (kept apart from argument parsing)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError, Problem
from pipelines.local.state import RunState, RunUnavailable, list_runs
from pipelines.spec import PipelineSpec

EXIT_CODES = {"succeeded": 0, "failed": 1, "interrupted": 130}
EXIT_UNAVAILABLE = 2  # the run folder cannot be used: locked by another process, or not writable


def run(spec: PipelineSpec, root: Path, use_cache: bool, max_parallel: int | None, as_json: bool) -> int:
    from pipelines.local.runner import new_run_id

    run_id = new_run_id()
    return drive(spec, root, max_parallel, as_json, use_cache,
                  lambda runner: runner.run(run_id), f"run {run_id} of {spec.name} (env {spec.env})")


def resume(root: Path, run_id: str, max_parallel: int | None, as_json: bool) -> int:
    from pipelines.loader import load_pipeline

    run_dir = root / "runs" / run_id
    if not (run_dir / "state.json").exists():
        known = [r["run_id"] for r in list_runs(root / "runs")][:5]
        raise ConfigError([Problem(str(root / "runs"), None, "RUN_ID",
                                   f"no run '{run_id}' (recent: {', '.join(known) or 'none'})")])
    try:
        state = RunState.load(run_dir)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {run_dir / 'state.json'}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if state.data["status"] == "succeeded":
        print(f"run {run_id} already succeeded; nothing to resume", file=sys.stderr)
        return 0
    if state.data.get("execution_arn"):
        raise ConfigError([Problem(str(run_dir), None, "RUN_ID", "an emulated execution is not resumed: run "
                                   "`sagepipe emulate` again; its step cache returns finished jobs at once")])
    params = [f"{k}={_text(v)}" for k, v in state.data["params"].items()]
    spec = load_pipeline(state.data["config_path"], state.data["env"], params)
    return drive(spec, root, max_parallel, as_json, state.data.get("use_cache", True),
                  lambda runner: runner.resume(state), f"resuming run {run_id} of {spec.name}")


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def drive(spec: PipelineSpec, root: Path, max_parallel: int | None, as_json: bool, use_cache: bool,
          start: Any, title: str) -> int:
    """Run (or resume) spec with live progress, explain the outcome; the exit code."""
    from pipelines.local.progress import make_reporter
    from pipelines.local.runner import LocalRunner

    names = [s.name for s in spec.steps]
    reporter = make_reporter(names, sys.stderr if as_json else sys.stdout)
    stream = sys.stderr if as_json else sys.stdout
    print(title, file=stream, flush=True)
    from pipelines.tracking import open_tracker

    tracker = open_tracker(spec, root, warn=reporter.warn)
    runner = LocalRunner(spec, root, use_cache=use_cache, max_parallel=max_parallel, report=reporter,
                         tracker=tracker, warn=reporter.warn)
    try:
        state = start(runner)
    except RunUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_UNAVAILABLE
    finally:
        reporter.close()
    _explain(state, stream)
    if as_json:
        print(json.dumps(summary(state), indent=2, default=str))
    return EXIT_CODES.get(state.data["status"], 1)


def _explain(state: RunState, stream: Any) -> None:
    data = state.data
    took = (data.get("ended_at") or time.time()) - data["started_at"]
    print(f"{data['status']} in {took:.1f}s — run {data['run_id']}", file=stream)
    if data.get("error"):
        print(f"error: {data['error']}", file=stream)
    for name, step in data["steps"].items():
        if step["status"] != "failed":
            continue
        print(f"\nstep '{name}' failed: {step.get('error', '')}", file=stream)
        log = state.path.parent / name / "log.txt"
        tail = [line for line in _tail(log, 12) if not line.startswith("[sagepipe]")]
        if tail:
            print("  last lines of its log:", file=stream)
            for line in tail:
                print(f"    {line}", file=stream)
        print(f"  full log: {log}", file=stream)
    if data["status"] == "interrupted" and not data.get("execution_arn"):
        print(f"resume with: sagepipe resume {data['run_id']}", file=stream)
    elif data["status"] == "failed" and data.get("execution_arn"):
        print("\nfix the problem, then run `sagepipe emulate` again (cached jobs are reused)", file=stream)
    elif data["status"] == "failed":
        print(f"\nfix the problem, then: sagepipe resume {data['run_id']}", file=stream)


def _tail(path: Path, count: int) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()][-count:]


def summary(state: RunState) -> dict[str, Any]:
    """The documented `--json` shape of a run."""
    data = state.data
    return {
        "run_id": data["run_id"], "status": data["status"], "pipeline": data["pipeline"],
        "steps": [{"name": n, "status": s["status"], "cached": s.get("cached", False),
                   "duration_s": s.get("duration_s"), "peak_rss_mb": s.get("peak_rss_mb")}
                  for n, s in data["steps"].items()],
        "metrics": {n: s["metrics"] for n, s in data["steps"].items() if s.get("metrics")},
        **({"execution_arn": data["execution_arn"]} if data.get("execution_arn") else {}),
    }


def runs_list(root: Path, as_json: bool) -> int:
    runs = list_runs(root / "runs")
    if as_json:
        print(json.dumps([{"run_id": r["run_id"], "pipeline": r["pipeline"], "status": r["status"],
                           "started_at": r["started_at"], "env": r.get("env")} for r in runs], indent=2))
        return 0
    if not runs:
        print("no runs yet; start one with: sagepipe run configs/fraud-detection.yaml")
        return 0
    print(f"{'RUN ID':<24} {'PIPELINE':<24} {'STATUS':<12} {'STARTED':<20} STEPS")
    for r in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"]))
        done = sum(s["status"] in {"succeeded", "cached"} for s in r["steps"].values())
        print(f"{r['run_id']:<24} {r['pipeline'][:24]:<24} {r['status']:<12} {started:<20} "
              f"{done}/{len(r['steps'])}")
    return 0


def runs_show(root: Path, run_id: str, as_json: bool) -> int:
    run_dir = root / "runs" / run_id
    if not (run_dir / "state.json").exists():
        known = [r["run_id"] for r in list_runs(root / "runs")][:5]
        raise ConfigError([Problem(str(root / "runs"), None, "RUN_ID",
                                   f"no run '{run_id}' (recent: {', '.join(known) or 'none'})")])
    state = RunState.load(run_dir)
    if as_json:
        print(json.dumps(state.data, indent=2, sort_keys=True, default=str))
        return 0
    data = state.data
    print(f"run {data['run_id']}  pipeline {data['pipeline']}  env {data['env']}  status {data['status']}")
    print(f"params: {json.dumps(data['params'], sort_keys=True)}")
    for name, step in data["steps"].items():
        took = f"{step['duration_s']:.2f}s" if step.get("duration_s") is not None else ""
        extra = step.get("error") or step.get("reason") or step.get("note") or ""
        print(f"  {name:<20} {step['status']:<11} {took:>8}  attempts {step.get('attempts', 0)}  {extra}")
    return 0


def describe(spec: PipelineSpec) -> str:
    lines = [f"pipeline {spec.name} ({spec.source_file}, env {spec.env})"]
    if spec.description:
        lines.append(f"  {spec.description.strip()}")
    lines.append("parameters:")
    for name, param in spec.parameters.items():
        value = spec.param_values.get(name)
        lines.append(f"  {name:<18} {param.type:<8} = {value!r}"
                     + (f"  (allowed: {param.allowed})" if param.allowed else ""))
    lines.append("steps:")
    for step in spec.steps:
        lines.append(f"  {step.name} [{step.type}]" + (f"  code: {step.code_path()}" if step.code_path() else ""))
        for name, value in getattr(step, "inputs", {}).items():
            lines.append(f"      in  {name}: {value}")
        for name in step.output_names():
            lines.append(f"      out {name}")
        for branch, targets in step.branch_targets().items():
            lines.append(f"      {branch}: {', '.join(targets) or '-'}")
    return "\n".join(lines)
