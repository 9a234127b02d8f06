"""Bad data that used to train silently (issue 14): one class only, too few of a class, claims without a customer.

Each case runs the step's script directly, as its container would, on a small crafted data set: preprocess (the
gate that must stop it, with one line saying what, the counts and the suite key), train_lightgbm and evaluate
(which must refuse it too when handed such data, and never write NaN as a metric). One full `sagepipe run` at
the end (slow).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, run_cli

MODEL_CODE = REPO / "model_code"
SUITE = REPO / "configs" / "expectations" / "insurance-claims.yaml"
ROWS = 2000  # generated with seed 42: 74 fraud rows, split 52 / 11 / 11
SPLITS = ("train", "validation", "test")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # no tracking
    return {**env, **extra}


def _script(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MODEL_CODE / name), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _clean_failure(done: subprocess.CompletedProcess, *expected: str) -> None:
    """Exit 1, no traceback, and the expected fragments on one ERROR line of stderr."""
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")] or [done.stderr]
    for fragment in expected:
        assert fragment in line, line


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("raw")
    subprocess.run([sys.executable, str(MODEL_CODE / "generate_data.py"), "--rows", str(ROWS), "--seed", "42",
                    "--out", str(out)], check=True, capture_output=True)
    return {name: pd.read_csv(out / f"{name}.csv", keep_default_na=False, dtype=str)
            for name in ("claims", "customers")}


def _suite(**rules: object) -> str:
    suite = yaml.safe_load(SUITE.read_text())
    suite["join_and_split"] = {**suite.get("join_and_split", {}), **rules}
    return yaml.safe_dump(suite, sort_keys=False)


def run_preprocess(folder: Path, claims: pd.DataFrame, customers: pd.DataFrame,
                   suite: str | None = None) -> subprocess.CompletedProcess:
    """preprocess.py as the processing job runs it: raw CSVs and the suite in, the split folders out."""
    (folder / "input" / "raw").mkdir(parents=True)
    (folder / "input" / "expectations").mkdir(parents=True)
    claims.to_csv(folder / "input" / "raw" / "claims.csv", index=False)
    customers.to_csv(folder / "input" / "raw" / "customers.csv", index=False)
    (folder / "input" / "expectations" / SUITE.name).write_text(suite or SUITE.read_text())
    for output in (*SPLITS, "transform", "data_docs"):
        (folder / "output" / output).mkdir(parents=True)
    return _script("preprocess.py", _env(SAGEPIPE_PROCESSING_DIR=str(folder)))


def _written_splits(folder: Path) -> dict[str, pd.DataFrame]:
    return {s: pd.read_parquet(p) for s in SPLITS for p in (folder / "output" / s).glob("*.parquet")}


# --- preprocess: the gate --------------------------------------------------------------------------------------


def _fraud(claims: pd.DataFrame, case: str) -> pd.DataFrame:
    claims = claims.copy()
    claims["fraud"] = {"all_fraud": "1", "no_fraud": "0", "one_fraud": "0"}[case]
    if case == "one_fraud":
        claims.loc[5, "fraud"] = "1"
    return claims


@pytest.mark.parametrize("case, expected", [
    ("all_fraud", ["too few fraud=0 rows: train 0, validation 0, test 0 (claims.csv has 0 in 2,000: every row is "
                   "fraud=1)", "need at least 5 in every split", "join_and_split.min_negatives_per_split"]),
    ("no_fraud", ["too few fraud=1 rows: train 0, validation 0, test 0 (claims.csv has 0 in 2,000: every row is "
                  "fraud=0)", "join_and_split.min_positives_per_split"]),
    ("one_fraud", ["too few fraud=1 rows: train 1, validation 0, test 0 (claims.csv has 1 in 2,000)",
                   "need at least 5 in every split", "join_and_split.min_positives_per_split",
                   "add rows with fraud=1"]),
])
def test_a_split_without_both_classes_stops_preprocess(case: str, expected: list[str], raw: dict,
                                                       tmp_path: Path) -> None:
    done = run_preprocess(tmp_path, _fraud(raw["claims"], case), raw["customers"])
    _clean_failure(done, *expected)
    assert _written_splits(tmp_path) == {}  # nothing for training to pick up


def test_min_positives_per_split_comes_from_the_suite(raw: dict, tmp_path: Path) -> None:
    """Validation and test hold 11 fraud rows each: enough by default, too few when the suite asks for 12."""
    done = run_preprocess(tmp_path, raw["claims"], raw["customers"], _suite(min_positives_per_split=12))
    _clean_failure(done, "too few fraud=1 rows: train 52, validation 11, test 11 (claims.csv has 74 in 2,000)",
                   "need at least 12 in every split", "min_positives_per_split in insurance-claims.yaml",
                   "give the short split a larger share of the rows")


@pytest.mark.parametrize("section, expected", [
    ({"min_positive_per_split": 5}, "join_and_split: unknown rule 'min_positive_per_split' (did you mean "
                                    "'min_positives_per_split'?)"),
    ({"min_negatives_per_split": 0}, "join_and_split.min_negatives_per_split: 0 is not a whole number of rows of "
                                     "at least 1"),
    ({"min_join_coverage": 70}, "join_and_split.min_join_coverage: 70 is not a share between 0 and 1"),
])
def test_a_bad_join_and_split_rule_is_named(section: dict, expected: str, raw: dict, tmp_path: Path) -> None:
    suite = yaml.safe_load(SUITE.read_text())
    suite["join_and_split"] = section
    done = run_preprocess(tmp_path, raw["claims"], raw["customers"], yaml.safe_dump(suite))
    _clean_failure(done, f"expectation suite insurance-claims.yaml: {expected}")


def test_a_repeated_column_name_is_named_not_a_pyarrow_keyerror(raw: dict, tmp_path: Path) -> None:
    """A CSV header naming one column twice died in the data-quality checks with pyarrow's KeyError."""
    claims = raw["claims"].copy()
    repeated = claims.columns[1]
    claims.columns = [claims.columns[0], repeated, repeated, *claims.columns[3:]]
    done = run_preprocess(tmp_path, claims, raw["customers"])
    _clean_failure(done, f"claims.csv: line 1: column name {repeated!r} appears twice (columns 2 and 3)",
                   "give each column its own name")
    assert _written_splits(tmp_path) == {}


