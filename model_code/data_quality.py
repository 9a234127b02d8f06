"""Data-quality gates: a YAML suite checked with Great Expectations 1.x, with Data Docs as HTML.

Besides one entry per file, the suite has a `join_and_split` section: the rules for the joined data
(how many claims may lack a customer) and for each split (how many rows of each class it must hold).
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ALLOWED_RULES = {"type", "nullable", "max_null_ratio", "values", "min", "max", "unique"}
FILE_RULES = {"row_count", "columns"}
# The joined data and the splits: every claim needs a customer, every split both classes (5 rows each).
DATASET = "join_and_split"
DATASET_DEFAULTS: dict[str, float | int] = {
    "min_join_coverage": 1.0, "min_positives_per_split": 5, "min_negatives_per_split": 5}
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
        if file == DATASET:
            continue
        if not str(file).endswith(".csv"):
            raise DataError(f"expectation suite {path.name}: unknown section {file!r}{_did_you_mean(file, [DATASET])}; "
                            f"expected a file name (*.csv) or {DATASET}")
        if not isinstance(rules, dict) or set(rules) - FILE_RULES:
            found = sorted(set(rules) - FILE_RULES) if isinstance(rules, dict) else [type(rules).__name__]
            raise DataError(f"expectation suite {path.name}: {file}: unknown key(s) {found}; "
                            f"allowed: {sorted(FILE_RULES)}")
        for column, rule in (rules.get("columns") or {}).items():
            unknown = set(rule) - ALLOWED_RULES
            if unknown:
                raise DataError(f"expectation suite {path.name}: {file} column {column}: unknown rule(s) "
                                f"{sorted(unknown)}; allowed: {sorted(ALLOWED_RULES)}")
    suite[DATASET] = dataset_rules(suite.get(DATASET), path.name)
    return suite


def _did_you_mean(word: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def dataset_rules(section: Any, suite_name: str) -> dict[str, Any]:
    """The suite's join_and_split section with defaults filled in; a typo or a bad value is named."""
    where = f"expectation suite {suite_name}: {DATASET}"
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise DataError(f"{where} must map rule names to values, e.g. min_positives_per_split: 5")
    rules: dict[str, Any] = dict(DATASET_DEFAULTS)
    for key, value in section.items():
        if key not in DATASET_DEFAULTS:
            raise DataError(f"{where}: unknown rule {key!r}{_did_you_mean(key, list(DATASET_DEFAULTS))}; "
                            f"allowed: {sorted(DATASET_DEFAULTS)}")
        if key == "min_join_coverage":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise DataError(f"{where}.{key}: {value!r} is not a share between 0 and 1 "
                                "(1.0: every claim must have a customer)")
            value = float(value)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"{where}.{key}: {value!r} is not a whole number of rows of at least 1 "
                            "(a model needs both classes in every split)")
        rules[key] = value
    return rules


def join_coverage(left: pd.DataFrame, right: pd.DataFrame, key: str, files: tuple[str, str],
                  nouns: tuple[str, str], min_coverage: float, suite_name: str) -> tuple[pd.DataFrame, str | None]:
    """Inner join of left and right on key (nouns: ("claim", "customer")), held to min_join_coverage.

    Returns the joined rows and, when rows were dropped but no more than allowed, a line saying how many;
    raises a DataError (counts, examples, the rule, the fix) when more were."""
    matched = left[key].isin(right[key])
    total, missing = len(left), int((~matched).sum())
    try:
        joined = left.merge(right, on=key, how="inner", validate="one_to_one")
    except pd.errors.MergeError:
        dupes = ", ".join(f"{n}: {int(f[key].duplicated().sum()):,}" for n, f in zip(files, (left, right)))
        raise DataError(f"cannot join {files[0]} and {files[1]} on {key}: duplicated values ({dupes}); each "
                        f"{key} must appear once per file (suite: unique: true)") from None
    if not missing:
        return joined, None
    examples = ", ".join(str(v) for v in left.loc[~matched, key].head(5))
    what = (f"{missing:,} of {total:,} {nouns[0]}s ({missing / total:.1%}) have no {nouns[1]}: their {key} is not "
            f"in {files[1]} (e.g. {examples})")
    rule = f"{DATASET}.min_join_coverage: {float(min_coverage)} in {suite_name}"
    if (total - missing) / total < min_coverage:
        need = f"every {nouns[0]}" if min_coverage >= 1 else f"at least {min_coverage:.1%} of {nouns[0]}s"
        raise DataError(f"{what}; {need} must have one (suite: {rule}) — add the missing {nouns[1]}s to "
                        f"{files[1]}, or lower min_join_coverage to drop such {nouns[0]}s")
    return joined, f"dropped {what}; the suite allows it ({rule})"


def check_classes(splits: dict[str, pd.DataFrame], label: str, rules: dict[str, Any], source: str,
                  suite_name: str) -> None:
    """Every split holds at least min_positives_per_split rows with label 1 and min_negatives_per_split
    with label 0; otherwise a DataError, one line per class: the counts per split, the rule, the fix."""
    problems = []
    rows = sum(len(f) for f in splits.values())
    for value, rule in ((1, "min_positives_per_split"), (0, "min_negatives_per_split")):
        need = rules[rule]
        counts = {split: int((frame[label] == value).sum()) for split, frame in splits.items()}
        if min(counts.values()) >= need:
            continue
        total = sum(counts.values())
        if total >= need * len(splits):
            fix = "give the short split a larger share of the rows (--train-ratio, --validation-ratio)"
        elif total == 0:
            fix = f"add rows with {label}={value}, or check how the {label} column is encoded"
        else:
            fix = f"add rows with {label}={value}"
        every = f": every row is {label}={1 - value}" if total == 0 and rows else ""
        per_split = ", ".join(f"{s} {c:,}" for s, c in counts.items())
        problems.append(f"too few {label}={value} rows: {per_split} ({source} has {total:,} in {rows:,}{every}); "
                        f"need at least {need} in every split to train and evaluate a model "
                        f"(suite: {DATASET}.{rule} in {suite_name}) — {fix}")
    if problems:
        raise DataError("\n".join(problems))


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
