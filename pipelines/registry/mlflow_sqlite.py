"""Reading an MLflow registry kept in SQLite without importing mlflow: a read-only view of its tables.

Importing mlflow and opening its SQLAlchemy store costs seconds; a cached re-run's register step (is this
exact model already a version?) and deploy step (which version is Approved?) only read. Writes still go
through MlflowClient. Anything this view cannot read as expected (no database yet, a schema from another
MLflow release) answers None, and the caller asks MlflowClient instead; tests compare both readers on one
store, so an MLflow upgrade that changes the tables fails there, not in a user's run. A database SQLite itself
calls damaged (not a database, a malformed image) is a StoreDamaged error: nothing opens it for writing.

The registry's MlflowClient comes from open_client. MlflowClient creates a SQLite store's tables (and migrates
them) the first time it opens one, and N processes doing that at once collide ("table ... already exists",
alembic's "expected to match one row"); so the client is created under a lock per store, and created again when
a process that takes no such lock (the tracking writer) was creating the store meanwhile. Its calls retry
SQLite's "database is locked" (the transaction did not commit, so the call is retried whole), and SQLite calling
the file damaged becomes StoreDamaged: one line naming the file and the way out, no traceback.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

from pipelines.errors import RegistryError

PREFIX = "sqlite:///"
WORKSPACE = "default"  # mlflow.utils.workspace_utils.DEFAULT_WORKSPACE_NAME
DELETED = "Deleted_Internal"  # the stage MLflow gives a deleted version (mlflow's STAGE_DELETED_INTERNAL)
DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB: the primary result codes of a damaged database file
BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
ATTEMPTS = 8  # 7 s of backoff in all


class StoreDamaged(RegistryError):
    """The SQLite file of an MLflow store is damaged; sagepipe reports it and leaves the file as it is."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"the MLflow store {path} is damaged ({why}). sagepipe has not changed it; restore it from "
                         f"a backup, or move it aside (mv {path} {path}.damaged) to start an empty store "
                         f"(`sqlite3 {path} .recover` may rescue what it holds)")
        self.path = path


def sqlite_error(exc: BaseException | None) -> sqlite3.Error | None:
    """The sqlite3 error behind exc (itself, SQLAlchemy's .orig, or a cause MlflowException chained), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlite3.Error):
            return exc
        orig = getattr(exc, "orig", None)
        if isinstance(orig, sqlite3.Error):
            return orig
        exc = exc.__cause__ or exc.__context__
    return None


def is_damage(exc: BaseException | None) -> bool:
    """Whether exc (or what caused it) is SQLite reporting a damaged database."""
    found = sqlite_error(exc)
    if found is None:
        return False
    code = getattr(found, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in DAMAGED
    return any(text in str(found) for text in ("malformed", "file is not a database"))


@dataclass
class VersionRow:
    """The fields of an MLflow ModelVersion that mlflow_tags.package reads."""

    name: str
    version: int
    creation_timestamp: int
    source: str | None
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


class SqliteView:
    """Read-only queries on an MLflow SQLite store; each answers None when it cannot tell."""

    def __init__(self, uri: str):
        self.path = Path(uri[len(PREFIX):])

    @classmethod
    def of(cls, uri: str) -> SqliteView | None:
        return cls(uri) if uri.startswith(PREFIX) else None

    def check(self) -> None:
        """StoreDamaged if the database file exists and SQLite cannot read its schema."""
        self._query("SELECT count(*) FROM sqlite_master", ())

    def damaged(self, exc: BaseException) -> StoreDamaged:
        found = sqlite_error(exc)
        return StoreDamaged(self.path, f"SQLite: {found or exc}")

    def groups(self) -> list[str] | None:
        rows = self._query("SELECT name FROM registered_models WHERE workspace = ? ORDER BY name", (WORKSPACE,))
        return None if rows is None else [name for (name,) in rows]

    def versions(self, group: str) -> list[VersionRow] | None:
        """The group's live versions, oldest first ([] for a group with none; None also for an unknown group)."""
        known = self._query("SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?", (WORKSPACE, group))
        if not known:
            return None
        rows = self._query("SELECT version, creation_time, source, run_id FROM model_versions "
                           "WHERE workspace = ? AND name = ? AND current_stage != ? ORDER BY version",
                           (WORKSPACE, group, DELETED))
        tags = self._query("SELECT version, key, value FROM model_version_tags WHERE workspace = ? AND name = ?",
                           (WORKSPACE, group))
        aliases = self._query("SELECT version, alias FROM registered_model_aliases WHERE workspace = ? AND name = ?",
                              (WORKSPACE, group))
        if rows is None or tags is None or aliases is None:
            return None
        found = {int(v): VersionRow(group, int(v), int(created or 0), source, run_id) for v, created, source, run_id in rows}
        for version, key, value in tags:
            if int(version) in found:
                found[int(version)].tags[key] = value
        for version, alias in aliases:
            if int(version) in found:
                found[int(version)].aliases.append(alias)
        return list(found.values())

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
        if not self.path.is_file():
            return None
        try:
            with closing(sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)) as db:
                return list(db.execute(sql, args))
        except sqlite3.Error as exc:
            if is_damage(exc):
                raise self.damaged(exc) from None
            return None


def open_client(uri: str, lock: Callable[[], ContextManager[None]], make: Callable[[], Any]) -> Any:
    """make()'s client for uri, guarded; for a SQLite store, made holding lock() (and made again after a race)."""
    view = SqliteView.of(uri)
    if view is None:
        return Guarded(make(), None)
    view.check()  # a damaged file is reported before MLflow opens it

    def make_locked() -> Any:
        with lock():
            return Guarded(make(), view)

    return _retrying(make_locked, view, _creation_race)


class Guarded:
    """An MlflowClient whose calls retry "database is locked" and report a damaged SQLite file as StoreDamaged."""

    def __init__(self, client: Any, view: SqliteView | None):
        self._client, self._view = client, view

    def __getattr__(self, name: str) -> Any:
        value, view = getattr(self._client, name), self._view
        if not callable(value) or view is None:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return _retrying(lambda: value(*args, **kwargs), view, _busy)

        return call


def _retrying(action: Callable[[], Any], view: SqliteView, retry_if: Callable[[BaseException], bool]) -> Any:
    """action(), tried again (up to ATTEMPTS, backing off) while retry_if says the failure passes; a damaged
    SQLite file is reported as StoreDamaged at once."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except Exception as exc:
            if is_damage(exc):
                raise view.damaged(exc) from None
            if attempt == ATTEMPTS or not retry_if(exc):
                raise
            time.sleep(0.25 * attempt)
    raise AssertionError("not reached")


def _busy(exc: BaseException) -> bool:
    found = sqlite_error(exc)
    if found is None:
        return False
    code = getattr(found, "sqlite_errorcode", None)
    return code & 0xFF in BUSY if code is not None else "is locked" in str(found)


def _creation_race(exc: BaseException) -> bool:
    """An error of creating (or migrating) a store that another process was creating at the same time."""
    text = str(exc)
    return (sqlite_error(exc) is not None or type(exc).__name__ == "CommandError"  # alembic's
            or "out-of-date database schema" in text or "already exists" in text)
