"""The run report as one self-contained HTML page: inline CSS, SVG and script, plots as base64 PNG data URIs."""

from __future__ import annotations

import base64
import json
import math
import time
from html import escape
from pathlib import Path
from typing import Any

from pipelines.report.collect import Metric, RunReport, is_fail_step
from pipelines.report.dag import legend_html, render_svg
from pipelines.status import STYLES


def render(report: RunReport) -> str:
    """The page for one run."""
    names = [s.name for s in report.steps]
    svg = render_svg(names, {s.name: s.type for s in report.steps}, {s.name: s.outcome for s in report.steps},
                     report.edges)
    body = [
        _header(report), _summary(report), _failures(report), _next(report),
        _section("graph", "Pipeline", f'{legend_html()}<div class="dag-wrap">{svg}</div>'),
        _metrics(report), _plots(report), _quality(report), _steps(report), _params(report),
        f'<footer>Generated {escape(time.strftime("%Y-%m-%d %H:%M:%S %Z"))} by <code>sagepipe report '
        f'{escape(report.run_id)}</code>. Self-contained: this file loads nothing from the network.</footer>',
    ]
    title = f"{report.pipeline} · run {report.run_id} · {report.status}"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{_css()}</style>\n</head>\n"
            f'<body class="run-{escape(report.status)}">\n<main>\n' + "\n".join(body)
            + f"\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n")


def _section(ident: str, title: str, inner: str, lead: str = "") -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{ident}"><h2>{escape(title)}</h2>{lead_html}{inner}</section>'


def _header(r: RunReport) -> str:
    facts = [("run", r.run_id), ("env", r.env), ("started", r.started), ("took", r.took), ("config", r.config)]
    items = "".join(f"<li><span>{escape(k)}</span> {escape(v)}</li>" for k, v in facts if v)
    error = f'<p class="run-error">{escape(r.error)}</p>' if r.error else ""
    return (f'<header><div class="title"><h1>{escape(r.pipeline)}</h1>'
            f'<span class="badge st-{escape(r.status)}" id="run-status">{escape(r.status)}</span></div>'
            f'<ul class="facts">{items}</ul>{error}</header>')


def _summary(r: RunReport) -> str:
    cards = []
    if r.gate is not None:
        state = {True: "pass", False: "fail", None: "none"}[r.gate.passed]
        heading = {True: "Passed the gate", False: "Did not pass the gate", None: "No gate decision"}[r.gate.passed]
        cards.append(f'<div class="card gate gate-{state}" id="gate"><h3>{heading}</h3>'
                     f'<p>{escape(r.gate.sentence)}</p></div>')
    if r.registered:
        rows = "".join(f'<p class="version"><strong>{escape(v.group)}</strong> version <strong>{v.version}</strong>'
                       f' <span class="pill">{escape(v.status)}</span></p>' for v in r.registered)
        cards.append(f'<div class="card" id="registered"><h3>Registered model</h3>{rows}</div>')
    else:
        cards.append('<div class="card muted" id="registered"><h3>Registered model</h3><p>No version was '
                     'registered by this run.</p></div>')
    head = next((m for m in r.metrics), None)
    if head is not None:
        cards.append(f'<div class="card" id="headline"><h3>{escape(head.label)} ({escape(head.step)})</h3>'
                     f'<p class="big">{_fmt(head.value)}{_pm(head)}</p>'
                     f'<p class="muted">{_n_text(head)}</p></div>')
    return f'<section id="summary" class="cards">{"".join(cards)}</section>'


def _failures(r: RunReport) -> str:
    """Each failed step (a gate's fail step aside: the gate card says it) with its error and last log lines."""
    gate_failed = r.gate is not None and r.gate.passed is False
    blocks = []
    for step in r.steps:
        if step.outcome.status != "failed" or (gate_failed and is_fail_step(step)):
            continue
        tail = _log_tail(step.log, 12) if step.log else []
        log = f'<pre class="log-tail">{escape(chr(10).join(tail))}</pre>' if tail else ""
        where = f'<p class="log">full log: {escape(str(step.log))}</p>' if step.log else ""
        blocks.append(f'<div class="failure" data-step="{escape(step.name)}"><h3>Step {escape(step.name)} failed'
                      f'</h3><p>{escape(step.detail)}</p>{log}{where}</div>')
    return _section("failures", "What failed", "".join(blocks)) if blocks else ""


