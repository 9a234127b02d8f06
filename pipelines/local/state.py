"""A run's state file and lock: one JSON document per run, rewritten atomically on every change, and an
exclusive lock that the process running it holds (the OS drops it when that process dies)."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pipelines.errors import EXIT_UNAVAILABLE, UserError
from pipelines.fsutil import atomic_write_json, held_by_another

TERMINAL = {"succeeded", "cached", "failed", "skipped", "interrupted"}
DONE_OK = {"succeeded", "cached"}
LOCK = "lock"


class RunUnavailable(UserError):
    """A run folder this process cannot use: its state cannot be written, or another process runs it (exit 4)."""

    exit_code = EXIT_UNAVAILABLE


class RunState:
    """The state of one run; thread-safe, persisted after each change.

    When a write fails (a full disk, a read-only folder) the change is kept in memory, the file is
    overwritten in place if the new document fits in it, and `on_write_error` is told once."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self._lock = threading.Lock()
        self.write_error: OSError | None = None
        self.on_write_error: Callable[[OSError], None] | None = None

    @classmethod
    def create(cls, run_dir: Path, header: dict[str, Any], step_names: list[str]) -> "RunState":
        data = {**header, "status": "running", "started_at": time.time(), "ended_at": None, "order": step_names,
                "steps": {name: {"status": "pending", "attempts": 0} for name in step_names}}
        state = cls(run_dir / "state.json", data)
        state.save()
        return state

    @classmethod
    def load(cls, run_dir: Path) -> "RunState":
        """The recorded state; a run that says `running` while nobody holds its lock reads as interrupted."""
        return cls(run_dir / "state.json", read_state(run_dir))

    def step(self, name: str) -> dict[str, Any]:
        return self.data["steps"][name]

    def status(self, name: str) -> str:
        return self.data["steps"][name]["status"]

    def update_step(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.data["steps"][name].update(fields)
            self._commit()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.data.update(fields)
            self._commit()

    def track_process(self, name: str, child: dict[str, int] | None, running: bool) -> None:
        """Add (or remove) a live child process, its pid and start time, to a step's `processes`."""
        if child is not None:
            with self._lock:
                record = self.data["steps"][name]
                others = [c for c in record.get("processes") or [] if c != child]
                record["processes"] = others + [child] if running else others
                self._commit()

    def save(self) -> None:
        try:
            atomic_write_json(self.path, self.data)
        except OSError:
            _overwrite_in_place(self.path, self.data)
            raise

    def _commit(self) -> None:
        try:
            self.save()
        except OSError as exc:
            if self.on_write_error is None:
                raise
            first, self.write_error = self.write_error is None, exc
            if first:
                self.on_write_error(exc)


def _overwrite_in_place(path: Path, data: Any) -> None:
    """Best effort when a new file cannot be written: the compact document over the old file's own blocks
    (padded with spaces; any extra space reserved first, so a full disk leaves the old text whole)."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":")).encode()
    try:
        with open(path, "r+b") as handle:
            size = os.fstat(handle.fileno()).st_size
            if len(text) > size:
                os.posix_fallocate(handle.fileno(), 0, len(text))
            handle.write(text.ljust(size))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        pass


class RunLock:
    """An exclusive flock on `<run>/lock`, which also names the pid that holds it."""

    def __init__(self, run_dir: Path):
        self.fd: int | None = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.fd, 64).decode(errors="replace").strip() or "unknown"
            self.release()
            raise RunUnavailable(f"run {run_dir.name} is in use by process {holder} (a `sagepipe run` or "
                                 "`resume` still running it); wait for it to end, or stop it first") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def is_locked(run_dir: Path) -> bool:
    return held_by_another(run_dir / LOCK)


def settled(data: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """data, with a `running` run whose runner is gone (killed, or unable to write) shown as interrupted."""
    if data.get("status") == "running" and not is_locked(run_dir):
        data["status"] = "interrupted"
        for step in data.get("steps", {}).values():
            if step.get("status") == "running":
                step["status"] = "interrupted"
    return data


class UnreadableState(RunUnavailable, ValueError):
    """A run's state.json that is not a run state (truncated, emptied, overwritten): exit 4, file left as it is."""


def read_state(run_dir: Path) -> dict[str, Any]:
    """A run's recorded state, settled, with its steps in pipeline order (the file keeps keys sorted)."""
    path = run_dir / "state.json"
    try:
        data = json.loads(path.read_bytes().decode())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableState(_unreadable(run_dir, f"{type(exc).__name__}: {exc}"[:200])) from None
    why = _not_a_state(data)
    if why:
        raise UnreadableState(_unreadable(run_dir, why))
    data = settled(data, run_dir)
    steps = data.get("steps", {})
    order = [n for n in data.get("order") or [] if n in steps]
    if not order:  # a run recorded before the order was kept: the order its steps started in
        order = sorted(steps, key=lambda n: (steps[n].get("started_at") or float("inf"), n))
    data["steps"] = {name: steps[name] for name in order + sorted(set(steps) - set(order))}
    return data


def _not_a_state(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    missing = [key for key in ("run_id", "pipeline", "status", "steps") if key not in data]
    if missing:
        return f"no {', '.join(missing)}"
    steps = data["steps"]
    if not isinstance(steps, dict) or not all(isinstance(s, dict) and "status" in s for s in steps.values()):
        return "its steps are not a mapping of step records"
    if not isinstance(data.get("params", {}), dict):
        return "its params are not a mapping"
    return None


def _unreadable(run_dir: Path, why: str) -> str:
    return (f"{run_dir / 'state.json'} is not a readable run state ({why}); run {run_dir.name} cannot be shown "
            "or resumed. The file is left as it is: restore it, or start a new run (finished steps come from "
            "the cache)")


def list_runs(runs_root: Path) -> list[dict[str, Any]]:
    """Every recorded run, newest first (unreadable state files are skipped)."""
    runs = []
    if runs_root.is_dir():
        for folder in runs_root.iterdir():
            try:
                runs.append(read_state(folder))
            except (OSError, ValueError, AttributeError, TypeError):
                continue
    return sorted(runs, key=lambda r: r.get("started_at") or 0, reverse=True)
