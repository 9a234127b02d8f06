"""The typed, immutable description of a pipeline (what a YAML file becomes)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from pipelines.step_api import Step

STEP_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
IO_NAME = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PARAM_TYPES = {"string": (str,), "integer": (int,), "float": (int, float), "boolean": (bool,)}


def _io_name(name: str) -> str:
    if not re.fullmatch(IO_NAME, name):
        raise ValueError(f"{name!r} is not a valid input or output name (it names a folder): use 1-63 letters, "
                         "digits, _ and -, not starting with -, e.g. 'train_data'")
    return name


def _env_name(name: str) -> str:
    if not re.fullmatch(ENV_NAME, name):
        raise ValueError(f"{name!r} is not an environment variable name: use letters, digits and _, "
                         "not starting with a digit, e.g. 'LOG_LEVEL'")
    return name


def _relative_path(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts:
        raise ValueError(f"{path!r} must be a file path relative to its folder, without '..', "
                         "e.g. 'evaluation.json'")
    return path


IoName = Annotated[str, AfterValidator(_io_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]
RelativePath = Annotated[str, AfterValidator(_relative_path)]


class Strict(BaseModel):
    """Unknown keys are errors; parsed specs never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Resources(Strict):
    """Portable compute: the same meaning locally and on SageMaker."""

    instance_type: str = "ml.m5.large"
    instance_count: int = Field(1, ge=1, le=100)
    volume_gb: int = Field(30, ge=1, le=16384)


class Retry(Strict):
    """How often a failed step is tried, and how long to wait between tries."""

    attempts: int = Field(1, ge=1, le=20, description="total tries, the first included")
    backoff_s: float = Field(1.0, ge=0, le=3600)
    backoff_rate: float = Field(2.0, ge=1, le=10)


class Cache(Strict):
    """Reuse a step's outputs when its code, config and inputs are unchanged."""

    enabled: bool = True
    expire_after: str = Field("P30D", description="ISO 8601 duration, as SageMaker's ExpireAfter: P30D, PT12H, 30d")

    @field_validator("expire_after")
    @classmethod
    def _a_duration(cls, value: str) -> str:
        from pipelines.local.cache import duration_seconds

        duration_seconds(value)  # its ValueError names the forms it takes
        return value

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class Defaults(Strict):
    """Settings every step inherits unless it sets its own (settled into each step at load)."""

    resources: Resources = Resources()
    image: str | None = None
    retry: Retry = Retry()
    cache: Cache = Cache()


class FrameworkImage(Strict):
    """A framework image the SDK knows (`sagemaker.framework_image`): only what differs from the default."""

    framework: str | None = None
    version: str | None = None
    py_version: str | None = None
    scope: Literal["training", "inference"] | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    def over(self, default: dict[str, str]) -> dict[str, str]:
        return {**default, **self.model_dump(exclude_none=True)}


class CloudSettings(Strict):
    """A step's `sagemaker:` block: SageMaker-only knobs (each step type extends this with its own)."""

    framework_image: FrameworkImage | None = None


class Parameter(Strict):
    """A typed pipeline parameter (becomes a SageMaker Parameter)."""

    type: Literal["string", "integer", "float", "boolean"]
    default: Any = None
    allowed: list[Any] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _default_matches_type(self) -> "Parameter":
        if self.default is not None:
            check_param_value(self, self.default)
        for value in self.allowed or []:
            check_param_value(Parameter(type=self.type), value)
        return self


def check_param_value(param: Parameter, value: Any) -> Any:
    """Raise ValueError unless value fits the parameter's type and allowed values."""
    kinds = _PARAM_TYPES[param.type]
    if isinstance(value, bool) and param.type != "boolean" or not isinstance(value, kinds):
        raise ValueError(f"{value!r} is not a {param.type}")
    if param.allowed is not None and value not in param.allowed:
        raise ValueError(f"{value!r} is not allowed; allowed values: {param.allowed}")
    return float(value) if param.type == "float" and isinstance(value, (int, float)) else value


def parse_param_text(param: Parameter, text: str) -> Any:
    """Turn `--param key=text` into a typed value, or raise ValueError saying why not."""
    try:
        if param.type == "integer":
            value: Any = int(text)
        elif param.type == "float":
            value = float(text)
        elif param.type == "boolean":
            lowered = text.strip().lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError
            value = lowered in {"true", "1", "yes"}
        else:
            value = text
    except ValueError:
        raise ValueError(f"{text!r} is not a {param.type}") from None
    return check_param_value(param, value)


class StepSpec(Strict):
    """The fields every step has; the step contract (pipelines/step_api.py) builds on it."""

    name: str = Field(pattern=STEP_NAME)
    type: str
    description: str = ""
    depends_on: list[str] = []
    retry: Retry | None = None
    cache: Cache | None = None

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class EnvSettings(Strict):
    """What an environment overlay sets beyond the pipeline: backends and services."""

    tracking_uri: str | None = None
    sagemaker: dict[str, Any] = {}
    registry: dict[str, Any] = {}


class PipelineSpec(Strict):
    """A loaded, validated pipeline."""

    name: str = Field(pattern=r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,255}$")
    description: str = ""
    parameters: dict[str, Parameter] = {}
    defaults: Defaults = Defaults()
    steps: tuple[Any, ...]
    env: str = "local"
    settings: EnvSettings = EnvSettings()
    source_file: str = ""
    repo_root: str = "."
    param_values: dict[str, Any] = {}

    def step(self, name: str) -> Step:
        """The step called name (KeyError if none)."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)
