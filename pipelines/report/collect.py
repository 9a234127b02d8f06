"""What a run report says, gathered from the run's state, its step outputs on disk and the pipeline spec."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.report.gate import Gate, gate_decision
from pipelines.report.quality import QualityRow, find_quality_file, read_quality
from pipelines.status import StepOutcome, outcomes

HEADLINE = ("auc", "pr_auc", "f1", "precision", "recall", "accuracy", "log_loss", "rmse", "mae", "r2")
CONTEXT = {"threshold", "test_rows", "positive_rate", "n", "rows", "count"}
LABELS = {"auc": "ROC AUC", "pr_auc": "PR AUC", "f1": "F1", "log_loss": "log loss", "rmse": "RMSE", "mae": "MAE",
          "r2": "R²", "mse": "MSE"}
PLOTS = {"roc": "ROC curve", "precision_recall": "Precision–recall curve", "confusion_matrix": "Confusion matrix",
         "feature_importance": "Feature importance"}
MAX_PLOT_BYTES = 4_000_000


@dataclass(frozen=True)
class StepRow:
    name: str
    type: str
    outcome: StepOutcome
    attempts: int
    detail: str
    log: Path | None


@dataclass(frozen=True)
class Metric:
    step: str
    name: str
    label: str
    value: float
    std: float | None
    n: int | None


@dataclass(frozen=True)
class Registered:
    step: str
    group: str
    version: int
    status: str


@dataclass
class RunReport:
    """Everything the HTML report shows, as plain data."""

    run_id: str
    pipeline: str
    env: str
    status: str
    started: str
    took: str
    config: str
    params: dict[str, Any]
    error: str | None
    steps: list[StepRow]
    edges: list[tuple[str, str, str]]
    gate: Gate | None
    metrics: list[Metric]
    threshold: float | None
    confusion: dict[str, Any] | None
    plots: list[tuple[str, Path]]
    quality: list[QualityRow]
    quality_file: Path | None
    registered: list[Registered]
    next_commands: list[tuple[str, str]] = field(default_factory=list)


def collect(state: dict[str, Any], run_dir: Path, spec: Any | None) -> RunReport:
    """The report of a run: state is its state.json document, spec the pipeline it ran (None when unknown)."""
    from pipelines.status import duration_text

    specs = {s.name: s for s in spec.steps} if spec is not None else {}
    records: dict[str, dict[str, Any]] = state.get("steps", {})
    found = outcomes(state, run_dir.parent)
    steps = [StepRow(name, getattr(specs.get(name), "type", ""), found[name], int(records[name].get("attempts") or 0),
                     _detail(records[name]), (run_dir / name / "log.txt") if (run_dir / name / "log.txt").is_file()
                     else None) for name in _ordered(spec, records)]
    metrics, threshold, confusion = _metrics(records)
    registered = _registered(records)
    ended = state.get("ended_at") or time.time()
    report = RunReport(
        run_id=str(state.get("run_id", run_dir.name)), pipeline=str(state.get("pipeline", "")),
        env=str(state.get("env", "")), status=str(state.get("status", "")),
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(state.get("started_at") or 0)),
        took=duration_text(ended - (state.get("started_at") or ended)), config=str(state.get("config", "")),
        params=dict(state.get("params") or {}), error=state.get("error"), steps=steps,
        edges=_edges(spec, records), gate=gate_decision(state, specs, registered), metrics=metrics,
        threshold=threshold, confusion=confusion, plots=_plots(records), quality=[], quality_file=None,
        registered=registered)
    outputs = [Path(p) for r in records.values() for p in (r.get("outputs") or {}).values() if isinstance(p, str)]
    report.quality_file = find_quality_file(run_dir, outputs)
    report.quality = read_quality(report.quality_file) if report.quality_file else []
    report.next_commands = next_commands(report, state)
    return report


def _ordered(spec: Any | None, records: dict[str, Any]) -> list[str]:
    """The run's steps in pipeline order (each after what it needs), else as recorded."""
    if spec is None:
        return list(records)
    from pipelines.graph import Graph

    try:
        order = [n for n in Graph(spec).topological() if n in records]
    except ValueError:
        order = []
    return order + [n for n in records if n not in order]


def _detail(record: dict[str, Any]) -> str:
    return str(record.get("error") or record.get("reason") or record.get("note") or "")


