"""The data-quality results of a run, read from the JSON the data-quality step writes (`data_quality.json`).

The reader is lenient about the document's shape, so the report keeps working while that format grows:
a list of rows, or a mapping with the rows under `results`, `rows`, `expectations` or `checks` (possibly
nested per file). A row names its expectation (`expectation`, `expectation_type`, `type`), its `column`,
what was `observed` (`observed_value`, `result`) and whether it passed (`success`, `passed`, `pass`, or a
`status` of pass/fail).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAMES = ("data_quality.json", "data-quality.json")
ROW_LISTS = ("results", "rows", "expectations", "checks")


@dataclass(frozen=True)
class QualityRow:
    file: str
    expectation: str
    column: str
    observed: str
    passed: bool | None


def find_quality_file(run_dir: Path, outputs: list[Path]) -> Path | None:
    """The data-quality JSON among the recorded outputs, else anywhere in the run folder (a failed step
    records no outputs, but its files are there)."""
    for folder in [*outputs, run_dir]:
        if folder.is_file() and folder.name in NAMES:
            return folder
        if folder.is_dir():
            for name in NAMES:
                found = sorted(folder.rglob(name))
                if found:
                    return found[0]
    return None


def read_quality(path: Path) -> list[QualityRow]:
    """The rows of a data-quality JSON file ([] when it holds none that can be read)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return list(_rows(document, ""))


def _rows(node: Any, file: str) -> Any:
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and _is_row(item):
                yield _row(item, file)
            elif isinstance(item, (dict, list)):
                yield from _rows(item, file)
    elif isinstance(node, dict):
        if _is_row(node):
            yield _row(node, file)
            return
        for key in ROW_LISTS:
            if key in node:
                yield from _rows(node[key], str(node.get("file") or node.get("table") or file))
                return
        for key, value in node.items():  # a mapping of file name -> rows
            if isinstance(value, (dict, list)):
                yield from _rows(value, str(key))


def _is_row(item: dict[str, Any]) -> bool:
    return any(k in item for k in ("expectation", "expectation_type")) or (
        "type" in item and any(k in item for k in ("success", "passed", "pass", "status")))


def _row(item: dict[str, Any], file: str) -> QualityRow:
    expectation = item.get("expectation") or item.get("expectation_type") or item.get("type") or ""
    if isinstance(expectation, dict):
        expectation = expectation.get("type") or json.dumps(expectation, sort_keys=True)
    column = item.get("column")
    if column is None and isinstance(item.get("kwargs"), dict):
        column = item["kwargs"].get("column")
    observed = next((item[k] for k in ("observed", "observed_value", "result") if k in item), "")
    return QualityRow(file=str(item.get("file") or item.get("table") or file), expectation=str(expectation),
                      column="" if column is None else str(column), observed=_text(observed),
                      passed=_passed(item))


def _passed(item: dict[str, Any]) -> bool | None:
    for key in ("success", "passed", "pass"):
        if isinstance(item.get(key), bool):
            return item[key]
    status = str(item.get("status", "")).lower()
    if status in ("pass", "passed", "ok", "success", "succeeded"):
        return True
    if status in ("fail", "failed", "error", "failure"):
        return False
    return None


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)[:200]
    return str(value)[:200]
