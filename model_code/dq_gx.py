"""The same suite checked by Great Expectations 1.x on pandas frames (opt-in: DATA_QUALITY_ENGINE=great_expectations).

Kept as the reference the Arrow checker is held to (tests/model_code/test_data_quality.py); importing GX takes
about 5 s, so the pipeline uses it only when asked. Its results come back as the same rows as dq_checks.validate_tables.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from dq_checks import expectations

RESULT_KEYS = ("observed_value", "element_count", "unexpected_count", "unexpected_percent", "partial_unexpected_list")


def _class_name(kind: str) -> str:
    return "".join(part.title() for part in kind.split("_"))


def validate_frames(frames: dict[str, pd.DataFrame], suite: dict[str, Any]) -> list[dict[str, Any]]:
    """Every expectation of every file, checked by GX: one result row each, in the suite's order."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    string_type = "str" if pd.__version__ >= "3" else "object"
    workdir = Path(tempfile.mkdtemp(prefix="gx-"))
    try:
        context = gx.get_context(mode="file", project_root_dir=str(workdir))
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("raw")
        rows: list[dict[str, Any]] = []
        for file, frame in frames.items():
            name = file.replace(".", "_")
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
            wanted = expectations(suite.get(file, {}), list(frame.columns), string_type)
            # built whole, then stored once: a stored suite rewrites its file on every add_expectation
            gx_suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=[
                getattr(gx.expectations, _class_name(e["type"]))(**e["kwargs"]) for e in wanted]))
            definition = context.validation_definitions.add(gx.ValidationDefinition(data=batch, suite=gx_suite,
                                                                                    name=name))
            result = definition.run(batch_parameters={"dataframe": frame}, result_format={"result_format": "SUMMARY"})
            by_key = {_key(r.expectation_config.type, r.expectation_config.kwargs): r for r in result.results}
            for expectation in wanted:
                found = by_key[_key(expectation["type"], expectation["kwargs"])]
                info = found.exception_info or {}
                raised = info.get("raised_exception") and info.get("exception_message")
                rows.append({"file": file, "expectation": expectation["type"], "kwargs": expectation["kwargs"],
                             "success": bool(found.success),
                             "result": {k: v for k, v in (found.result or {}).items() if k in RESULT_KEYS},
                             "exception": raised or None})
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _key(kind: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
    return kind, kwargs.get("column")  # a suite has each expectation once per column
