"""The Arrow paths that let 5M rows fit in 3 GB per step (issue 19) give what the pandas paths gave.

Each test holds the Arrow code to a pandas reference on small data: the same split rows, the same joined
columns and values, the same feature matrix, the same generated rows. Speed and memory are in benchmarks/scale.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests.conftest import REPO

MODEL_CODE = REPO / "model_code"
SUITE = REPO / "configs" / "expectations" / "insurance-claims.yaml"
sys.path.insert(0, str(MODEL_CODE))

import data_quality  # noqa: E402
import features  # noqa: E402
import generate_data  # noqa: E402
import ingest  # noqa: E402
import raw_tables  # noqa: E402
from fraud_schema import KEY, LABEL, NA_VALUES  # noqa: E402
from preprocess import stratified_split  # noqa: E402


def pandas_split(frame: pd.DataFrame, ratios: tuple[float, float, float], seed: int) -> list[pd.DataFrame]:
    """The split as preprocess made it with pandas (before issue 19)."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for _, group in frame.groupby(LABEL, sort=True):
        index = rng.permutation(group.index.to_numpy())
        cut1 = int(round(len(index) * ratios[0]))
        cut2 = cut1 + int(round(len(index) * ratios[1]))
        for part, chunk in zip(parts, (index[:cut1], index[cut1:cut2], index[cut2:])):
            part.append(chunk)
    return [frame.loc[np.sort(np.concatenate(p))].reset_index(drop=True) for p in parts]


def test_the_split_picks_the_rows_the_pandas_split_picked() -> None:
    labels = (np.random.default_rng(3).random(10_007) < 0.04).astype(np.int64)
    frame = pd.DataFrame({LABEL: labels, "row": np.arange(len(labels))})
    for seed in (1, 42):
        expected = [part["row"].to_numpy() for part in pandas_split(frame, (0.7, 0.15, 0.15), seed)]
        got = stratified_split(labels, (0.7, 0.15, 0.15), seed)
        assert [g.tolist() for g in got] == [e.tolist() for e in expected]


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate_data.generate(3000, 42, out)
    return out


def test_preprocess_writes_the_splits_and_transform_of_the_pandas_path(raw_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "input" / "expectations").mkdir(parents=True)
    (tmp_path / "input" / "raw").symlink_to(raw_folder)
    (tmp_path / "input" / "expectations" / SUITE.name).write_text(SUITE.read_text())
    for output in ("train", "validation", "test", "transform", "data_docs"):
        (tmp_path / "output" / output).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, str(MODEL_CODE / "preprocess.py"), "--seed", "7"], capture_output=True,
                          text=True, env={**env, "SAGEPIPE_PROCESSING_DIR": str(tmp_path)}, timeout=300)
    assert done.returncode == 0, done.stderr
    read = lambda name: pd.read_csv(raw_folder / name, keep_default_na=False, na_values=NA_VALUES)  # noqa: E731
    joined = read("claims.csv").merge(read("customers.csv"), on=KEY, how="inner", validate="one_to_one")
    for name, expected in zip(("train", "validation", "test"), pandas_split(joined, (0.7, 0.15, 0.15), 7)):
        got = pd.read_parquet(tmp_path / "output" / name / f"{name}.parquet")
        pd.testing.assert_frame_equal(got, expected, check_dtype=True)
    transform = json.loads((tmp_path / "output" / "transform" / features.TRANSFORM_FILE).read_text())
    assert transform == features.fit(pandas_split(joined, (0.7, 0.15, 0.15), 7)[0])


def _tables(left: dict, right: dict) -> tuple[pa.Table, pa.Table]:
    return pa.table(left), pa.table(right)


