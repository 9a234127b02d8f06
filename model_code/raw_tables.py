"""Raw CSV files as Arrow tables: read column-wise and multithreaded, written in chunks.

Arrow keeps string columns with few distinct values dictionary-encoded, so a 5M-row claims file takes a few
hundred MB instead of the several GB a pandas frame of Python objects needs. `pandas_dtype` names the dtype
pandas.read_csv would have given a column, so the data-quality checks see the types they always saw.
"""

from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pv

from data_quality import DataError
from fraud_schema import NA_VALUES

PLAIN_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string,
               pa.types.is_large_string, pa.types.is_dictionary, pa.types.is_null)
BLOCK_BYTES = 16 << 20
CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): .*CSV conversion error to (\w+)")


def _convert_options(column_types: dict[str, pa.DataType]) -> pv.ConvertOptions:
    return pv.ConvertOptions(null_values=NA_VALUES, strings_can_be_null=True, quoted_strings_can_be_null=True,
                             auto_dict_encode=True, auto_dict_max_cardinality=1000, column_types=column_types,
                             true_values=["True", "TRUE", "true"], false_values=["False", "FALSE", "false"])


def _first_bad_utf8(path: Path) -> tuple[int, int, int] | None:
    """(line, offset, byte) of the first byte that is not UTF-8, reading the file in blocks."""
    decoder, offset, line = codecs.getincrementaldecoder("utf-8")(), 0, 1
    with path.open("rb") as handle:
        while block := handle.read(8 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return line + block[: exc.start].count(b"\n"), offset + exc.start, block[exc.start]
            line += block.count(b"\n")
            offset += len(block)
    return None


def read_table(path: Path, expected_columns: int) -> pa.Table:
    """Read a raw CSV, turning every way it can be unreadable into a DataError naming the file."""
    name = path.name
    if not path.exists():
        raise DataError(f"{name}: file not found in the input folder {path.parent}")
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if not head.strip() and path.stat().st_size < (1 << 16):
        raise DataError(f"{name}: the file is empty; expected a header line and rows")
    column_types: dict[str, pa.DataType] = {}
    while True:
        try:
            table = _read(path, column_types)
        except pa.ArrowInvalid as exc:
            message = str(exc)
            if "UTF8" in message or "UTF-8" in message:
                _raise_if_not_utf8(path)
            retyped = _retype(path, message, column_types)
            if retyped is None:
                raise DataError(f"{name}: cannot be parsed as CSV: {message.strip()}") from None
            column_types = retyped
            continue
        if any(pa.types.is_binary(_value_type(f.type)) for f in table.schema):  # Arrow's type for non-UTF-8 text
            _raise_if_not_utf8(path)
        break
    _refuse_repeated_names(name, table.column_names)
    if table.num_columns == 1 and expected_columns > 1:
        header = table.column_names[0]
        guess = next((d for d in (";", "\t", "|") if d in header), None)
        hint = f"; it seems to use {guess!r} — save it comma-separated" if guess else ""
        raise DataError(f"{name}: line 1: found one column {header[:60]!r}, expected {expected_columns} "
                        f"comma-separated columns{hint}")
    return _plain_types(path, table, column_types)


def _refuse_repeated_names(name: str, columns: list[str]) -> None:
    seen: dict[str, int] = {}
    for number, column in enumerate(columns, start=1):
        if column in seen:
            raise DataError(f"{name}: line 1: column name {column!r} appears twice (columns {seen[column]} and "
                            f"{number}); give each column its own name")
        seen[column] = number


def _value_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _raise_if_not_utf8(path: Path) -> None:
    bad = _first_bad_utf8(path)
    if bad:
        line, offset, byte = bad
        raise DataError(f"{path.name}: line {line}: not valid UTF-8 (byte 0x{byte:02x} at offset {offset}); "
                        "re-export the file as UTF-8")


def _read(path: Path, column_types: dict[str, pa.DataType]) -> pa.Table:
    """Block by block: a third of the peak memory of pyarrow.csv.read_csv; types come from the first block."""
    reader = pv.open_csv(path, read_options=pv.ReadOptions(block_size=BLOCK_BYTES),
                         convert_options=_convert_options(column_types))
    return pa.Table.from_batches(list(reader), schema=reader.schema)


def _retype(path: Path, message: str, column_types: dict[str, pa.DataType]) -> dict[str, pa.DataType] | None:
    """A column whose first block looked like integers and a later one did not (as pandas would, widen it:
    integers to float, anything else to text); None when the error is not of that kind."""
    found = CONVERSION_ERROR.search(message)
    if not found:
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        names = next(csv.reader(handle))
    column = names[int(found.group(1))]
    numeric_first = found.group(2) in ("int64", "int32", "null") and column not in column_types
    widened = pa.float64() if numeric_first else pa.string()
    if column_types.get(column) == widened:
        return None
    return {**column_types, column: widened}


def _plain_types(path: Path, table: pa.Table, column_types: dict[str, pa.DataType]) -> pa.Table:
    """Dates and times stay text, as they do in pandas.read_csv (no parse_dates)."""
    odd = {name: pa.string() for name, field in zip(table.column_names, table.schema)
           if not any(check(field.type) for check in PLAIN_TYPES)}
    if not odd:
        return table
    return _read(path, {**column_types, **odd})


def pandas_dtype(column: pa.ChunkedArray) -> str:
    """The dtype name pandas.read_csv gives such a column (integers with gaps become float64)."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_integer(kind):
        return "int64" if column.null_count == 0 else "float64"
    if pa.types.is_floating(kind) or pa.types.is_null(kind):
        return "float64"
    if pa.types.is_boolean(kind):
        return "bool" if column.null_count == 0 else "object_"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "str"
    return "object_"


def pandas_like(column: pa.ChunkedArray, keep_dictionary: bool = False) -> pa.ChunkedArray:
    """The column as pandas would store it in parquet: text as strings (dictionary-encoded text, when kept, is
    written as the same strings by a writer with store_schema=False), integers with gaps as floats."""
    kind = column.type
    if pa.types.is_dictionary(kind) and keep_dictionary and pa.types.is_string(kind.value_type):
        return column
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    if pa.types.is_null(kind) or (pa.types.is_integer(kind) and column.null_count):
        return column.cast(pa.float64())
    if pa.types.is_large_string(kind):
        return column.cast(pa.string())
    return column


def write_csv(table: pa.Table, path: Path, header: bool) -> None:
    """Append a table to a CSV file in the layout pandas writes (header once, no quotes, no index)."""
    with path.open("wb" if header else "ab") as handle:
        if header:
            handle.write((",".join(table.column_names) + "\n").encode())
        pv.write_csv(table, handle, pv.WriteOptions(include_header=False, quoting_style="none"))
