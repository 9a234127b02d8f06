"""What the script-running step types (processing, training, evaluation) share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.fsutil import remove_inside
from pipelines.spec import Cache, EnvName, IoName, Resources, Retry, StepSpec

class ScriptStep(StepSpec):
    """A step that runs a model_code script in a container (locally: a subprocess)."""

    code: str
    inputs: dict[IoName, Any] = {}
    environment: dict[EnvName, Any] = {}
    resources: Resources | None = None
    image: str | None = None
    sagemaker: dict[str, Any] = {}

    def code_path(self) -> str | None:
        return self.code

    def effective_retry(self, defaults: Retry) -> Retry:
        return self.retry or defaults

    def effective_cache(self, defaults: Cache) -> Cache:
        return self.cache or defaults

    def effective_resources(self, defaults: Resources) -> Resources:
        return self.resources or defaults


def link_input(source: Path, mount: Path, root: Path) -> None:
    """Make `mount` (a path under root) a folder that holds source (a folder's contents, or a single file)."""
    remove_inside(mount, root)
    mount.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        mount.symlink_to(source.resolve(), target_is_directory=True)
    else:
        mount.mkdir()
        (mount / source.name).symlink_to(source.resolve())
