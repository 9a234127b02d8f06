"""A real `mlflow server` on loopback for the tests that read and write MLflow over HTTP.

Every test gets its own server on a fresh, empty store: no test sees another's runs or registered models.
Starting one was most of those tests' time (30-60 s on a loaded machine): the CLI migrated a new SQLite store,
uvicorn started 4 workers, the server a job runner with its huey consumers, and stopping waited for each of them.
Here the schema is migrated once per session into a template (by the call the server itself makes at start, so
the copy is the store a new server would make), each server starts on a copy of it with one worker and no job
runner (no test runs MLflow jobs), and is killed at the end: its store is thrown away with the test's tmp_path.

Import the fixture where it is used: `from tests.mlflow_server import mlflow_server  # noqa: F401`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import free_port

# What the server needs no part of in a test: the job runner (GenAI jobs; several more processes importing
# MLflow) and usage telemetry (no network beyond loopback).
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}

# A new server's store: the server CLI creates the tables, migrates them and makes the Default experiment with
# this call, its default artifact root being the proxied `mlflow-artifacts:/` since it serves artifacts.
_MIGRATE = """import sys
from mlflow.server.handlers import initialize_backend_stores
from mlflow.store.tracking import DEFAULT_ARTIFACTS_URI
initialize_backend_stores(sys.argv[1], None, DEFAULT_ARTIFACTS_URI)
"""

_templates: dict[Path, Path] = {}  # per pytest process (an xdist worker has its own), by its base temp folder


def _template(factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated server store, made once per session."""
    base = factory.getbasetemp()
    if base not in _templates:
        folder = factory.mktemp("mlflow-store-template")
        database = folder / "server.db"
        done = subprocess.run([sys.executable, "-c", _MIGRATE, f"sqlite:///{database}"], cwd=folder,
                              env={**os.environ, **SERVER_ENV}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and database.is_file(), done.stderr[-3000:]
        _templates[base] = database
    return _templates[base]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (the CLI and uvicorn), then SIGKILL what is left after a second."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


@pytest.fixture
def mlflow_server(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port, with its own fresh SQLite store and artifact folder."""
    from pipelines.netutil import wait_for_http

    root = tmp_path / "mlflow-server"
    root.mkdir()
    shutil.copyfile(_template(tmp_path_factory), root / "server.db")
    port = free_port()
    env = {**os.environ, **SERVER_ENV,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    log = root / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/server.db",
                                 "--artifacts-destination", str(root / "artifacts")],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_http(f"{uri}/health", proc, 120)
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n{log.read_text()[-3000:]}")
        yield uri
    finally:
        _stop(proc)


def forkserver() -> Any:
    """The multiprocessing context the racing tests start their processes from, with MLflow and the registry
    preloaded so that each racer forks ready instead of importing MLflow itself. A process has one fork server,
    and the first test to start it decides what it preloads: every test asks for the same list here. No `tests.`
    module: the server imports from the folder it starts in (a test's tmp_path), where `tests` is another
    package installed in site-packages, which would then shadow this one in every racer."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mlflow", "mlflow.tracking", "pipelines.registry.mlflow_backend", "pipelines.approvals"])
    return ctx
