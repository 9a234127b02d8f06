"""Issue 26 (red team, round three), items 8 and 17: `sagepipe transform` refuses input it cannot score — a
word in a number column, a short or long row, an empty file, a header alone, a file that is not UTF-8 — naming
the file, the line (or row), the column, what is wrong and how to fix it; exit 2, no traceback, and nothing
written: no output, no partial file, no folder it made. A missing output folder is made, as `aws s3 cp` would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, run_cli
from tests.serving.tiny_model import ENDPOINT, KEY, LIABILITY, RAW_FEATURES, claims, csv_text, tiny  # noqa: F401


def transform(tiny: dict, source: Path, output: Path, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    """`sagepipe transform` in this process: (exit code, stderr)."""
    import logging

    from pipelines.cli import main

    monkeypatch.setenv("SAGEPIPE_HOME", str(tiny["home"]))
    monkeypatch.setattr(logging.getLogger("sagepipe"), "handlers", [])  # made anew on this test's stderr
    capsys.readouterr()
    code = main(["transform", ENDPOINT, str(source), str(output), *extra])
    return code, capsys.readouterr().err


def nothing_written(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(("out", ".out"))]


# --- items 8 and 17: transform refuses what it cannot score ------------------------------------------------
GOOD = csv_text(claims())
LINES = GOOD.splitlines(keepends=True)


def with_cell(field: str, value: str, row: int = 3) -> str:
    frame = claims()
    frame.loc[row, field] = value
    return csv_text(frame)


BAD_FILES = {  # name: (file content, what the message must say)
    "a word in a number column": (with_cell("customer_age", "forty"),
                                  ["line 5: column 'customer_age' must be a number, got \"forty\"",
                                   "leave the cell empty (or N/A) where the value is missing"]),
    "an infinite number": (with_cell("vehicle_claim", "1e999"),
                           ["line 5: column 'vehicle_claim' is out of range for a number"]),
    "a liability limit that is not one": (with_cell(LIABILITY, "lots", row=8),
                                          ["line 10: column 'policy_liability' must look like '25/50'"]),
    "a short row": ("".join(LINES[:6]) + ",".join(LINES[6].split(",")[:10]) + "\n" + "".join(LINES[7:]),
                    ["line 7: 10 values, but the header names 29 columns", "one value per column"]),
    "a long first row": (LINES[0] + LINES[1].rstrip("\n") + ",extra\n" + "".join(LINES[2:]),
                         ["line 2: 30 values, but the header names 29 columns"]),
    "a long row": ("".join(LINES[:9]) + LINES[9].rstrip("\n") + ",1,2\n" + "".join(LINES[10:]),
                   ["line 10: 31 values, but the header names 29 columns"]),
    "an unclosed quote": ("".join(LINES[:3]) + LINES[3].replace(",A,", ',"A,', 1) + "".join(LINES[4:]),
                          ["line 4:", "a quote opened on it is not closed"]),
    "an empty file": ("", ["is empty: a CSV needs a header row naming the columns"]),
    "blank lines only": ("\n\n\n", ["is empty"]),
    "a header alone": (LINES[0], ["has a header row but no rows under it: nothing to score"]),
    "a column named twice": (LINES[0].replace("customer_gender", "customer_age") + "".join(LINES[1:]),
                             ["line 1: column 'customer_age' appears twice in the header"]),
    "a missing column": (csv_text(claims().drop(columns=["incident_hour"])),
                         ["missing column incident_hour", "the header row must name every field"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_transform_refuses_a_bad_csv_at_its_line_and_writes_nothing(case: str, tiny: dict, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    content, expected = BAD_FILES[case]
    source = tmp_path / "claims.csv"
    source.write_text(content)
    code, err = transform(tiny, source, tmp_path / "new" / "deeper" / "out.csv", monkeypatch, capsys)
    assert code == 2, (case, err)
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.splitlines()[-1]], err
    assert err.splitlines()[-1].startswith(f"error: {source}"), err
    for text in expected:
        assert text in err, (case, err)
    assert nothing_written(tmp_path) and not (tmp_path / "new").exists()  # nor the folders it would have made


def test_transform_refuses_a_file_that_is_not_utf8_naming_line_and_byte(tiny: dict, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "claims.csv"
    source.write_bytes("".join(LINES[:6]).encode() + LINES[6].replace("p005", "p\xf6005").encode("latin-1")
                       + "".join(LINES[7:]).encode())
    code, err = transform(tiny, source, tmp_path / "out.csv", monkeypatch, capsys)
    assert code == 2 and "line 7, byte 2: 0xf6 is not UTF-8 text; save the file as UTF-8" in err, err
    assert nothing_written(tmp_path)


def test_transform_refuses_a_bad_parquet_value_at_its_row(tiny: dict, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    frame = claims(40)
    frame.loc[33, "num_injuries"] = "two"
    frame.to_parquet(tmp_path / "claims.parquet", index=False)
    code, err = transform(tiny, tmp_path / "claims.parquet", tmp_path / "out.parquet", monkeypatch, capsys,
                          "--chunk-rows", "7")
    assert code == 2 and "claims.parquet row 34: column 'num_injuries' must be a number, got \"two\"" in err, err
    assert nothing_written(tmp_path)
    (tmp_path / "empty.parquet").write_bytes(b"")
    code, err = transform(tiny, tmp_path / "empty.parquet", tmp_path / "out.parquet", monkeypatch, capsys)
    assert code == 2 and "cannot be read as Parquet" in err and nothing_written(tmp_path), err


def test_a_bad_value_in_a_later_chunk_leaves_no_partial_output(tiny: dict, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    frame = pd.concat([claims()] * 50, ignore_index=True)
    frame.loc[555, "auto_year"] = "20x9"
    source = tmp_path / "claims.csv"
    source.write_text(csv_text(frame))
    code, err = transform(tiny, source, tmp_path / "out.csv", monkeypatch, capsys, "--chunk-rows", "100")
    assert code == 2 and "line 557: column 'auto_year' must be a number, got \"20x9\"" in err, err
    assert nothing_written(tmp_path)


def test_transform_makes_a_missing_output_folder_and_scores_what_it_should(tiny: dict, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture) -> None:
    frame = claims()
    frame.loc[2, "customer_age"] = ""  # missing values are still missing: empty, N/A, NaN spelt out
    frame.loc[4, "customer_age"] = "N/A"
    frame.loc[6, "injury_claim"] = "NaN"
    frame.loc[7, "vehicle_claim"] = " 12.5 "
    source = tmp_path / "claims.csv"
    source.write_text(csv_text(frame))
    output = tmp_path / "not" / "yet" / "out.csv"
    code, err = transform(tiny, source, output, monkeypatch, capsys, "--chunk-rows", "5")
    assert code == 0, err
    scored = pd.read_csv(output, dtype={KEY: str})
    import inference

    expected = inference.model_fn(str(tiny["model_dir"])).predict_frame(
        pd.read_csv(source, dtype=str, keep_default_na=False, na_values=["", "N/A"]))
    assert scored[KEY].tolist() == frame[KEY].tolist()
    np.testing.assert_allclose(scored["fraud_probability"], expected, atol=2e-6)
    (tmp_path / "file").write_text("x")
    code, err = transform(tiny, source, tmp_path / "file" / "out.csv", monkeypatch, capsys)
    assert code == 2 and "is a file, not a folder" in err, err
    code, err = transform(tiny, source, tmp_path / "not", monkeypatch, capsys)
    assert code == 2 and "is a folder; name the file to write in it" in err, err


def test_transform_errors_reach_the_user_as_one_line_without_a_traceback(tiny: dict, tmp_path: Path) -> None:
    source = tmp_path / "claims.csv"
    source.write_text(with_cell("num_witnesses", "several", row=0))
    done = run_cli("transform", ENDPOINT, str(source), str(tmp_path / "out" / "scored.csv"), home=tiny["home"],
                   timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {source} line 2: column 'num_witnesses' must be a number, got \"several\"" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.csv"]


def test_the_transform_step_process_names_the_line_of_a_headerless_file(tiny: dict, tmp_path: Path) -> None:
    """The pipeline's transform step runs the same engine with the model archive's handlers, in the process
    pipelines/local/score_file.py; a CSV without a header (SageMaker's batch input) is placed by its own line
    numbers."""
    rows = claims()[RAW_FEATURES]
    rows.loc[5, "num_injuries"] = "a few"
    rows.to_csv(tmp_path / "headerless.csv", index=False, header=False)
    done = subprocess.run([sys.executable, "-m", "pipelines.local.score_file", "--model", str(tiny["model_dir"]),
                           "--input", str(tmp_path / "headerless.csv"), "--output", str(tmp_path / "out.csv")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "headerless.csv line 6: column 'num_injuries' must be a number, got \"a few\"" in done.stderr
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".out*"))
