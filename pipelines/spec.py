"""The typed, immutable description of a pipeline (what a YAML file becomes)."""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.values import value_text

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
    """Unknown keys are errors; parsed specs never change. A number field takes no .inf or .nan: no job can use
    one (a tuning range up to .inf fails only when the tuning job starts), and JSON, which a SageMaker
    definition is, has neither."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)


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
        from pipelines.values import duration_seconds

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
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number (a SageMaker definition, which is JSON, has no "
                         "infinity or NaN)")
    if param.allowed is not None and value not in param.allowed:
        raise ValueError(f"{value!r} is not allowed; allowed values: {param.allowed}")
    return float(value) if param.type == "float" and isinstance(value, (int, float)) else value


def parse_param_text(param: Parameter, text: str) -> Any:
    """Turn `--param key=text` into a typed value, or raise ValueError saying why not."""
    from pipelines.values import parse_param

    return check_param_value(param, parse_param(param.type, text))


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


ROLE_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$"
BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
REGION = r"^[a-z]{2}(-[a-z]+)+-\d+$"
# a key id, a multi-Region key id, an alias, or the ARN of either (what SageMaker's KmsKeyId fields take)
KMS_KEY = (r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[\w-]+|alias/[\w/-]+)|alias/[\w/-]+"
           r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$")


def _matching(pattern: str, what: str, example: str) -> Any:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not {what}, e.g. {example}")
        return value
    return AfterValidator(check)


class VpcSettings(Strict):
    """`sagemaker.vpc`: the subnets and security groups every job and model runs in (VpcConfig)."""

    subnets: list[Annotated[str, _matching(r"subnet-[0-9a-z]{1,25}", "a subnet id", "subnet-0a1b2c3d")]] = \
        Field(min_length=1, max_length=16)
    security_group_ids: list[Annotated[str, _matching(r"sg-[0-9a-z]{1,25}", "a security group id",
                                                      "sg-0a1b2c3d")]] = Field(min_length=1, max_length=5)


class SageMakerSettings(Strict):
    """An env file's `sagemaker:` block: the AWS account a cloud env compiles for, and its security settings.

    region, role and bucket are required to compile (pipelines/sagemaker/checks.py says which is missing);
    kms_key and vpc, when set, reach every job and model of the definition that takes them (a test per
    setting: tests/sagemaker/test_env_security_settings.py)."""

    region: Annotated[str, _matching(REGION, "an AWS region", "us-east-1")] | None = None
    role: Annotated[str, _matching(ROLE_ARN, "an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)",
                                   "arn:aws:iam::111122223333:role/sagemaker-execution")] | None = None
    bucket: Annotated[str, _matching(BUCKET, "a valid S3 bucket name", "my-team-sagemaker")] | None = None
    kms_key: Annotated[str, _matching(KMS_KEY, "a KMS key id, alias or ARN",
                                      "arn:aws:kms:us-east-1:111122223333:key/<key id>")] | None = Field(
        None, description="encrypts every job's volumes and outputs (VolumeKmsKeyId, KmsKeyId)")
    vpc: VpcSettings | None = Field(None, description="every job and model runs in these subnets (VpcConfig)")
    tags: dict[str, str] = Field({}, description="tags of the SageMaker pipeline (and the endpoint stack)")

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_text(cls, value: Any) -> Any:
        if isinstance(value, dict):  # `stage: 1` or `shared: true` in YAML is the tag's text
            return {k: value_text(v) if isinstance(v, (int, float)) else v for k, v in value.items()}
        return value

    @field_validator("tags")
    @classmethod
    def _tag_limits(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not 1 <= len(key) <= 128 or key.lower().startswith("aws:") or len(value) > 256:
                raise ValueError(f"tag {key!r}: a key is 1-128 characters, not starting with 'aws:', and a value "
                                 "at most 256")
        return tags

    # Read like the mapping it was (`settings.sagemaker.get("region")`), for callers not yet moved to attributes.
    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None) if key in type(self).model_fields else None
        return default if value is None else value

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __bool__(self) -> bool:
        """False for an env with no `sagemaker:` settings (the local env)."""
        return bool(self.model_dump(exclude_defaults=True))


class EnvSettings(Strict):
    """What an environment file sets beyond the pipeline: where runs are tracked, and the AWS account."""

    tracking_uri: str | None = None
    sagemaker: SageMakerSettings = SageMakerSettings()


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
