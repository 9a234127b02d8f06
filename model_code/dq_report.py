"""The data-quality report: one self-contained HTML page (inline CSS, no network) and the same rows as JSON.

Written to the preprocess step's data_docs output:
  index.html                  every file's table: expectation, column, expected, observed, pass/fail
  validations/<file>.html     one file's table alone (e.g. validations/claims_csv.html)
  data_quality.json           {"version": 1, "title", "suite", "engine", "success",
                               "files": {file: {"rows", "expectations", "failed"}},
                               "results": [{"file", "column", "expectation", "expected", "success",
                                            "observed", "message", "result"}]}
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1f2328;background:#fff}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}
.summary{margin:.5rem 0 1rem;color:#57606a}.badge{display:inline-block;padding:.1rem .55rem;border-radius:1rem;
font-weight:600;font-size:.8rem}.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}
table{border-collapse:collapse;width:100%;margin-bottom:1rem}th,td{text-align:left;padding:.35rem .6rem;
border-bottom:1px solid #d0d7de;vertical-align:top}th{background:#f6f8fa;font-weight:600}
tr.failed td{background:#fff8f7}code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
ul.failures{color:#a40e26}
"""


def describe_failure(row: dict[str, Any]) -> str:
    """One line: file, column, expectation and what was observed."""
    kwargs = row["kwargs"]
    column = f"column '{kwargs['column']}'" if "column" in kwargs else "table"
    expected = {k: v for k, v in kwargs.items() if k != "column"}
    return f"{row['file']}: {column}: {row['expectation']}{expected if expected else ''} failed — {_observed(row)}"


def _observed(row: dict[str, Any]) -> str:
    observed = row["result"] or {}
    if row.get("exception"):
        return f"could not be checked: {row['exception'][:200]}"
    if "observed_value" in observed:
        return f"observed {observed['observed_value']!r}"
    if observed.get("unexpected_count") is not None:
        if row["success"] and not observed["unexpected_count"]:
            return "no unexpected values"
        sample = sorted({str(v) for v in (observed.get("partial_unexpected_list") or [])})[:5]
        return (f"{observed['unexpected_count']} unexpected values "
                f"({observed.get('unexpected_percent') or 0:.1f}%), e.g. {sample}")
    if row["expectation"] == "expect_column_to_exist":
        return "column found" if row["success"] else "column not found"
    return "passed" if row["success"] else "failed"


def _clean(value: Any) -> Any:
    """JSON without NaN: a missing value in a sample is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def report(rows: list[dict[str, Any]], row_counts: dict[str, int], suite_name: str, engine: str) -> dict[str, Any]:
    """The JSON document (see the module docstring)."""
    files = {file: {"rows": count, "expectations": sum(r["file"] == file for r in rows),
                    "failed": sum(r["file"] == file and not r["success"] for r in rows)}
             for file, count in row_counts.items()}
    results = [{"file": r["file"], "column": r["kwargs"].get("column"), "expectation": r["expectation"],
                "expected": {k: v for k, v in r["kwargs"].items() if k != "column"}, "success": r["success"],
                "observed": _observed(r), "message": None if r["success"] else describe_failure(r),
                "result": r["result"]} for r in rows]
    return _clean({"version": 1, "title": f"Data quality: {', '.join(row_counts)} against {suite_name}",
                   "suite": suite_name, "engine": engine, "success": all(r["success"] for r in rows),
                   "files": files, "results": results})


def _badge(ok: bool) -> str:
    return f'<span class="badge {"pass" if ok else "fail"}">{"pass" if ok else "fail"}</span>'


def _table(doc: dict[str, Any], file: str) -> str:
    info = doc["files"][file]
    rows = []
    for r in (r for r in doc["results"] if r["file"] == file):
        expected = ", ".join(f"{k}={v!r}" for k, v in r["expected"].items())
        rows.append(f'<tr class="{"passed" if r["success"] else "failed"}"><td><code>{html.escape(r["expectation"])}'
                    f'</code></td><td>{html.escape(r["column"] or "(table)")}</td><td><code>{html.escape(expected)}'
                    f'</code></td><td>{html.escape(r["observed"])}</td><td>{_badge(r["success"])}</td></tr>')
    anchor = file.replace(".", "_")
    return (f'<h2 id="{anchor}">{html.escape(file)} {_badge(not info["failed"])}</h2>'
            f'<p class="summary">{info["rows"]:,} rows; {info["expectations"] - info["failed"]} of '
            f'{info["expectations"]} expectations passed</p>'
            '<table><thead><tr><th>Expectation</th><th>Column</th><th>Expected</th><th>Observed</th>'
            f'<th>Result</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
            f'<body>{body}</body></html>\n')


def write(doc: dict[str, Any], folder: Path) -> None:
    """index.html, validations/<file>.html and data_quality.json into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data_quality.json").write_text(json.dumps(doc, indent=2))
    failures = [r["message"] for r in doc["results"] if not r["success"]]
    verdict = "all expectations passed" if doc["success"] else f"{len(failures)} expectation(s) failed"
    head = (f'<h1>{html.escape(doc["title"])}</h1><p class="summary">{_badge(doc["success"])} {verdict} '
            f'(checked by {html.escape(doc["engine"])})</p>')
    if failures:
        head += '<ul class="failures">' + "".join(f"<li>{html.escape(m)}</li>" for m in failures) + "</ul>"
    (folder / "index.html").write_text(_page(doc["title"], head + "".join(_table(doc, f) for f in doc["files"])))
    (folder / "validations").mkdir(exist_ok=True)
    for file in doc["files"]:
        title = f"Data quality: {file} against {doc['suite']}"
        (folder / "validations" / f"{file.replace('.', '_')}.html").write_text(
            _page(title, f"<h1>{html.escape(title)}</h1>{_table(doc, file)}"))
