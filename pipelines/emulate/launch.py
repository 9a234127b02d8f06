"""Launching an emulated execution: compile (or read) a definition, check it as CreatePipeline would, start it
on moto and hand back what the runner runs (`sagepipe emulate` drives it)."""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pipelines.emulate.execution import ReadyToRun
from pipelines.emulate.jobs import EMULATE_BUCKET
from pipelines.errors import ConfigError, Problem, did_you_mean
from pipelines.values import parse_param, split_param, value_text


@contextmanager
def started(spec: Any, definition_file: str | None, params: list[str], root: Path,
            max_parallel: int | None) -> Iterator[ReadyToRun]:
    """Start an execution of a compiled config (spec) or of a definition file on the emulated AWS, which stays up
    while the caller runs what this yields."""
    from pipelines.emulate.server import emulated_aws
    from pipelines.sagemaker.offline import shared_botocore_loader

    # the server starts first and comes up while the definition compiles; one botocore loader serves both
    with emulated_aws(root / "emulate") as connect, shared_botocore_loader():
        if definition_file:
            source, definition, region, buckets = _read_definition(definition_file)
            name, artifacts, role = Path(definition_file).stem, {}, "arn:aws:iam::123456789012:role/emulate"
        else:
            from pipelines.sagemaker.compiling import compile_pipeline_or_explain

            compiled = compile_pipeline_or_explain(spec, root / "compiled")
            source, definition, region = spec.source_file, compiled.definition, compiled.region
            buckets, name, artifacts, role = {compiled.bucket}, compiled.name, compiled.artifacts, compiled.role
        refuse(source, definition)
        from pipelines.emulate.unemulated import say_unemulated

        say_unemulated(definition)
        from pipelines.emulate.execution import steps_at_once

        max_parallel = steps_at_once(source, definition, max_parallel)
        connect(region)
        import boto3

        s3, sm = boto3.client("s3", region_name=region), boto3.client("sagemaker", region_name=region)
        for bucket in sorted(buckets | {EMULATE_BUCKET}):
            _ensure_bucket(s3, bucket, region)
        from pipelines.emulate.jobs import in_parallel

        code_bucket = next(iter(sorted(buckets)), EMULATE_BUCKET)  # a definition may name no bucket at all
        in_parallel(lambda key, data: s3.put_object(Bucket=code_bucket, Key=key, Body=data), sorted(artifacts.items()))
        values = parameter_values(source, definition, params, s3, name)
        from pipelines.emulate import execution as emulated

        execution = emulated.Execution(name, _start(sm, name, definition, role, values), definition, values,
                                       source, region, emulated.now())
        pipeline = emulated.runnable(spec, execution, s3, sm, root)
        header = execution.header(root)
        yield ReadyToRun(pipeline, max_parallel, lambda runner: runner.run(extra=header),
                         f"emulated execution of {pipeline.name}", execution.arn)


def refuse(source: str, definition: dict[str, Any]) -> None:
    """Exit 2 for what CreatePipeline refuses and for what this emulator cannot run, before anything runs."""
    from pipelines.emulate.steps import EMULATED
    from pipelines.sagemaker.definition_checks import all_steps, check_definition

    problems = [Problem(source, None, f"steps.{step} ({path})", f"CreatePipeline would reject this: {message}")
                for step, path, message in check_definition(definition)]
    for step in all_steps(definition.get("Steps", [])):
        why = _cannot_emulate(step, EMULATED)
        if why:
            problems.append(Problem(source, None, f"steps.{step['Name']}", why))
    if problems:
        raise ConfigError(problems)


def _cannot_emulate(step: dict[str, Any], emulated: tuple[str, ...]) -> str | None:
    kind, args = step.get("Type"), step.get("Arguments") or {}
    if kind not in emulated:
        return (f"a {kind} step cannot be emulated (it needs {kind} itself on AWS); emulate runs "
                f"{', '.join(emulated)} steps")
    if kind == "Processing":
        entry = (args.get("AppSpecification") or {}).get("ContainerEntrypoint") or []
        if not entry or Path(entry[0]).name not in ("python", "python3", "bash", "sh"):
            image = (args.get("AppSpecification") or {}).get("ImageUri")
            return (f"image {image} runs {entry or 'its own entrypoint'}; emulate runs processing jobs whose "
                    "entrypoint is python3 (or a shell) over a script in the inputs")
        from pipelines.emulate.processing import cannot_emulate as cannot_process

        return cannot_process(args)
    if kind == "Training":
        algorithm = args.get("AlgorithmSpecification") or {}
        channels = {c.get("ChannelName") for c in args.get("InputDataConfig", [])}
        if not algorithm.get("ContainerEntrypoint") or "sm_drivers" not in channels:
            return (f"image {algorithm.get('TrainingImage') or algorithm.get('AlgorithmName')} is not run through "
                    "SDK v3's ModelTrainer driver (SourceCode: an sm_drivers channel and ContainerEntrypoint); "
                    "emulate runs that form")
        if int((args.get("ResourceConfig") or {}).get("InstanceCount", 1)) != 1:
            return "emulate runs training on one instance; set resources.instance_count: 1 for emulate"
    if kind == "Tuning":
        from pipelines.emulate.tuning import cannot_emulate

        return cannot_emulate(kind, args)
    return None


