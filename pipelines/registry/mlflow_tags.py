"""A registered version as MLflow users read it: plain version tags and a Markdown description.

Tags: `status=PendingManualApproval`, one `metric.test_<name>` per number of the evaluation report
(`metric.test_auc=0.8444`), the lineage under plain names (`pipeline_run_id`, `source_run`, `git_commit`,
`data.<input>`, ...) and one `history.<time>` line per status change ("<at> Approved (was
PendingManualApproval) by alice — looks good"). The report itself is kept verbatim in
`sagepipe.evaluation_report` (reports are free-form JSON; the package returns them as written).
Stores written before these tags (JSON in `sagepipe.approval_status`, `sagepipe.metrics`,
`sagepipe.lineage`, `sagepipe.history.*`) still read.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any

from pipelines.tracking import report_metrics

STATUS = "status"
METRIC_PREFIX = "metric.test_"
HISTORY_PREFIX = "history."
REPORT = "sagepipe.evaluation_report"
DATA_PREFIX = "data."
OTHER_LINEAGE_PREFIX = "lineage."
# lineage key -> version tag (the rest keep their name)
RENAMED = {"run_id": "pipeline_run_id", "mlflow_run_id": "register_run", "step": "register_step"}
LINEAGE_KEYS = ("run_id", "pipeline", "step", "env", "config", "git_commit", "model_hash", "mlflow_run_id",
                "training_step", "code_hash", "inference_code", "source_run")
LEGACY_STATUS, LEGACY_METRICS, LEGACY_LINEAGE = "sagepipe.approval_status", "sagepipe.metrics", "sagepipe.lineage"
LEGACY_HISTORY_PREFIX = "sagepipe.history."
HEADLINE = ("auc", "pr_auc", "f1", "precision", "recall", "accuracy", "log_loss")
MAX_TAG, MAX_DESCRIPTION = 5000, 5000
_LINE = re.compile(r"^(?P<at>\S+) (?P<status>\S+)(?: \(was (?P<previous>\S+)\))? by (?P<by>.*?)(?: — (?P<note>.*))?$",
                   re.S)


def is_sagepipe_version(tags: dict[str, str]) -> bool:
    return STATUS in tags or LEGACY_STATUS in tags


def version_tags(status: str, metrics: dict[str, Any], lineage: dict[str, Any],
                 first: dict[str, Any]) -> dict[str, str]:
    """The tags of a new version."""
    tags = {STATUS: status, **metric_tags(metrics), **lineage_tags(lineage), history_key(): history_line(first)}
    report = json.dumps(metrics, sort_keys=True)
    if len(report) <= MAX_TAG:
        tags[REPORT] = report
    return tags


def metric_tags(metrics: dict[str, Any]) -> dict[str, str]:
    return {f"{METRIC_PREFIX}{name}"[:250]: _number(value) for name, value in report_metrics(metrics).items()}


def lineage_tags(lineage: dict[str, Any]) -> dict[str, str]:
    tags = {}
    for key, value in lineage.items():
        if value is None or value == "":
            continue
        if key == "data_hashes" and isinstance(value, dict):
            tags.update({f"{DATA_PREFIX}{name}": str(digest) for name, digest in value.items()})
        elif key in LINEAGE_KEYS:
            tags[RENAMED.get(key, key)] = str(value)
        else:
            tags[f"{OTHER_LINEAGE_PREFIX}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return {k[:250]: v[:MAX_TAG] for k, v in tags.items()}


def history_key() -> str:
    # nanosecond time orders the changes; the random tail keeps two changes in one tick apart
    return f"{HISTORY_PREFIX}{time.time_ns():020d}.{secrets.token_hex(2)}"


def history_line(entry: dict[str, Any]) -> str:
    """'<at> <status> (was <previous>) by <who> — <note>'."""
    was = f" (was {entry['previous']})" if entry.get("previous") else ""
    note = f" — {entry['note']}" if entry.get("note") else ""
    return f"{entry['at']} {entry['status']}{was} by {entry.get('by') or 'unknown'}{note}"[:MAX_TAG]


def package(version: Any) -> dict[str, Any]:
    """The package dict of an MLflow ModelVersion (new tags, or the JSON tags of older stores)."""
    tags = dict(version.tags or {})
    lineage = _lineage(tags)
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, timezone.utc)
    return {
        "group": version.name, "version": int(version.version),
        "status": tags.get(STATUS) or tags.get(LEGACY_STATUS, "unknown"),
        "created_at": created.isoformat(timespec="seconds"), "metrics": _metrics(tags), "lineage": lineage,
        "model_uri": version.source, "run_id": lineage.get("run_id"), "mlflow_run_id": version.run_id,
        "aliases": sorted(getattr(version, "aliases", None) or []), "history": _history(tags),
    }


def description(package: dict[str, Any]) -> str:
    """A Markdown description of a version: status, where it came from, its test metrics, its history."""
    group, version, lineage = package["group"], package["version"], package.get("lineage") or {}
    lines = [f"**{package['status']}** — {group} version {version}, registered by pipeline "
             f"`{lineage.get('pipeline', 'unknown')}`" + _details(lineage) + "."]
    if lineage.get("training_step"):
        lines.append(f"Trained by step `{lineage['training_step']}`"
                     + (f" (MLflow run `{lineage['source_run']}`)" if lineage.get("source_run") else "") + ".")
    metrics = report_metrics(package.get("metrics") or {})
    shown = [f"{name} {metrics[name]:.4f}" + (f" ± {metrics[f'{name}.standard_deviation']:.4f}"
                                              if metrics.get(f"{name}.standard_deviation") else "")
             for name in HEADLINE if name in metrics]
    if shown:
        at = f" at threshold {metrics['threshold']:g}" if "threshold" in metrics else ""
        lines.append(f"Test metrics{at}: " + ", ".join(shown) + ".")
    lines.append("History:\n" + "\n".join(f"- {history_line(h)}" for h in package.get("history") or []))
    if package["status"] == "PendingManualApproval":
        lines.append(f"Decide with `sagepipe models approve {group} {version}` or "
                     f"`sagepipe models reject {group} {version} --note \"why\"`.")
    text = "\n\n".join(lines)
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 1] + "…"


def _details(lineage: dict[str, Any]) -> str:
    parts = [f"{label} `{lineage[key]}`" for key, label in (("run_id", "run"), ("env", "env"))
             if lineage.get(key)]
    if lineage.get("git_commit"):
        parts.append(f"commit `{str(lineage['git_commit'])[:12]}`")
    return f" ({', '.join(parts)})" if parts else ""


def _metrics(tags: dict[str, str]) -> dict[str, Any]:
    for key in (REPORT, LEGACY_METRICS):
        if key in tags:
            return json.loads(tags[key])
    return {k[len(METRIC_PREFIX):]: float(v) for k, v in tags.items() if k.startswith(METRIC_PREFIX)}


def _lineage(tags: dict[str, str]) -> dict[str, Any]:
    if LEGACY_LINEAGE in tags and STATUS not in tags:
        return json.loads(tags[LEGACY_LINEAGE])
    lineage: dict[str, Any] = {key: tags[RENAMED.get(key, key)] for key in LINEAGE_KEYS if RENAMED.get(key, key) in tags}
    data = {k[len(DATA_PREFIX):]: v for k, v in tags.items() if k.startswith(DATA_PREFIX)}
    if data:
        lineage["data_hashes"] = data
    for key, value in tags.items():
        if key.startswith(OTHER_LINEAGE_PREFIX):
            lineage[key[len(OTHER_LINEAGE_PREFIX):]] = _json_or_text(value)
    return lineage


def _history(tags: dict[str, str]) -> list[dict[str, Any]]:
    entries = []
    for key, value in tags.items():
        if key.startswith(HISTORY_PREFIX):
            entries.append((key[len(HISTORY_PREFIX):], _parse_line(value)))
        elif key.startswith(LEGACY_HISTORY_PREFIX):
            entries.append((key[len(LEGACY_HISTORY_PREFIX):], json.loads(value)))
    return [entry for _, entry in sorted(entries, key=lambda item: item[0])]


def _parse_line(line: str) -> dict[str, Any]:
    match = _LINE.match(line)
    if not match:  # edited by hand in the UI: keep what it says
        return {"status": "unknown", "at": "", "by": "unknown", "note": line, "previous": None}
    found = match.groupdict()
    return {"status": found["status"], "at": found["at"], "by": found["by"], "note": found["note"] or "",
            "previous": found["previous"]}


def _number(value: float) -> str:
    return f"{value:.6g}"


def _json_or_text(value: str) -> Any:
    if value[:1] not in ("[", "{"):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