def _without_30_percent(customers: pd.DataFrame) -> pd.DataFrame:
    return customers.sample(frac=0.7, random_state=0).sort_index()


def test_claims_without_a_customer_stop_preprocess_by_default(raw: dict, tmp_path: Path) -> None:
    done = run_preprocess(tmp_path, raw["claims"], _without_30_percent(raw["customers"]))
    _clean_failure(done, "600 of 2,000 claims (30.0%) have no customer: their policy_id is not in customers.csv "
                         "(e.g. ", "every claim must have one",
                   "(suite: join_and_split.min_join_coverage: 1.0 in insurance-claims.yaml)",
                   "add the missing customers to customers.csv")
    assert _written_splits(tmp_path) == {}


def test_a_drop_the_suite_allows_is_reported_with_counts(raw: dict, tmp_path: Path) -> None:
    done = run_preprocess(tmp_path, raw["claims"], _without_30_percent(raw["customers"]),
                          _suite(min_join_coverage=0.6))
    assert done.returncode == 0, done.stderr
    assert ("WARNING: join: dropped 600 of 2,000 claims (30.0%) have no customer: their policy_id is not in "
            "customers.csv") in done.stderr
    assert "the suite allows it (join_and_split.min_join_coverage: 0.6 in insurance-claims.yaml)" in done.stderr
    assert sum(len(f) for f in _written_splits(tmp_path).values()) == 1400


# --- train and evaluate, handed one-class data anyway ---------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(raw: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good data through preprocess: the splits and transform that training and evaluation read."""
    folder = tmp_path_factory.mktemp("prepared")
    done = run_preprocess(folder, raw["claims"], raw["customers"])
    assert done.returncode == 0, done.stderr
    return folder / "output"


def run_train(folder: Path, train: pd.DataFrame, validation: pd.DataFrame,
              transform: Path) -> subprocess.CompletedProcess:
    channels = {}
    for name, frame in (("train", train), ("validation", validation)):
        (folder / name).mkdir(parents=True)
        frame.to_parquet(folder / name / f"{name}.parquet", index=False)
        channels[f"SM_CHANNEL_{name.upper()}"] = str(folder / name)
    for sub in ("model", "output"):
        (folder / sub).mkdir()
    env = _env(SM_MODEL_DIR=str(folder / "model"), SM_OUTPUT_DATA_DIR=str(folder / "output"), SM_NUM_CPUS="1",
               SM_CHANNEL_TRANSFORM=str(transform), **channels)
    return _script("train_lightgbm.py", env, "--num_boost_round", "30", "--early_stopping_rounds", "10")


