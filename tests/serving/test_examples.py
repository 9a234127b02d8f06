"""The README's scoring lines run as written, from outside the repository, against the embedded store."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, free_port, wait_for_http
from tests.example_run import ExampleRun

pytestmark = [pytest.mark.tracked, pytest.mark.slow]
CLI = [sys.executable, "-m", "pipelines.cli"]


def readme_scoring_lines() -> list[str]:
    """The commands of the README's bash block that scores examples/claim.json."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    block = next(b for b in blocks if "@examples/claim.json" in b)
    return [line for line in block.splitlines() if line.startswith(("sagepipe ", "curl "))]


@pytest.fixture(scope="module")
def trained(example_run: ExampleRun, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One registered fraud-detection version in a state folder of its own (a copy of the session's example run),
    and a folder outside the repository."""
    home = example_run.copy(tmp_path_factory.mktemp("examples")).home
    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "examples").symlink_to(REPO / "examples")
    return {"home": home, "cwd": outside, "env": {**os.environ, "SAGEPIPE_HOME": str(home)}}


def test_examples_are_what_generate_data_writes() -> None:
    claim = json.loads((REPO / "examples" / "claim.json").read_text())
    joined = pd.read_csv(REPO / "examples" / "claims_joined.csv", keep_default_na=False, na_values=[])
    assert len(joined) == 200 and "fraud" not in joined.columns and joined.columns[0] == "policy_id"
    assert claim == json.loads(joined.head(1).to_json(orient="records"))[0]


def test_models_commands_from_any_folder_use_the_embedded_store(trained: dict) -> None:
    done = subprocess.run([*CLI, "models", "list", "--json"], cwd=trained["cwd"], env=trained["env"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [(m["group"], m["version"]) for m in json.loads(done.stdout)] == [("fraud-detection", 1)]
    assert f"store: MLflow store {trained['home'].resolve() / 'mlflow.db'} (the embedded default)" in done.stderr


def test_readme_serve_curl_and_transform_lines_run_as_written(trained: dict) -> None:
    lines = readme_scoring_lines()
    assert [line.split()[:2] for line in lines] == [["sagepipe", "models"], ["sagepipe", "serve"], ["curl", "-s"],
                                                  ["sagepipe", "transform"]]
    port = str(free_port())
    server = None
    try:
        for line in lines:
            argv = [a.replace("8080", port) for a in shlex.split(line.replace("localhost:8080", f"127.0.0.1:{port}"))]
            if argv[0] == "sagepipe":
                argv = CLI + argv[1:]
            if argv[len(CLI)] == "serve":
                server = subprocess.Popen(argv, cwd=trained["cwd"], env=trained["env"], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)
                wait_for_http(f"http://127.0.0.1:{port}/ping", server)
                continue
            done = subprocess.run(argv, cwd=trained["cwd"], env=trained["env"], capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            if argv[0] == "curl":
                predictions = json.loads(done.stdout)["predictions"]
                assert len(predictions) == 1 and predictions[0]["policy_id"] == 1
                assert 0 <= predictions[0]["fraud_probability"] <= 1
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    scored = pd.read_parquet(trained["cwd"] / "scored.parquet")
    source = pd.read_csv(REPO / "examples" / "claims_joined.csv")
    assert list(scored.columns) == ["policy_id", "fraud_probability", "fraud"]
    assert scored["policy_id"].tolist() == source["policy_id"].astype(str).tolist()  # keys kept as written


def test_ui_prints_direct_urls_and_sigterm_leaves_no_server(trained: dict) -> None:
    port = free_port()
    # Two web workers, not MLflow's default four (still a supervisor whose workers must all go on SIGTERM), and no
    # background job runner (its four spawned workers listen on nothing): start-up took a minute on two cores.
    env = {**trained["env"], "MLFLOW_WORKERS": "2", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([*CLI, "ui", "--port", str(port)], cwd=trained["cwd"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    lines = []
    while not any("model fraud-detection" in line for line in lines):
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    wait_for_http(f"{url}/health", proc)
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=fraud-detection") as r:
        experiment = json.load(r)["experiment"]["experiment_id"]
    text = "".join(lines)
    assert f"runs of fraud-detection: {url}/#/experiments/{experiment}/runs" in text
    assert f"model fraud-detection: {url}/#/models/fraud-detection" in text
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    assert b"mlflow" in cmdline and b"server" in cmdline  # sagepipe became the server (no parent left behind)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the server's workers are gone too: nobody listens on the port
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.5)
    else:
        pytest.fail(f"something still listens on port {port} after SIGTERM")
