"""Data-quality gates: a YAML suite checked with Great Expectations 1.x, with Data Docs as HTML."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ALLOWED_RULES = {"type", "nullable", "max_null_ratio", "values", "min", "max", "unique"}
INT_TYPES = ["int64", "int32", "int16", "int8", "Int64"]
FLOAT_TYPES = ["float64", "float32", "int64", "int32"]


class DataError(Exception):
    """Input data that cannot be used; the message says which file and what is wrong."""


def load_suite(path: Path) -> dict[str, Any]:
    """Read and check the suite file's shape (so a typo in it is named, not ignored)."""
    try:
        suite = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"expectation suite {path.name} is not valid YAML: {exc}") from None
    if not isinstance(suite, dict):
        raise DataError(f"expectation suite {path.name} must map file names to rules")
    for file, rules in suite.items():
        for column, rule in (rules.get("columns") or {}).items():
            unknown = set(rule) - ALLOWED_RULES
            if unknown:
                raise DataError(f"expectation suite {path.name}: {file} column {column}: unknown rule(s) "
                                f"{sorted(unknown)}; allowed: {sorted(ALLOWED_RULES)}")
    return suite


def _expectations(gx: Any, rules: dict[str, Any], frame: pd.DataFrame) -> list[Any]:
    ex = gx.expectations
    found: list[Any] = []
    if "row_count" in rules:
        bounds = rules["row_count"]
        found.append(ex.ExpectTableRowCountToBeBetween(min_value=bounds.get("min"), max_value=bounds.get("max")))
    string_type = "str" if pd.__version__ >= "3" else "object"
    for column, rule in (rules.get("columns") or {}).items():
        found.append(ex.ExpectColumnToExist(column=column))
        if column not in frame.columns:
            continue  # the existence check reports it; the rest would only repeat it
        kind = rule.get("type")
        if kind == "int":
            found.append(ex.ExpectColumnValuesToBeInTypeList(column=column, type_list=INT_TYPES))
        elif kind == "float":
            found.append(ex.ExpectColumnValuesToBeInTypeList(column=column, type_list=FLOAT_TYPES))
        elif kind == "str":
            found.append(ex.ExpectColumnValuesToBeOfType(column=column, type_=string_type))
        if rule.get("nullable") is False:
            found.append(ex.ExpectColumnValuesToNotBeNull(column=column))
        elif "max_null_ratio" in rule:
            found.append(ex.ExpectColumnValuesToNotBeNull(column=column, mostly=1 - rule["max_null_ratio"]))
        if "values" in rule:
            found.append(ex.ExpectColumnValuesToBeInSet(column=column, value_set=rule["values"]))
        if "min" in rule or "max" in rule:
            found.append(ex.ExpectColumnValuesToBeBetween(column=column, min_value=rule.get("min"),
                                                          max_value=rule.get("max")))
        if rule.get("unique"):
            found.append(ex.ExpectColumnValuesToBeUnique(column=column))
    return found


def validate(frames: dict[str, pd.DataFrame], suite: dict[str, Any], docs_out: Path) -> list[str]:
    """Check every file against its rules; write Data Docs to docs_out; return failure messages."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    workdir = Path(tempfile.mkdtemp(prefix="gx-"))
    try:
        context = gx.get_context(mode="file", project_root_dir=str(workdir))
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("raw")
        definitions, params = [], {}
        for file, frame in frames.items():
            name = file.replace(".", "_")
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
            gx_suite = context.suites.add(gx.ExpectationSuite(name=name))
            for expectation in _expectations(gx, suite.get(file, {}), frame):
                gx_suite.add_expectation(expectation)
            definitions.append(context.validation_definitions.add(
                gx.ValidationDefinition(data=batch, suite=gx_suite, name=name)))
            params[name] = frame
        failures = []
        for definition in definitions:
            checkpoint = context.checkpoints.add(gx.Checkpoint(
                name=f"{definition.name}-check", validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="docs")],
                result_format={"result_format": "SUMMARY"}))
            result = checkpoint.run(batch_parameters={"dataframe": params[definition.name]})
            file = definition.name.replace("_", ".")
            for run in result.run_results.values():
                failures += [describe_failure(file, r) for r in run.results if not r.success]
        site = workdir / "gx" / "uncommitted" / "data_docs" / "local_site"
        shutil.copytree(site, docs_out, dirs_exist_ok=True)
        return failures
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def describe_failure(file: str, result: Any) -> str:
    """One line: file, column, expectation and what was observed."""
    config = result.expectation_config
    kwargs = config.kwargs
    column = f"column '{kwargs['column']}'" if "column" in kwargs else "table"
    observed = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        what = f"could not be checked: {result.exception_info.get('exception_message', '')[:200]}"
    elif "observed_value" in observed:
        what = f"observed {observed['observed_value']!r}"
    elif "unexpected_count" in observed:
        sample = sorted({str(v) for v in (observed.get("partial_unexpected_list") or [])})[:5]
        what = (f"{observed['unexpected_count']} unexpected values "
                f"({observed.get('unexpected_percent', 0):.1f}%), e.g. {sample}")
    else:
        what = "column not found" if config.type == "expect_column_to_exist" else "failed"
    expected = {k: v for k, v in kwargs.items() if k not in {"column", "batch_id"}}
    return f"{file}: {column}: {config.type}{expected if expected else ''} failed — {what}"
