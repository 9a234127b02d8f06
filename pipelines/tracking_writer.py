"""Writes a run's journal (pipelines/tracking_journal.py) into MLflow, outside the command that ran it.

    python -m pipelines.tracking_writer RUN_DIR [--follow] [--wait SECONDS]

One writer per run at a time (a flock); a second waits up to --wait seconds, then leaves the work to
the first. --follow keeps applying new lines while the run's command holds the run, so nested run ids
reach steps that log a model; without it the writer applies what is pending and exits. An error (a
locked store, a server that is down) is kept in progress.json and the rest stays pending.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import posixpath
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from pipelines.local.state import is_locked
from pipelines.tracking_journal import EVENTS, WRITER_LOCK, journal_dir, read_progress, unwritten, write_progress
from pipelines.values import value_text

STATUS = {"succeeded": "FINISHED", "cached": "FINISHED", "interrupted": "KILLED"}
END_GRACE_S = 5.0  # after the command lets go of the run, how long its last event may take to arrive


class JournalWriter:
    """Applies journal lines to MLflow in order, recording each applied line's offset."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.folder = journal_dir(run_dir)
        self.progress: dict[str, Any] = {"events": 0, "steps": {}, "runs": {}, **read_progress(run_dir)}
        self.client: Any = None
        self.ended = False

    # --- driving ----------------------------------------------------------------------------------
    def apply_pending(self) -> bool:
        """Apply every complete line not applied yet; whether anything was applied."""
        applied = False
        for offset, event in _lines(self.folder / EVENTS, self.progress["events"]):
            self._apply(event)
            self.progress["events"] = offset
            self.progress.pop("error", None)
            self._save()
            applied = True
        for key in list(self.progress["runs"]):
            applied = self._drain_step(key) or applied
        return applied

    def follow(self) -> None:
        """Apply lines as they come while the run's command runs, then what it wrote last."""
        while is_locked(self.run_dir):
            if not self.apply_pending():
                time.sleep(0.2)
        deadline = time.time() + END_GRACE_S
        while True:
            self.apply_pending()
            if self.ended or time.time() > deadline:
                return
            time.sleep(0.2)

    # --- events -----------------------------------------------------------------------------------
    def _apply(self, event: dict[str, Any]) -> None:
        kind = event["e"]
        if kind == "start":
            self._start(event)
        elif kind == "step_start":
            self._step_start(event)
        elif kind == "step_end":
            self._step_end(event)
        elif kind == "end":
            self._end(event)
        elif kind == "file":
            self._connect().log_artifact(self.progress["parent"], event["path"], event.get("artifact_path"))

    def _start(self, event: dict[str, Any]) -> None:
        from pipelines.tracking import _experiment_id, artifact_root

        self.ended = False
        client = self._connect(event["uri"])
        if self.progress.get("parent"):  # a resumed run continues its MLflow run
            client.update_run(self.progress["parent"], status="RUNNING")
            return
        self.progress["experiment_id"] = _experiment_id(client, event["experiment"], artifact_root(event["uri"]))
        tags = event["tags"]
        found = self._created("pipeline", f"tags.`sagepipe.run_id` = '{tags['sagepipe.run_id']}' "
                                          "and tags.`sagepipe.kind` = 'pipeline'")
        parent = found or client.create_run(self.progress["experiment_id"], run_name=event["run_name"],
                                            tags=tags, start_time=event["t"]).info.run_id
        self.progress["parent"] = parent
        self._save()
        log_values(client, parent, params=event.get("params"))

    def _step_start(self, event: dict[str, Any]) -> None:
        client, key = self._connect(), event["key"]
        tags = {"mlflow.parentRunId": self.progress["parent"], "sagepipe.step": event["step"],
                "sagepipe.step_type": event["type"], "sagepipe.kind": "step", "sagepipe.journal_key": key}
        found = self._created(key, f"tags.`sagepipe.journal_key` = '{key}'")
        run_id = found or client.create_run(self.progress["experiment_id"], run_name=event["step"], tags=tags,
                                            start_time=event["t"]).info.run_id
        self.progress["runs"][key] = run_id
        self._save()
        run_file = self.folder / "steps" / f"{key}.run_id"
        run_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = run_file.with_suffix(".tmp")
        tmp.write_text(run_id)
        tmp.replace(run_file)

    def _step_end(self, event: dict[str, Any]) -> None:
        client, key = self._connect(), event["key"]
        run_id = self.progress["runs"].get(key)
        if run_id is None:
            return
        self._drain_step(key)
        log_values(client, run_id, params=event.get("params"), metrics=event.get("metrics"), tags=event.get("tags"))
        if event.get("log") and Path(event["log"]).exists():
            client.log_artifact(run_id, event["log"], "logs")
        client.set_terminated(run_id, STATUS.get(event["status"], "FAILED"), end_time=event["t"])

    def _end(self, event: dict[str, Any]) -> None:
        client, parent = self._connect(), self.progress["parent"]
        log_values(client, parent, params=event.get("params"), metrics=event.get("metrics"), tags=event.get("tags"))
        if Path(event["state"]).exists():
            client.log_artifact(parent, event["state"])
        client.set_terminated(parent, STATUS.get(event["status"], "FAILED"), end_time=event["t"])
        self.ended = True

    # --- what a step's own code logged -------------------------------------------------------------
    def _drain_step(self, key: str) -> bool:
        run_id, path = self.progress["runs"].get(key), self.folder / "steps" / f"{key}.jsonl"
        done = self.progress["steps"].get(key, 0)
        applied = False
        for offset, line in _lines(path, done):
            client = self._connect()
            kind = line["e"]
            if kind == "params":
                log_values(client, run_id, params=line["params"])
            elif kind == "metrics":
                log_values(client, run_id, metrics=line["metrics"], step=line.get("step", 0), at=line.get("t"))
            elif kind == "history":
                _log_history(client, run_id, line["name"], line["values"], line.get("t"))
            elif kind == "artifacts" and Path(line["path"]).exists():
                client.log_artifacts(run_id, line["path"], line.get("artifact_path"))
            self.progress["steps"][key] = offset
            self._save()
            applied = True
        return applied

    # --- plumbing -----------------------------------------------------------------------------------
    def _connect(self, uri: str | None = None) -> Any:
        if self.client is None:
            from pipelines.tracking import mlflow_client

            self.progress["uri"] = uri or self.progress.get("uri") or _first_uri(self.folder / EVENTS)
            self.client = mlflow_client(self.progress["uri"])
        return self.client

    def _created(self, what: str, filter_string: str) -> str | None:
        """The run an earlier writer created for `what` and was killed before recording, if any."""
        if self.progress.get("creating") != what:
            self.progress["creating"] = what
            self._save()
            return None
        found = self.client.search_runs([self.progress["experiment_id"]], filter_string=filter_string, max_results=1)
        return found[0].info.run_id if found else None

    def _save(self) -> None:
        write_progress(self.run_dir, self.progress)