def test_the_join_keeps_the_claims_order_and_finds_shuffled_customers() -> None:
    rng = np.random.default_rng(5)
    claim_ids = rng.permutation(np.arange(1, 2001))
    customer_ids = rng.permutation(np.arange(1, 2001))[:1800]  # 200 claims without a customer
    claims, customers = _tables({KEY: claim_ids, "c": np.arange(2000)}, {KEY: customer_ids, "d": customer_ids * 10})
    left_rows, right_rows, dropped = data_quality.join_coverage(
        claims, customers, KEY, ("claims.csv", "customers.csv"), ("claim", "customer"), 0.5, "s.yaml")
    expected = claims.to_pandas().merge(customers.to_pandas(), on=KEY, how="inner")
    assert claims.column("c").to_numpy()[left_rows].tolist() == expected["c"].tolist()
    assert customers.column("d").to_numpy()[right_rows].tolist() == expected["d"].tolist()
    assert dropped.startswith("dropped 200 of 2,000 claims (10.0%) have no customer")


def test_duplicated_keys_are_counted_as_pandas_counts_them() -> None:
    claims, customers = _tables({KEY: [3, 1, 2, 3, 3]}, {KEY: [2, 1, 2, 3]})
    with pytest.raises(data_quality.DataError, match=r"duplicated values \(claims.csv: 2, customers.csv: 1\)"):
        data_quality.join_coverage(claims, customers, KEY, ("claims.csv", "customers.csv"), ("claim", "customer"),
                                   1.0, "s.yaml")


def test_a_column_whose_type_changes_after_the_first_block_is_read_as_pandas_reads_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raw_tables, "BLOCK_BYTES", 4096)  # types are inferred from the first block
    rows = 3000
    frame = pd.DataFrame({"ints_then_floats": [str(i) for i in range(rows - 1)] + ["2.5"],
                          "ints_then_text": [str(i) for i in range(rows - 1)] + ["x"],
                          "empty_then_numbers": [""] * (rows - 1) + ["7"],
                          "text": ["Yes", "N/A"] * (rows // 2)})
    path = tmp_path / "changing.csv"
    frame.to_csv(path, index=False)
    table = raw_tables.read_table(path, 4)
    expected = pd.read_csv(path, keep_default_na=False, na_values=NA_VALUES)
    assert {c: raw_tables.pandas_dtype(table.column(c)) for c in table.column_names} == \
           {c: str(t) for c, t in expected.dtypes.items()}
    got = pa.table([raw_tables.pandas_like(c) for c in table.columns], names=table.column_names).to_pandas()
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize("bad", [1, 1500])  # in the block types are inferred from (Arrow: binary), or a later one
def test_bad_utf8_is_named_by_line(bad: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raw_tables, "BLOCK_BYTES", 4096)
    lines = [b"a,b"] + [f"{i},Collision".encode() for i in range(1, 2000)]
    lines[bad] = b"1500,Coll\xe9sion"
    (tmp_path / "claims.csv").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(data_quality.DataError, match=rf"claims.csv: line {bad + 1}: not valid UTF-8 \(byte 0xe9"):
        raw_tables.read_table(tmp_path / "claims.csv", 2)


def test_ingest_writes_the_rows_generate_data_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate_data, "CHUNK", 500)  # several chunks, appended
    generate_data.generate(1234, 9, tmp_path / "pandas")
    (tmp_path / "arrow").mkdir()
    ingest.generate(1234, 9, tmp_path / "arrow")
    for name in ("claims.csv", "customers.csv"):
        read = lambda folder: pd.read_csv(folder / name, keep_default_na=False, na_values=NA_VALUES)  # noqa: E731
        pd.testing.assert_frame_equal(read(tmp_path / "arrow"), read(tmp_path / "pandas"))


def test_the_training_matrix_is_apply_on_a_frame(raw_folder: Path) -> None:
    frame = generate_data.claim_records(500, 4)
    transform = features.fit(frame.iloc[:300])
    frame.loc[frame.index[:5], "policy_state"] = "TX"  # unknown category
    frame.loc[frame.index[5:9], "policy_liability"] = "lots"  # not a number pair
    frame.loc[frame.index[9:12], "customer_gender"] = None
    table = pa.Table.from_pandas(frame, preserve_index=False)
    dictionary = table.set_column(table.column_names.index("policy_state"), "policy_state",
                                  table.column("policy_state").dictionary_encode())
    expected = features.apply(transform, frame).to_numpy()
    for arrow in (table, dictionary):
        np.testing.assert_array_equal(features.matrix(transform, arrow), expected)
