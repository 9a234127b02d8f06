"""What `sagepipe compile|upsert|start|status|executions` do."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def compile_command(spec: Any, output: str | None, cache: Path | None = None) -> int:
    from pipelines.fsutil import atomic_write_text

    compiled = compile_pipeline_or_explain(spec, cache)
    if output:
        atomic_write_text(Path(output), compiled.json())
        size = sum(len(b) for b in compiled.artifacts.values())
        how = f"; {compiled.reused}" if compiled.reused else ""
        print(f"compiled {spec.name} (env {spec.env}{how}): {len(compiled.definition['Steps'])} top-level steps, "
              f"{len(compiled.artifacts)} code files ({size / 1024:.0f} KiB) to upload -> {output}", file=sys.stderr)
    else:
        sys.stdout.write(compiled.json())
    return 0


def compile_pipeline_or_explain(spec: Any, cache: Path | None = None) -> Any:
    """compile_pipeline: what SageMaker cannot express is a ConfigError naming the step and field (raised by the
    step type or the compiler); any other exception is a defect and keeps its traceback. With a cache folder, an
    unchanged config, code and SDK reuse the earlier compile (compile_cache.py)."""
    from pipelines.sagemaker.compile_cache import compiled_or_cached
    from pipelines.sagemaker.compiler import compile_pipeline

    return compiled_or_cached(spec, cache, compile_pipeline)


def upsert_command(spec: Any, cache: Path | None = None) -> int:
    from pipelines.sagemaker import aws

    compiled = compile_pipeline_or_explain(spec, cache)
    uploaded = aws.upload_artifacts(compiled)
    arn, created = aws.upsert(compiled, spec.description.strip())
    print(f"{'created' if created else 'updated'} pipeline {arn}\n  code: {uploaded} new of "
          f"{len(compiled.artifacts)} files uploaded to s3://{compiled.bucket}/{spec.name}/artifacts/")
    return 0


def start_command(spec: Any, given: list[str], wait: bool, as_json: bool) -> int:
    from pipelines.sagemaker import aws

    region = spec.settings.sagemaker.region
    names = {text.partition("=")[0] for text in given}
    arn = aws.start(spec.name, region, {n: spec.param_values[n] for n in names})
    print(f"started {arn}", file=sys.stderr if as_json else sys.stdout)
    if not wait:
        if as_json:
            print(json.dumps({"arn": arn, "status": "Executing"}, indent=2))
        return 0
    return status_command(arn, True, as_json)


def status_command(arn: str, wait: bool, as_json: bool) -> int:
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


def executions_command(spec: Any, as_json: bool) -> int:
    from pipelines.sagemaker import aws

    found = aws.executions(spec.name, spec.settings.sagemaker.region)
    if as_json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(f"no executions of {spec.name} yet; start one with: sagepipe start CONFIG --env {spec.env}")
    for e in found:
        print(f"{e['status']:<12} {e['started']:<27} {e['arn']}")
    return 0
