"""The local endpoint as a real gunicorn process, version switching under load, and batch transform."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, free_port, run_cli, wait_for_http
from tests.example_run import ExampleRun

sys.path.insert(0, str(REPO / "model_code"))
from model_io import FraudModel  # noqa: E402
from fraud_schema import RAW_FEATURES  # noqa: E402

pytestmark = [pytest.mark.tracked, pytest.mark.slow]  # the example model, in MLflow's registry


@pytest.fixture(scope="module")
def models(example_run: ExampleRun, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two registered versions of fraud-detection (version 1 approved), and test rows.

    Version 1 is the session's example run (copied); version 2 is its model registered once more as a new version
    (a new model hash), as a retrained model would be: the tests switch versions, they need no second training."""
    from pipelines.registry.mlflow_backend import MlflowRegistry

    run = example_run.copy(tmp_path_factory.mktemp("serving"))
    home = run.home
    registry = MlflowRegistry(f"sqlite:///{home}/mlflow.db", home / "models")
    first = registry.show("fraud-detection", 1)
    second, created = registry.register("fraud-detection", Path(run.state["steps"]["train"]["outputs"]["model"]),
                                        first["metrics"], "PendingManualApproval",
                                        {**first["lineage"], "model_hash": first["lineage"]["model_hash"] + "-again"})
    assert created and second["version"] == 2, second
    assert run_cli("models", "approve", "fraud-detection", "1", home=home).returncode == 0
    test = pd.read_parquet(run.test_split / "test.parquet")
    return {"home": home, "test": test, "model_dirs": {v: home / "models" / "fraud-detection" / str(v) for v in (1, 2)}}


@pytest.fixture(scope="module")
def server(models: dict):
    port = free_port()
    env = {**os.environ, "SAGEPIPE_HOME": str(models["home"])}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "fraud-detection@approved", "--port",
                             str(port), "--workers", "2"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/ping", proc)
    yield {"url": url, "proc": proc, "port": port}
    if proc.poll() is None:
        proc.terminate()
        proc.wait(30)


