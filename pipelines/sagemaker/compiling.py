"""Compiling a pipeline for SageMaker, reusing an unchanged earlier compile: what compile, upsert and emulate
share."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def compile_pipeline_or_explain(spec: Any, cache: Path | None = None) -> Any:
    """compile_pipeline: what SageMaker cannot express is a ConfigError naming the step and field (raised by the
    step type or the compiler); any other exception is a defect and keeps its traceback. With a cache folder, an
    unchanged config, code and SDK reuse the earlier compile (compile_cache.py)."""
    from pipelines.sagemaker.compile_cache import compiled_or_cached
    from pipelines.sagemaker.compiler import compile_pipeline

    return compiled_or_cached(spec, cache, compile_pipeline)
