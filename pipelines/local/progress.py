"""Progress of a run: a live per-step table on a terminal, plain lines otherwise; warnings go to stderr."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

SYMBOLS = {"pending": "·", "running": "▸", "retrying": "↻", "cached": "≡", "succeeded": "✓",
           "failed": "✗", "skipped": "-", "interrupted": "!"}


def _detail(status: str, info: dict[str, Any]) -> str:
    if status == "failed":
        return info.get("error", "")
    if status == "skipped":
        return info.get("reason", "")
    if status == "retrying":
        return f"attempt {info['attempt']} after: {info['error']}"
    return info.get("note") or ""


class LineReporter:
    """One line per change of a step's status (logs, CI, pipes)."""

    def __init__(self, stream: TextIO, names: list[str]):
        self.stream = stream
        self.width = max(map(len, names), default=8)
        self.lock = threading.Lock()

    def __call__(self, name: str, status: str, info: dict[str, Any]) -> None:
        took = f"{info['duration_s']:7.2f}s" if "duration_s" in info else " " * 8
        detail = _detail(status, info)
        with self.lock:
            print(f"  {SYMBOLS.get(status, '?')} {name:<{self.width}}  {status:<11} {took}"
                  + (f"  {detail}" if detail else ""), file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        with self.lock:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class LiveReporter:
    """A table redrawn in place, with elapsed time ticking for running steps."""

    def __init__(self, stream: TextIO, names: list[str]):
        self.stream = stream
        self.names = names
        self.width = max(map(len, names), default=8)
        self.rows: dict[str, dict[str, Any]] = {n: {"status": "pending"} for n in names}
        self.lock = threading.Lock()
        self.drawn = 0
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def __call__(self, name: str, status: str, info: dict[str, Any]) -> None:
        with self.lock:
            row = self.rows[name]
            if status == "running":
                row["started"] = time.time()
            row.update(status=status, info=info)
            self._draw()

    def warn(self, text: str) -> None:
        """A line above the table: the table is erased, the line printed, the table drawn again below it."""
        with self.lock:
            if self.drawn:
                self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
                self.stream.flush()
            print(text, file=sys.stderr, flush=True)
            self.drawn = 0
            self._draw()

    def _tick(self) -> None:
        while not self.stop.wait(0.5):
            with self.lock:
                self._draw()

    def _draw(self) -> None:
        lines = []
        for name in self.names:
            row = self.rows[name]
            status, info = row["status"], row.get("info", {})
            if "duration_s" in info:
                took = f"{info['duration_s']:7.2f}s"
            elif status in {"running", "retrying"}:
                took = f"{time.time() - row['started']:7.1f}s"
            else:
                took = " " * 8
            detail = _detail(status, info)[:70]
            lines.append(f"  {SYMBOLS.get(status, '?')} {name:<{self.width}}  {status:<11} {took}  {detail}")
        out = (f"\x1b[{self.drawn}F" if self.drawn else "") + "".join(f"\x1b[2K{line}\n" for line in lines)
        self.stream.write(out)
        self.stream.flush()
        self.drawn = len(lines)

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            self._draw()


def make_reporter(names: list[str], stream: TextIO | None = None) -> Any:
    stream = stream or sys.stderr
    return LiveReporter(stream, names) if stream.isatty() else LineReporter(stream, names)
