"""Data-quality gates: a YAML suite of Great Expectations expectations, checked on Arrow tables, and a report.

The per-file expectations are checked by dq_checks (pyarrow, well under a second) or, with
DATA_QUALITY_ENGINE=great_expectations, by Great Expectations itself (dq_gx; its import alone takes ~5 s);
dq_report writes the self-contained HTML report and data_quality.json. Besides one entry per file, the suite
has a `join_and_split` section: the rules for the joined data (how many claims may lack a customer) and for
each split (how many rows of each class it must hold).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ALLOWED_RULES = {"type", "nullable", "max_null_ratio", "values", "min", "max", "unique"}
FILE_RULES = {"row_count", "columns"}
# The joined data and the splits: every claim needs a customer, every split both classes (5 rows each).
DATASET = "join_and_split"
DATASET_DEFAULTS: dict[str, float | int] = {
    "min_join_coverage": 1.0, "min_positives_per_split": 5, "min_negatives_per_split": 5}
ENGINES = ("arrow", "great_expectations")


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


def join_coverage(left: Any, right: Any, key: str, files: tuple[str, str], nouns: tuple[str, str],
                  min_coverage: float, suite_name: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Inner join of two Arrow tables on key (nouns: ("claim", "customer")), held to min_join_coverage.

    Returns, for each joined row in the left table's order, its row in left and in right, and, when rows were
    dropped but no more than allowed, a line saying how many; raises a DataError (counts, examples, the rule,
    the fix) when more were, or when a key is not unique (as pandas' one_to_one merge would)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    left_keys, right_keys = left.column(key), right.column(key)
    whole_numbers = all(pa.types.is_integer(k.type) and not k.null_count for k in (left_keys, right_keys))
    if whole_numbers:  # sorted look-ups: ids already in order cost one pass, others a sort
        left_numbers, right_numbers = left_keys.to_numpy(), right_keys.to_numpy()
        dupes = {n: _duplicates(k) for n, k in zip(files, (left_numbers, right_numbers))}
    else:
        dupes = {n: len(k) - pc.count_distinct(k, mode="all").as_py() for n, k in zip(files, (left_keys, right_keys))}
    if any(dupes.values()):
        listed = ", ".join(f"{n}: {d:,}" for n, d in dupes.items())
        raise DataError(f"cannot join {files[0]} and {files[1]} on {key}: duplicated values ({listed}); each "
                        f"{key} must appear once per file (suite: unique: true)")
    if whole_numbers:
        matched, right_rows = _lookup(left_numbers, right_numbers)
    else:
        left_keys, right_keys = (k.cast(k.type.value_type) if pa.types.is_dictionary(k.type) else k
                                 for k in (left_keys, right_keys))
        try:
            right_keys = right_keys.cast(left_keys.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(f"cannot join {files[0]} and {files[1]} on {key}: its values are {left_keys.type} in "
                            f"{files[0]} but {right_keys.type} in {files[1]}; give both files the same kind of "
                            f"{key} (suite: type)") from None
        position = pc.index_in(left_keys, value_set=right_keys.combine_chunks()).to_numpy(zero_copy_only=False)
        matched = ~np.isnan(position) if position.dtype.kind == "f" else np.ones(len(position), dtype=bool)
        right_rows = position[matched].astype(np.int64)
    left_rows = np.flatnonzero(matched)
    total, missing = len(left_keys), int((~matched).sum())
    if not missing:
        return left_rows, right_rows, None
    examples = ", ".join(str(v) for v in left_keys.take(np.flatnonzero(~matched)[:5]).to_pylist())
    what = (f"{missing:,} of {total:,} {nouns[0]}s ({missing / total:.1%}) have no {nouns[1]}: their {key} is not "
            f"in {files[1]} (e.g. {examples})")
    rule = f"{DATASET}.min_join_coverage: {float(min_coverage)} in {suite_name}"
    if (total - missing) / total < min_coverage:
        need = f"every {nouns[0]}" if min_coverage >= 1 else f"at least {min_coverage:.1%} of {nouns[0]}s"
        raise DataError(f"{what}; {need} must have one (suite: {rule}) — add the missing {nouns[1]}s to "
                        f"{files[1]}, or lower min_join_coverage to drop such {nouns[0]}s")
    return left_rows, right_rows, f"dropped {what}; the suite allows it ({rule})"


def _in_order(keys: np.ndarray) -> bool:
    return len(keys) < 2 or bool(np.all(keys[1:] > keys[:-1]))


def _duplicates(keys: np.ndarray) -> int:
    """How many rows repeat an earlier row's key (pandas' duplicated().sum())."""
    if _in_order(keys):
        return 0
    ordered = np.sort(keys)
    return int((ordered[1:] == ordered[:-1]).sum())


def _lookup(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For unique keys: which left keys are in right, and the right row of each that is."""
    order = np.arange(len(right)) if _in_order(right) else np.argsort(right, kind="stable")
    ordered = right[order]
    slot = np.minimum(np.searchsorted(ordered, left), max(len(ordered) - 1, 0))
    matched = ordered[slot] == left if len(ordered) else np.zeros(len(left), dtype=bool)
    return matched, order[slot[matched]]