@pytest.mark.parametrize("label, expected", [
    (1, "the train channel has 1,400 fraud=1 and 0 fraud=0 rows"),  # was a LightGBM traceback
    (0, "the train channel has 0 fraud=1 and 1,400 fraud=0 rows"),  # was a one-class model
])
def test_training_on_one_class_is_a_clear_error(label: int, expected: str, prepared: Path, tmp_path: Path) -> None:
    train = pd.read_parquet(prepared / "train" / "train.parquet").assign(fraud=label)
    validation = pd.read_parquet(prepared / "validation" / "validation.parquet")
    done = run_train(tmp_path, train, validation, prepared / "transform")
    _clean_failure(done, expected, "needs both classes in train and validation")
    assert not (tmp_path / "model" / "model.txt").exists()


@pytest.fixture(scope="module")
def model(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    done = run_train(folder, pd.read_parquet(prepared / "train" / "train.parquet"),
                     pd.read_parquet(prepared / "validation" / "validation.parquet"), prepared / "transform")
    assert done.returncode == 0, done.stderr
    return folder / "model"


def run_evaluate(folder: Path, model: Path, test: pd.DataFrame) -> subprocess.CompletedProcess:
    shutil.copytree(model, folder / "input" / "model")
    (folder / "input" / "test").mkdir(parents=True)
    test.to_parquet(folder / "input" / "test" / "test.parquet", index=False)
    (folder / "output" / "evaluation").mkdir(parents=True)
    return _script("evaluate.py", _env(SAGEPIPE_PROCESSING_DIR=str(folder)), "--bootstrap-rounds", "20")


def test_evaluating_a_one_class_test_split_is_an_error_not_nan(model: Path, prepared: Path, tmp_path: Path) -> None:
    test = pd.read_parquet(prepared / "test" / "test.parquet").assign(fraud=0)
    done = run_evaluate(tmp_path, model, test)
    _clean_failure(done, "the test split has 0 fraud=1 and 300 fraud=0 rows; ROC AUC and PR AUC are undefined")
    assert not (tmp_path / "output" / "evaluation" / "evaluation.json").exists()


def test_evaluation_json_holds_only_finite_numbers(model: Path, prepared: Path, tmp_path: Path) -> None:
    done = run_evaluate(tmp_path, model, pd.read_parquet(prepared / "test" / "test.parquet"))
    assert done.returncode == 0, done.stderr

    def refuse(constant: str) -> float:
        raise AssertionError(f"evaluation.json holds {constant}")

    text = (tmp_path / "output" / "evaluation" / "evaluation.json").read_text()
    report = json.loads(text, parse_constant=refuse)["binary_classification_metrics"]
    assert "NaN" not in text
    for name, entry in report.items():
        if name == "confusion_matrix":
            continue
        for key in ("value", "standard_deviation"):  # the SageMaker model-quality shape, both numbers
            assert isinstance(entry[key], (int, float)) and math.isfinite(entry[key]), (name, key, entry[key])
    assert 0.5 < report["auc"]["value"] <= 1 and report["test_rows"]["value"] == 300


# --- the whole pipeline ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_on_claims_without_fraud_stops_at_preprocess(raw: dict, tmp_path: Path, home: Path) -> None:
    """It used to train a one-class model and stop only at the gate with 'test ROC AUC nan'."""
    data = tmp_path / "data"
    data.mkdir()
    _fraud(raw["claims"], "no_fraud").to_csv(data / "claims.csv", index=False)
    raw["customers"].to_csv(data / "customers.csv", index=False)
    done = run_cli("run", "configs/fraud-detection.yaml", "--param", f"input_data={data}", "--json", home=home)
    assert done.returncode == 1, done.stderr
    statuses = {s["name"]: s["status"] for s in json.loads(done.stdout)["steps"]}
    assert statuses["preprocess"] == "failed"
    assert statuses["train"] == statuses["evaluate"] == statuses["register"] == "skipped"
    assert "too few fraud=1 rows: train 0, validation 0, test 0" in done.stderr, done.stderr
    assert "min_positives_per_split" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
