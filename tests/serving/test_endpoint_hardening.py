"""The local endpoint under abuse (issue 14, "Endpoint"): each case over real HTTP against a real `sagepipe serve`.

Bodies that crashed the parser, slow clients that starved /ping, protocol corners answered wrongly, bad
command-line values, and a SIGTERM that reset requests already accepted.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from pipelines.netutil import wait_for_http
from tests.conftest import REPO, free_port, run_cli
from tests.example_run import ExampleRun

sys.path.insert(0, str(REPO / "model_code"))
from fraud_schema import RAW_FEATURES  # noqa: E402

pytestmark = [pytest.mark.tracked, pytest.mark.slow]  # the example model, in MLflow's registry
READ_TIMEOUT_S = 1  # the server's SAGEPIPE_READ_TIMEOUT_S here, so that stalled bodies time out quickly
MAX_BODY = 2_000_000  # and its SAGEPIPE_MAX_BODY_BYTES
# A TLS 1.2 ClientHello's first bytes: what an https:// client sends to a plain-HTTP port.
TLS_HELLO = bytes.fromhex("16030100c4010000c00303") + os.urandom(32) + b"\x00" * 40


@pytest.fixture(scope="module")
def model(example_run: ExampleRun, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small trained and approved fraud-detection version 1 (a copy of the session's example run), and raw test
    records."""
    run = example_run.copy(tmp_path_factory.mktemp("hardening"))
    assert run_cli("models", "approve", "fraud-detection", "1", home=run.home).returncode == 0
    test = pd.read_parquet(run.test_split / "test.parquet")
    return {"home": run.home, "records": json.loads(test[RAW_FEATURES].to_json(orient="records"))}


def start_server(home: Path, workers: int, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "SAGEPIPE_HOME": str(home), "SAGEPIPE_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
           "SAGEPIPE_MAX_BODY_BYTES": str(MAX_BODY)}
    with open(log, "w") as out:  # a file, not a pipe nobody reads: a full pipe would stall the server
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "fraud-detection@1", "--port",
                                 str(port), "--workers", str(workers)], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", proc)
    except RuntimeError as exc:
        proc.kill()
        pytest.fail(f"{exc}\n{log.read_text()[-3000:]}")
    return proc, port


@pytest.fixture(scope="module")
def server(model: dict, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc, port = start_server(model["home"], 2, log)
    yield {"port": port, "proc": proc}
    proc.terminate()
    assert proc.wait(30) == 0
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]  # abuse is answered, not logged as a crash


