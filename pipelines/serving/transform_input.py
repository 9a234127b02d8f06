"""What `sagepipe transform` reads: a CSV (with a header row) or Parquet file in chunks of rows, every value as
the file holds it, and each problem with the file told as a UsageError naming the file, its line (or row), what
is wrong and how to fix it.

A CSV is read with Arrow's streaming reader: every column as text ("" and N/A are missing values), a row with
more or fewer values than the header names is an error, never a row of missing values. Lines are counted only
when something is wrong (the csv module reads the file again to find the line), so a good file is read once.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Iterator

from pipelines.errors import UsageError

NA_VALUES = ["", "N/A"]  # as the model's schema spells a missing value ("None" is a category)
BLOCK_BYTES = 4 << 20  # Arrow's reading block; chunks of rows are cut from these
_COLUMNS = re.compile(r"Expected (\d+) columns, got (\d+)")


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def chunks(path: Path, rows: int, names: list[str] | None = None) -> Iterator[tuple[Any, float]]:
    """(DataFrame of at most `rows` rows, fraction of the input read so far); each frame's index counts the
    file's data rows from 0, so a problem in a frame can be placed in the file (where()). names: the columns of
    a CSV without a header row (what SageMaker's batch transform sends a container)."""
    import pandas as pd

    offset = 0
    for table, fraction in (_parquet_tables(path, rows) if is_parquet(path) else _csv_tables(path, rows, names)):
        frame = table.to_pandas()
        frame.index = pd.RangeIndex(offset, offset + len(frame))
        offset += len(frame)
        yield frame, fraction
    if offset == 0 and is_parquet(path):
        raise UsageError(f"{path} holds no rows: nothing to score; write the rows to score into it")
    if offset == 0 and names:
        raise UsageError(f"{path} holds no rows: nothing to score; give one row per line")
    if offset == 0:
        raise UsageError(f"{path} has a header row but no rows under it: nothing to score; add the rows to score, "
                         "one per line, under the header")


def where(path: Path, row: Any, headerless: bool = False) -> str:
    """'FILE line N' (CSV) or 'FILE row N' (Parquet) for a frame's row label; just FILE when it is not a row."""
    if not isinstance(row, int) or row < 0:
        return str(path)
    if is_parquet(path):
        return f"{path} row {row + 1:,}"
    line = _line_of(path, row if headerless else row + 1)
    return f"{path} line {line:,}" if line else f"{path} data row {row + 1:,}"


# --- Parquet -----------------------------------------------------------------------------------------------
def _parquet_tables(path: Path, rows: int) -> Iterator[tuple[Any, float]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
        total, seen = max(source.metadata.num_rows, 1), 0
        for batch in source.iter_batches(batch_size=rows):
            seen += batch.num_rows
            if batch.num_rows:
                yield pa.Table.from_batches([batch]), seen / total
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"{path} cannot be read as Parquet ({_first_line(exc)}); give a Parquet file, or a CSV "
                         "named .csv") from None


# --- CSV ---------------------------------------------------------------------------------------------------
def _csv_tables(path: Path, rows: int, names: list[str] | None) -> Iterator[tuple[Any, float]]:
    """Arrow tables of exactly `rows` rows (the last one fewer), cut from the reader's blocks."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    header = names or csv_header(path)
    size = max(path.stat().st_size, 1)
    if names and not path.stat().st_size:
        raise UsageError(f"{path} is empty: nothing to score; give one row per line")
    with open(path, "rb") as handle:
        try:
            reader = pcsv.open_csv(
                handle, read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES, column_names=names),
                parse_options=pcsv.ParseOptions(newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                                    null_values=NA_VALUES, strings_can_be_null=True,
                                                    quoted_strings_can_be_null=True))
            held: list[Any] = []
            count = 0
            for batch in reader:
                if not batch.num_rows:
                    continue
                held.append(batch)
                count += batch.num_rows
                while count >= rows:
                    table = pa.Table.from_batches(held)
                    rest = table.slice(rows)
                    held, count = rest.to_batches(), rest.num_rows
                    yield table.slice(0, rows), min(handle.tell() / size, 1.0)
            if count:
                yield pa.Table.from_batches(held), 1.0
        except pa.ArrowInvalid as exc:
            raise _csv_problem(path, header, str(exc), headerless=bool(names)) from None


def csv_header(path: Path) -> list[str]:
    """The header row's column names; a UsageError for an empty file, a header alone is left to chunks()."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next((record for record in reader if record), None)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except csv.Error as exc:
        raise UsageError(f"{path} line 1: the header row cannot be read ({exc}); the first line names the columns, "
                         "separated by commas") from None
    if header is None:
        raise UsageError(f"{path} is empty: a CSV needs a header row naming the columns, then one row per record")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise UsageError(f"{path} line 1: column '{name}' appears twice in the header; name each column once")
        seen.add(name)
    return header


def _csv_problem(path: Path, header: list[str], message: str, headerless: bool = False) -> UsageError:
    """The UsageError for what Arrow's reader refused, placed at its line."""
    if "invalid UTF8" in message:
        return _not_utf8(path)
    counted = _COLUMNS.search(message)
    if counted:
        found = _first_ragged(path, len(header), headerless)
        if found:
            line, values, last = found
            quotes = f" (a quote opened on it is not closed: the row runs to line {last:,})" if last > line else ""
            return UsageError(f"{path} line {line:,}: {values} value{'s' if values != 1 else ''}, but the "
                              f"{'model reads' if headerless else 'header names'} {len(header)} columns{quotes}; "
                              "give every row one value per column (an empty cell for a missing value)")
        return UsageError(f"{path}: a row has {counted.group(2)} values, but the header names {counted.group(1)} "
                          f"columns; give every row one value per column ({_first_line(message)})")
    return UsageError(f"{path} cannot be read as CSV: {_first_line(message)}; give a CSV with a header row (UTF-8, "
                      "comma-separated)")


def _records(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """(the line it starts on, the line it ends on, values) of each non-empty record, the header included."""
    csv.field_size_limit(1 << 30)  # Arrow reads values of any size; the csv module's default stops at 128 KiB
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        last = 0
        for record in reader:
            start, last = last + 1, reader.line_num
            if record:
                yield start, last, record


def _line_of(path: Path, record: int) -> int | None:
    """The line record `record` (0-based, the header counted, empty lines skipped) starts on."""
    for index, (line, _, _) in enumerate(_records(path)):
        if index == record:
            return line
    return None


def _first_ragged(path: Path, width: int, headerless: bool) -> tuple[int, int, int] | None:
    """(line, number of values, last line) of the first record whose values are not `width`."""
    records = _records(path)
    if not headerless:
        next(records, None)
    for line, last, record in records:
        if len(record) != width:
            return line, len(record), last
    return None


def _not_utf8(path: Path) -> UsageError:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return UsageError(f"{path} line {number:,}, byte {exc.start + 1}: 0x{line[exc.start]:02x} is not "
                                  "UTF-8 text; save the file as UTF-8 (a spreadsheet's 'CSV UTF-8'), or convert it, "
                                  f"e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}-utf8.csv")
    return UsageError(f"{path} is not UTF-8 text; save the file as UTF-8")


def _first_line(exc: Any) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
