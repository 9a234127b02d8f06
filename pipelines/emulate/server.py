"""The emulated AWS: a real moto server process on a free loopback port (or the one AWS_ENDPOINT_URL names)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.netutil import free_port, unreachable
from pipelines.sagemaker.offline import restore_environ

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "emulate", "AWS_SECRET_ACCESS_KEY": "emulate"}


@contextmanager
def emulated_aws(region: str, log_dir: Path) -> Iterator[str]:
    """Point boto3 (here and in every job process) at a moto server for the duration of the block."""
    given = os.environ.get("AWS_ENDPOINT_URL")
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", *CREDENTIALS)}
    proc = None
    if given:
        url = given
    else:
        port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / "moto.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        _wait(url, proc)
    os.environ.update({"AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": region})
    for key, value in CREDENTIALS.items():
        if not given or key not in os.environ:  # our own server takes any credentials; never send real ones
            os.environ[key] = value
    try:
        yield url
    finally:
        restore_environ(saved)
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while unreachable(url, timeout=0.5):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the moto server at {url} did not start (see its log)")
        time.sleep(0.1)