def _edges(spec: Any | None, records: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(parent, child, branch label) for every edge between steps of this run."""
    if spec is None:
        return []
    from pipelines.graph import Graph

    graph = Graph(spec)
    edges = []
    for step in spec.steps:
        branches = {t: b.replace("if_", "") for b, targets in step.branch_targets().items() for t in targets}
        for child in graph.downstream(step.name):
            if step.name in records and child in records:
                edges.append((step.name, child, branches.get(child, "")))
    return edges


def _metrics(records: dict[str, Any]) -> tuple[list[Metric], float | None, dict[str, Any] | None]:
    """Headline metrics (value, standard deviation, n) of every step with a metrics report."""
    found: list[Metric] = []
    threshold = confusion = None
    for step, record in records.items():
        report = record.get("metrics")
        if not isinstance(report, dict):
            continue
        entries = _entries(report)
        n = _number(entries.get("test_rows") or entries.get("n") or entries.get("rows") or entries.get("count"))
        if "threshold" in entries:
            threshold = _number(entries["threshold"])
        confusion = confusion or _find(report, "confusion_matrix")
        names = [k for k in HEADLINE if k in entries] + sorted(k for k in entries if k not in HEADLINE
                                                             and k not in CONTEXT)
        for name in names:
            value, std = entries[name].get("value"), entries[name].get("standard_deviation")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found.append(Metric(step, name, LABELS.get(name, name.replace("_", " ")), float(value),
                                    float(std) if isinstance(std, (int, float)) else None,
                                    int(n) if n is not None else None))
    return found, threshold, confusion


def _entries(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{name: {'value': ..., 'standard_deviation': ...}} from a SageMaker model-quality report, any depth."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in report.items():
        if isinstance(value, dict) and "value" in value:
            found.setdefault(key, value)
        elif isinstance(value, dict):
            for inner, entry in _entries(value).items():
                found.setdefault(inner, entry)
    return found


def _find(report: Any, key: str) -> Any:
    if isinstance(report, dict):
        if key in report:
            return report[key]
        for value in report.values():
            hit = _find(value, key)
            if hit is not None:
                return hit
    return None


def _number(entry: Any) -> float | None:
    value = entry.get("value") if isinstance(entry, dict) else entry
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _plots(records: dict[str, Any]) -> list[tuple[str, Path]]:
    """The PNG plots in step output folders: steps with a metrics report first, known plots in a fixed order."""
    found: list[tuple[int, int, str, Path]] = []
    order = list(PLOTS)
    for rank, (step, record) in enumerate(sorted(records.items(), key=lambda kv: not kv[1].get("metrics"))):
        for output in (record.get("outputs") or {}).values():
            folder = Path(str(output))
            if not folder.is_dir():
                continue
            for png in sorted(folder.glob("*.png")):
                if png.stat().st_size <= MAX_PLOT_BYTES:
                    place = order.index(png.stem) if png.stem in order else len(order)
                    title = PLOTS.get(png.stem, png.stem.replace("_", " ").capitalize())
                    found.append((rank, place, f"{title} ({step})" if rank else title, png))
    return [(title, path) for _, _, title, path in sorted(found, key=lambda f: (f[0], f[1], str(f[3])))][:16]


def _registered(records: dict[str, Any]) -> list[Registered]:
    return [Registered(name, done["group"], int(done["version"]), done["status"]) for name, record in records.items()
            if record.get("status") == "succeeded" and (done := record.get("registered"))]


def next_commands(report: RunReport, state: dict[str, Any]) -> list[tuple[str, str]]:
    """What a person would do next, as (why, command)."""
    found: list[tuple[str, str]] = []
    env = f" --env {report.env}" if report.env not in ("", "local") else ""
    for version in report.registered:
        where = f"{version.group} {version.version}{env}"
        if version.status == "PendingManualApproval":
            found.append(("approve the registered version (this deploys it)", f"sagepipe models approve {where}"))
            found.append(("or reject it", f"sagepipe models reject {where} --note 'why'"))
        found.append(("serve it locally (SageMaker's inference protocol)",
                      f"sagepipe serve {version.group}@{version.version}{env}"))
    failed = [s for s in report.steps if s.outcome.status in ("failed", "interrupted")]
    if report.gate is not None and report.gate.passed is False and report.gate.change:
        found.append(("lower the gate (or improve the model and run again)", report.gate.change))
    elif failed and not state.get("execution_arn"):
        found.append(("after fixing the problem, continue the run", f"sagepipe resume {report.run_id}"))
    elif failed:
        source = f"--definition {report.config}" if report.config.endswith(".json") else report.config
        found.append(("after fixing the problem, run the emulation again (finished jobs come from its cache)",
                      f"sagepipe emulate {source}" + (f" --env {report.env}" if source == report.config else "")))
    gate_failed = report.gate is not None and report.gate.passed is False
    for step in failed:
        if step.log is not None and not (gate_failed and is_fail_step(step)):
            found.append((f"read the log of step '{step.name}'", f"less {step.log}"))
    found.append(("compare runs in MLflow", "sagepipe ui"))
    found.append(("this run's steps in the terminal", f"sagepipe runs show {report.run_id}"))
    return found


def is_fail_step(step: StepRow) -> bool:
    """A `fail` step (or an emulated FailStep): its failure is the gate's decision, not a fault."""
    return step.type.split(":")[-1].lower() == "fail"
