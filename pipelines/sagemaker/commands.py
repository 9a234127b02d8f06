"""What `sagepipe compile|upsert|start|status|executions` do."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def compile_command(spec: Any, output: str | None) -> int:
    from pipelines.fsutil import atomic_write_text
    from pipelines.sagemaker.compiler import compile_pipeline

    compiled = compile_pipeline_or_explain(spec)
    if output:
        atomic_write_text(Path(output), compiled.json())
        size = sum(len(b) for b in compiled.artifacts.values())
        print(f"compiled {spec.name} (env {spec.env}): {len(compiled.definition['Steps'])} top-level steps, "
              f"{len(compiled.artifacts)} code files ({size / 1024:.0f} KiB) to upload -> {output}", file=sys.stderr)
    else:
        sys.stdout.write(compiled.json())
    return 0


def compile_pipeline_or_explain(spec: Any) -> Any:
    """compile_pipeline, with a step that cannot be expressed on SageMaker reported as a config error."""
    from pipelines.errors import ConfigError, Problem
    from pipelines.sagemaker.compiler import compile_pipeline

    try:
        return compile_pipeline(spec)
    except ValueError as exc:
        raise ConfigError([Problem(spec.source_file, None, "", str(exc))]) from None
