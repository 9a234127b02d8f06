"""`sagepipe report`: one self-contained HTML page per run (DAG by status, gate decision, metrics, plots,
data quality, registered version, next commands), written at the end of every run as `<run dir>/report.html`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError, NotFound, UsageError, UserError

REPORT_NAME = "report.html"


def write_report(run_dir: Path, spec: Any | None = None, output: Path | None = None,
                 state: dict[str, Any] | None = None) -> Path:
    """Write the report of the run in run_dir (to output, default `<run dir>/report.html`); its path.

    spec is the pipeline the run ran and state its state document (read from run_dir when not given). The
    run's own config file is loaded when spec is missing, if it still loads; an emulated run's gate decision
    comes from what its condition step recorded in the state."""
    from pipelines.fsutil import atomic_write_text
    from pipelines.local.state import RunState
    from pipelines.report.collect import collect
    from pipelines.report.html import render

    state = state if state is not None else RunState.load(run_dir).data
    if spec is None or {s.name for s in spec.steps} != set(state.get("steps", {})):
        spec = _spec_of(state) or spec
    target = output or run_dir / REPORT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, render(collect(state, run_dir, spec)))
    return target


def _spec_of(state: dict[str, Any]) -> Any | None:
    """The pipeline a run recorded (its config, env and parameters), or None when it no longer loads."""
    from pipelines.loader import load_pipeline

    from pipelines.values import value_text

    params = [f"{k}={value_text(v)}" for k, v in (state.get("params") or {}).items()]
    try:
        spec = load_pipeline(state["config_path"], state.get("env", "local"), params)
    except (ConfigError, KeyError, OSError):
        return None
    return spec if {s.name for s in spec.steps} == set(state.get("steps", {})) else None


def report_command(root: Path, run_id: str, output: str | None) -> int:
    """`sagepipe report RUN_ID [-o FILE]`."""
    from pipelines.local.state import list_runs

    run_dir = root / "runs" / run_id
    if not (run_dir / "state.json").is_file():
        known = [r["run_id"] for r in list_runs(root / "runs")][:5]
        raise NotFound(f"no run '{run_id}' in {root / 'runs'} (recent: {', '.join(known) or 'none'}); "
                       "`sagepipe runs list` shows them all")
    try:
        path = write_report(run_dir, None, Path(output) if output else None)
    except UserError:
        raise
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot write the report of run {run_id}: {exc}") from None
    print(f"report: {path.resolve()}")
    return 0


def after_run(state: Any, spec: Any, tracker: Any, stream: Any) -> Path | None:
    """At the end of every run (run, resume, emulate): write `<run dir>/report.html`, log it to the run's
    MLflow parent run when the tracker can, and say where it is. A report that cannot be written is a
    warning, never a failed run."""
    try:
        path = write_report(state.path.parent, spec, state=state.data)
    except Exception as exc:  # the run's outcome stands whatever the report does
        print(f"warning: the run report was not written: {type(exc).__name__}: {exc}", file=stream)
        return None
    attach = getattr(tracker, "attach_run_file", None)
    if callable(attach):
        try:
            attach(path)
        except Exception as exc:  # tracking never fails a run
            print(f"warning: the run report was not logged to MLflow: {exc}", file=stream)
    print(f"report: {path}", file=stream)
    return path


def run_overlay(root: Path, run_id: str, spec: Any) -> dict[str, Any]:
    """`graph --run`: each step's outcome in a local run of spec's pipeline (StepOutcome by step name)."""
    import json

    from pipelines.local.state import list_runs, settled
    from pipelines.status import outcomes

    run_dir = root / "runs" / run_id
    try:
        state = settled(json.loads((run_dir / "state.json").read_text()), run_dir)
    except (OSError, ValueError):
        known = [r["run_id"] for r in list_runs(root / "runs") if r.get("pipeline") == spec.name][:5]
        raise NotFound(f"--run: no readable run '{run_id}' in {root / 'runs'} (recent runs of {spec.name}: "
                       f"{', '.join(known) or 'none'})") from None
    if state.get("pipeline") != spec.name:
        raise UsageError(f"--run: run {run_id} is of pipeline '{state.get('pipeline')}', not '{spec.name}' "
                         f"({spec.source_file}); give that pipeline's config")
    names = {s.name for s in spec.steps}
    return {name: o for name, o in outcomes(state, root / "runs").items() if name in names}
