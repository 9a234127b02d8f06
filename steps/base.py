"""What the script-running step types (processing, evaluation, training, tuning) share."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pipelines.fsutil import remove_inside
from pipelines.spec import CloudSettings, EnvName, IoName, Resources
from pipelines.step_api import CompileContext, Step

# The SDK's scikit-learn image runs a script step unless it sets image: or sagemaker.framework_image.
FRAMEWORK_IMAGE = {"framework": "sklearn", "version": "1.2-1"}


class ScriptStep(Step):
    """A step that runs a model_code script in a container (locally: a subprocess over staged inputs)."""

    runs_script: ClassVar[bool] = True

    code: str
    inputs: dict[IoName, Any] = {}
    environment: dict[EnvName, Any] = {}
    resources: Resources | None = None
    image: str | None = None
    sagemaker: CloudSettings = CloudSettings()

    def code_path(self) -> str | None:
        return self.code

    def input_values(self) -> dict[str, Any]:
        return dict(self.inputs)

    def settled_resources(self) -> Resources:
        return self.resources or Resources()

    def container_image(self, cc: CompileContext) -> str:
        """The step's image (its own or the pipeline default), else the SDK's framework image."""
        return self.image or cc.framework_image(self.name, FRAMEWORK_IMAGE, self.settled_resources().instance_type,
                                                self.sagemaker.framework_image)


def link_input(source: Path, mount: Path, root: Path) -> None:
    """Make `mount` (a path under root) a folder that holds source (a folder's contents, or a single file)."""
    remove_inside(mount, root)
    mount.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        mount.symlink_to(source.resolve(), target_is_directory=True)
    else:
        mount.mkdir()
        (mount / source.name).symlink_to(source.resolve())
