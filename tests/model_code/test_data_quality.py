"""The data-quality gate without Great Expectations' import (issue 19) and its report without a CDN (issue 18).

The Arrow checker (model_code/dq_checks.py) is held to Great Expectations' own verdicts and failure lines on good
data and on each kind of bad data; the report is one self-contained HTML page plus data_quality.json.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO

MODEL_CODE = REPO / "model_code"
SUITE = REPO / "configs" / "expectations" / "insurance-claims.yaml"
sys.path.insert(0, str(MODEL_CODE))

import data_quality  # noqa: E402
import dq_checks  # noqa: E402
import dq_report  # noqa: E402
from fraud_schema import NA_VALUES  # noqa: E402
from raw_tables import read_table  # noqa: E402


def _set(frame: pd.DataFrame, column: str, value: str, rows: slice = slice(None)) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index[rows], column] = value
    return frame


# Each case: (file, edit of that file's text frame). Every rule kind of the suite fails in at least one.
CASES = {
    "good": ("claims.csv", lambda f: f),
    "missing_column": ("claims.csv", lambda f: f.drop(columns=["incident_severity"])),
    "all_null_column": ("customers.csv", lambda f: _set(f, "customer_age", "")),
    "some_nulls": ("customers.csv", lambda f: _set(f, "auto_year", "", slice(0, 7))),
    "too_many_nulls": ("claims.csv", lambda f: _set(f, "authorities_contacted", "", slice(0, 300))),
    "label_not_binary": ("claims.csv", lambda f: _set(f, "fraud", "2", slice(0, 4))),
    "out_of_range": ("claims.csv", lambda f: _set(f, "incident_hour", "31", slice(2, 3))),
    "float_out_of_range": ("claims.csv", lambda f: _set(f, "vehicle_claim", "-5.5", slice(10, 12))),
    "text_in_number": ("customers.csv", lambda f: _set(f, "customer_zip", "9o210", slice(5, 6))),
    "unknown_category": ("customers.csv", lambda f: _set(f, "policy_state", "TX", slice(0, 30))),
    "duplicate_id": ("customers.csv", lambda f: pd.concat([f, f.iloc[[1, 2]]], ignore_index=True)),
    "too_few_rows": ("claims.csv", lambda f: f.head(50)),
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("raw")
    subprocess.run([sys.executable, str(MODEL_CODE / "generate_data.py"), "--rows", "600", "--seed", "7",
                    "--out", str(out)], check=True, capture_output=True)
    return {name: pd.read_csv(out / name, keep_default_na=False, dtype=str) for name in ("claims.csv", "customers.csv")}


@pytest.fixture(scope="module")
def cases(raw: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each case's two CSV files, in its own folder."""
    folders = {}
    for case, (file, edit) in CASES.items():
        folder = tmp_path_factory.mktemp(case)
        for name, frame in raw.items():
            (edit(frame) if name == file else frame).to_csv(folder / name, index=False)
        folders[case] = folder
    return folders


def _arrow_rows(folder: Path, suite: dict) -> list[dict]:
    tables = {name: read_table(folder / name, 2) for name in ("claims.csv", "customers.csv")}
    return dq_checks.validate_tables(tables, suite)


def _messages(rows: list[dict]) -> dict[tuple, tuple]:
    """(file, expectation, column) -> (passed, failure line). A range check on text cannot run: GX says only
    "failed", the Arrow checker why; there the verdicts are compared, not the lines."""
    return {(r["file"], r["expectation"], r["kwargs"].get("column")):
            (r["success"], None if r["success"] or r["exception"] or not r["result"] else dq_report.describe_failure(r))
            for r in rows}


def test_the_arrow_checker_gives_great_expectations_verdicts_and_lines(cases: dict[str, Path]) -> None:
    pytest.importorskip("great_expectations")
    import dq_gx

    suite = data_quality.load_suite(SUITE)
    frames, renamed_suite, arrow, keys = {}, dict(suite), {}, {}
    for case, folder in cases.items():  # one GX context for every case: its set-up is the slow part
        for name in ("claims.csv", "customers.csv"):
            # Each case edits one file; the other is byte for byte the good one, and GX validates each distinct
            # file once (most of GX's time goes per file validated).
            key = keys[case, name] = f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()[:16]}.{name}"
            if key not in frames:
                frames[key] = pd.read_csv(folder / name, keep_default_na=False, na_values=NA_VALUES)
                renamed_suite[key] = suite[name]
        arrow[case] = _arrow_rows(folder, suite)
    gx_rows = dq_gx.validate_frames(frames, renamed_suite)
    assert len(frames) == len(CASES) + 1  # the good pair, and each bad case's edited file
    for case in cases:
        own = {keys[case, "claims.csv"], keys[case, "customers.csv"]}
        expected = [{**r, "file": r["file"].split(".", 1)[1]} for r in gx_rows if r["file"] in own]
        assert {r["file"] for r in expected} == {"claims.csv", "customers.csv"}, case
        assert _messages(arrow[case]) == _messages(expected), case
        failed = [r for r in arrow[case] if not r["success"]]
        assert (case == "good") == (not failed), (case, failed)


