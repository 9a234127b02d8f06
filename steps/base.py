"""What the script-running step types (processing, evaluation, training, tuning) share."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from pydantic import model_validator

from pipelines.fsutil import copy_tree, inside, remove_inside
from pipelines.sagemaker.images import PYTORCH_TRAINING_2_6, SKLEARN_1_9
from pipelines.spec import CloudSettings, EnvName, IoName, RelativePath, Resources
from pipelines.step_api import CompileContext, Step

# The framework image a script step's job runs in unless it sets image: or sagemaker.framework_image (each type
# says which; pipelines/sagemaker/images.py and docs/containers.md describe them): scikit-learn 1.9-0 (Python 3.12)
# for processing, the PyTorch 2.6 training image (Python 3.12) for what trains or loads a model.
FRAMEWORK_IMAGE = SKLEARN_1_9
MODEL_IMAGE = PYTORCH_TRAINING_2_6


class ScriptStep(Step):
    """A step that runs a model_code script in a container (locally: a subprocess over staged inputs)."""

    runs_script: ClassVar[bool] = True
    default_image: ClassVar[dict[str, str]] = FRAMEWORK_IMAGE

    code: str
    # what the job installs in its image (a file in the script's folder, which is what ships); default: the
    # folder's requirements.txt when there is one. The local runner installs nothing: this machine has it all.
    requirements: RelativePath | None = None
    inputs: dict[IoName, Any] = {}
    environment: dict[EnvName, Any] = {}
    resources: Resources | None = None
    image: str | None = None
    sagemaker: CloudSettings = CloudSettings()

    @model_validator(mode="after")
    def _requirements_ship_with_the_code(self) -> "ScriptStep":
        folder = PurePosixPath(self.code).parent
        if self.requirements is not None and not PurePosixPath(self.requirements).is_relative_to(folder):
            raise ValueError(f"requirements '{self.requirements}' must lie in the script's folder '{folder}/', "
                             "the folder that is shipped to the job (e.g. "
                             f"'{folder / 'requirements' / PurePosixPath(self.code).stem}.txt')")
        return self

    def code_path(self) -> str | None:
        return self.code

    def framework(self) -> dict[str, str]:
        """The SDK framework image (framework, version, py_version, scope) the job runs in when the step sets no
        image: its type's default with what sagemaker.framework_image changes; naming another framework starts
        from that framework alone."""
        override = self.sagemaker.framework_image
        given = override.model_dump(exclude_none=True) if override else {}
        default = self.default_image if given.get("framework", self.default_image["framework"]) == \
            self.default_image["framework"] else {}
        return {**default, **given}

    def job_image(self) -> str | dict[str, str]:
        """The image URI the step sets, else its framework image (as the SDK names it)."""
        return self.image or self.framework()

    def requirements_file(self, repo_root: str | Path) -> Path | None:
        """The requirements file the job installs: requirements:, else the script folder's requirements.txt."""
        if self.requirements is not None:
            return Path(repo_root) / self.requirements
        default = (Path(repo_root) / self.code).parent / "requirements.txt"
        return default if default.is_file() else None

    def shipped_requirements(self, cc: CompileContext) -> str | None:
        """The requirements file as the job sees it: its path inside the shipped code folder (compile checks it
        exists)."""
        path = self.requirements_file(cc.spec.repo_root)
        if path is None:
            return None
        cc.repo_path(self.code)  # the folder is what the compile reads
        if self.requirements is None:
            return "requirements.txt"
        if not path.is_file():
            raise self.config_error("requirements", f"'{self.requirements}' does not exist")
        return PurePosixPath(self.requirements).relative_to(PurePosixPath(self.code).parent).as_posix()

    def input_values(self) -> dict[str, Any]:
        return dict(self.inputs)

    def settled_resources(self) -> Resources:
        return self.resources or Resources()

    def container_image(self, cc: CompileContext) -> str:
        """The step's image (its own or the pipeline default), else its framework image's URI from the SDK."""
        return self.image or cc.framework_image(self.name, self.framework(), self.settled_resources().instance_type)


def stage_input(source: Path, mount: Path, root: Path) -> None:
    """Make `mount` (a path under root) a folder that holds a copy of source (a folder's contents, or a single
    file), as a SageMaker job's input is a copy downloaded from S3: a script that writes, appends to or deletes
    what lies in its input folder changes nothing of the user's files or of another step's outputs."""
    remove_inside(mount, root)
    inside(mount.parent, root, follow=True).mkdir(parents=True, exist_ok=True)
    copy_tree(source, mount if source.is_dir() else mount / source.name)


