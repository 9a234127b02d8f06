"""A small closed-loop HTTP load generator: N threads, each sending POSTs back to back for a fixed time."""

from __future__ import annotations

import http.client
import threading
import time


def run_load(port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float,
             content_type: str = "application/json") -> dict:
    """requests/s, latency percentiles (ms) and errors (non-200 answers or broken connections)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, failed, i = [], 0, offset
        while time.perf_counter() < deadline:
            body = bodies[i % len(bodies)]
            i += 1
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": content_type})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failed += 1
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                continue
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n * 7,)) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else 0.0

    return {"concurrency": concurrency, "requests": len(latencies), "requests_per_s": round(len(latencies) / took, 1),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": errors[0]}
