"""`sagepipe report` and `graph --run`: a run's self-contained HTML report, checked as a browser draws it."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from pipelines.loader import load_pipeline
from pipelines.local.runner import LocalRunner
from pipelines.report import write_report
from pipelines.report.quality import read_quality
from tests.conftest import REPO, make_project, run_cli

CHROMIUM = Path("/usr/bin/chromium")
PIPELINE = """
name: reported
parameters:
  min_auc: {type: float, default: 0.7}
steps:
  - name: prepare
    type: processing
    code: scripts/prepare.py
    outputs: [data, quality]
  - name: train
    type: training
    code: scripts/train.py
    inputs: {train: "${steps.prepare.outputs.data}"}
    hyperparameters: {epochs: 2}
  - name: evaluate
    type: evaluation
    code: scripts/evaluate.py
    inputs: {model: "${steps.train.outputs.model}"}
    outputs: [evaluation]
  - name: gate
    type: condition
    condition:
      left: ${steps.evaluate.metrics.binary_classification_metrics.auc.value}
      op: ">="
      right: ${params.min_auc}
    if_true: [register]
    if_false: [too-low]
  - name: register
    type: register
    model: ${steps.train.outputs.model}
    model_group: reported-models
    metrics: ${steps.evaluate.outputs.evaluation}
  - name: too-low
    type: fail
    message: "AUC ${steps.evaluate.metrics.binary_classification_metrics.auc.value} is below ${params.min_auc}"
"""
PREPARE = '''
import json, os, pathlib
root = pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"])
(root / "output" / "data" / "out.txt").write_text("a\\nb\\n")
rows = [{"file": "claims.csv", "expectation": "expect_column_values_to_not_be_null", "column": "policy_id",
         "observed": "0 unexpected of 5,000", "success": True},
        {"file": "claims.csv", "expectation": "expect_column_values_to_be_between", "column": "num_injuries",
         "observed": "max 7 (allowed 0..5)", "success": False},
        {"file": "customers.csv", "expectation": "expect_column_values_to_be_unique", "column": "policy_id",
         "observed": 1.0, "success": True}]
(root / "output" / "quality" / "data_quality.json").write_text(json.dumps({"results": rows}))
'''
EVALUATE = '''
import json, os, pathlib
root = pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"])
out = root / "output" / "evaluation"
report = {"binary_classification_metrics": {
    "auc": {"value": 0.8437, "standard_deviation": 0.0211}, "recall": {"value": 0.6123, "standard_deviation": 0.05},
    "threshold": {"value": 0.25, "standard_deviation": 0.0}, "test_rows": {"value": 1234, "standard_deviation": 0.0},
    "confusion_matrix": {"0": {"0": 900, "1": 100}, "1": {"0": 91, "1": 143}}}}
(out / "evaluation.json").write_text(json.dumps(report))
(out / "roc.png").write_bytes(pathlib.Path(os.environ["PNG_FILE"]).read_bytes())
'''


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid PNG, written by hand (the test needs no imaging library)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")
    plot = tmp_path / "plot.png"
    plot.write_bytes(png(60, 40, (200, 30, 160)))
    monkeypatch.setenv("PNG_FILE", str(plot))
    return make_project(tmp_path / "project", "reported", PIPELINE, {}, ("train.py",),
                        {"scripts/prepare.py": PREPARE, "scripts/evaluate.py": EVALUATE})


def run(config: Path, home: Path, *params: str) -> tuple[Path, str]:
    state = LocalRunner(load_pipeline(str(config), params=list(params)), home).run()
    return state.path.parent, state.data["run_id"]


def attributes_with_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*""", html, re.I)


def test_report_tells_the_gate_metrics_quality_and_version(project: Path, home: Path) -> None:
    run_dir, run_id = run(project, home)
    html = write_report(run_dir).read_text()
    assert (run_dir / "report.html").is_file()
    assert "ROC AUC (evaluate) 0.844 ≥ min_auc 0.7: the model passed the gate and was registered as " \
           "reported-models version 1 (PendingManualApproval)." in html
    assert re.search(r'class="metric" data-metric="auc">.*?0\.8437.*?± 0\.0211.*?1,234', html)
    assert html.count('class="dq-row dq-pass"') == 2 and html.count('class="dq-row dq-fail"') == 1
    assert "max 7 (allowed 0..5)" in html and "2 of 3 expectations passed" in html
    assert "sagepipe models approve reported-models 1" in html
    assert 'class="node st-succeeded" id="node-register"' in html and 'id="node-too-low"' in html
    assert 'data-status="skipped"' in html and "src=\"data:image/png;base64," in html
    assert "Confusion matrix at threshold 0.25" in html  # drawn from the counts when there is no plot of it
    assert attributes_with_urls(html) == [] and "http://" not in html and "https://" not in html