def test_every_kind_of_bad_data_is_named(cases: dict[str, Path]) -> None:
    suite = data_quality.load_suite(SUITE)
    lines = {case: [dq_report.describe_failure(r) for r in _arrow_rows(folder, suite) if not r["success"]]
             for case, folder in cases.items()}
    assert lines["good"] == []
    assert lines["out_of_range"] == ["claims.csv: column 'incident_hour': expect_column_values_to_be_between"
                                     "{'min_value': 0.0, 'max_value': 23.0} failed — 1 unexpected values (0.2%), "
                                     "e.g. ['31']"]
    assert lines["missing_column"] == ["claims.csv: column 'incident_severity': expect_column_to_exist failed — "
                                       "column not found"]
    assert any("column 'policy_id': expect_column_values_to_be_unique" in line and "4 unexpected values" in line
               for line in lines["duplicate_id"])
    assert any("expect_column_values_to_not_be_null{'mostly': 0.9} failed — 300 unexpected values (50.0%)" in line
               for line in lines["too_many_nulls"])
    assert lines["some_nulls"][0].startswith("customers.csv: column 'auto_year': "
                                             "expect_column_values_to_be_in_type_list")
    assert "observed 'float64'" in lines["some_nulls"][0]  # an int column with gaps, as pandas reads it


def test_preprocess_does_not_import_great_expectations(cases: dict[str, Path], tmp_path: Path) -> None:
    """The gate used to import GX (about 5 s) on every run; the report is the same kind of page either way."""
    (tmp_path / "input" / "expectations").mkdir(parents=True)
    (tmp_path / "input" / "raw").symlink_to(cases["label_not_binary"])
    (tmp_path / "input" / "expectations" / SUITE.name).write_text(SUITE.read_text())
    for output in ("train", "validation", "test", "transform", "data_docs"):
        (tmp_path / "output" / output).mkdir(parents=True)
    env = {"SAGEPIPE_PROCESSING_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-X", "importtime", str(MODEL_CODE / "preprocess.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "great_expectations" not in done.stderr
    assert "ERROR: data-quality check failed (report: output data_docs/index.html)" in done.stderr
    assert "claims.csv: column 'fraud': expect_column_values_to_be_in_set{'value_set': [0, 1]} failed — 4 " \
           "unexpected values (0.7%), e.g. ['2']" in done.stderr
    doc = json.loads((tmp_path / "output" / "data_docs" / "data_quality.json").read_text())
    assert doc["success"] is False and doc["engine"] == "arrow" and doc["files"]["claims.csv"]["failed"] == 1
    (failed,) = [r for r in doc["results"] if not r["success"]]
    assert failed["column"] == "fraud" and failed["expectation"] == "expect_column_values_to_be_in_set"
    assert failed["observed"].startswith("4 unexpected values") and failed["result"]["unexpected_count"] == 4


def test_the_report_is_self_contained_and_titled(cases: dict[str, Path], tmp_path: Path) -> None:
    suite = data_quality.load_suite(SUITE)
    tables = {name: read_table(cases["unknown_category"] / name, 2) for name in ("claims.csv", "customers.csv")}
    failures = data_quality.validate(tables, suite, SUITE.name, tmp_path)
    assert failures == ["customers.csv: column 'policy_state': expect_column_values_to_be_in_set{'value_set': "
                        "['CA', 'WA', 'AZ', 'OR', 'NV', 'ID']} failed — 30 unexpected values (5.0%), e.g. ['TX']"]
    pages = [tmp_path / "index.html", *sorted((tmp_path / "validations").glob("*.html"))]
    assert [p.name for p in pages] == ["index.html", "claims_csv.html", "customers_csv.html"]
    for page in pages:
        text = page.read_text()
        assert not re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I), page
        assert "<link" not in text and "<script" not in text and "@import" not in text
        assert "__none__" not in text and "<style>" in text
    index = (tmp_path / "index.html").read_text()
    title = re.search(r"<title>(.*?)</title>", index).group(1)
    assert title == "Data quality: claims.csv, customers.csv against insurance-claims.yaml"
    header = re.findall(r"<th>(.*?)</th>", index)[:5]
    assert header == ["Expectation", "Column", "Expected", "Observed", "Result"]
    row = re.search(r'<tr class="failed">(.*?)</tr>', index).group(1)
    assert "expect_column_values_to_be_in_set" in row and "policy_state" in row and "30 unexpected values" in row
    assert ">fail<" in row
    doc = json.loads((tmp_path / "data_quality.json").read_text())
    assert len(doc["results"]) == index.count("<tr class=")
    assert {r["file"] for r in doc["results"]} == {"claims.csv", "customers.csv"}
