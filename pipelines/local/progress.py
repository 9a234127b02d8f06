"""Progress of a run: a live per-step table (rich) on a terminal, one plain line per change otherwise.

The live view uses the terminal's width (details end in an ellipsis when cut), colours by status (none with
NO_COLOR or TERM=dumb), shows a spinner while something slow happens before the first step (the tracking
store opening) and, with `tail`, the last lines of each running step's log. Warnings go to stderr.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

SYMBOLS = {"pending": "·", "running": "▸", "retrying": "↻", "cached": "≡", "succeeded": "✓",
           "failed": "✗", "skipped": "-", "interrupted": "!"}
STYLES = {"pending": "dim", "running": "cyan", "retrying": "yellow", "cached": "blue", "succeeded": "green",
          "failed": "bold red", "skipped": "dim", "interrupted": "magenta"}
EARLIER = "done before this resume"
LONG_DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d{5,}(?:e-?\d+)?(?![\w.])")


def readable(text: str) -> str:
    """Numbers in a message as people read them: 0.8444, not 0.8444301543332015 (the record keeps them whole)."""
    def short(match: re.Match[str]) -> str:
        value = float(match.group())
        return f"{value:.3g}" if 0 < abs(value) < 0.001 else f"{value:.4f}".rstrip("0").rstrip(".")

    return LONG_DECIMAL.sub(short, text)


def detail(status: str, info: dict[str, Any]) -> str:
    """The words after a step's status: its error, why it was skipped, where a cached result came from."""
    if status == "failed":
        return readable(info.get("error", ""))
    if status == "skipped":
        return info.get("reason", "")
    if status == "retrying":
        return f"attempt {info['attempt']} after: {info['error']}"
    parts = [EARLIER] if info.get("earlier") else []
    if status == "cached" and info.get("cached_from"):
        parts.append(f"cached from run {info['cached_from']}")
    if info.get("note"):
        parts.append(info["note"])
    return "; ".join(parts)


def _took(status: str, info: dict[str, Any], started: float | None) -> str:
    if info.get("duration_s") is not None:
        return f"{info['duration_s']:.2f}s"
    if status in {"running", "retrying"} and started is not None:
        return f"{time.time() - started:.1f}s"
    return ""


class LineReporter:
    """One plain line per change of a step's status (logs, CI, pipes): nothing is cut, nothing redrawn."""

    def __init__(self, stream: TextIO, names: list[str]):
        self.stream = stream
        self.width = max(map(len, names), default=8)
        self.lock = threading.Lock()

    def __call__(self, name: str, status: str, info: dict[str, Any]) -> None:
        took = _took(status, info, None)
        text = detail(status, info)
        with self.lock:
            print(f"  {SYMBOLS.get(status, '?')} {name:<{self.width}}  {status:<11} {took:>8}"
                  + (f"  {text}" if text else ""), file=self.stream, flush=True)

    def waiting(self, text: str | None) -> None:
        """Something slow before the first step: said once, as a line."""
        if text:
            with self.lock:
                print(f"  {text}", file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        with self.lock:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class LiveReporter:
    """A rich table redrawn in place: elapsed time ticks for running steps, a spinner while waiting."""

    def __init__(self, console: Any, names: list[str], tail: int = 0):
        from rich.live import Live

        self.console = console
        self.names = names
        self.tail = tail
        self.rows: dict[str, dict[str, Any]] = {n: {"status": "pending", "info": {}} for n in names}
        self.waiting_text: str | None = None
        self.lock = threading.Lock()
        self.live = Live(console=console, get_renderable=self._render, refresh_per_second=8,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def __call__(self, name: str, status: str, info: dict[str, Any]) -> None:
        with self.lock:
            row = self.rows[name]
            if status == "running":
                row["started"] = time.time()
                row["log"] = info.get("log")
                self.waiting_text = None  # the first step started: whatever we waited for is done
            row.update(status=status, info=info)
        self.live.refresh()

    def waiting(self, text: str | None) -> None:
        with self.lock:
            self.waiting_text = text
        self.live.refresh()

    def warn(self, text: str) -> None:
        """A line above the table (on the terminal when stderr is one, else to stderr as it is)."""
        if sys.stderr.isatty() or self.console.file is sys.stderr:
            self.live.console.print(text, style="yellow", markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        with self.lock:
            self.waiting_text = None
        self.live.stop()

    # --- drawing ------------------------------------------------------------------------------
    def _render(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        with self.lock:
            rows = {name: dict(row) for name, row in self.rows.items()}
            waiting = self.waiting_text
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(width=1)
        table.add_column(no_wrap=True)
        table.add_column(width=11, no_wrap=True)
        table.add_column(width=8, justify="right", no_wrap=True)
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        parts: list[Any] = [table]
        for name in self.names:
            row = rows[name]
            status, info = row["status"], row["info"]
            style = STYLES.get(status, "")
            table.add_row(Text(SYMBOLS.get(status, "?"), style=style), Text(name, style="bold" if status in
                          {"running", "retrying"} else ""), Text(status, style=style),
                          _took(status, info, row.get("started")), Text(detail(status, info),
                          style="red" if status == "failed" else "dim"))
            if self.tail and status in {"running", "retrying"} and row.get("log"):
                for line in last_lines(Path(row["log"]), self.tail):
                    parts.append(Text(f"     │ {line}", style="dim", no_wrap=True, overflow="ellipsis"))
        if waiting:
            parts.append(Spinner("dots", text=Text(waiting, style="dim")))
        return Group(*parts)


def last_lines(path: Path, count: int) -> list[str]:
    """The last count non-empty lines of a log (its last 16 KiB read), without the runner's own lines."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return [line for line in lines if line.strip() and not line.startswith("[sagepipe]")][-count:]


def make_reporter(names: list[str], stream: TextIO | None = None, tail: int = 0) -> Any:
    """The live view on a terminal, plain lines on anything else (a pipe, a file, CI)."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return LineReporter(stream, names)
    from rich.console import Console

    console = Console(file=stream, highlight=False)
    if not console.is_interactive:  # TERM=dumb: a terminal that cannot redraw
        return LineReporter(stream, names)
    return LiveReporter(console, names, tail)