def test_report_after_a_gate_failure_gives_the_values_and_the_change(project: Path, home: Path) -> None:
    run_dir, run_id = run(project, home, "min_auc=0.9")
    html = write_report(run_dir).read_text()
    assert "ROC AUC (evaluate) 0.844 &lt; min_auc 0.9: the model did not pass the gate; it was not registered." in html
    assert f"sagepipe resume {run_id} --param min_auc=0.84" in html
    assert 'class="node st-failed" id="node-too-low"' in html
    assert 'class="node st-skipped" id="node-register"' in html
    assert "No version was registered by this run." in html


def test_cached_steps_name_the_run_they_came_from(project: Path, home: Path) -> None:
    _, first = run(project, home)
    run_dir, _ = run(project, home)
    html = write_report(run_dir).read_text()
    assert f"cached from run {first}" in html
    assert 'class="node st-cached" id="node-prepare"' in html


def test_graph_run_overlays_status_and_durations(project: Path, home: Path) -> None:
    _, run_id = run(project, home, "min_auc=0.9")
    plain = run_cli("graph", str(project), home=home, cwd=project.parent)
    assert plain.returncode == 0 and "classDef" not in plain.stdout and "succeeded" not in plain.stdout
    mermaid = run_cli("graph", str(project), "--run", run_id, home=home, cwd=project.parent)
    assert mermaid.returncode == 0, mermaid.stderr
    assert "classDef failed fill:#ffe1df" in mermaid.stdout and "class s_too_low failed" in mermaid.stdout
    assert "class s_register skipped" in mermaid.stdout
    assert re.search(r's_prepare\["prepare<br/><i>processing</i><br/>succeeded · [0-9.<]+s"\]', mermaid.stdout)
    dot = run_cli("graph", str(project), "--run", run_id, "--format", "dot", home=home, cwd=project.parent)
    assert re.search(r'"too-low" \[label="too-low\\n\(fail\)\\nfailed · [^"]+", class="failed", '
                     r'style="rounded,filled", fillcolor="#ffe1df"', dot.stdout), dot.stdout
    missing = run_cli("graph", str(project), "--run", "no-such-run", home=home, cwd=project.parent)
    assert missing.returncode == 3 and "no readable run 'no-such-run'" in missing.stderr


