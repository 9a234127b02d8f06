"""What every model registry provides: groups of numbered versions, each PendingManualApproval, Approved or Rejected.

Every backend returns the same package dict: group, version, status, created_at, metrics, lineage,
model_uri, run_id and history (who, when, note, previous status for each change). A status change
is atomic: under the group's lock the backend re-reads the version, checks the transition and writes,
so two decisions at once never both start from the same status.
"""

from __future__ import annotations

import getpass
import os
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ContextManager, Iterable

from pipelines.errors import RegistryError, did_you_mean

STATUSES = ("PendingManualApproval", "Approved", "Rejected")


class TransitionConflict(RegistryError):
    """Someone else changed the version's status while this decision was being made; nothing changed."""


class Registry(ABC):
    """A model registry backend. Reading: groups, versions, show, latest, approved, model_path; writing:
    register and set_status (through locked and _write_status)."""

    # True where an approval reaches deployment through an event on the cloud, not through this process.
    deploys_by_event = False

    @abstractmethod
    def groups(self) -> list[str]:
        """The names of the model groups, sorted."""

    @abstractmethod
    def versions(self, group: str) -> list[dict[str, Any]]:
        """Every version of a group, oldest first (RegistryError for an unknown group)."""

    @abstractmethod
    def show(self, group: str, version: int) -> dict[str, Any]:
        """One version (RegistryError for an unknown group or version)."""

    @abstractmethod
    def locked(self, group: str) -> ContextManager[None]:
        """The group's lock: registrations, status changes and what puts a version into service (a deploy step,
        `serve GROUP@approved`) happen one at a time, so none of them acts on a status that changed meanwhile."""

    @abstractmethod
    def _write_status(self, package: dict[str, Any], status: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Record a checked status change (called under locked); the package after it."""

    def register(self, group: str, model: Path, metrics: dict[str, Any], status: str,
                 lineage: dict[str, Any], run_id: str | None = None) -> tuple[dict[str, Any], bool]:
        """Add a version (or return the existing one for an identical model); (package, created).

        model is a model folder or a model.tar.gz (or a folder holding one)."""
        raise RegistryError(f"{type(self).__name__} registers no models from this machine; "
                            "the pipeline's register step does it where the pipeline runs")

    def listing(self, group: str) -> tuple[list[dict[str, Any]], list[RegistryError]]:
        """(the versions that read, oldest first; an error for each version that does not): for `models list`,
        which shows the healthy versions and names the broken ones. versions() raises on the first broken one."""
        return self.versions(group), []

    def identical(self, group: str, model_hash: str) -> dict[str, Any] | None:
        """The newest version of group whose model files hash to model_hash: a quick look, where None means not
        found (or, for a backend that cannot tell cheaply, not known); register() decides for certain."""
        try:
            return newest_with_hash(self.versions(group), model_hash)
        except RegistryError:
            return None

    def model_path(self, package: dict[str, Any]) -> Path:
        """A local folder holding the version's model files."""
        raise RegistryError(f"{type(self).__name__} keeps no model files on this machine "
                            f"({package['group']} version {package['version']}: {package.get('model_uri')})")

    def set_status(self, group: str, version: int, status: str, note: str = "", force: bool = False,
                   since: float | None = None) -> dict[str, Any]:
        """Approve or reject a version atomically, recording who, when, why and the real previous status.

        since: when the caller started deciding; see check_transition."""
        with self.locked(group):
            package = self.show(group, version)
            check_transition(package, status, force, since)
            return self._write_status(package, status, history_entry(status, note, package["status"]))

    def latest(self, group: str, status: str | None = None) -> dict[str, Any] | None:
        """The newest version, or the newest with that status."""
        matching = [p for p in self.versions(group) if status is None or p["status"] == status]
        return matching[-1] if matching else None

    def approved(self, group: str) -> dict[str, Any] | None:
        """The version `GROUP@approved` names: here the newest Approved one (MLflow: its `approved` alias)."""
        return self.latest(group, "Approved")

    def no_such_group(self, group: str) -> RegistryError:
        return RegistryError(f"no model group '{group}'{did_you_mean(group, self.groups())}")

    def no_such_version(self, group: str, version: int) -> RegistryError:
        known = [str(p["version"]) for p in self.versions(group)]
        return RegistryError(f"model group '{group}' has no version {version} (versions: {', '.join(known) or 'none'})")


def newest_with_hash(packages: Iterable[dict[str, Any]], model_hash: str | None) -> dict[str, Any] | None:
    """The last of packages (oldest first) whose model files hash to model_hash."""
    same = [p for p in packages if model_hash and p["lineage"].get("model_hash") == model_hash]
    return same[-1] if same else None


def check_transition(package: dict[str, Any], status: str, force: bool, since: float | None = None) -> None:
    """Raise RegistryError for a status change a person may not make (without --force).

    since: when the person started deciding (epoch seconds); a decision recorded after it by someone
    else is a TransitionConflict, so of two racing decisions exactly one takes effect."""
    group, version, previous = package["group"], package["version"], package["status"]
    if status not in STATUSES:
        raise RegistryError(f"unknown status '{status}'{did_you_mean(status, STATUSES)}")
    last = (package.get("history") or [{}])[-1]
    if since is not None and not force and last.get("previous") and _timestamp(last.get("at")) > since:
        raise TransitionConflict(f"{group} version {version} was {previous} by {last.get('by')} at {last['at']} "
                                 f"while you were deciding; nothing changed (sagepipe models show {group} {version})")
    if previous == status:
        raise RegistryError(f"{group} version {version} is already {status}")
    if previous == "Rejected" and status == "Approved" and not force:
        raise RegistryError(f"{group} version {version} was rejected; approving it needs --force")


def history_entry(status: str, note: str, previous: str | None) -> dict[str, Any]:
    """One recorded change: the new status, when, by whom, why, and the status before."""
    return {"status": status, "at": now("microseconds"), "by": user(), "note": note, "previous": previous}


def now(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def _timestamp(at: Any) -> float:
    try:
        return datetime.fromisoformat(str(at)).timestamp()
    except ValueError:
        return float("-inf")
