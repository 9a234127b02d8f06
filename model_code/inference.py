"""Inference handlers for the fraud model: the SageMaker inference-toolkit contract, also run by `sagepipe serve`.

    model_fn(model_dir) -> model      input_fn(body, content_type) -> records
    predict_fn(records, model) -> p   output_fn(p, accept) -> (body, content type)

Requests carry raw claim and customer fields (the model folder holds its feature transform):
- text/csv: one row per line, no header, the 28 fields in RAW_FEATURES order;
- application/json: a record {"field": value, ...}, a list of records, or columns {"field": [...]}.
A record may also carry its key (policy_id): it is not scored, and each prediction echoes it.
Bad input raises InputError, whose text names the problem (the server answers 400 with it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fraud_schema import KEY, NA_VALUES, RAW_FEATURES

try:  # about 3x faster on large bodies; anything it refuses (or could read differently) goes to json
    from orjson import loads as _fast_loads
except ImportError:  # an inference image without it
    _fast_loads = None  # type: ignore[assignment]

NAN = float("nan")
_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")
_NAN_TEXT = ("nan", "+nan", "-nan")  # what float() reads as NaN: a missing value
PASSTHROUGH = (KEY,)  # key columns a record may carry: accepted, not scored, echoed in the answer


class Scores(NamedTuple):
    """predict_fn's answer: a probability per record, and the key columns the records carried."""

    probabilities: np.ndarray
    keys: dict[str, list[Any]]


class InputError(ValueError):
    """A request the model cannot score; the message says what is wrong. From predict_frame, `row` (the frame's
    index label) and `column` say where, so that batch transform can name the file's line."""

    def __init__(self, message: str, row: Any = None, column: str | None = None):
        super().__init__(message)
        self.row, self.column = row, column