def parameter_values(source: str, definition: dict[str, Any], params: list[str], s3: Any, pipeline: str) -> dict:
    """Defaults overridden by --param k=v with the service's types; a local path is uploaded, its s3:// URI used."""
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    values = {name: p.get("DefaultValue") for name, p in declared.items()}
    problems = []
    for item in params:
        name, text = split_param(item) or (item.partition("=")[0], "")
        if "=" not in item or name not in declared:
            problems.append(Problem(source, None, f"--param {item}", "not NAME=VALUE of a declared parameter"
                                    + did_you_mean(name, declared)))
            continue
        try:
            values[name] = _typed(declared[name], text)
        except ValueError as exc:
            problems.append(Problem(source, None, f"--param {name}", str(exc)))
    for name, value in values.items():
        if value is None:
            problems.append(Problem(source, None, f"parameters.{name}", "has no default; pass --param"))
        elif declared[name].get("Type", "String") == "String" and value and not str(value).startswith("s3://") \
                and Path(str(value)).exists():
            values[name] = _upload(s3, Path(str(value)), pipeline)
    if problems:
        raise ConfigError(problems)
    return values


def _typed(declared: dict[str, Any], text: str) -> Any:
    value = parse_param(declared.get("Type", "String"), text)
    allowed = declared.get("EnumValues")
    if allowed and value not in allowed:
        raise ValueError(f"{value!r} is not one of its EnumValues {allowed}")
    return value


def _upload(s3: Any, path: Path, pipeline: str) -> str:
    from pipelines.emulate.jobs import upload

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    base = path if path.is_dir() else path.parent
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(base)).encode() + file.read_bytes())
    prefix = f"{pipeline}/emulate-inputs/{digest.hexdigest()[:16]}"
    upload(s3, base, f"s3://{EMULATE_BUCKET}/{prefix}", files)
    return f"s3://{EMULATE_BUCKET}/{prefix}" + (f"/{path.name}" if path.is_file() else "")


def _read_definition(path: str) -> tuple[str, dict[str, Any], str, set[str]]:
    try:
        definition = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError([Problem(path, None, "--definition", f"cannot read it: {exc.strerror or exc}")]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([Problem(path, exc.lineno, "--definition", f"not JSON: {exc.msg} (column {exc.colno})")]) \
            from None
    if "PipelineDefinition" in definition:  # describe-pipeline(-definition-for-execution) output
        described = definition
        definition = json.loads(described["PipelineDefinition"])
        if isinstance(definition, dict) and described.get("ParallelismConfiguration"):  # the pipeline's, kept
            definition.setdefault("ParallelismConfiguration", described["ParallelismConfiguration"])
    if not isinstance(definition, dict) or not isinstance(definition.get("Steps"), list):
        raise ConfigError([Problem(path, None, "--definition", "not a pipeline definition (no Steps list)")])
    import os

    return path, definition, os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), _buckets(definition)


def _buckets(definition: Any) -> set[str]:
    """Buckets a definition names: in s3:// strings and in the SDK's Join(["s3:/", bucket, ...])."""
    found: set[str] = set()
    text = json.dumps(definition)
    found.update(re.findall(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])", text))
    found.update(re.findall(r'"Values": \["s3:/", "([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])"', text))
    return found


def _ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    from pipelines.sagemaker.offline import create_bucket

    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        create_bucket(s3, bucket, region)


def _start(sm: Any, name: str, definition: dict[str, Any], role: str, values: dict[str, Any]) -> str:
    parallelism = definition.get("ParallelismConfiguration")  # a CreatePipeline/StartPipelineExecution argument
    body = {"PipelineName": name, "RoleArn": role, "PipelineDefinition": json.dumps(
        {k: v for k, v in definition.items() if k != "ParallelismConfiguration"})}
    limit = {"ParallelismConfiguration": parallelism} if parallelism else {}
    try:
        sm.create_pipeline(**body, **limit)
    except sm.exceptions.ClientError:
        sm.update_pipeline(**body, **limit)
    started = sm.start_pipeline_execution(PipelineName=name, **limit, PipelineParameters=[
        {"Name": k, "Value": value_text(v)} for k, v in values.items()])
    return started["PipelineExecutionArn"]
