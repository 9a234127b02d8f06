"""Inference handlers for the fraud model: the SageMaker inference-toolkit contract, also run by `sagepipe serve`.

    model_fn(model_dir) -> model      input_fn(body, content_type) -> records
    predict_fn(records, model) -> p   output_fn(p, accept) -> (body, content type)

Requests carry raw claim and customer fields (the model folder holds its feature transform):
- text/csv: one row per line, no header, the 28 fields in RAW_FEATURES order;
- application/json: a record {"field": value, ...}, a list of records, or columns {"field": [...]}.
Bad input raises InputError, whose text names the problem (the server answers 400 with it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fraud_schema import NA_VALUES, RAW_FEATURES

NAN = float("nan")


class InputError(ValueError):
    """A request the model cannot score; the message says what is wrong."""


class FraudScorer:
    """A trained model (LightGBM or PyTorch, as its metadata says) plus its feature transform, encoding raw
    records straight to a float32 matrix."""

    def __init__(self, model_dir: Path):
        from model_io import FraudModel

        transform = json.loads((model_dir / "feature_transform.json").read_text())
        self.model = FraudModel(model_dir)
        self.features: list[str] = transform["features"]
        self.numeric = set(transform["numeric"])
        self.liability: str = transform["liability"]
        self.vocab = {c: {v: float(i) for i, v in enumerate(cats)} for c, cats in transform["categorical"].items()}
        self.fields = [f for f in RAW_FEATURES if f in self.numeric or f in self.vocab or f == self.liability]
        self.known = set(self.fields)
        self.threshold = float(os.environ.get("SAGEPIPE_THRESHOLD", "0.5"))
        self.version = os.environ.get("SAGEPIPE_MODEL_VERSION", "")

    def encode(self, records: list[dict[str, Any]]) -> np.ndarray:
        """A float32 feature matrix, column by column (numeric columns parse in one numpy call)."""
        for row, record in enumerate(records):
            if type(record) is not dict or record.keys() != self.known:
                self._check_fields(record, row)
        columns: dict[str, Any] = {}
        for field in self.fields:
            values = [record[field] for record in records]
            if field in self.numeric:
                columns[field] = _numbers(values, field)
            elif field == self.liability:
                pairs = [_limits(v, field, row) for row, v in enumerate(values)]
                columns["liability_per_person"] = [p for p, _ in pairs]
                columns["liability_per_accident"] = [a for _, a in pairs]
            else:
                get = self.vocab[field].get
                columns[field] = [get(v, NAN) if type(v) is str else NAN if v is None else get(str(v), NAN)
                                  for v in values]
        matrix = np.empty((len(records), len(self.features)), dtype=np.float32)
        for j, feature in enumerate(self.features):
            matrix[:, j] = columns[feature]
        return matrix

    def _check_fields(self, record: Any, row: int) -> None:
        if not isinstance(record, dict):
            raise InputError(f"record {row}: expected an object of field: value, got {type(record).__name__}")
        missing = [f for f in self.fields if f not in record]
        if missing:
            raise InputError(f"record {row}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        unknown = [f for f in record if f not in self.known]
        if unknown:
            raise InputError(f"record {row}: unknown field '{unknown[0]}'{_close(unknown[0], self.fields)}")

    def predict(self, records: list[dict[str, Any]]) -> np.ndarray:
        return self.model.predict_matrix(self.encode(records))

    def predict_frame(self, frame: Any) -> np.ndarray:
        """Vectorised scoring of a DataFrame of raw fields (batch transform); extra columns are ignored."""
        missing = [f for f in self.fields if f not in frame.columns]
        if missing:
            raise InputError(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        return self.model.predict_proba(frame)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in NA_VALUES) or \
        (isinstance(value, float) and math.isnan(value))


def _numbers(values: list[Any], field: str) -> Any:
    """Numbers (or numeric strings, None) in one numpy call; anything else value by value, for the message."""
    if not any(type(v) is bool for v in values):
        try:
            parsed = np.array(values, dtype=np.float64)
            if parsed.ndim == 1 and not np.isinf(parsed).any():
                return parsed
        except (ValueError, TypeError, OverflowError):
            pass
    return [_number(v, field, row) for row, v in enumerate(values)]


def _number(value: Any, field: str, row: int) -> float:
    if _missing(value):
        return NAN
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"record {row}: field '{field}' must be a number, got {_shown(value)}")
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"record {row}: field '{field}' must be a number, got {_shown(value)}") from None
    except OverflowError:  # an integer beyond float64's range (over 308 digits)
        number = math.inf
    if math.isinf(number):
        raise InputError(f"record {row}: field '{field}' is out of range for a number, got {_shown(value)}")
    return number


def _limits(value: Any, field: str, row: int) -> tuple[float, float]:
    if _missing(value):
        return NAN, NAN
    person, _, accident = str(value).partition("/")
    try:
        return float(person), float(accident)
    except ValueError:
        raise InputError(f"record {row}: field '{field}' must look like '25/50', got {_shown(value)}") from None


def _shown(value: Any, limit: int = 40) -> str:
    """A value as JSON for a message, cut short (with its length) when long."""
    text = json.dumps(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _close(word: str, choices: list[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" — did you mean '{match[0]}'?" if match else ""


# --- the SageMaker inference-toolkit handlers ------------------------------------------------------
def model_fn(model_dir: str) -> FraudScorer:
    from model_io import open_model_dir

    return FraudScorer(open_model_dir(model_dir))


def input_fn(body: bytes | str, content_type: str, fields: list[str] = RAW_FEATURES) -> list[dict[str, Any]]:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "text/csv":
        return _csv_records(text, fields)
    if kind == "application/json":
        return _json_records(text)
    raise InputError(f"unsupported Content-Type '{content_type}'; send text/csv or application/json")


def _csv_records(text: str, fields: list[str]) -> list[dict[str, Any]]:
    records = []
    reader = csv.reader(io.StringIO(text))
    try:
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(fields):
                raise InputError(f"CSV line {reader.line_num}: expected {len(fields)} comma-separated values (no "
                                 f"header, in the documented field order), got {len(cells)}")
            records.append(dict(zip(fields, cells)))
    except csv.Error as exc:  # a value over the csv module's field size limit (128 KiB)
        raise InputError(f"CSV line {reader.line_num}: {exc}") from None
    if not records:
        raise InputError("the CSV body has no rows")
    return records


def _json_records(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # the only other one: an integer over Python's digit limit
        raise InputError(f"the body has a JSON integer of over {sys.get_int_max_str_digits():,} digits; a number "
                         f"must fit a 64-bit float") from None
    except RecursionError:
        raise InputError("the JSON nests too deeply; send a record {\"field\": value, ...}, a list of records or "
                         "columns {\"field\": [...]}") from None
    if isinstance(data, list):
        if not data:
            raise InputError("the JSON list is empty; send at least one record")
        return data
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise InputError(f"columns have different lengths ({', '.join(map(str, sorted(lengths)))})")
        return [dict(zip(data, values)) for values in zip(*data.values())]
    if isinstance(data, dict):
        return [data]
    raise InputError("expected a JSON object (a record or columns) or a list of records")


def predict_fn(records: list[dict[str, Any]], model: FraudScorer) -> np.ndarray:
    return model.predict(records)


def output_fn(probabilities: np.ndarray, accept: str, threshold: float = 0.5) -> tuple[bytes, str]:
    kind = (accept or "application/json").split(";")[0].strip().lower()
    labels = (probabilities >= threshold).astype(int)
    if kind in ("text/csv",):
        lines = "".join(f"{p:.6f},{label}\n" for p, label in zip(probabilities.tolist(), labels.tolist()))
        return lines.encode(), "text/csv"
    if kind in ("application/json", "*/*", ""):
        predictions = ",".join(f'{{"fraud_probability": {p:.6f}, "fraud": {label}}}'
                               for p, label in zip(probabilities.tolist(), labels.tolist()))
        return f'{{"predictions": [{predictions}], "threshold": {threshold}}}'.encode(), "application/json"
    raise InputError(f"unsupported Accept '{accept}'; ask for application/json or text/csv")
