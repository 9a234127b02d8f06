"""The typed, immutable description of a pipeline (what a YAML file becomes)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

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
    expire_after: str = Field("P30D", pattern=r"^P(\d+[YMWD])*(T(\d+[HMS])+)?$")

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class Defaults(Strict):
    """Settings every step inherits unless it sets its own."""

    resources: Resources = Resources()
    image: str | None = None
    retry: Retry = Retry()
    cache: Cache = Cache()
    sagemaker: dict[str, Any] = {}


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
    return float(value) if param.type == "float" else value


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
    """What every step has. Each step type (steps/<type>.py) extends this."""

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

    def output_names(self) -> list[str]:
        """Names a `${steps.<this>.outputs.<name>}` may use."""
        return []

    def has_metrics(self) -> bool:
        """Whether `${steps.<this>.metrics.*}` may refer to this step."""
        return False

    def branch_targets(self) -> dict[str, list[str]]:
        """For a condition step: branch name -> step names."""
        return {}

    def code_path(self) -> str | None:
        """The script this step runs, if any."""
        return None

    def sagemaker_output(self, compiled: Any, output: str) -> Any:
        """The SDK property of this step's compiled form that holds output `output` (its S3 URI)."""
        raise ValueError(f"step '{self.name}' ({self.type}) has no outputs on SageMaker")


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

    def step(self, name: str) -> Any:
        """The step called name (KeyError if none)."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)
