"""model_code/inference.py's fast paths (all numeric columns in one numpy call, liability text parsed once per
distinct value, orjson for bodies) give exactly what the value-by-value paths give: matrix, scores, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "model_code"))
import inference  # noqa: E402
from fraud_schema import CATEGORICAL, LIABILITY, NUMERIC, RAW_FEATURES  # noqa: E402

VOCAB = {column: ["A", "B", "None"] for column in CATEGORICAL}


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> inference.FraudScorer:
    """A scorer over a tiny LightGBM booster trained on random features (the transform is what matters)."""
    import lightgbm as lgb

    folder = tmp_path_factory.mktemp("model")
    features = [*NUMERIC, "liability_per_person", "liability_per_accident", *CATEGORICAL]
    (folder / "feature_transform.json").write_text(json.dumps(
        {"version": 1, "categorical": VOCAB, "numeric": NUMERIC, "liability": LIABILITY, "features": features}))
    (folder / "metadata.json").write_text(json.dumps({"model_type": "lightgbm"}))
    rng = np.random.default_rng(0)
    data = lgb.Dataset(rng.normal(size=(200, len(features))), label=rng.integers(0, 2, 200))
    lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4}, data, 5).save_model(str(folder / "model.txt"))
    return inference.FraudScorer(folder)


def record(i: int, **changes: object) -> dict:
    base: dict = {field: float(i % 7) + 0.25 for field in NUMERIC}
    base.update({field: "AB"[i % 2] for field in CATEGORICAL}, **{LIABILITY: ["25/50", "100/300"][i % 2]})
    base.update(changes)
    return {field: base[field] for field in RAW_FEATURES}


def slow_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "_number_block", lambda columns: None)
    monkeypatch.setattr(inference, "_all_text", lambda values: False)


BATCHES = {
    "plain": [record(i) for i in range(50)],
    "one record": [record(3)],
    "ints, numeric text, None": [record(i, num_injuries=2, injury_claim="1200.5", auto_year=None) for i in range(5)],
    "missing text": [record(i, policy_annual_premium="N/A" if i % 2 else "") for i in range(4)],
    "unknown and odd categories": [record(i, policy_state=["CA", None, 7, "None"][i % 4]) for i in range(8)],
    "missing liability": [record(i, **{LIABILITY: ["", None, "25/50"][i % 3]}) for i in range(6)],
    "a 1e20 integer": [record(0, customer_zip=10**20)],
}


@pytest.mark.parametrize("name", BATCHES)
def test_fast_and_value_by_value_paths_give_the_same_matrix(name: str, scorer: inference.FraudScorer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fast = scorer.encode(BATCHES[name])
    slow_paths(monkeypatch)
    slow = scorer.encode(BATCHES[name])
    assert fast.dtype == slow.dtype == np.float32
    np.testing.assert_array_equal(fast, slow)


BAD = {
    "bool": ([record(0), record(1, num_witnesses=True)], "record 1: field 'num_witnesses' must be a number, got true"),
    "infinite": ([record(0, vehicle_claim="inf")], "record 0: field 'vehicle_claim' is out of range"),
    "text": ([record(0), record(1), record(2, incident_hour="noon")], "record 2: field 'incident_hour' must be a "
             "number, got \"noon\""),
    "liability": ([record(0), record(1), record(2, **{LIABILITY: "lots"})], "record 2: field 'policy_liability' "
                  "must look like '25/50', got \"lots\""),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_values_name_the_same_record_and_field_on_both_paths(name: str, scorer: inference.FraudScorer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    records, message = BAD[name]
    with pytest.raises(inference.InputError) as fast:
        scorer.encode(records)
    slow_paths(monkeypatch)
    with pytest.raises(inference.InputError) as slow:
        scorer.encode(records)
    assert str(fast.value) == str(slow.value)
    assert str(fast.value).startswith(message)


def test_json_bodies_read_the_same_with_and_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    assert inference._fast_loads is not None, "orjson is in requirements.lock"
    bodies = ['[{"policy_id": 123456789012345678901, "x": 0.1}]',  # past 64 bits: stays an exact integer
              '{"a": NaN, "b": 1e999}', '{"a": [1.5e-300, -0.0, 9007199254740993, "\\ud800"]}']
    bad = ['{"a": 1,}', '[1, 2', '{"a": 1} x', '\ufeff{}']

    def read_all() -> tuple[str, list[str]]:
        errors = []
        for body in bad:
            with pytest.raises(inference.InputError) as error:
                inference.input_fn(body.encode(), "application/json")
            errors.append(str(error.value))
        return repr([inference._parse_json(body) for body in bodies]), errors  # repr: NaN != NaN

    fast = read_all()
    monkeypatch.setattr(inference, "_fast_loads", None)
    assert fast == read_all()
    assert "123456789012345678901" in fast[0] and "1.2345678901234568e+20" not in fast[0]
