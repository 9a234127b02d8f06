"""An exclusive, re-entrant file lock for a model group's status changes (file and MLflow backends)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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
