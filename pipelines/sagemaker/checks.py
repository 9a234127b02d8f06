"""Config problems that only matter on SageMaker, caught at compile time (each check one function)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from pipelines.errors import ConfigError, Problem, did_you_mean
from pipelines.refs import ParamRef, refs_in
from pipelines.spec import PipelineSpec

# Instance families SageMaker offers for training, processing and hosting, with their sizes.
_SIZES = ("medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "9xlarge", "12xlarge", "16xlarge",
          "18xlarge", "24xlarge", "32xlarge", "48xlarge")
FAMILIES = ("t2", "t3", "m4", "m5", "m5d", "m6i", "m6id", "m7i", "c4", "c5", "c5d", "c5n", "c6i", "c7i", "r5",
            "r5d", "r6i", "r7i", "g4dn", "g5", "g6", "g6e", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "trn1",
            "trn1n", "inf1", "inf2")
INSTANCE_TYPES = {f"ml.{family}.{size}" for family in FAMILIES for size in _SIZES}


def check_cloud_config(spec: PipelineSpec, requirements: bool = False) -> None:
    """Raise ConfigError listing every problem that would stop this pipeline on SageMaker; with requirements, also
    each job's requirements file that cannot be installed in its image (pip asks the package index, once per file
    contents and image: `sagepipe compile` and `validate --env` do; a library compile does not)."""
    overlay = _overlay_file(spec)
    problems = list(check_account(spec, overlay))
    if problems and not spec.settings.sagemaker:  # not a cloud env at all: say only that
        raise ConfigError(problems)
    problems += [*check_instance_types(spec), *check_cloud_inputs(spec, overlay), *check_nested_conditions(spec)]
    if requirements:
        problems += check_job_requirements(spec)
    if problems:
        raise ConfigError(problems)


def _overlay_file(spec: PipelineSpec) -> str:
    return str(Path(spec.source_file).parent / "env" / f"{spec.env}.yaml")


def check_account(spec: PipelineSpec, overlay: str) -> Iterator[Problem]:
    """The account settings a compile needs are set (the loader checked the form of those that are)."""
    settings = spec.settings.sagemaker
    if spec.env == "local" and not settings:
        yield Problem(overlay, None, "--env", "the local env has no AWS settings; compile a cloud env, "
                                              "e.g. --env dev")
        return
    if not settings.role:
        yield Problem(overlay, None, "sagemaker.role", "missing: the IAM role SageMaker runs the steps with, "
                                                       "e.g. arn:aws:iam::111122223333:role/sagemaker-execution")
    if not settings.bucket:
        yield Problem(overlay, None, "sagemaker.bucket", "missing: the S3 bucket for code and step outputs")
    if not settings.region:
        yield Problem(overlay, None, "sagemaker.region", "missing: the AWS region, e.g. us-east-1")


def check_instance_types(spec: PipelineSpec) -> Iterator[Problem]:
    for step in spec.steps:
        resources = step.settled_resources()  # None: a step that runs no job
        kind = resources.instance_type if resources else None
        if kind is not None and kind not in INSTANCE_TYPES:
            yield Problem(spec.source_file, None, f"steps.{step.name}.resources.instance_type",
                          f"'{kind}' is not a SageMaker instance type{did_you_mean(kind, INSTANCE_TYPES)}")


def check_cloud_inputs(spec: PipelineSpec, overlay: str) -> Iterator[Problem]:
    """A step input must be an S3 URI, another step's output, or a file in the repository."""
    for step in spec.steps:
        for name, value in step.input_values().items():
            where = f"steps.{step.name}.inputs.{name}"
            for ref in refs_in(value):
                if isinstance(ref, ParamRef):
                    current = spec.param_values.get(ref.name)
                    if not str(current).startswith("s3://"):
                        yield Problem(overlay, None, f"parameters.{ref.name}",
                                      f"is {current!r}, a local path, but {where} reads it on SageMaker; "
                                      f"set it to an s3:// URI in {overlay}")
            if isinstance(value, str) and not value.startswith("s3://"):
                path = Path(spec.repo_root) / value
                if not path.exists():
                    yield Problem(spec.source_file, None, where, f"'{value}' is neither an s3:// URI nor a "
                                                                 "file in the repository")


def check_nested_conditions(spec: PipelineSpec) -> Iterator[Problem]:
    """SageMaker takes no ConditionStep inside another one's IfSteps/ElseSteps."""
    for step in spec.steps:
        for branch, targets in step.branch_targets().items():
            for target in targets:
                if spec.step(target).branch_targets():
                    yield Problem(spec.source_file, None, f"steps.{step.name}.{branch}",
                                  f"'{target}' is a condition, and SageMaker runs no condition inside another's "
                                  f"branch; fold it into one condition with and: [...], or make '{target}' a "
                                  "top-level step")


def check_job_requirements(spec: PipelineSpec) -> list[Problem]:
    """Each script step's requirements file resolves for its image's Python and platform (requirements_check.py):
    each distinct (file, image) once, side by side."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from pipelines.sagemaker.requirements_check import check_requirements
    from steps.base import ScriptStep

    root = Path(spec.repo_root)
    jobs: dict[tuple[str, Path], tuple[Any, Path, str, list[str]]] = {}
    for step in spec.steps:
        if isinstance(step, ScriptStep) and (path := step.requirements_file(root)) is not None:
            image = step.job_image()
            shown = step.requirements or str(Path(step.code).parent / "requirements.txt")
            jobs.setdefault((repr(image), path), (image, path, shown, []))[3].append(step.name)
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(lambda job: check_requirements(job[0], job[1], shown=job[2],
                                                             config_file=spec.source_file), jobs.values()))
    return [replace(problem, path=f"steps.{name}.requirements")
            for problem, (_, _, _, names) in zip(found, jobs.values()) if problem is not None for name in names]