def _lines(path: Path, offset: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(end offset, record) for each complete line after offset."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return
    position = offset
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            return  # a line still being written
        position += len(raw)
        if raw.strip():
            yield position, json.loads(raw)


def _first_uri(events: Path) -> str | None:
    for _, event in _lines(events, 0):
        return event.get("uri")
    return None


def log_values(client: Any, run_id: str, params: dict[str, Any] | None = None,
               metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None, step: int = 0,
               at: int | None = None) -> None:
    """Log params, metrics and tags to a run, named as MLflow accepts them, leaving out what MLflow refuses."""
    from mlflow.entities import Metric, Param, RunTag

    now = at or int(time.time() * 1000)
    items: list[Any] = [Param(mlflow_name(k), value_text(v)[:6000]) for k, v in (params or {}).items()]
    items += [Metric(mlflow_name(k), number, now, step) for k, v in (metrics or {}).items()
              if (number := _number(v)) is not None]
    items += [RunTag(mlflow_name(k), value_text(v)[:8000]) for k, v in (tags or {}).items()]
    for start in range(0, len(items), 100):  # log_batch takes at most 100 params per call
        _log_batch(client, run_id, items[start:start + 100])


def _log_history(client: Any, run_id: str, name: str, values: list[float], at: int | None) -> None:
    from mlflow.entities import Metric

    now = at or int(time.time() * 1000)
    items = [Metric(mlflow_name(name), number, now, i) for i, v in enumerate(values, start=1)
             if (number := _number(v)) is not None]
    for start in range(0, len(items), 1000):
        _log_batch(client, run_id, items[start:start + 1000])


def _log_batch(client: Any, run_id: str, items: list[Any]) -> None:
    """Log items in one call; when MLflow refuses the batch as invalid, each on its own, leaving out (with a
    warning) the ones it refuses, so that one bad value cannot hold up the rest of the run's record for good."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    def batch(chunk: list[Any]) -> None:
        client.log_batch(run_id, metrics=[i for i in chunk if isinstance(i, Metric)],
                         params=[i for i in chunk if isinstance(i, Param)],
                         tags=[i for i in chunk if isinstance(i, RunTag)])

    try:
        batch(items)
    except MlflowException as exc:
        if exc.error_code != "INVALID_PARAMETER_VALUE":
            raise
        for item in items:
            try:
                batch([item])
            except MlflowException as one:
                if one.error_code != "INVALID_PARAMETER_VALUE":
                    raise
                print(f"warning: MLflow refused {type(item).__name__.lower()} {item.key!r} of run {run_id}; "
                      f"left out: {str(one.message).splitlines()[0][:200]}", file=sys.stderr)


_NOT_IN_A_NAME = re.compile(r"[^/\w.\- :]")


def mlflow_name(name: Any) -> str:
    """name as MLflow accepts a param, metric or tag key: characters it refuses (like '@' in 'recall@top5')
    become '_', and a name that reads as a path going elsewhere ('../x', 'a//b') is flattened."""
    text = _NOT_IN_A_NAME.sub("_", str(name))[:250]
    if posixpath.normpath(text) != text or text.startswith(("..", "/")) or text in ("", "."):
        text = text.replace("/", "_")
        text = "_" + text if text.startswith(".") or not text else text
    return text


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _acquire(run_dir: Path, wait_s: float) -> int | None:
    journal_dir(run_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(journal_dir(run_dir) / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.time() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        except BlockingIOError:
            if time.time() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--follow", action="store_true", help="keep applying while the run's command runs")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer to finish")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    os.nice(10)  # background work: the run's steps come first for the CPU
    if _acquire(run_dir, args.wait) is None:
        return 0  # another writer holds the journal and applies what is pending
    if not args.follow and not unwritten(run_dir):
        return 0
    writer = JournalWriter(run_dir)
    try:
        if args.follow:
            writer.follow()
        else:
            writer.apply_pending()
    except Exception as exc:  # kept for `runs show`; the lines not applied stay pending
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        writer.progress["error"] = f"{type(exc).__name__}: {first}"
        writer._save()
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {run_dir.name}: {writer.progress['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