def post(url: str, body: bytes, content_type: str, accept: str = "application/json") -> tuple[int, bytes, dict]:
    request = urllib.request.Request(f"{url}/invocations", data=body,
                                     headers={"Content-Type": content_type, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_ping_and_invocations_match_in_process_predictions(server: dict, models: dict) -> None:
    with urllib.request.urlopen(f"{server['url']}/ping") as response:
        assert response.status == 200 and response.headers["X-Model-Version"] == "1"
    rows = models["test"].head(20)
    expected = FraudModel(models["model_dirs"][1]).predict_proba(rows)
    records = json.loads(rows[RAW_FEATURES].to_json(orient="records"))
    bodies = {
        "record": (json.dumps(records[0]).encode(), expected[:1]),
        "records": (json.dumps(records).encode(), expected),
        "columns": (json.dumps({k: [r[k] for r in records] for k in RAW_FEATURES}).encode(), expected),
    }
    for name, (body, want) in bodies.items():
        status, out, _ = post(server["url"], body, "application/json")
        assert status == 200, (name, out)
        got = [p["fraud_probability"] for p in json.loads(out)["predictions"]]
        np.testing.assert_allclose(got, want, atol=2e-6, err_msg=name)
        assert [p["fraud"] for p in json.loads(out)["predictions"]] == [int(p >= 0.25) for p in want]
    status, out, headers = post(server["url"], rows[RAW_FEATURES].to_csv(header=False, index=False).encode(),
                                "text/csv", accept="text/csv")
    assert status == 200 and headers["Content-Type"] == "text/csv"
    np.testing.assert_allclose([float(line.split(",")[0]) for line in out.decode().splitlines()], expected,
                               atol=2e-6)


def test_a_model_archive_serves_itself_the_way_sagemaker_containers_load_it(models: dict, tmp_path: Path) -> None:
    """A framework inference container puts <model>/code/ on the path, installs its requirements.txt and calls
    the four handlers of code/inference.py; here the same happens with nothing of the repository importable."""
    from model_io import SERVING_CODE

    model_dir = models["model_dirs"][1]
    code = model_dir / "code"
    assert sorted(p.name for p in code.iterdir()) == sorted([*SERVING_CODE, "requirements.txt"])
    pins = [line for line in (code / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    lock = (REPO / "requirements.lock").read_text().splitlines()
    assert pins and all(pin in lock for pin in pins)  # the same versions it was trained and tested with
    rows = models["test"].head(20)
    handlers = ("import sys, inference\n"
                "model = inference.model_fn(sys.argv[1])\n"
                "records = inference.input_fn(sys.stdin.read(), 'text/csv')\n"
                "body, kind = inference.output_fn(inference.predict_fn(records, model), 'application/json')\n"
                "assert kind == 'application/json'\n"
                "sys.stdout.write(body.decode())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAGEPIPE_THRESHOLD")}
    done = subprocess.run([sys.executable, "-c", handlers, str(model_dir)], cwd=tmp_path, capture_output=True,
                          text=True, env={**env, "PYTHONPATH": str(code)}, timeout=120,
                          input=rows[RAW_FEATURES].to_csv(header=False, index=False))
    assert done.returncode == 0, done.stderr
    got = [p["fraud_probability"] for p in json.loads(done.stdout)["predictions"]]
    np.testing.assert_allclose(got, FraudModel(model_dir).predict_proba(rows), atol=2e-6)


def test_bad_requests_get_400_naming_the_problem(server: dict, models: dict) -> None:
    record = json.loads(models["test"][RAW_FEATURES].head(1).to_json(orient="records"))[0]
    cases = {
        "not json": (b"{oops", "application/json", "the body is not valid JSON"),
        "unknown field": (json.dumps({**record, "customer_agee": 1}).encode(), "application/json",
                          "unknown field 'customer_agee' — did you mean 'customer_age'?"),
        "missing field": (json.dumps({k: v for k, v in record.items() if k != "incident_hour"}).encode(),
                          "application/json", "missing field incident_hour"),
        "not a number": (json.dumps({**record, "customer_age": "old"}).encode(), "application/json",
                         "field 'customer_age' must be a number"),
        "bad liability": (json.dumps({**record, "policy_liability": "lots"}).encode(), "application/json",
                          "must look like '25/50'"),
        "short csv row": (b"1,2,3\n", "text/csv", "CSV line 1: expected 28 comma-separated values"),
        "empty list": (b"[]", "application/json", "the JSON list is empty"),
        "ragged columns": (b'{"customer_age": [1, 2], "incident_hour": [3]}', "application/json",
                           "columns have different lengths"),
        "content type": (b"x", "text/plain", "unsupported Content-Type 'text/plain'"),
        "not utf-8": (b"\xff\xfe", "text/csv", "not UTF-8"),
    }
    for name, (body, content_type, expected) in cases.items():
        status, out, _ = post(server["url"], body, content_type)
        assert status == 400, (name, status, out)
        assert expected in json.loads(out)["error"], (name, out)


def test_body_over_the_limit_is_413(server: dict) -> None:
    with socket.create_connection(("127.0.0.1", server["port"])) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                     b"Content-Length: 7000000\r\n\r\n" + b"1" * 1000)
        reply = b""
        while b"the limit" not in reply:  # headers and body may come in separate packets
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "the limit is 6291456" in reply


def test_approval_switches_the_version_under_load_without_errors(server: dict, models: dict) -> None:
    body = json.dumps(json.loads(models["test"][RAW_FEATURES].head(5).to_json(orient="records"))).encode()
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status, _, headers = post(server["url"], body, "application/json")
            seen.append((status, headers.get("X-Model-Version", "")))

    def until(enough: Callable[[], bool], seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not enough() and time.monotonic() < deadline:
            time.sleep(0.05)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        until(lambda: len(seen) >= 30)  # under load before the approval
        approved = run_cli("models", "approve", "fraud-detection", "2", "--note", "better recall",
                           home=models["home"])
        assert approved.returncode == 0 and "endpoint fraud-detection-approved now serves" in approved.stdout
        switched = len(seen)
        until(lambda: sum(v == "2" for _, v in seen[switched:]) >= 30)  # and on after the switch
    finally:
        stop.set()
        for t in threads:
            t.join()
    statuses = {s for s, _ in seen}
    versions = [v for _, v in seen]
    assert statuses == {200}, f"{len(seen)} requests, statuses {statuses}"
    assert versions[0] == "1" and versions[-1] == "2" and len(seen) > 50


def test_ping_is_503_when_the_model_cannot_load(tmp_path: Path) -> None:
    from pipelines.serving.app import make_app

    record = tmp_path / "broken.json"
    record.write_text(json.dumps({"model_dir": str(tmp_path / "nowhere"), "code_dir": str(REPO / "model_code"),
                                  "version": 1, "model_group": "g"}))
    app = make_app(record)
    statuses: list[str] = []
    body = b"".join(app({"PATH_INFO": "/ping", "REQUEST_METHOD": "GET"}, lambda s, h: statuses.append(s)))
    assert statuses == ["503 Service Unavailable"] and b"loading the model failed" in body


def test_sigterm_shuts_the_server_down_gracefully(models: dict) -> None:
    port = free_port()
    env = {**os.environ, "SAGEPIPE_HOME": str(models["home"])}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "fraud-detection@1", "--port", str(port),
                             "--workers", "1"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_http(f"http://127.0.0.1:{port}/ping", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_batch_transform_keeps_row_count_and_order(suffix: str, models: dict, tmp_path: Path) -> None:
    rows = pd.concat([models["test"]] * 4, ignore_index=True)
    rows["policy_id"] = np.arange(len(rows))[::-1]
    source = tmp_path / f"claims{suffix}"
    if suffix == ".csv":
        rows.to_csv(source, index=False)
    else:
        rows.to_parquet(source, index=False)
    output = tmp_path / f"scored{suffix}"
    done = run_cli("transform", "fraud-detection@1", str(source), str(output), "--chunk-rows", "333",
                   home=models["home"])
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(output) if suffix == ".csv" else pd.read_parquet(output)
    assert len(scored) == len(rows) and scored["policy_id"].tolist() == rows["policy_id"].tolist()
    expected = FraudModel(models["model_dirs"][1]).predict_proba(rows)
    np.testing.assert_allclose(scored["fraud_probability"], expected, atol=2e-6)
    missing = tmp_path / f"missing{suffix}"
    bad = rows.drop(columns=["incident_hour"])
    bad.to_csv(missing, index=False) if suffix == ".csv" else bad.to_parquet(missing, index=False)
    failed = run_cli("transform", "fraud-detection@1", str(missing), str(tmp_path / f"x{suffix}"), home=models["home"])
    assert failed.returncode == 2 and "missing column incident_hour" in failed.stderr
    assert not (tmp_path / f"x{suffix}").exists() and not list(tmp_path.glob(".x*"))
    before = source.read_bytes()  # the input named as the output: refused, the claims left as they were
    same = run_cli("transform", "fraud-detection@1", str(source), str(tmp_path / "." / source.name), home=models["home"])
    assert same.returncode == 2 and "is the input file" in same.stderr and source.read_bytes() == before


def test_a_deploy_step_with_local_serve_starts_the_endpoint_once(models: dict) -> None:
    from pipelines.local.services import LocalServing
    from pipelines.registry.mlflow_backend import MlflowRegistry
    from steps.deploy import DeployStep

    home, port = models["home"], free_port()
    registry = MlflowRegistry(f"sqlite:///{home}/mlflow.db", home / "models")
    step = DeployStep(name="deploy", model_group="fraud-detection", endpoint_name="local-serve-test",
                      local={"serve": True, "port": port, "workers": 1})
    first = step.deploy_version(registry.show("fraud-detection", 1), registry, LocalServing(home), "test")
    pid = json.loads((home / "endpoints" / "local-serve-test.server.json").read_text())["pid"]
    try:
        assert f"started its server, pid {pid}, on http://127.0.0.1:{port}" in first
        _ready(port)
        assert _version(port) == "1"
        again = step.deploy_version(registry.show("fraud-detection", 2), registry, LocalServing(home), "test")
        assert f"its server, pid {pid}, on port {port} switches to it" in again
        deadline = time.time() + 30
        while _version(port) != "2":
            assert time.time() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(pid, signal.SIGTERM)


def _ready(port: int, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while _version(port) is None:
        assert time.time() < deadline, f"nothing served on port {port}"
        time.sleep(0.3)


def _version(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
            return response.headers["X-Model-Version"]
    except OSError:
        return None
