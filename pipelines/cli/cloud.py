"""`sagepipe compile|upsert|start|status|executions list|endpoint-params`: the pipeline on SageMaker."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pipelines.cli.support import check_cloud, load_spec, state_root
from pipelines.values import split_param

if TYPE_CHECKING:
    from pipelines.spec import PipelineSpec


def compile_command(args: argparse.Namespace) -> int:
    from pipelines.fsutil import atomic_write_text
    from pipelines.sagemaker.compiling import compile_pipeline_or_explain

    spec = load_spec(args)
    check_cloud(spec)  # each job's requirements fit its image (asked before any compile cache)
    compiled = compile_pipeline_or_explain(spec, state_root() / "compiled")
    if args.output:
        atomic_write_text(Path(args.output), compiled.json())
        size = sum(len(b) for b in compiled.artifacts.values())
        how = f"; {compiled.reused}" if compiled.reused else ""
        print(f"compiled {spec.name} (env {spec.env}{how}): {len(compiled.definition['Steps'])} top-level steps, "
              f"{len(compiled.artifacts)} code files ({size / 1024:.0f} KiB) to upload -> {args.output}",
              file=sys.stderr)
    else:
        sys.stdout.write(compiled.json())
    return 0


def upsert_command(args: argparse.Namespace) -> int:
    from pipelines.sagemaker import aws
    from pipelines.sagemaker.compiling import compile_pipeline_or_explain

    spec = load_spec(args)
    check_cloud(spec)
    compiled = compile_pipeline_or_explain(spec, state_root() / "compiled")
    uploaded = aws.upload_artifacts(compiled)
    arn, created = aws.upsert(compiled, spec.description.strip())
    print(f"{'created' if created else 'updated'} pipeline {arn}\n  code: {uploaded} new of "
          f"{len(compiled.artifacts)} files uploaded to s3://{compiled.bucket}/{spec.name}/artifacts/")
    return 0


def start_command(args: argparse.Namespace) -> int:
    """Start an execution with the parameters given on the command line (typed and checked as `run` does);
    the others keep the pipeline's defaults on SageMaker."""
    from pipelines.sagemaker import aws

    spec = load_spec(args)
    names = {(split_param(text) or (text, ""))[0] for text in args.param}
    arn = aws.start(spec.name, _region(spec), {n: spec.param_values[n] for n in names})
    print(f"started {arn}", file=sys.stderr if args.json else sys.stdout)
    if not args.wait:
        if args.json:
            print(json.dumps({"arn": arn, "status": "Executing"}, indent=2))
        return 0
    return execution_status(arn, True, args.json)


def status_command(args: argparse.Namespace) -> int:
    return execution_status(args.execution_arn, args.wait, args.json)


def execution_status(arn: str, wait: bool, as_json: bool) -> int:
    """An execution's status and steps (followed to the end with wait); exit 1 when it failed or stopped."""
    from pipelines.errors import UsageError
    from pipelines.sagemaker import aws

    if not arn.startswith("arn:aws") or ":pipeline/" not in arn:
        raise UsageError(f"'{arn}' is not a pipeline execution ARN "
                         "(arn:aws:sagemaker:<region>:<account>:pipeline/<name>/execution/<id>)")
    shown = lambda s: print(f"{s['status']}: {s['arn']}", file=sys.stderr)  # noqa: E731
    status = aws.wait(arn, report=shown if not as_json else None) if wait else aws.describe(arn)
    if as_json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(f"{status['status']}  {arn}")
        for step in status["steps"]:
            print(f"  {step['name']:<24} {step['status']:<12} {step.get('failure') or ''}")
        if status.get("failure"):
            print(f"  failure: {status['failure']}")
    return 0 if status["status"] in ("Succeeded", "Executing", None) else 1


def executions_list_command(args: argparse.Namespace) -> int:
    from pipelines.sagemaker import aws

    spec = load_spec(args)
    found = aws.executions(spec.name, _region(spec))
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(f"no executions of {spec.name} yet; start one with: sagepipe start CONFIG --env {spec.env}")
    for e in found:
        print(f"{e['status']:<12} {e['started']:<27} {e['arn']}")
    return 0


def _region(spec: PipelineSpec) -> str:
    # an env without one passes None on: aws.explained says to set sagemaker.region in the env file
    return cast(str, spec.settings.sagemaker.region)


def endpoint_params_command(args: argparse.Namespace) -> int:
    from pipelines.sagemaker.endpoint_params import endpoint_params_command as print_endpoint_params

    return print_endpoint_params(load_spec(args), args.model_package, args.step)