def _log_tail(path: Path, count: int) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip() and not line.startswith("[sagepipe]")][-count:]


def _next(r: RunReport) -> str:
    items = "".join(f'<li><span class="why">{escape(why)}</span><div class="cmd"><code>{escape(cmd)}</code>'
                    f'<button type="button" class="copy" data-copy="{escape(cmd)}">copy</button></div></li>'
                    for why, cmd in r.next_commands)
    return _section("next", "Next", f'<ol class="next">{items}</ol>')


def _metrics(r: RunReport) -> str:
    if not r.metrics:
        return _section("metrics", "Metrics", '<p class="muted">No step of this run wrote a metrics report.</p>')
    rows = "".join(f'<tr class="metric" data-metric="{escape(m.name)}"><td>{escape(m.label)}</td>'
                   f'<td class="num value">{_fmt(m.value)}</td>'
                   f'<td class="num std">{"± " + _fmt(m.std) if m.std is not None else "—"}</td>'
                   f'<td class="num n">{f"{m.n:,}" if m.n is not None else "—"}</td><td>{escape(m.step)}</td></tr>'
                   for m in r.metrics)
    lead = "Standard deviations come from bootstrap resamples of the evaluated rows; n is the number of rows."
    if r.threshold is not None:
        lead += f" Metrics that need a decision (precision, recall, F1, accuracy) use threshold {_short(r.threshold)}."
    table = (f'<table class="grid"><thead><tr><th>metric</th><th class="num">value</th><th class="num">std</th>'
             f'<th class="num">n</th><th>step</th></tr></thead><tbody>{rows}</tbody></table>')
    return _section("metrics", "Metrics", table, escape(lead))