SHAPES = 'a record {"field": value, ...}, a list of records or columns {"field": [values, ...]}'


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
        self.keyed = self.known | set(PASSTHROUGH)
        take = itemgetter(*self.fields)
        self._take = take if len(self.fields) > 1 else lambda record: (take(record),)
        self._numeric_fields = [f for f in self.fields if f in self.numeric]
        used = [(i, self.features.index(f)) for i, f in enumerate(self._numeric_fields) if f in self.features]
        self._numeric_rows, self._numeric_at = [i for i, _ in used], [j for _, j in used]
        self._rest_at = [(j, f) for j, f in enumerate(self.features) if j not in self._numeric_at]
        self.threshold = float(os.environ.get("SAGEPIPE_THRESHOLD", "0.5"))
        self.version = os.environ.get("SAGEPIPE_MODEL_VERSION", "")

    def encode(self, records: list[dict[str, Any]]) -> np.ndarray:
        """A float32 feature matrix: every numeric column parsed in one numpy call (column by column, for the
        message, when one holds something else), categories and liability limits column by column."""
        for row, record in enumerate(records):
            if type(record) is not dict or (record.keys() != self.known and record.keys() != self.keyed):
                self._check_fields(record, row)
        matrix = np.empty((len(records), len(self.features)), dtype=np.float32)
        if not records:
            return matrix
        by_field = dict(zip(self.fields, zip(*map(self._take, records))))
        numbers = _number_block([by_field[f] for f in self._numeric_fields])
        columns: dict[str, Any] = {}
        for field in self.fields:
            values = by_field[field]
            if field in self.numeric:
                if numbers is None:
                    columns[field] = _numbers(list(values), field)
            elif field == self.liability:
                pairs = _limits_column(values, field)
                columns["liability_per_person"] = [p for p, _ in pairs]
                columns["liability_per_accident"] = [a for _, a in pairs]
            else:
                get = self.vocab[field].get
                columns[field] = list(map(get, values, repeat(NAN))) if _all_text(values) else \
                    [get(v, NAN) if type(v) is str else NAN if v is None else get(str(v), NAN) for v in values]
        if numbers is None:
            for i, j in zip(self._numeric_rows, self._numeric_at):
                matrix[:, j] = columns[self._numeric_fields[i]]
        elif self._numeric_at:
            matrix[:, self._numeric_at] = numbers[self._numeric_rows].T
        for j, feature in self._rest_at:
            matrix[:, j] = columns[feature]
        return matrix

    def _check_fields(self, record: Any, row: int) -> None:
        if not isinstance(record, dict):
            raise InputError(f"record {row} is {_kind(record)}, not an object; send {SHAPES}")
        missing = [f for f in self.fields if f not in record]
        if missing:
            raise InputError(f"record {row}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                             f"(a record carries all {len(self.fields)} fields by name)")
        unknown = [f for f in record if f not in self.known and f not in PASSTHROUGH]
        if unknown:
            raise InputError(f"record {row}: unknown field '{unknown[0]}'{_close(unknown[0], self.fields)}")

    def predict(self, records: list[dict[str, Any]]) -> np.ndarray:
        return self.model.predict_matrix(self.encode(records))

    def predict_frame(self, frame: Any) -> np.ndarray:
        """Vectorised scoring of a DataFrame of raw fields (batch transform); extra columns are ignored. A value
        that is neither missing (NaN) nor what its column holds is an InputError naming its row and column, never
        scored as missing."""
        missing = [f for f in self.fields if f not in frame.columns]
        if missing:
            raise InputError(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        return self.model.predict_proba(self.checked_frame(frame))

    def checked_frame(self, frame: Any) -> Any:
        """frame with its numeric columns parsed; an InputError at the first value that is not a number (or not
        finite), or a liability limit not like '25/50'."""
        import pandas as pd

        parsed = {}
        for field in self._numeric_fields:
            values = frame[field]
            if values.dtype == bool:
                raise InputError(f"column '{field}' must hold numbers, got true/false values", frame.index[0], field)
            numbers = values if values.dtype.kind in "iuf" else pd.to_numeric(values, errors="coerce")
            infinite = np.isinf(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
            unparsed = np.zeros(len(values), bool)
            if values.dtype.kind not in "iuf":
                parsed[field] = numbers
                unparsed = (numbers.isna() & values.notna()).to_numpy(bool)
                if unparsed.any():  # 'NaN' spelt out is missing, as the endpoint reads it
                    spelt_nan = values.astype("string").str.strip().str.lower().isin(_NAN_TEXT).to_numpy(bool)
                    unparsed = unparsed & ~spelt_nan
            if infinite.any() or unparsed.any():
                at = int((infinite | unparsed).argmax())
                what = "is out of range for a number" if infinite[at] else "must be a number"
                raise InputError(f"column '{field}' {what}, got {_shown(_plain(values.iloc[at]))}", frame.index[at],
                                 field)
        limits = frame[self.liability]
        if limits.dtype.kind not in "iuf":
            bad = []
            for value in limits.dropna().unique():  # a column holds a handful of distinct limits
                try:
                    _limits(value, self.liability, 0)
                except InputError:
                    bad.append(value)
            if bad:
                at = int(limits.isin(bad).to_numpy(bool).argmax())
                raise InputError(f"column '{self.liability}' must look like '25/50' (per person / per accident, in "
                                 f"$1,000s), got {_shown(_plain(limits.iloc[at]))}", frame.index[at], self.liability)
        return frame.assign(**parsed) if parsed else frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in NA_VALUES) or \
        (isinstance(value, float) and math.isnan(value))


def _all_text(values: tuple[Any, ...]) -> bool:
    return set(map(type, values)) == {str}


def _limits_column(values: tuple[Any, ...], field: str) -> list[tuple[float, float]]:
    """_limits of each value; text is parsed once per distinct value (a column holds a handful)."""
    if not _all_text(values):
        return [_limits(v, field, row) for row, v in enumerate(values)]
    parsed = {}
    for value in dict.fromkeys(values):
        try:
            parsed[value] = _limits(value, field, 0)
        except InputError:  # the first row holding it is the first bad row: name that one
            parsed[value] = _limits(value, field, values.index(value))
    return list(map(parsed.__getitem__, values))


def _number_block(columns: list[tuple[Any, ...]]) -> np.ndarray | None:
    """All numeric columns in one call (fields x rows, float64) when every value parses as a finite number and
    none is a bool (which numpy would take as 1 or 0); None otherwise, and _numbers then goes column by column."""
    if not columns or bool in set(map(type, chain.from_iterable(columns))):
        return None
    try:
        block = np.array(columns, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return None
    return block if block.ndim == 2 and not np.isinf(block).any() else None


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


def _plain(value: Any) -> Any:
    """A cell as a JSON-able value (numpy scalars to Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def _shown(value: Any, limit: int = 40) -> str:
    """A value as JSON for a message, cut short (with its length) when long."""
    text = json.dumps(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


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


def _parse_json(text: str) -> Any:
    raw = text.encode()
    # 19 digits in a row may be an integer past 64 bits: orjson makes it a float, json keeps it exact
    if _fast_loads is not None and b"0" * 19 not in raw.translate(_DIGITS):
        try:
            return _fast_loads(raw)
        except ValueError:  # json says what is wrong, in its words, or reads what orjson refuses (NaN, 1e999)
            pass
    return json.loads(text)


def _json_records(text: str) -> list[dict[str, Any]]:
    try:
        data = _parse_json(text)
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
            raise InputError(f"the JSON list is empty: nothing to score; send {SHAPES}")
        for row, record in enumerate(data):
            if type(record) is not dict:
                raise InputError(f"record {row} of the list is {_kind(record)}, not an object; send {SHAPES}")
        return data
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise InputError(f"columns have different lengths ({', '.join(map(str, sorted(lengths)))}); each column "
                             'of {"field": [values, ...]} holds one value per row')
        if not lengths.pop():
            raise InputError(f"the columns hold no rows: nothing to score; send {SHAPES}")
        return [dict(zip(data, values)) for values in zip(*data.values())]
    if isinstance(data, dict):
        return [data]
    raise InputError(f"the JSON body is {_kind(data)}; send {SHAPES}")


def _kind(value: Any) -> str:
    """How a JSON value is named in a message: null, true, a number, a string, a list."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    names = {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def predict_fn(records: list[dict[str, Any]], model: FraudScorer) -> Scores:
    keys = {column: [record.get(column) for record in records]
            for column in PASSTHROUGH if any(column in record for record in records)}
    return Scores(model.predict(records), keys)


def output_fn(prediction: Scores | np.ndarray, accept: str, threshold: float = 0.5) -> tuple[bytes, str]:
    probabilities, keys = prediction if isinstance(prediction, Scores) else (np.asarray(prediction), {})
    kind = (accept or "application/json").split(";")[0].strip().lower()
    labels = (probabilities >= threshold).astype(int)
    rows = list(zip(probabilities.tolist(), labels.tolist()))
    if kind in ("text/csv",):  # key columns first, as `sagepipe transform` writes them
        key_cells = [[_csv_cell(v) for v in values] for values in zip(*keys.values())] or [[] for _ in rows]
        lines = "".join(",".join([*cells, f"{p:.6f}", str(label)]) + "\n" for cells, (p, label) in zip(key_cells, rows))
        return lines.encode(), "text/csv"
    if kind in ("application/json", "*/*", ""):
        key_parts = [[f"{json.dumps(c)}: {json.dumps(v)}, " for c, v in zip(keys, values)]
                     for values in zip(*keys.values())] or [[] for _ in rows]
        predictions = ",".join(f'{{{"".join(parts)}"fraud_probability": {p:.6f}, "fraud": {label}}}'
                               for parts, (p, label) in zip(key_parts, rows))
        return f'{{"predictions": [{predictions}], "threshold": {threshold}}}'.encode(), "application/json"
    raise InputError(f"unsupported Accept '{accept}'; ask for application/json or text/csv")
