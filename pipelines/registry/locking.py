"""An exclusive, re-entrant file lock for a model group's status changes (file and MLflow backends), and the lock
held while an MlflowClient first opens a SQLite store."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import ContextManager, Iterator

from pipelines.registry.base import RegistryError, now, user

_held = threading.local()


@contextmanager
def file_lock(path: Path, what: str, wait_s: float = 120) -> Iterator[None]:
    """Hold an exclusive lock on `path` (re-entrant in a thread; the OS drops it when the process dies)."""
    if not hasattr(_held, "paths"):
        _held.paths = {}
    held: dict[str, int] = _held.paths
    key = str(path)
    if key in held:
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.seek(0)
                    raise RegistryError(f"{what} is still locked by another change ({handle.read().strip() or path}) "
                                        f"after {wait_s:.0f} s; try again") from None
                time.sleep(0.02)
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, {user()}, since {now()}")
        handle.flush()
        held[key] = 1
        try:
            yield
        finally:
            del held[key]
            fcntl.flock(handle, fcntl.LOCK_UN)


def store_lock(uri: str) -> ContextManager[None]:
    """For a SQLite tracking URI, the lock to hold while creating an MlflowClient for it (`.<file>.lock` beside the
    database): the client creates (and migrates) a fresh store's tables, and two processes doing it at once leave
    it half-made. Nothing for a server URI, or where the database's folder is not writable (then nobody creates)."""
    if not uri.startswith("sqlite:///"):
        return nullcontext()
    database = Path(uri[len("sqlite:///"):])
    try:
        database.parent.mkdir(parents=True, exist_ok=True)  # as SQLite would need it
    except OSError:
        return nullcontext()
    if not os.access(database.parent, os.W_OK):
        return nullcontext()
    return file_lock(database.parent / f".{database.name}.lock", f"the MLflow store {database}")