def check_classes(counts: dict[str, dict[int, int]], label: str, rules: dict[str, Any], source: str,
                  suite_name: str) -> None:
    """Every split ({split: {label value: rows}}) holds at least min_positives_per_split rows with label 1 and
    min_negatives_per_split with label 0; otherwise a DataError, one line per class: the counts per split, the
    rule, the fix."""
    problems = []
    rows = sum(sum(c.values()) for c in counts.values())
    for value, rule in ((1, "min_positives_per_split"), (0, "min_negatives_per_split")):
        need = rules[rule]
        per_class = {split: int(c.get(value, 0)) for split, c in counts.items()}
        if min(per_class.values()) >= need:
            continue
        total = sum(per_class.values())
        if total >= need * len(counts):
            fix = "give the short split a larger share of the rows (--train-ratio, --validation-ratio)"
        elif total == 0:
            fix = f"add rows with {label}={value}, or check how the {label} column is encoded"
        else:
            fix = f"add rows with {label}={value}"
        every = f": every row is {label}={1 - value}" if total == 0 and rows else ""
        per_split = ", ".join(f"{s} {c:,}" for s, c in per_class.items())
        problems.append(f"too few {label}={value} rows: {per_split} ({source} has {total:,} in {rows:,}{every}); "
                        f"need at least {need} in every split to train and evaluate a model "
                        f"(suite: {DATASET}.{rule} in {suite_name}) — {fix}")
    if problems:
        raise DataError("\n".join(problems))


def engine_from_env() -> str:
    engine = os.environ.get("DATA_QUALITY_ENGINE", "arrow")
    if engine not in ENGINES:
        raise DataError(f"DATA_QUALITY_ENGINE={engine!r} is not one of {', '.join(ENGINES)}{_did_you_mean(engine, list(ENGINES))}")
    return engine


def validate(tables: dict[str, Any], suite: dict[str, Any], suite_name: str, docs_out: Path,
             engine: str = "arrow", frames: dict[str, Any] | None = None) -> list[str]:
    """Check every file (Arrow tables) against its rules, write the report to docs_out, return failure lines.

    With engine "great_expectations", GX checks `frames`: the same files as pandas.read_csv reads them."""
    import dq_report

    if engine == "great_expectations":
        import dq_gx

        rows = dq_gx.validate_frames(frames or {}, suite)
    else:
        import dq_checks

        rows = dq_checks.validate_tables(tables, suite)
    doc = dq_report.report(rows, {file: table.num_rows for file, table in tables.items()}, suite_name, engine)
    dq_report.write(doc, docs_out)
    return [r["message"] for r in doc["results"] if not r["success"]]
