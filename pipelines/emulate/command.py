"""`sagepipe emulate`: compile (or read) a definition, check it as CreatePipeline would, run it on moto."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError, Problem, did_you_mean

UPLOAD_BUCKET = "sagepipe-emulate"
TYPES = {"String": str, "Integer": int, "Float": float, "Boolean": bool}


def emulate(spec: Any, definition_file: str | None, params: list[str], root: Path, max_parallel: int | None,
            as_json: bool, tail: int = 0) -> int:
    """Run a compiled config (spec) or a definition file; the exit code of `sagepipe run`."""
    from pipelines.emulate.server import emulated_aws
    from pipelines.sagemaker.offline import shared_botocore_loader

    # the server starts first and comes up while the definition compiles; one botocore loader serves both
    with emulated_aws(root / "emulate") as connect, shared_botocore_loader():
        if definition_file:
            source, definition, region, buckets = _read_definition(definition_file)
            name, artifacts, role = Path(definition_file).stem, {}, "arn:aws:iam::123456789012:role/emulate"
        else:
            from pipelines.sagemaker.commands import compile_pipeline_or_explain

            compiled = compile_pipeline_or_explain(spec, root / "compiled")
            source, definition, region = spec.source_file, compiled.definition, compiled.region
            buckets, name, artifacts, role = {compiled.bucket}, compiled.name, compiled.artifacts, compiled.role
        refuse(source, definition)
        connect(region)
        import boto3

        s3, sm = boto3.client("s3", region_name=region), boto3.client("sagemaker", region_name=region)
        for bucket in sorted(buckets | {UPLOAD_BUCKET}):
            _ensure_bucket(s3, bucket, region)
        from pipelines.emulate.jobs import in_parallel

        code_bucket = next(iter(buckets))
        in_parallel(lambda key, data: s3.put_object(Bucket=code_bucket, Key=key, Body=data), sorted(artifacts.items()))
        values = parameter_values(source, definition, params, s3, name)
        arn = _start(sm, name, definition, role, values)
        pipeline = _runnable(spec, source, name, definition, values, arn, s3, sm, root)
        return _run(pipeline, root, max_parallel, as_json, arn, tail)


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
        name, sep, text = item.partition("=")
        if not sep or name not in declared:
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
    kind = declared.get("Type", "String")
    if kind == "Boolean":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{text!r} is not a Boolean (true or false)")
        value: Any = text.lower() == "true"
    else:
        try:
            value = TYPES[kind](text)
        except ValueError:
            raise ValueError(f"{text!r} is not an {kind}") from None
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
    upload(s3, base, f"s3://{UPLOAD_BUCKET}/{prefix}", files)
    return f"s3://{UPLOAD_BUCKET}/{prefix}" + (f"/{path.name}" if path.is_file() else "")


def _read_definition(path: str) -> tuple[str, dict[str, Any], str, set[str]]:
    try:
        definition = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError([Problem(path, None, "--definition", f"cannot read it: {exc.strerror or exc}")]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([Problem(path, exc.lineno, "--definition", f"not JSON: {exc.msg} (column {exc.colno})")]) \
            from None
    if "PipelineDefinition" in definition:  # describe-pipeline(-definition-for-execution) output
        definition = json.loads(definition["PipelineDefinition"])
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
    body = {"PipelineName": name, "PipelineDefinition": json.dumps(definition), "RoleArn": role}
    try:
        sm.create_pipeline(**body)
    except sm.exceptions.ClientError:
        sm.update_pipeline(**body)
    started = sm.start_pipeline_execution(PipelineName=name, PipelineParameters=[
        {"Name": k, "Value": json.dumps(v) if isinstance(v, bool) else str(v)} for k, v in values.items()])
    return started["PipelineExecutionArn"]


def _runnable(spec: Any, source: str, name: str, definition: dict[str, Any], values: dict[str, Any], arn: str,
              s3: Any, sm: Any, root: Path) -> Any:
    """A PipelineSpec of emulated steps: the runner's scheduler, state, progress and tracking run it."""
    from pipelines.emulate.expressions import Scope
    from pipelines.emulate.steps import Emulation, EmulatedStep
    from pipelines.sagemaker.definition_checks import all_steps, own_gets
    from pipelines.spec import EnvSettings, PipelineSpec

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    execution = {"PipelineExecutionId": arn.rsplit("/", 1)[-1], "PipelineExecutionArn": arn, "PipelineName": name,
                 "PipelineArn": arn.split("/execution/")[0], "StartDateTime": now, "CurrentDateTime": now}
    emulation = Emulation(name, arn, s3, sm, Scope(values, execution), root / "emulate")
    emulation.scope.read_property_file = emulation.read_property_file
    raw_steps = list(all_steps(definition["Steps"]))
    emulation.steps = {s["Name"]: s for s in raw_steps}

    steps = []
    for raw in raw_steps:
        upstream = set(raw.get("DependsOn") or [])
        upstream.update(get.split(".")[1] for get, _, _ in own_gets(raw) if get.startswith("Steps."))
        args = raw.get("Arguments") or {}
        branches = {"if_true": [s["Name"] for s in args.get("IfSteps", [])],
                    "if_false": [s["Name"] for s in args.get("ElseSteps", [])]} if raw["Type"] == "Condition" else {}
        steps.append(EmulatedStep.model_construct(
            name=raw["Name"], type=f"sagemaker:{raw['Type']}", description=raw.get("Description", ""),
            depends_on=sorted(upstream - {raw["Name"]}), retry=None, cache=None, raw=raw, emulation=emulation,
            branches=branches))
    return PipelineSpec.model_construct(
        name=name, description="", parameters={}, defaults=spec.defaults if spec else PipelineSpec.model_fields[
            "defaults"].default, steps=tuple(steps), env=getattr(spec, "env", "emulate"),
        settings=EnvSettings(tracking_uri=_local_tracking(spec)), source_file=source,
        repo_root=getattr(spec, "repo_root", "."), param_values=values)


def _local_tracking(spec: Any) -> str | None:
    """Emulated runs are tracked where local runs are: the local env's tracking URI."""
    if spec is None:
        return None
    from pipelines.loader import load_pipeline

    try:
        return load_pipeline(spec.source_file, "local").settings.tracking_uri
    except ConfigError:
        return None


def _run(pipeline: Any, root: Path, max_parallel: int | None, as_json: bool, arn: str, tail: int = 0) -> int:
    from pipelines.commands import drive

    import sys

    print(f"emulating SageMaker pipeline execution {arn}", file=sys.stderr if as_json else sys.stdout, flush=True)
    return drive(pipeline, root, max_parallel, as_json, False, lambda runner: runner.run(extra={"execution_arn": arn}),
                 f"emulated execution of {pipeline.name}", tail)
