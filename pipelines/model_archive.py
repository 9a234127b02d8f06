"""Model archives: SM_MODEL_DIR packed as SageMaker packs it (`model.tar.gz`, members at its root), and back.

A training step's `model` output is such an archive on both backends. Packing is reproducible (sorted
members, mtime 0), so the same model files give the same bytes and downstream cache keys stay stable.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipelines.fsutil import atomic_write_bytes, remove_path
from pipelines.archives import reproducible_targz

ARCHIVE = "model.tar.gz"


class ModelArchiveError(Exception):
    """A model archive that cannot be read or would write outside its folder."""


def pack(model_dir: Path, archive: Path) -> None:
    """Write model_dir's files to archive (a tar.gz that depends only on file names and contents)."""
    atomic_write_bytes(archive, reproducible_targz(model_dir))


def archive_of(path: Path) -> Path | None:
    """The model.tar.gz that path is, or that a folder holds (a processing input of a model output); else None."""
    if path.is_file():
        return path
    inside = path / ARCHIVE
    return inside if inside.is_file() else None


def unpack(archive: Path, target: Path) -> None:
    """Extract archive into the new folder target, refusing absolute paths, `..` and links out of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ModelArchiveError(f"cannot extract model archive {archive}: {exc}") from None
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not merely extracted meanwhile by another process
                raise
    finally:
        remove_path(staging)


@contextmanager
def model_folder(path: Path) -> Iterator[Path]:
    """A folder of model files for path: a model.tar.gz (or a folder holding one) extracted for the
    duration of the block, or path itself when it is a plain model folder."""
    archive = archive_of(path)
    if archive is None:
        yield path
        return
    scratch = Path(tempfile.mkdtemp(prefix="sagepipe-model-"))
    try:
        unpack(archive, scratch / "model")
        yield scratch / "model"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
