"""The endpoint's limits, from the environment; the app, its gunicorn worker class and `sagepipe serve` share them."""

from __future__ import annotations

import os

from pipelines.errors import UsageError


def _setting(name: str, default: float, kind: type = float) -> float:
    """An environment variable's positive number; a UsageError naming it otherwise (read when serve starts)."""
    text = os.environ.get(name, "")
    try:
        value = kind(text) if text else kind(default)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{name}={text!r}: give a positive {'whole ' if kind is int else ''}number "
                         f"(default {kind(default)})")
    return value


MAX_BODY_BYTES = int(_setting("SAGEPIPE_MAX_BODY_BYTES", 6 * 1024 * 1024, int))  # SageMaker's limit
# A request whose body stops arriving (no data for this long) is answered 408.
READ_TIMEOUT_S = _setting("SAGEPIPE_READ_TIMEOUT_S", 10)
# A request's whole body must arrive within this long, however it trickles in (then 408): a client sending a
# byte every few seconds cannot hold a connection for hours. 6 MB (the body limit) at 1 Mbit/s takes 50 s.
BODY_TIMEOUT_S = _setting("SAGEPIPE_BODY_TIMEOUT_S", 60)
# A request's headers must arrive within this long in all (gunicorn's --keep-alive, which the gevent worker
# applies to reading headers), then the connection closes.
HEADER_TIMEOUT_S = 5
# The most connections the endpoint holds, over all its workers (each holds its share). At the cap a new
# connection is still accepted, and the connection that has waited longest on its client (for headers, a body
# or its next request) is closed to make room; so slow clients cannot leave /ping unanswered. Connections whose
# request is being computed are never closed; while every held one is, new connections wait in the backlog.
MAX_CONNECTIONS = int(_setting("SAGEPIPE_MAX_CONNECTIONS", 2048, int))
FD_RESERVE = 64  # file descriptors a worker keeps for itself (model files, logs, the listener) below its limit


class SlowClient(TimeoutError):
    """A body that took too long in all, or whose connection was closed to make room; its text says which."""


def worker_connections(workers: int, cap: int = MAX_CONNECTIONS) -> int:
    """Each worker's share of the cap (at least 2), within the file descriptors a process may open."""
    import resource

    share = max(-(-cap // max(workers, 1)), 2)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return share if soft == resource.RLIM_INFINITY else max(min(share, soft - FD_RESERVE), 2)
