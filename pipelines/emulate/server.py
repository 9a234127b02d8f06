"""The emulated AWS: a real moto server process on a free loopback port (or the one AWS_ENDPOINT_URL names).

Our own server keeps its state under the state folder (pipelines/emulate/aws_state.py): what one emulation
leaves in S3 and on the control plane is there for the next, as it is on AWS."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pipelines.emulate.aws_state import SAVE_PATH
from pipelines.netutil import free_port, unreachable
from pipelines.sagemaker.offline import restore_environ

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "emulate", "AWS_SECRET_ACCESS_KEY": "emulate"}
# moto loads a service's backend on its first request: these are asked once while the definition compiles.
WARM_UP = (("s3", None), ("sagemaker", "SageMaker.ListPipelines"))


def aws_dir(home: Path) -> Path:
    """Where the emulated AWS of a state folder's `emulate/` lives."""
    return home / "aws"


@contextmanager
def emulated_aws(log_dir: Path) -> Iterator[Callable[[str], str]]:
    """A moto server for the duration of the block, started on entry, with the state aws_dir(log_dir) holds and
    saved back there when the block ends. The block calls the yielded connect(region) when it needs AWS: it
    waits until the server answers and points boto3 (here and in every job process) at it. Started first,
    the server comes up while the definition compiles."""
    given = os.environ.get("AWS_ENDPOINT_URL")
    if given:
        with _serving(log_dir, given) as connect:
            yield connect
        return
    from pipelines.emulate.aws_state import held

    with held(aws_dir(log_dir), lambda line: print(line, file=sys.stderr, flush=True)), \
            _serving(log_dir, None) as connect:
        yield connect


@contextmanager
def _serving(log_dir: Path, given: str | None) -> Iterator[Callable[[str], str]]:
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", *CREDENTIALS)}
    proc, ready = None, threading.Event()
    failure: list[str] = []
    if given:
        url = given
        ready.set()
    else:
        port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "moto.log", "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "pipelines.emulate.aws_state", "--port", str(port),
                                     "--state", str(aws_dir(log_dir))],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        threading.Thread(target=_start_up, args=(url, proc, ready, failure), daemon=True).start()

    def connect(region: str) -> str:
        ready.wait()
        if failure:
            raise RuntimeError(failure[0])
        os.environ.update({"AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": region})
        for key, value in CREDENTIALS.items():
            if not given or key not in os.environ:  # our own server takes any credentials; never send real ones
                os.environ[key] = value
        return url

    try:
        yield connect
    finally:
        restore_environ(saved)
        if proc is not None:
            try:
                if ready.is_set() and not failure:
                    _ask(url, "", None, path=SAVE_PATH)  # its state outlives the execution, as AWS's does
            except Exception as exc:  # noqa: BLE001 - the execution's own outcome stands; say what was not kept
                print(f"warning: the emulated AWS could not be saved ({exc}); what this execution left in it is "
                      f"not kept (see {log_dir / 'moto.log'})", file=sys.stderr, flush=True)
            finally:
                proc.kill()  # SIGTERM lingers ~1 s
                proc.wait()


def _start_up(url: str, proc: subprocess.Popen, ready: threading.Event, failure: list[str]) -> None:
    try:
        _wait(url, proc)
        for service, target in WARM_UP:
            _ask(url, service, target)
    except Exception as exc:  # noqa: BLE001 - reported by connect(), in the caller's thread
        failure.append(str(exc))
    finally:
        ready.set()


def _ask(url: str, service: str, target: str | None, path: str = "/") -> None:
    """One unsigned-but-well-formed request (moto reads the service from the credential scope)."""
    headers = {"Authorization": f"AWS4-HMAC-SHA256 Credential=emulate/20200101/us-east-1/{service}/aws4_request, "
                                "SignedHeaders=host, Signature=0"}
    data = b"" if path != "/" else None
    if target:
        headers.update({"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
        data = b"{}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    with direct.open(urllib.request.Request(f"{url}{path}", data=data, headers=headers), timeout=60) as answer:
        answer.read()


def _wait(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while unreachable(url, timeout=0.5):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the moto server at {url} did not start (see its log)")
        time.sleep(0.05)
