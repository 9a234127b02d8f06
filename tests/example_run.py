"""The example pipeline (configs/fraud-detection.yaml, 2,000 generated rows) run once per test session.

Several modules need a trained and registered fraud-detection version 1; training it took each of them a full
`sagepipe run`. `example_run` runs it once per session (under pytest-xdist once for all workers, behind a file
lock in the session's temporary root) into a state folder of its own, which no test may change: a test that
approves, serves, transforms or registers takes a copy (`example_run.copy(folder)`), and the session ends with an
error if the shared folder changed.

A copied state folder is not usable as it is: the MLflow SQLite store records absolute artifact locations
(experiments, runs, logged models, model versions), and the run's state.json, its MLflow journal and the logged
MLmodel / state.json artifacts name files by absolute path. A plain copytree would read the original's model
artifacts and log new runs' artifacts into the original's `mlartifacts/`. `copy` rewrites every such path to the
copy's and then checks that nothing in the copy still names the original.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import run_cli

CONFIG = "configs/fraud-detection.yaml"
PARAMS = ("--param", "rows=2000", "--param", "min_auc=0.5")  # small, and the gate always passes


@dataclass(frozen=True)
class ExampleRun:
    """A state folder holding one run of the example pipeline and fraud-detection version 1 (pending approval)."""

    home: Path
    summary: dict[str, Any]  # what `sagepipe run --json` printed

    @property
    def run_id(self) -> str:
        return str(self.summary["run_id"])

    @property
    def run_dir(self) -> Path:
        return self.home / "runs" / self.run_id

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "state.json").read_text())

    @property
    def test_split(self) -> Path:
        """The folder holding preprocess's test.parquet."""
        return self.run_dir / "preprocess" / "processing" / "output" / "test"

    def copy(self, folder: Path) -> "ExampleRun":
        """This run's state folder copied to folder/state with every absolute path in it moved to the copy."""
        home = folder / "state"
        copy_state(self.home, home)
        return ExampleRun(home, self.summary)


def copy_state(source: Path, target: Path) -> None:
    """copytree, then every mention of source's path (in text files and in the MLflow store) made target's."""
    shutil.copytree(source, target, symlinks=True)
    olds = list(dict.fromkeys([str(source), str(source.resolve())]))
    new = str(target)
    for path in _files(target):
        if path.name == "mlflow.db":
            continue
        data = path.read_bytes()
        if not any(old.encode() in data for old in olds):
            continue
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise AssertionError(f"{path} names {source} in a binary file: the copy cannot be relocated") from None
        for old in olds:
            text = text.replace(old, new)
        path.write_bytes(text.encode())
    for link in (p for p in target.rglob("*") if p.is_symlink()):
        pointed = str(link.readlink())
        if any(pointed == old or pointed.startswith(old + "/") for old in olds):
            raise AssertionError(f"{link} links into {source}: the copy cannot be relocated")
    database = target / "mlflow.db"
    if database.exists():
        with sqlite3.connect(database) as db:
            for table, column in _text_columns(db):
                for old in olds:
                    db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                               f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0', (old, new, old))
        db.close()
    left = _mentions(target, olds)
    assert not left, f"the copy of {source} at {target} still names the original: {left[:5]}"


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink())


def _text_columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [(table, row[1]) for table in tables for row in db.execute(f'PRAGMA table_info("{table}")')]


def _mentions(folder: Path, olds: list[str]) -> list[str]:
    """Files (and MLflow store columns) under folder that still name one of olds."""
    found = []
    for path in _files(folder):
        if path.name == "mlflow.db":
            with sqlite3.connect(path) as db:
                for table, column in _text_columns(db):
                    for old in olds:
                        count = db.execute(f'SELECT count(*) FROM "{table}" WHERE typeof("{column}") = \'text\' '
                                           f'AND instr("{column}", ?) > 0', (old,)).fetchone()[0]
                        if count:
                            found.append(f"{path} {table}.{column}")
            db.close()
        elif any(old.encode() in path.read_bytes() for old in olds):
            found.append(str(path))
    return found


def quiet(run: ExampleRun, seconds: float = 300) -> None:
    """Wait until the run's MLflow record is written: `sagepipe run` leaves that to background writers
    (`python -m pipelines.tracking_writer RUN_DIR`, in sessions of their own) that may still be applying the
    journal into mlflow.db after the command exits. Until they are gone the folder is neither copied nor
    fingerprinted. (Popen returns after the exec, so every writer the run started is in /proc by now.)"""
    from pipelines.tracking_journal import read_progress, unwritten

    deadline = time.monotonic() + seconds
    while True:
        writers = _writers(run.run_id)
        if not writers and not unwritten(run.run_dir):
            return
        assert time.monotonic() < deadline, f"the MLflow record of the example run is still not written after " \
            f"{seconds} s: writers {writers}, progress {read_progress(run.run_dir)}"
        time.sleep(0.2)


def _writers(run_id: str) -> list[int]:
    """The processes that are an MLflow journal writer of run run_id."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if b"pipelines.tracking_writer" in argv and any(run_id.encode() in arg for arg in argv):
            found.append(int(proc.name))
    return found


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under folder and a digest of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(folder)}


def run_example(home: Path) -> ExampleRun:
    """The example pipeline run into state folder home, its MLflow record written."""
    done = run_cli("run", CONFIG, *PARAMS, "--json", home=home)
    assert done.returncode == 0, done.stderr
    run = ExampleRun(home, json.loads(done.stdout))
    quiet(run)
    return run


def shared_run(folder: Path, worker: str) -> ExampleRun:
    """Under pytest-xdist: one run for all workers, in folder (the session's temporary root, above each worker's
    own). The first worker to take the lock runs it; the others wait for it and read its summary."""
    folder.mkdir(exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        made = folder / "run.json"
        if made.exists():
            record = json.loads(made.read_text())
            return ExampleRun(Path(record["home"]), record["summary"])
        run = run_example(folder / worker / "state")  # a failed try leaves no run.json: the next worker tries anew
        made.write_text(json.dumps({"home": str(run.home), "summary": run.summary}))
        return run


@pytest.fixture(scope="session")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleRun]:
    """`sagepipe run configs/fraud-detection.yaml --param rows=2000 --param min_auc=0.5` in a fresh state folder:
    read it, never change it (take `example_run.copy(tmp_path)` to approve, serve, transform or register).

    Session fixtures are per process; under pytest-xdist the workers share one run (`shared_run`)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        run = shared_run(tmp_path_factory.getbasetemp().parent / "example-run", worker)
    else:
        run = run_example(tmp_path_factory.mktemp("example-run") / "state")
    before = fingerprint(run.home)
    yield run
    after = fingerprint(run.home)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"a test changed the shared example run's state folder {run.home}: {changed[:10]}; " \
        "work on example_run.copy(tmp_path) instead"
