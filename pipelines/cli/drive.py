"""Running (or resuming) a pipeline with live progress, then explaining it: what `run`, `resume` and `emulate`
share."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipelines.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

if TYPE_CHECKING:
    from pipelines.local.runner import LocalRunner
    from pipelines.local.state import RunState
    from pipelines.spec import PipelineSpec

EXIT_CODES = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}


def drive(spec: PipelineSpec, root: Path, max_parallel: int | None, as_json: bool, use_cache: bool,
          start: Callable[[LocalRunner], RunState], title: str, tail: int = 0) -> int:
    """Run (or resume) spec with live progress, explain the outcome; the exit code."""
    from pipelines.local.progress import make_reporter
    from pipelines.local.runner import LocalRunner
    from pipelines.local.state import RunUnavailable

    names = [s.name for s in spec.steps]
    stream = sys.stderr if as_json else sys.stdout
    print(title, file=stream, flush=True)
    reporter = make_reporter(names, stream, tail)
    from pipelines.tracking import open_tracker

    tracker = open_tracker(spec, root, warn=reporter.warn)
    runner = LocalRunner(spec, root, use_cache=use_cache, max_parallel=max_parallel, report=reporter,
                         tracker=tracker, warn=reporter.warn)
    try:  # the tracking store is opened by a background writer: nothing to wait for here
        state = start(runner)
    except RunUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        reporter.close()
    from pipelines.explain import explain
    from pipelines.report import after_run

    explain(state, stream, spec)
    after_run(state, spec, tracker, stream)
    if as_json:
        print(json.dumps(summary(state), indent=2, default=str))
    return EXIT_CODES.get(state.data["status"], 1)


def summary(state: RunState) -> dict[str, Any]:
    """The documented `--json` shape of a run."""
    data = state.data
    return {
        "run_id": data["run_id"], "status": data["status"], "pipeline": data["pipeline"],
        "steps": [{"name": n, "status": s["status"], "cached": s.get("cached", False),
                   **({"cached_from": s["cached_from"]} if s.get("cached_from") else {}),
                   "duration_s": s.get("duration_s"), "peak_rss_mb": s.get("peak_rss_mb")}
                  for n, s in data["steps"].items()],
        "metrics": {n: s["metrics"] for n, s in data["steps"].items() if s.get("metrics")},
        **({"execution_arn": data["execution_arn"]} if data.get("execution_arn") else {}),
    }
