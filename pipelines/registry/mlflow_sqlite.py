"""Reading an MLflow registry kept in SQLite without importing mlflow: a read-only view of its tables.

Importing mlflow and opening its SQLAlchemy store costs seconds; a cached re-run's register step (is this
exact model already a version?) and deploy step (which version is Approved?) only read. Writes still go
through MlflowClient. Anything this view cannot read as expected (no database yet, a schema from another
MLflow release) answers None, and the caller asks MlflowClient instead; tests compare both readers on one
store, so an MLflow upgrade that changes the tables fails there, not in a user's run.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "sqlite:///"
WORKSPACE = "default"  # mlflow.utils.workspace_utils.DEFAULT_WORKSPACE_NAME
DELETED = "Deleted_Internal"  # the stage MLflow gives a deleted version (mlflow's STAGE_DELETED_INTERNAL)


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
        except sqlite3.Error:
            return None
