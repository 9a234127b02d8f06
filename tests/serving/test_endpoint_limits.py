"""Issue 26 (red team, round three), items 13 and 15: the endpoint answers malformed JSON with a 400 that says
what is wrong and the shape expected, never a 500; and it holds a bounded number of connections
(SAGEPIPE_MAX_CONNECTIONS), closing the one that waited longest on its client to make room, so /ping stays
answered however many slow clients connect; a body that trickles past SAGEPIPE_BODY_TIMEOUT_S is a 408.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, run_cli, wait_for_http
from tests.serving.tiny_model import ENDPOINT, KEY, RAW_FEATURES, claims, tiny  # noqa: F401


# --- item 15: malformed requests are 400 with what is wrong and the shape expected -------------------------
def invoke(app, body: bytes, content_type: str = "application/json") -> tuple[str, str]:
    out: dict = {}
    environ = {"PATH_INFO": "/invocations", "REQUEST_METHOD": "POST", "CONTENT_TYPE": content_type,
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    answer = b"".join(app(environ, lambda status, headers: out.update(status=status)))
    return out["status"], json.loads(answer).get("error", "") if out["status"] != "200 OK" else ""


SHAPE = 'send a record {"field": value, ...}, a list of records or columns {"field": [values, ...]}'


def test_json_that_is_not_records_is_400_naming_what_and_the_shape(tiny: dict) -> None:
    from pipelines.serving.app import make_app

    app = make_app(tiny["record"])
    record = claims(1)[RAW_FEATURES].iloc[0].to_dict()
    cases = {
        b"[1,2,3]": "record 0 of the list is a number, not an object",  # was a 500
        json.dumps([record, None]).encode(): "record 1 of the list is null, not an object",  # was a 500
        json.dumps([record, True]).encode(): "record 1 of the list is true, not an object",
        json.dumps([{KEY: "p1", **record}, "x"]).encode(): "record 1 of the list is a string, not an object",
        b"[[1, 2]]": "record 0 of the list is a list, not an object",
        b"null": "the JSON body is null",
        b"7": "the JSON body is a number",
        b'{"customer_age": []}': "the columns hold no rows",  # was a 200 with no predictions
    }
    for body, expected in cases.items():
        status, message = invoke(app, body)
        assert status == "400 Bad Request" and expected in message and SHAPE in message, (body, status, message)


def test_no_malformed_json_body_is_a_500(tiny: dict) -> None:
    """Random mutations of good bodies (values, records and containers swapped for other JSON values): every
    answer is a 200 or a 400 with a message, never a 500."""
    from pipelines.serving.app import make_app

    app = make_app(tiny["record"])
    rng = random.Random(26)
    good = claims(3)[RAW_FEATURES].to_dict(orient="records")
    odd = [None, True, False, 0, -1.5, 1e308, "", "x", "N/A", [], [None], {}, {"a": 1}, [[]], "25/50", 10 ** 30]
    seen = set()
    for _ in range(400):
        body: object = json.loads(json.dumps(good))
        shape = rng.choice(["list", "record", "columns"])
        if shape == "record":
            body = body[0]  # type: ignore[index]
        elif shape == "columns":
            body = {f: [r[f] for r in good] for f in RAW_FEATURES}
        for _ in range(rng.randint(1, 3)):
            if isinstance(body, list) and body and rng.random() < 0.3:
                body[rng.randrange(len(body))] = rng.choice(odd)
            elif isinstance(body, dict) and body:
                field = rng.choice(list(body))
                body[field] = rng.choice(odd) if shape != "columns" or rng.random() < 0.3 else \
                    [rng.choice(odd) for _ in range(rng.choice([0, 3, 4]))]
            elif isinstance(body, list) and body and isinstance(body[0], dict):
                body[0][rng.choice(list(body[0]))] = rng.choice(odd)
        status, message = invoke(app, json.dumps(body).encode())
        assert status in ("200 OK", "400 Bad Request"), (body, status, message)
        assert status == "200 OK" or message, body
        seen.add(status)
    assert seen == {"200 OK", "400 Bad Request"}


# --- item 13: a bounded number of connections, /ping answered at the bound -----------------------------------
def start_server(home: Path, log: Path, workers: int = 1, **limits: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "SAGEPIPE_HOME": str(home), **limits}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", ENDPOINT, "--port", str(port),
                                 "--workers", str(workers)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_for_http(f"http://127.0.0.1:{port}/ping", proc)
    return proc, port


def stop_server(proc: subprocess.Popen, log: Path) -> None:
    proc.terminate()
    assert proc.wait(60) == 0
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


class Trickle:
    """Connections that send a POST's headers and then a body one byte a second, never finishing it."""

    HEAD = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n[")

    def __init__(self, port: int, count: int):
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
        for sock in self.socks:
            sock.sendall(self.HEAD)
            sock.setblocking(False)
        self.replies: dict[socket.socket, bytes] = {}
        self.selector = selectors.DefaultSelector()
        for sock in self.socks:
            self.selector.register(sock, selectors.EVENT_READ)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                sock = key.fileobj
                try:
                    self.replies[sock] = sock.recv(4096)  # type: ignore[union-attr]
                except OSError:
                    self.replies[sock] = b""  # type: ignore[index]
                self.selector.unregister(sock)
            if time.monotonic() - last >= 1:
                last = time.monotonic()
                for sock in self.socks:
                    if sock not in self.replies:
                        try:
                            sock.send(b" ")
                        except OSError:
                            pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock in self.socks:
            sock.close()


def ping(port: int, timeout: float) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def many_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2600
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the open-file limit ({hard}) is too low for 2,200 client connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
@pytest.mark.parametrize("workers, count", [(1, 1100), (2, 2200)])
def test_ping_is_answered_with_more_slow_clients_than_the_cap(workers: int, count: int, tiny: dict, tmp_path: Path,
                                                              many_files: None) -> None:
    """More connections trickling a body than gunicorn's 1,000 per worker, far more than the cap of 40: /ping is
    answered, the server holds no more than its cap, and the connections it let go were told why (408)."""
    log = tmp_path / "server.log"
    proc, port = start_server(tiny["home"], log, workers, SAGEPIPE_MAX_CONNECTIONS="40",
                              SAGEPIPE_BODY_TIMEOUT_S="600")
    slow = Trickle(port, count)
    try:
        assert ping(port, timeout=60) == 200  # before the cap it waited in the listen backlog: a timeout
        deadline = time.monotonic() + 120
        while len(slow.replies) < count - 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(slow.replies) >= count - 40  # the connections it holds are within the cap
        told = [r for r in slow.replies.values() if r.startswith(b"HTTP/1.1 408")]
        assert told and all(b"SAGEPIPE_MAX_CONNECTIONS" in r for r in told), list(slow.replies.values())[:3]
        assert ping(port, timeout=60) == 200
    finally:
        slow.close()
        stop_server(proc, log)


@pytest.mark.slow
def test_a_body_that_trickles_past_its_deadline_is_408(tiny: dict, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    proc, port = start_server(tiny["home"], log, SAGEPIPE_BODY_TIMEOUT_S="2")
    slow = Trickle(port, 1)  # a byte a second: never 10 s without data, so only the deadline ends it
    try:
        deadline = time.monotonic() + 60
        while not slow.replies and time.monotonic() < deadline:
            time.sleep(0.2)
        (reply,) = slow.replies.values()
        assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 2 s in all" in reply, reply
    finally:
        slow.close()
        stop_server(proc, log)


def test_a_bad_connection_limit_is_a_usage_error(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEPIPE_MAX_CONNECTIONS", "lots")
    done = run_cli("serve", ENDPOINT, "--port", str(free_port()), home=tiny["home"], timeout=60)
    assert done.returncode == 2 and "SAGEPIPE_MAX_CONNECTIONS='lots': give a positive whole number" in done.stderr
    assert "Traceback" not in done.stderr
