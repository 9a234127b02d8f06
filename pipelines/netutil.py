"""Loopback networking helpers: a free port, waiting for a server, probing a tracking server."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from urllib.parse import urlparse


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Poll url until it answers 200; RuntimeError if the process exits first or time runs out."""
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode} before answering")
        if time.time() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {seconds:.0f} s")
        time.sleep(0.3)


def unreachable(uri: str, timeout: float = 2.0) -> str | None:
    """Why an http(s) server cannot be reached, or None when it accepts connections (or is not http)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {parsed.hostname}:{port} ({exc.strerror or exc})"
