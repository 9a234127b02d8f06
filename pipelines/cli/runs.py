"""`sagepipe run|resume|runs list|runs show|logs|report`: local runs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pipelines.cli.drive import drive
from pipelines.cli.support import load_spec, state_root
from pipelines.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, UsageError
from pipelines.values import value_text

if TYPE_CHECKING:
    from pipelines.spec import PipelineSpec


def run_command(args: argparse.Namespace) -> int:
    from pipelines.cli.stores import announce

    spec = load_spec(args)
    announce(spec.settings, state_root(), Path(spec.repo_root))
    return run_pipeline(spec, state_root(), not args.no_cache, args.max_parallel, args.json, args.tail)


def resume_command(args: argparse.Namespace) -> int:
    return resume_run(state_root(), args.run_id, args.max_parallel, args.json, args.param, args.tail)


def runs_list_command(args: argparse.Namespace) -> int:
    return runs_list(state_root(), args.json)


def runs_show_command(args: argparse.Namespace) -> int:
    return runs_show(state_root(), args.run_id, args.json)


def logs_command(args: argparse.Namespace) -> int:
    from pipelines.local.logs import show_log

    return show_log(state_root(), args.run_id, args.step, args.follow)


def report_command(args: argparse.Namespace) -> int:
    from pipelines.report import report_command as write_run_report

    return write_run_report(state_root(), args.run_id, args.output)


def run_pipeline(spec: PipelineSpec, root: Path, use_cache: bool, max_parallel: int | None, as_json: bool,
                 tail: int = 0) -> int:
    from pipelines.local.runner import new_run_id

    run_id = new_run_id()
    return drive(spec, root, max_parallel, as_json, use_cache,
                 lambda runner: runner.run(run_id), f"run {run_id} of {spec.name} (env {spec.env})", tail)


def resume_run(root: Path, run_id: str, max_parallel: int | None, as_json: bool, params: Sequence[str] = (),
               tail: int = 0) -> int:
    """Continue a run; `params` (KEY=VALUE) change parameters: the steps that use them, and what follows
    from those, run again, the rest stays done."""
    from pipelines.loader import load_pipeline
    from pipelines.local.logs import run_folder
    from pipelines.local.state import RunState

    run_dir = run_folder(root, run_id)
    try:
        state = RunState.load(run_dir)
    except OSError as exc:
        print(f"error: cannot read {run_dir / 'state.json'}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if state.data["status"] == "succeeded":
        if params:
            print(f"run {run_id} already succeeded; to try other parameters start a new run (unchanged steps "
                  f"come from the cache): sagepipe run {state.data['config']} "
                  + " ".join(f"--param {p}" for p in params), file=sys.stderr)
            return EXIT_CONFIG
        print(f"run {run_id} already succeeded; nothing to resume", file=sys.stderr)
        return 0
    if state.data.get("execution_arn"):
        if params:
            raise UsageError(f"run {run_id} is an emulated execution, whose parameters were fixed when it "
                             "started: run `sagepipe emulate` again with them (its step cache returns finished "
                             "jobs at once)")
        from pipelines.cli.emulate import resume_emulated

        return resume_emulated(state, root, max_parallel, as_json, tail)
    recorded = [f"{k}={value_text(v)}" for k, v in state.data["params"].items()]
    spec = load_pipeline(state.data["config_path"], state.data["env"], [*recorded, *params])
    changed = {k: v for k, v in spec.param_values.items() if state.data["params"].get(k) != v}
    title = f"resuming run {run_id} of {spec.name}" + (
        f" with {', '.join(f'{k}={value_text(v)}' for k, v in changed.items())}" if changed else "")
    return drive(spec, root, max_parallel, as_json, state.data.get("use_cache", True),
                 lambda runner: runner.resume(state), title, tail)


def runs_list(root: Path, as_json: bool) -> int:
    from pipelines.local.state import list_runs

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
        print(f"{r['run_id']:<24} {r['pipeline'][:24]:<24} {r['status']:<12} {started:<20} "
              f"{step_counts(r['steps'])}")
    return 0


def step_counts(steps: dict[str, Any]) -> str:
    """'7 done, 1 skipped': how many steps ended each way (a skipped branch is no shortfall)."""
    counts: dict[str, int] = {}
    for step in steps.values():
        word = "done" if step["status"] in {"succeeded", "cached"} else step["status"]
        counts[word] = counts.get(word, 0) + 1
    order = ["done", "failed", "interrupted", "running", "retrying", "pending", "skipped"]
    return ", ".join(f"{counts[w]} {w}" for w in order + sorted(set(counts) - set(order)) if w in counts)


def runs_show(root: Path, run_id: str, as_json: bool) -> int:
    """A run's header and its steps, in pipeline order."""
    from pipelines.local.logs import run_folder
    from pipelines.local.progress import detail
    from pipelines.local.state import RunState

    run_dir = run_folder(root, run_id)
    state = RunState.load(run_dir)
    record = _mlflow_record(root, run_dir)
    if as_json:
        print(json.dumps({**state.data, **({"mlflow_record": record} if record else {})}, indent=2,
                         sort_keys=True, default=str))
        return 0
    data = state.data
    print(f"run {data['run_id']}  pipeline {data['pipeline']}  env {data['env']}  status {data['status']}")
    print(f"params: {json.dumps(data['params'], sort_keys=True)}")
    if record:
        print(f"MLflow record: {record['line']}")
    width = max(map(len, data["steps"]), default=8)
    for name, step in data["steps"].items():
        took = f"{step['duration_s']:.2f}s" if step.get("duration_s") is not None else ""
        print(f"  {name:<{width}}  {step['status']:<11} {took:>8}  attempts {step.get('attempts', 0)}  "
              f"{detail(step['status'], step)}".rstrip())
    return 0


def _mlflow_record(root: Path, run_dir: Path) -> dict[str, Any] | None:
    """Whether the run's MLflow record is written; pending records (of any run) are written now, in the background."""
    from pipelines.tracking_journal import complete_pending, record_status

    record = record_status(run_dir)
    started = complete_pending(root)
    if record is None:
        return None
    where = f"{record['uri']}" + (f", parent run {record['parent_run_id']}" if record["parent_run_id"] else "")
    if record["state"] == "written":
        record["line"] = f"written ({where})"
    elif record["state"] == "writing" or run_dir.name in started:
        why = f"; last attempt: {record['error']}" if record["error"] else ""
        record["line"] = f"pending, being written in the background now ({where}{why})"
    else:
        record["line"] = (f"pending ({where}; {record['error'] or 'not written yet'}); "
                          "the next sagepipe command that opens tracking writes it")
    return record
