"""The local endpoint under many connections: /ping while 2,200 slow-body clients hold connections, and 200
normal clients at once (issue 26, item 13).

(a) slow clients: N connections (default 2,200, more than gunicorn's 1,000 per worker) each send a POST's
headers and a few bytes of a long body, then one more byte every --trickle-s seconds (under the 10 s read
timeout), so none finishes. Then /ping, each on a new connection: answered or not within --ping-timeout, and
how long it took; and how many slow connections the server closed (its cap, SAGEPIPE_MAX_CONNECTIONS, makes room
by closing the one that waited longest on its client). Before the cap, the pools of both workers filled and /ping
waited in the listen backlog, unanswered.
(b) 200 normal clients: single-row JSON requests from 200 kept-alive connections at once (fastload.py, one epoll
thread): requests/s, p50, p99, errors.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import fastload
from common import example_model, write

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "model_code"))
from pipelines.netutil import free_port, wait_for_http  # noqa: E402

SLOW_HEAD = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: 1000000\r\n\r\n[{")


def prepare(home: Path, rows: int) -> list[dict]:
    """Train and approve the example model (small); its test rows, raw."""
    import pandas as pd
    from fraud_schema import RAW_FEATURES

    run_id = example_model(home, f"rows={rows}", "min_auc=0.5")
    test = pd.read_parquet(home / "runs" / run_id / "preprocess" / "processing" / "output" / "test" / "test.parquet")
    return json.loads(test[RAW_FEATURES].to_json(orient="records"))


class SlowClients:
    """N connections trickling a body, one byte each every `trickle_s`; counts the ones the server closes."""

    def __init__(self, port: int, count: int, trickle_s: float):
        self.socks: list[socket.socket] = []
        self.closed_by_server = 0
        self.answers: dict[str, int] = {}
        self.refused = 0
        for _ in range(count):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(SLOW_HEAD)
            except OSError:
                self.refused += 1
                continue
            sock.setblocking(False)
            self.socks.append(sock)
        self.selector = selectors.DefaultSelector()
        for sock in self.socks:
            self.selector.register(sock, selectors.EVENT_READ)
        self.open = set(self.socks)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(trickle_s,), daemon=True)
        self.thread.start()

    def _run(self, trickle_s: float) -> None:
        next_trickle = time.monotonic() + trickle_s
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                self._closed(key.fileobj)  # type: ignore[arg-type]
            if time.monotonic() >= next_trickle:
                for sock in list(self.open):
                    try:
                        sock.send(b" ")
                    except OSError:
                        self._closed(sock)
                next_trickle = time.monotonic() + trickle_s

    def _closed(self, sock: socket.socket) -> None:
        if sock not in self.open:
            return
        try:
            reply = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            reply = b""
        status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else "closed"
        self.answers[status] = self.answers.get(status, 0) + 1
        self.closed_by_server += 1
        self.open.discard(sock)
        self.selector.unregister(sock)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()


def ping(port: int, timeout: float) -> float | None:
    """Seconds until /ping's 200 on a new connection; None when it is not answered within timeout."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = sock.recv(64)
    except OSError:
        return None
    return time.perf_counter() - start if reply.startswith(b"HTTP/1.1 200") else None


def slow_case(port: int, count: int, pings: int, trickle_s: float, ping_timeout: float) -> dict:
    started = time.perf_counter()
    clients = SlowClients(port, count, trickle_s)
    opened_s = time.perf_counter() - started
    try:
        time.sleep(1.0)  # let the workers take what they will
        latencies = [ping(port, ping_timeout) for _ in range(pings)]
        time.sleep(trickle_s)  # a trickle round, so that closed connections are seen
        answered = sorted(t for t in latencies if t is not None)
        held = len(clients.open)
        return {"connections": count, "refused_at_connect": clients.refused, "opened_s": round(opened_s, 2),
                "pings": pings, "pings_answered": len(answered), "ping_timeout_s": ping_timeout,
                "ping_p50_ms": round(1000 * answered[len(answered) // 2], 2) if answered else None,
                "ping_max_ms": round(1000 * answered[-1], 2) if answered else None,
                "closed_by_server": clients.closed_by_server, "server_answers": clients.answers,
                "still_open_at_end": held}
    finally:
        clients.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=2200, help="slow-body connections (default 2200)")
    parser.add_argument("--pings", type=int, default=20)
    parser.add_argument("--ping-timeout", type=float, default=10.0)
    parser.add_argument("--trickle-s", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=200, help="normal clients at once (default 200)")
    parser.add_argument("--seconds", type=float, default=8.0, help="of normal load")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=5000, help="rows the example model is trained on")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose endpoint is measured (default: "
                        "this one; an older commit's checkout gives the before)")
    parser.add_argument("--name", default="serving_connections", help="results file name")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.slow + args.clients + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    home = Path(tempfile.mkdtemp(prefix="sagepipe-connections-"))
    records = prepare(home, args.rows)
    port = free_port()
    env = {**os.environ, "SAGEPIPE_HOME": str(home)}
    log = open(home / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "fraud-detection@1", "--port",
                               str(port), "--workers", str(args.workers)], cwd=args.repo, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    results: dict = {"workers": args.workers, "repo": str(args.repo.resolve()),
                     "max_connections": os.environ.get("SAGEPIPE_MAX_CONNECTIONS", "default")}
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server)
        results["slow"] = slow_case(port, args.slow, args.pings, args.trickle_s, args.ping_timeout)
        time.sleep(1.0)
        while ping(port, 1.0) is None and server.poll() is None:  # the slow clients' connections are let go
            time.sleep(0.5)
        bodies = [json.dumps([r]).encode() for r in records[:200]]
        results[f"normal_c{args.clients}"] = fastload.run_load(port, "/invocations", bodies, args.clients,
                                                               args.seconds)
    finally:
        server.terminate()
        server.wait(60)
        log.close()
        results["server_log_tail"] = (home / "server.log").read_text()[-2000:]
        shutil.rmtree(home, ignore_errors=True)
    results["load_average_1min"] = round(os.getloadavg()[0], 1)
    results["targets"] = {"slow.pings_answered": args.pings, f"normal_c{args.clients}.errors": 0}
    slow, normal = results["slow"], results[f"normal_c{args.clients}"]
    print(f"Local endpoint under many connections ({args.workers} workers, load average "
          f"{results['load_average_1min']} on {os.cpu_count()} CPUs, {args.repo})")
    write(args.name, results, [
        ("case", "value", "detail"),
        (f"{slow['connections']:,} slow-body clients: /ping answered", f"{slow['pings_answered']}/{slow['pings']}",
         f"within {args.ping_timeout:g} s"),
        ("  /ping p50 / max ms", slow["ping_p50_ms"] or "-", slow["ping_max_ms"] or "-"),
        ("  slow connections closed by the server", slow["closed_by_server"], json.dumps(slow["server_answers"])),
        ("  slow connections still open", slow["still_open_at_end"], ""),
        (f"{args.clients} normal clients: req/s", normal["requests_per_s"], f"{normal['requests']:,} requests"),
        ("  p50 / p99 ms", normal["p50_ms"], normal["p99_ms"]),
        ("  errors", normal["errors"], ""),
    ])


if __name__ == "__main__":
    main()
