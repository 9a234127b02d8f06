"""Step processes: each in a session of its own, stopped as a group, and found again after a crash.

A child's pid and start time (from /proc/<pid>/stat) are recorded in the run state, so that a later
attempt can end what a killed runner left behind without ever signalling a process that merely reuses
the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from pipelines.errors import StepFailed


class Supervisor:
    """Starts step processes, waits for them (with peak RSS) and stops them all on cancel()."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, log: Any,
            started: Callable[[dict[str, int] | None], None]) -> tuple[int, float | None, dict[str, int] | None]:
        """Run argv to its end in a new session; `started` gets its identity first. Exit code, peak MB and
        identity."""
        with self._lock:
            if self.cancelled.is_set():
                raise StepFailed("run interrupted")
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            self._procs.add(proc)
        try:
            child = identity(proc.pid)
            started(child)
            return (*_wait_with_peak_rss(proc), child)
        finally:
            with self._lock:
                self._procs.discard(proc)

    def cancel(self) -> None:
        """No new processes; running process groups get SIGTERM, then SIGKILL after 5 s."""
        with self._lock:
            self.cancelled.set()
            procs = list(self._procs)
        for proc in procs:
            _signal_group(proc.pid, signal.SIGTERM)
        threading.Thread(target=_kill_stragglers, args=(procs,), daemon=True).start()

    @contextlib.contextmanager
    def signals_cancel(self) -> Iterator[None]:
        """SIGINT and SIGTERM cancel, for the duration of the block (only the main thread can install them)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, lambda signum, frame: self.cancel())
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Stat(NamedTuple):
    state: str
    group: int
    start: int


def _stat(pid: int) -> _Stat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name in parentheses may hold spaces
    return _Stat(fields[0], int(fields[2]), int(fields[19]))


def identity(pid: int) -> dict[str, int] | None:
    """What tells this process apart from a later one with the same pid (None where /proc is absent)."""
    stat = _stat(pid)
    return {"pid": pid, "start": stat.start} if stat else None


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat.group == pgid and stat.state not in "ZX":
                found.append(int(entry.name))
    return found


def stop_leftover(record: dict[str, int], grace_s: float = 10.0) -> bool:
    """End the process group of a step child a previous runner left (SIGTERM, then SIGKILL) and wait for it.

    The group is that child's only while its leader has the recorded start time, or, the leader gone, while
    the group still exists (the kernel does not reuse a pid that names a live group). True when it was alive.
    """
    pid = record["pid"]
    leader = _stat(pid)
    if leader is not None and leader.start != record.get("start"):
        return False
    if not _group(pid):
        return False
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        _signal_group(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _group(pid):
                return True
            time.sleep(0.05)
    raise StepFailed(f"process group {pid} of the previous attempt survived SIGKILL")


def _wait_with_peak_rss(proc: subprocess.Popen) -> tuple[int, float | None]:
    """Exit code and peak RSS in MB of the process and the descendants it waited for."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # reaped elsewhere (a concurrent Popen.wait): no usage to report
        return proc.wait(), None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, round(usage.ru_maxrss / 1024, 1)


def _kill_stragglers(procs: list[subprocess.Popen]) -> None:
    deadline = time.time() + 5
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
