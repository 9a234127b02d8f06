"""A closed-loop HTTP/1.1 load generator as light as a Python one gets: one thread drives every connection
through epoll, requests are prebuilt bytes, answers are parsed just enough (status, Content-Length or chunked,
Connection: close). On a 2-core machine the client shares the CPUs with the server it measures: loadgen.py's
thread per connection (http.client) cost about as much CPU per request as our endpoint, so it measured itself.
"""

from __future__ import annotations

import selectors
import socket
import time


class _Connection:
    def __init__(self, port: int, offset: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buffer = bytearray()
        self.next, self.started = offset, 0.0

    def close(self) -> None:
        self.sock.close()


def _answer(buffer: bytearray) -> tuple[int, int, bool] | None:
    """(status, bytes the answer takes, whether the server closes) once a whole answer is in buffer."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    closes = headers.get("connection") == "close"
    if "content-length" in headers:
        size = end + 4 + int(headers["content-length"])
        return (status, size, closes) if len(buffer) >= size else None
    if headers.get("transfer-encoding") == "chunked":
        last = buffer.find(b"\r\n0\r\n\r\n", end)
        return (status, last + 7, closes) if last >= 0 else None
    return None  # read to the close: not expected from either server


def run_load(port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float,
             content_type: str = "application/json") -> dict:
    """requests/s, latency percentiles (ms) and errors (non-200 answers or broken connections), as loadgen's."""
    requests = [(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n").encode() + body for body in bodies]
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = 0

    def send(conn: _Connection) -> None:
        conn.started = time.perf_counter()
        conn.sock.setblocking(True)  # a 1,000-row body is bigger than a socket buffer
        conn.sock.sendall(requests[conn.next % len(requests)])
        conn.sock.setblocking(False)
        conn.next += 1

    def reopen(conn: _Connection) -> _Connection:
        selector.unregister(conn.sock)
        conn.close()
        fresh = _Connection(port, conn.next)
        selector.register(fresh.sock, selectors.EVENT_READ, fresh)
        return fresh

    started = time.perf_counter()
    deadline = started + seconds
    live = 0
    for n in range(concurrency):
        conn = _Connection(port, n * 7)
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        send(conn)
        live += 1
    while live:
        events = selector.select(timeout=30)
        if not events:
            errors += live
            break
        for key, _ in events:
            conn = key.data
            try:
                chunk = conn.sock.recv(1 << 20)
            except OSError:
                chunk = b""
            if not chunk:  # the server closed mid-answer
                errors += 1
                conn = reopen(conn)
                if time.perf_counter() < deadline:
                    send(conn)
                else:
                    live -= 1
                continue
            conn.buffer += chunk
            answer = _answer(conn.buffer)
            if answer is None:
                continue
            status, size, closes = answer
            latencies.append(time.perf_counter() - conn.started)
            errors += status != 200
            del conn.buffer[:size]
            if closes:
                conn = reopen(conn)
            if time.perf_counter() < deadline:
                send(conn)
            else:
                live -= 1
    took = time.perf_counter() - started
    for key in list(selector.get_map().values()):
        key.data.close()
    selector.close()
    latencies.sort()

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else 0.0

    return {"concurrency": concurrency, "requests": len(latencies), "requests_per_s": round(len(latencies) / took, 1),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": errors}