def test_every_run_writes_its_report_and_logs_it_to_the_tracker(project: Path, home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.tracking as tracking
    from pipelines.cli.runs import run_pipeline

    attached: list[Path] = []

    class Recording(tracking.NullTracker):
        def attach_run_file(self, path: Path, artifact_path: str | None = None) -> None:
            attached.append(path)

    monkeypatch.setattr(tracking, "open_tracker", lambda *args, **kwargs: Recording())
    assert run_pipeline(load_pipeline(str(project), params=["min_auc=0.9"]), home, True, None, False) == 1
    (run_dir,) = (home / "runs").iterdir()
    assert attached == [run_dir / "report.html"]
    assert "did not pass the gate" in attached[0].read_text()


def test_report_command(project: Path, home: Path, tmp_path: Path) -> None:
    _, run_id = run(project, home)
    made = run_cli("report", run_id, "-o", str(tmp_path / "out" / "r.html"), home=home, cwd=project.parent)
    assert made.returncode == 0, made.stderr
    assert "reported-models version 1" in (tmp_path / "out" / "r.html").read_text()
    missing = run_cli("report", "nope", home=home, cwd=project.parent)
    assert missing.returncode == 3 and f"no run 'nope'" in missing.stderr and run_id in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("document", [
    [{"expectation": "e", "column": "c", "observed": 1, "success": False}],
    {"claims.csv": {"results": [{"expectation_type": "e", "kwargs": {"column": "c"}, "result": 1, "success": False}]}},
    {"checks": [{"type": "e", "column": "c", "observed_value": 1, "status": "FAIL"}]},
])
def test_quality_reader_takes_the_usual_shapes(tmp_path: Path, document: object) -> None:
    (tmp_path / "data_quality.json").write_text(json.dumps(document))
    (row,) = read_quality(tmp_path / "data_quality.json")
    assert (row.expectation, row.column, row.observed, row.passed) == ("e", "c", "1", False)


def test_evaluation_writes_a_confusion_matrix_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import sys

    sys.path.insert(0, str(REPO / "model_code"))
    try:
        import evaluate
    finally:
        sys.path.remove(str(REPO / "model_code"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = {"confusion_matrix": {"0": {"0": 90, "1": 10}, "1": {"0": 3, "1": 7}}, "threshold": {"value": 0.3}}
    evaluate.confusion_plot(plt, scores, tmp_path)
    data = (tmp_path / "confusion_matrix.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (550, 484)


def page_requests(net_log: Path) -> list[str]:
    """URLs a page asked for, from Chromium's net log (the browser's own background requests have no
    origin as initiator; a file:// page's requests have the opaque origin 'null')."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})
            and e["params"].get("initiator") != "not an origin"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no headless Chromium at /usr/bin/chromium")
def test_report_as_chromium_draws_it(project: Path, home: Path, tmp_path: Path) -> None:
    run_dir, run_id = run(project, home, "min_auc=0.9")
    report = write_report(run_dir)
    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,3000",
             f"--log-net-log={tmp_path / 'net.json'}"]
    dom = subprocess.run(flags + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert re.search(r'<body class="run-failed" data-step-counts="\{[^"]*&quot;failed&quot;:1', page), page[:400]
    for step, status in (("prepare", "succeeded"), ("gate", "succeeded"), ("too-low", "failed"),
                         ("register", "skipped")):
        assert re.search(rf'<g class="node st-{status}" id="node-{step}"', page), step
    assert "0.8437" in page and "± 0.0211" in page and "1,234" in page
    assert len(re.findall(r'<tr class="dq-row dq-(?:pass|fail)">', page)) == 3
    assert page_requests(tmp_path / "net.json") == []
    probe = tmp_path / "probe.html"  # the check itself sees a request the page makes
    probe.write_text('<img src="http://127.0.0.1:9/x.png">')
    subprocess.run(flags[:-1] + [f"--log-net-log={tmp_path / 'probe.json'}", "--dump-dom", probe.as_uri()],
                   capture_output=True, timeout=120)
    assert page_requests(tmp_path / "probe.json") == ["http://127.0.0.1:9/x.png"]

    shot = tmp_path / "report.png"
    done = subprocess.run(flags + [f"--screenshot={shot}", report.as_uri()], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pytest.importorskip("PIL")
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 3000)
    colours = {colour for _, colour in image.getcolors(maxcolors=1_000_000)}
    assert (0xff, 0xe1, 0xdf) in colours  # the failed step's fill
    assert (0xdc, 0xf5, 0xe3) in colours  # the succeeded steps' fill
    assert (200, 30, 160) in colours  # the plot, decoded from its data URI


UNUSUAL_REPORTS = {
    "not finite": ({"auc": {"value": float("nan"), "standard_deviation": float("inf")}, "f1": {"value": float("-inf")},
                    "threshold": {"value": float("nan")},
                    "confusion_matrix": {"0": {"0": float("nan"), "1": 2}, "1": {"0": 1, "1": 1}}}, ["NaN", "∞", "−∞"]),
    "matrix as lists": ({"auc": {"value": 0.9}, "confusion_matrix": [[11, 12], [13, 14]]}, ["11", "14"]),
    "cells not numbers": ({"auc": {"value": 0.9}, "confusion_matrix": {"0": {"0": "many"}, "1": None}}, ["many"]),
    "odd labels": ({"auc": {"value": 0.9}, "confusion_matrix": {"a": {"b": 1e30}}}, ["0.9000"]),
}


@pytest.mark.parametrize("case", list(UNUSUAL_REPORTS))
def test_unusual_metrics_still_give_a_report(tmp_path: Path, case: str) -> None:
    """A NaN or infinite metric, or a confusion matrix of another shape, is shown as it is: the report is
    still written (it raised ValueError or AttributeError, and no report was written)."""
    report, expected = UNUSUAL_REPORTS[case]
    state = {"run_id": "r1", "pipeline": "p", "env": "local", "status": "succeeded", "started_at": 1.7e9,
             "steps": {"evaluate": {"status": "succeeded", "metrics": {"binary_classification_metrics": report}}}}
    page = write_report(tmp_path / "r1", None, state=state).read_text()
    for text in expected:
        assert text in page
