"""`sagepipe transform`: batch inference over CSV or Parquet in chunks, with bounded memory.

Output rows follow input rows one for one: the key column when the input has one, then
fraud_probability and fraud. The output is written beside its final name and renamed into place
when complete, so a failed run leaves nothing half-written: no output, no partial file, and no folder it made.
Folders missing on the way to the output are made, as `aws s3 cp` or `mkdir -p` would.

Input the model cannot score is refused, never scored as missing: a row with more or fewer values than the
header names, a value that is not what its column holds (a word in a number column), an empty file, a header
with no rows, a file that is not UTF-8. Each is a UsageError (exit 2) naming the file, its line, the column,
what is wrong and how to fix it (pipelines/serving/transform_input.py reads the file).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from pipelines.errors import UsageError
from pipelines.serving.transform_input import chunks, where

KEY = "policy_id"
VALUE_FIX = "correct the value, or leave the cell empty (or N/A) where the value is missing"


def transform(model: Any, threshold: float, source: Path, target: Path, rows: int = 200_000,
              progress: bool = True, input_error: type[Exception] | tuple[type[Exception], ...] = (),
              names: list[str] | None = None) -> int:
    """Score every row of source into target (CSV or Parquet by suffix); returns the row count.

    input_error: the model's error for input it cannot score (its inference module's InputError), told as a
    UsageError at the file's line and column when it names a row. names: the columns of a CSV without a header
    row."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    made = make_folders(target.parent)
    partial = target.with_name(f".{target.name}.partial")
    parquet = target.suffix.lower() in (".parquet", ".pq")
    writer, done, started = None, 0, time.time()
    try:
        with open(partial, "wb") as sink:
            try:
                for frame, fraction in chunks(source, rows, names):
                    try:
                        probabilities = model.predict_frame(frame)
                    except input_error as exc:
                        raise UsageError(_placed(source, exc, bool(names))) from None
                    out = pd.DataFrame({"fraud_probability": probabilities.round(6),
                                        "fraud": (probabilities >= threshold).astype("int8")})
                    if KEY in frame.columns:
                        out.insert(0, KEY, frame[KEY].to_numpy())
                    if parquet:
                        table = pa.Table.from_pandas(out, preserve_index=False)
                        writer = writer or pq.ParquetWriter(sink, table.schema)
                        writer.write_table(table)
                    else:
                        out.to_csv(sink, header=done == 0, index=False)
                    done += len(out)
                    if progress:
                        _bar(fraction, done, time.time() - started)
            finally:  # before the file closes, also on failure (else its __del__ writes to a closed file)
                if writer is not None:
                    writer.close()
        partial.replace(target)
    except BaseException:
        if progress and done:
            print(file=sys.stderr)  # the error starts on a line of its own, not after the bar
        partial.unlink(missing_ok=True)
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:  # something else was put there meanwhile: not ours to remove
                break
        raise
    if progress:
        print(file=sys.stderr)
    return done


def make_folders(folder: Path) -> list[Path]:
    """Make folder and its missing parents; the ones made, outermost first (a UsageError when one cannot be)."""
    missing = []
    for parent in (folder, *folder.parents):
        if parent.is_dir():
            break
        if parent.exists():
            raise UsageError(f"output folder {folder}: {parent} is a file, not a folder; name an output in a folder")
        missing.append(parent)
    made: list[Path] = []
    for parent in reversed(missing):
        try:
            parent.mkdir()
        except OSError as exc:
            for done in reversed(made):
                done.rmdir()
            raise UsageError(f"output folder {folder} cannot be made ({parent}: {exc.strerror}); make it, or name "
                             "an output in a folder you can write to") from None
        made.append(parent)
    return made


def _placed(source: Path, exc: Exception, headerless: bool) -> str:
    """The model's complaint at its place in the file: 'FILE line N: column ...: what; how to fix'."""
    row = getattr(exc, "row", None)
    if row is None:  # about the file as a whole (a missing column), or from a model's older handlers
        return f"{source}: {exc}" + ("; the header row must name every field the model reads"
                                     if "missing column" in str(exc) else "")
    return f"{where(source, int(row), headerless)}: {exc}; {VALUE_FIX}"


def _bar(fraction: float, rows: int, seconds: float) -> None:
    filled = int(30 * fraction)
    rate = rows / seconds if seconds > 0 else 0.0
    print(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%}  {rows:,} rows  {rate:,.0f} rows/s",
          end="", file=sys.stderr, flush=True)