def _plots(r: RunReport) -> str:
    figures = []
    for title, path in r.plots:
        try:
            data = base64.b64encode(path.read_bytes()).decode()
        except OSError:
            continue
        figures.append(f'<figure><img alt="{escape(title)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{escape(title)}</figcaption></figure>")
    if r.confusion and not any(p.stem == "confusion_matrix" for _, p in r.plots):
        figures.append(_confusion_table(r.confusion, r.threshold))
    if not figures:
        return _section("plots", "Plots", '<p class="muted">No plots were found in the step outputs.</p>')
    return _section("plots", "Plots", f'<div class="plots">{"".join(figures)}</div>')


def _confusion_table(cells: Any, threshold: float | None) -> str:
    if isinstance(cells, list) and len(cells) == 2 and all(isinstance(row, list) and len(row) == 2 for row in cells):
        cells = {str(a): {str(p): cells[a][p] for p in (0, 1)} for a in (0, 1)}
    if not isinstance(cells, dict):
        return ""

    def cell(actual: str, predicted: str) -> str:
        row = cells.get(actual)
        value = row.get(predicted, 0) if isinstance(row, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return f"{int(value):,}"
        return escape(str(value)) if value is not None else "—"

    at = f" at threshold {_short(threshold)}" if threshold is not None else ""
    return (f'<figure class="confusion"><table class="grid"><tr><th></th><th>predicted 0</th><th>predicted 1</th>'
            f'</tr><tr><th>actual 0</th><td class="num">{cell("0", "0")}</td><td class="num">{cell("0", "1")}</td></tr>'
            f'<tr><th>actual 1</th><td class="num">{cell("1", "0")}</td><td class="num">{cell("1", "1")}</td></tr>'
            f"</table><figcaption>Confusion matrix{at}</figcaption></figure>")


def _quality(r: RunReport) -> str:
    if r.quality_file is None:
        why = "no data-quality results were found in this run's outputs"
        return _section("data-quality", "Data quality", f'<p class="muted">{escape(why.capitalize())}.</p>')
    if not r.quality:
        why = f"{r.quality_file.name} holds no results that can be read"
        return _section("data-quality", "Data quality", f'<p class="muted">{escape(why.capitalize())}.</p>')
    failed = sum(q.passed is False for q in r.quality)
    lead = (f"{len(r.quality) - failed} of {len(r.quality)} expectations passed"
            + (f"; <strong>{failed} failed</strong>" if failed else "") + f" (from {escape(r.quality_file.name)}).")
    toggle = ('<label class="only-failed"><input type="checkbox" id="only-failed"> show only failures</label>'
              if failed else "")
    rows = "".join(
        f'<tr class="dq-row dq-{ {True: "pass", False: "fail", None: "unknown"}[q.passed] }">'
        f"<td>{escape(q.file)}</td><td>{escape(q.expectation)}</td><td>{escape(q.column)}</td>"
        f'<td class="observed">{escape(q.observed)}</td>'
        f'<td class="result">{ {True: "✓ pass", False: "✗ fail", None: "?"}[q.passed] }</td></tr>'
        for q in r.quality)
    table = (f'{toggle}<table class="grid" id="dq-table"><thead><tr><th>file</th><th>expectation</th><th>column</th>'
             f"<th>observed</th><th>result</th></tr></thead><tbody>{rows}</tbody></table>")
    return _section("data-quality", "Data quality", table, lead)


def _steps(r: RunReport) -> str:
    rows = []
    for s in r.steps:
        status = s.outcome.status
        words = f"cached from run {s.outcome.cached_from}" if s.outcome.cached_from else STYLES[status][3]
        log = f'<div class="log">{escape(str(s.log))}</div>' if s.log and status in ("failed", "interrupted") else ""
        rows.append(f'<tr id="step-{escape(s.name)}" class="step-row"><td><strong>{escape(s.name)}</strong></td>'
                    f"<td>{escape(s.type.split(':')[-1])}</td>"
                    f'<td><span class="badge st-{status}">{escape(words)}</span></td>'
                    f'<td class="num">{escape(s.outcome.duration or "—")}</td><td class="num">{s.attempts}</td>'
                    f"<td>{escape(s.detail)}{log}</td></tr>")
    table = ('<table class="grid"><thead><tr><th>step</th><th>type</th><th>status</th><th class="num">took</th>'
             f'<th class="num">attempts</th><th>detail</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return _section("steps", "Steps", table)


def _params(r: RunReport) -> str:
    rows = "".join(f"<tr><td><code>{escape(k)}</code></td><td><code>{escape(json.dumps(v, default=str))}</code></td>"
                   "</tr>" for k, v in sorted(r.params.items()))
    return _section("parameters", "Parameters", f'<table class="grid params"><tbody>{rows}</tbody></table>')


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return _not_finite(value)
    if value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:,.3f}"


def _short(value: float) -> str:
    if not math.isfinite(value):
        return _not_finite(value)
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _not_finite(value: float) -> str:
    return "NaN" if math.isnan(value) else ("∞" if value > 0 else "−∞")


def _pm(metric: Metric) -> str:
    return f' <span class="pm">± {_fmt(metric.std)}</span>' if metric.std is not None else ""


def _n_text(metric: Metric) -> str:
    return f"n = {metric.n:,} rows" if metric.n is not None else ""


def _css() -> str:
    status_rules = "".join(
        f".badge.st-{s}{{background:{fill};color:{text};border-color:{stroke}}}" for s, (fill, stroke, text, _) in
        STYLES.items())
    return CSS + status_rules


CSS = """
:root{--ink:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--ink);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:24px 28px 40px}
header{background:#fff;border:1px solid var(--line);border-radius:12px;padding:18px 22px;margin-bottom:18px}
.title{display:flex;align-items:center;gap:14px}
h1{font-size:24px;margin:0}
h2{font-size:18px;margin:0 0 10px}
h3{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);margin:0 0 8px}
.facts{list-style:none;padding:0;margin:10px 0 0;display:flex;flex-wrap:wrap;gap:6px 22px;color:var(--ink)}
.facts span{color:var(--muted);margin-right:4px}
.run-error{color:#cf222e;margin:10px 0 0}
.badge{display:inline-block;border:1px solid var(--line);border-radius:999px;padding:1px 10px;font-size:12px;
font-weight:600;white-space:nowrap}
header .badge{font-size:14px;padding:3px 14px}
section{background:#fff;border:1px solid var(--line);border-radius:12px;padding:18px 22px;margin-bottom:18px}
section.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:14px;background:none;
border:none;padding:0}
.card{background:#fff;border:1px solid var(--line);border-radius:12px;padding:16px 18px}
.card p{margin:4px 0}
.gate-pass{border-left:6px solid #1f883d}
.gate-fail{border-left:6px solid #cf222e}
.gate-none{border-left:6px solid #8c959f}
.big{font-size:30px;font-weight:650}
.pm{font-size:16px;color:var(--muted);font-weight:500}
.pill{background:#fff8c5;border:1px solid #d4a72c;border-radius:999px;padding:0 8px;font-size:12px}
.muted{color:var(--muted)}
.lead{color:var(--muted);margin:-4px 0 12px}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin-bottom:8px;font-size:12px;color:var(--muted)}
.legend-item{display:inline-flex;align-items:center;gap:6px}
.legend-item i{display:inline-block;width:14px;height:14px;border-radius:4px}
.dag-wrap{overflow-x:auto;text-align:center}
.dag text{font-size:12px}
.dag .name{font-weight:650;font-size:13.5px}
.dag .kind{font-size:11px;opacity:.75}
.dag .icon{font-size:15px;font-weight:700}
.dag .edge{stroke:#8c959f;stroke-width:1.6}
.dag .edge-false{stroke-dasharray:5 4}
.dag .edge-label rect{fill:#fff;stroke:#d0d7de}
.dag .edge-label text{font-size:11px;fill:var(--muted)}
.dag .node{cursor:pointer}
.dag .node:hover rect,.dag .node:focus rect{stroke-width:3}
table.grid{border-collapse:collapse;width:100%}
.grid th,.grid td{border-bottom:1px solid #eaeef2;padding:6px 10px;text-align:left;vertical-align:top}
.grid th{font-size:12px;color:var(--muted);font-weight:600;background:#f6f8fa}
.num{text-align:right!important;font-variant-numeric:tabular-nums}
tr.flash{background:#fff8c5}
.log{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;color:var(--muted)}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:16px}
figure{margin:0;border:1px solid #eaeef2;border-radius:8px;padding:8px;background:#fff}
figure img{width:100%;height:auto;display:block}
figcaption{text-align:center;color:var(--muted);font-size:12px;margin-top:4px}
.dq-fail td{background:#fff0ef}
.dq-pass .result{color:#1a7f37;font-weight:600}
.dq-fail .result{color:#cf222e;font-weight:700}
.observed{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;word-break:break-word}
.only-failed{float:right;margin-top:-36px;color:var(--muted)}
body.only-failed-on .dq-pass{display:none}
ol.next{margin:0;padding-left:20px}
ol.next li{margin:6px 0}
.why{color:var(--muted)}
.cmd{display:flex;gap:8px;align-items:center;margin-top:2px}
.cmd code{background:#f6f8fa;border:1px solid #eaeef2;border-radius:6px;padding:4px 8px;
font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace;overflow-x:auto;white-space:pre}
button.copy{font-size:11px;border:1px solid var(--line);background:#fff;border-radius:6px;padding:2px 8px;cursor:pointer}
.params code{font-size:12.5px}
#failures{border-left:6px solid #cf222e}
.log-tail{background:#1f2328;color:#f6f8fa;border-radius:8px;padding:10px 12px;font:12px/1.45 ui-monospace,
SFMono-Regular,Menlo,monospace;overflow-x:auto;white-space:pre}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:8px}
"""

SCRIPT = """
(function(){
  document.querySelectorAll('button.copy').forEach(function(b){
    b.addEventListener('click',function(){
      var text=b.getAttribute('data-copy');
      if(navigator.clipboard){navigator.clipboard.writeText(text).then(function(){b.textContent='copied';});}
    });
  });
  document.querySelectorAll('.dag .node').forEach(function(n){
    n.addEventListener('click',function(){
      var row=document.getElementById('step-'+n.getAttribute('data-step'));
      if(!row){return;}
      row.scrollIntoView({behavior:'smooth',block:'center'});
      row.classList.add('flash');setTimeout(function(){row.classList.remove('flash');},1500);
    });
  });
  var only=document.getElementById('only-failed');
  if(only){only.addEventListener('change',function(){document.body.classList.toggle('only-failed-on',only.checked);});}
  var counts={};
  document.querySelectorAll('.dag .node').forEach(function(n){var s=n.getAttribute('data-status');counts[s]=(counts[s]||0)+1;});
  document.body.setAttribute('data-step-counts',JSON.stringify(counts));
})();
"""