def call(port: int, method: str, path: str, body: bytes | None = None, content_type: str = "application/json",
         timeout: float = 10) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def error_of(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    status, _, out = call(port, "POST", "/invocations", body, content_type)
    return status, json.loads(out)["error"] if status != 200 else ""


def with_value(record: dict, field: str, literal: str) -> bytes:
    """A record as JSON with one field's value written out verbatim (a literal json.dumps cannot make)."""
    return json.dumps({**record, field: "@@"}).replace('"@@"', literal).encode()


def read_until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sends before it closes the connection, and how long that took."""
    start, reply = time.monotonic(), b""
    sock.settimeout(seconds)
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except socket.timeout:
        pytest.fail(f"the server held the connection for over {seconds} s; it sent {reply[:200]!r}")
    except ConnectionResetError:
        pass
    return reply, time.monotonic() - start


# --- bodies that were 500s ---------------------------------------------------------------------------------
def test_huge_integers_and_deep_nesting_are_400_naming_the_problem(server: dict, model: dict) -> None:
    record, port = model["records"][0], server["port"]
    cases = {
        "400-digit integer": (with_value(record, "customer_age", "9" * 400),
                              "field 'customer_age' is out of range for a number, got 99999"),
        "5,000-digit integer": (with_value(record, "customer_age", "9" * 5000),
                                "a JSON integer of over 4,300 digits; a number must fit a 64-bit float"),
        "5,000 digits, categorical field": (with_value(record, "incident_type", "9" * 5000), "over 4,300 digits"),
        "nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, "the JSON nests too deeply"),
        "nested in a field": (with_value(record, "customer_age", "[" * 100_000 + "]" * 100_000),
                              "the JSON nests too deeply"),
        "infinite number": (with_value(record, "injury_claim", "1e999"), "field 'injury_claim' is out of range"),
    }
    for name, (body, expected) in cases.items():
        status, message = error_of(port, body)
        assert status == 400 and expected in message, (name, status, message)
    assert "(400 characters)" in error_of(port, cases["400-digit integer"][0])[1]  # not echoed whole
    csv_cases = {
        "a CSV value over the csv module's limit": (b"1" * 200_000 + b"\n", "CSV line 1: field larger than"),
        "a 400-digit CSV number": (",".join("9" * 400 if f == "auto_year" else str(record[f]) for f in RAW_FEATURES)
                                   .encode(), "field 'auto_year' is out of range for a number"),
    }
    for name, (body, expected) in csv_cases.items():
        status, message = error_of(port, body, "text/csv")
        assert status == 400 and expected in message, (name, status, message)
    assert call(port, "GET", "/ping")[0] == 200  # and the workers are fine


# --- slow clients ------------------------------------------------------------------------------------------
STALLS = {  # connections that stall a request
    "silent": b"",
    "half a header": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: appl",
    "short body": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n[{\"customer_age\": 3",
    "tls hello": TLS_HELLO,
}


def stalled(port: int, kind: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(STALLS[kind])
    return sock


def test_ping_answers_within_a_second_while_50_slow_clients_are_connected(server: dict) -> None:
    kinds = list(STALLS) * 13
    clients = [stalled(server["port"], kind) for kind in kinds[:50]]
    try:
        slowest = 0.0
        for _ in range(10):
            start = time.monotonic()
            status, _, _ = call(server["port"], "GET", "/ping", timeout=1.0)  # a timeout fails the test
            slowest = max(slowest, time.monotonic() - start)
            assert status == 200
            time.sleep(0.1)
        assert slowest < 1.0
    finally:
        for sock in clients:
            sock.close()


def test_a_stalled_body_is_408_and_a_stalled_header_or_tls_hello_is_dropped(server: dict) -> None:
    port = server["port"]
    with stalled(port, "short body") as short_body, stalled(port, "half a header") as half_header, \
            stalled(port, "tls hello") as tls:
        reply, took = read_until_closed(short_body, READ_TIMEOUT_S + 10)
        assert reply.startswith(b"HTTP/1.1 408") and b"the body stopped arriving" in reply, reply
        assert took < READ_TIMEOUT_S + 3
        for sock in (half_header, tls):  # gunicorn's 5 s for the headers, not its 60 s worker timeout
            _, took = read_until_closed(sock, 15)
            assert took < 8


# --- protocol corners --------------------------------------------------------------------------------------
def test_a_chunked_body_is_read(server: dict, model: dict) -> None:
    records = model["records"][:20]
    body = json.dumps(records).encode()
    pieces = [body[i:i + 500] for i in range(0, len(body), 500)]
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=10)
    conn.request("POST", "/invocations", body=iter(pieces), headers={"Content-Type": "application/json"},
                 encode_chunked=True)
    response = conn.getresponse()
    chunked = json.loads(response.read())
    conn.close()
    assert response.status == 200, chunked
    assert chunked == json.loads(call(server["port"], "POST", "/invocations", body)[2])
    assert len(chunked["predictions"]) == 20
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=10)
    conn.request("POST", "/invocations", body=iter([b" " * 100_000] * 30), encode_chunked=True,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 413 and b"over the limit of 2000000 bytes" in response.read()
    conn.close()


def test_ping_answers_head_and_refuses_other_methods_with_405(server: dict) -> None:
    port = server["port"]
    status, headers, body = call(port, "HEAD", "/ping")
    assert (status, body, headers["X-Model-Version"]) == (200, b"", "1")
    for method, path, allow in (("POST", "/ping", "GET, HEAD"), ("PUT", "/ping", "GET, HEAD"),
                                ("GET", "/invocations", "POST"), ("HEAD", "/invocations", "POST")):
        status, headers, body = call(port, method, path, b"" if method in ("POST", "PUT") else None)
        assert (status, headers["Allow"]) == (405, allow), (method, path)
        if method != "HEAD":
            assert f"{method} {path}: use" in json.loads(body)["error"]
    assert call(port, "GET", "/nowhere")[0] == 404


@pytest.mark.parametrize("args, message", [
    (("--workers", "0"), "argument --workers: 0 is out of range: at least 1"),  # bound the port, never answered
    (("--port", "99999"), "argument --port: 99999 is out of range: 1 to 65535"),  # a traceback
])
def test_bad_serve_numbers_are_usage_errors(args: tuple, message: str, model: dict) -> None:
    done = run_cli("serve", "fraud-detection@1", *args, home=model["home"], timeout=30)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_bad_chunk_rows_is_a_usage_error(model: dict, tmp_path: Path) -> None:
    claims = tmp_path / "claims.csv"
    pd.DataFrame(model["records"]).to_csv(claims, index=False)
    done = run_cli("transform", "fraud-detection@1", str(claims), str(tmp_path / "out.csv"), "--chunk-rows", "0",
                   home=model["home"], timeout=60)
    assert done.returncode == 2 and "argument --chunk-rows: 0 is out of range" in done.stderr, done.stderr


# --- shutdown ----------------------------------------------------------------------------------------------
def test_sigterm_finishes_every_accepted_request(model: dict, tmp_path: Path) -> None:
    """One worker busy with big batches while more connect: SIGTERM must not reset the ones still waiting."""
    proc, port = start_server(model["home"], 1, tmp_path / "server.log")
    body = json.dumps((model["records"] * 20)[:2000]).encode()  # 1.5 MB: some tenths of a second to score
    results: list[object] = []

    def score() -> None:
        try:
            status, _, out = call(port, "POST", "/invocations", body, timeout=60)
            results.append(status if status != 200 else len(json.loads(out)["predictions"]))
        except OSError as exc:
            results.append(repr(exc))

    threads = [threading.Thread(target=score) for _ in range(8)]
    try:
        for n, thread in enumerate(threads):
            thread.start()
            time.sleep(0.15 if n == 0 else 0.02)  # the first is being scored when the others connect
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert results == [2000] * 8, results
    refused = socket.socket()
    assert refused.connect_ex(("127.0.0.1", port)) != 0  # and the listener is closed
    refused.close()
