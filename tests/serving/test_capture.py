"""Data capture (issue 28, first part): `sagepipe serve --capture DIR` writes what the endpoint was asked and
answered in SageMaker's data-capture format, loses no answered call on SIGTERM, samples and rotates files."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipelines.serving import capture as capture_module
from pipelines.serving.capture import Capture, capture_record
from tests.conftest import REPO, free_port, run_cli, wait_for_http
from tests.example_run import ExampleRun


def _lines(root: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(root.rglob("*.jsonl")) for line in path.read_text().splitlines()]


def test_a_record_has_sagemakers_shape_and_encodings() -> None:
    at = datetime(2026, 12, 8, 6, 5, 4, tzinfo=timezone.utc)
    record = capture_record(b"1,2,3\n", "text/csv", b'{"scores": [0.2]}', "application/json", at, "e-1", "inf-7")
    assert record == {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2,3\n", "encoding": "CSV"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                               "data": '{"scores": [0.2]}', "encoding": "JSON"}},
        "eventMetadata": {"eventId": "e-1", "inferenceTime": "2026-12-08T06:05:04Z", "inferenceId": "inf-7"},
        "eventVersion": "0"}
    npy = capture_record(b"\x93NUMPY\x00", "application/x-npy", b"0.5", "text/csv; charset=utf-8", at, "e-2")
    assert npy["captureData"]["endpointInput"] == {"observedContentType": "application/x-npy", "mode": "INPUT",
                                                   "data": base64.b64encode(b"\x93NUMPY\x00").decode(),
                                                   "encoding": "BASE64"}
    assert npy["captureData"]["endpointOutput"]["encoding"] == "CSV" and "inferenceId" not in npy["eventMetadata"]
    latin = capture_record(b"caf\xe9", "text/csv", b"", "text/csv", at, "e-3")["captureData"]["endpointInput"]
    assert latin["encoding"] == "BASE64" and base64.b64decode(latin["data"]) == b"caf\xe9"  # not valid UTF-8
    latin_json = capture_record(b'["caf\xe9"]', "application/json", b"", "text/csv", at, "e-4")
    assert latin_json["captureData"]["endpointInput"]["encoding"] == "BASE64"  # its data is base64, not JSON text


def test_files_are_per_hour_and_rotate_after_max_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    times = iter([datetime(2026, 12, 8, 6, 59, 58, tzinfo=timezone.utc)] * 3
                 + [datetime(2026, 12, 8, 7, 0, 1, tzinfo=timezone.utc)])

    class Clock:
        @staticmethod
        def now(tz: object = None) -> datetime:
            return next(times)

    monkeypatch.setattr(capture_module, "datetime", Clock)
    capture = Capture(tmp_path, "fraud-dev", max_records=2)
    for n in range(4):
        capture.record(f"{n}".encode(), "text/csv", b"0.1", "text/csv")
    capture.close()
    files = sorted(p.relative_to(tmp_path).parent.as_posix() for p in tmp_path.rglob("*.jsonl"))
    assert files == ["fraud-dev/AllTraffic/2026/12/08/06"] * 2 + ["fraud-dev/AllTraffic/2026/12/08/07"]
    assert sorted(r["captureData"]["endpointInput"]["data"] for r in _lines(tmp_path)) == ["0", "1", "2", "3"]
    assert all(p.name.startswith(("59-58-000-", "00-01-000-")) for p in tmp_path.rglob("*.jsonl"))


def test_sampling_takes_the_percentage_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    random.seed(3)
    assert not any(Capture(tmp_path, "e", 0).sampled() for _ in range(1000))
    assert all(Capture(tmp_path, "e", 100).sampled() for _ in range(1000))
    share = sum(Capture(tmp_path, "e", 30).sampled() for _ in range(4000)) / 4000
    assert 0.27 < share < 0.33, share


@pytest.mark.tracked  # the example model, in MLflow's registry
def test_serve_captures_every_answered_call_and_sigterm_loses_none(example_run: ExampleRun, tmp_path: Path) -> None:
    import pandas as pd

    run = example_run.copy(tmp_path / "copy")
    assert run_cli("models", "approve", "fraud-detection", "1", home=run.home).returncode == 0
    rows = pd.read_parquet(run.test_split / "test.parquet").drop(columns=["fraud"], errors="ignore").head(30)
    captured, port = tmp_path / "capture", free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "fraud-detection@approved", "--port",
                             str(port), "--workers", "2", "--capture", str(captured)], cwd=REPO,
                            env={**os.environ, "SAGEPIPE_HOME": str(run.home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", proc)
        answers = []
        for n in range(len(rows)):
            body = rows.iloc[[n]].to_json(orient="records").encode()
            request = urllib.request.Request(f"{url}/invocations", data=body,
                                             headers={"Content-Type": "application/json", "Accept": "text/csv"})
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append((body.decode(), response.read().decode()))
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    assert "capturing 100 % of calls under" in output, output
    records = _lines(captured)
    assert len(records) == len(rows), output  # every answered call, none lost when the server was stopped
    assert sorted((r["captureData"]["endpointInput"]["data"], r["captureData"]["endpointOutput"]["data"])
                  for r in records) == sorted(answers)
    assert {r["captureData"]["endpointInput"]["encoding"] for r in records} == {"JSON"}
    assert {r["captureData"]["endpointOutput"]["encoding"] for r in records} == {"CSV"}
    assert len({r["eventMetadata"]["eventId"] for r in records}) == len(rows)
    folders = {p.relative_to(captured).parts[1:2] for p in captured.rglob("*.jsonl")}
    assert folders == {("AllTraffic",)} and all(len(p.relative_to(captured).parts) == 7
                                                for p in captured.rglob("*.jsonl"))


def test_a_bad_capture_percent_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("serve", "fraud-detection", "--capture", str(tmp_path), "--capture-percent", "150", home=tmp_path)
    assert done.returncode == 2 and "--capture-percent: 150 is out of range: 0 to 100" in done.stderr


@pytest.mark.tracked  # the example model, in MLflow's registry
def test_the_deploy_steps_background_server_captures_under_the_state_folder(example_run: ExampleRun,
                                                                           tmp_path: Path) -> None:
    """What a deploy step with `local.serve` and `endpoint.data_capture` starts: `sagepipe serve` capturing under
    the state folder's capture/, the local stand-in of the capture's S3 destination."""
    from pipelines.serving.serve import ensure_server

    run = example_run.copy(tmp_path / "copy")
    assert run_cli("models", "approve", "fraud-detection", "1", home=run.home).returncode == 0
    record = run.home / "endpoints" / "fraud-detection-dev.json"
    port = free_port()
    said = ensure_server(record, port, 1, 100)
    pid = json.loads(record.with_suffix(".server.json").read_text())["pid"]
    try:
        assert f"capturing 100 % of calls under {run.home / 'capture'}" in said, said
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2).read()
                break
            except OSError:
                assert time.time() < deadline, record.with_suffix(".server.log").read_text()
                time.sleep(0.2)
        body = b"policy_id,claim_amount\n"  # refused (400): not captured; SageMaker captures answered calls
        request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "text/csv"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=10)
        assert not list((run.home / "capture").rglob("*.jsonl"))
        import pandas as pd

        row = pd.read_parquet(run.test_split / "test.parquet").drop(columns=["fraud"], errors="ignore").head(1)
        request = urllib.request.Request(f"{url}/invocations", data=row.to_json(orient="records").encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read().decode()
        (captured,) = _lines(run.home / "capture" / "fraud-detection-dev" / "AllTraffic")
        assert captured["captureData"]["endpointOutput"]["data"] == answer
    finally:
        os.kill(pid, signal.SIGTERM)
