"""`sagepipe transform`: batch inference over CSV or Parquet in chunks, with bounded memory.

Output rows follow input rows one for one: the key column when the input has one, then
fraud_probability and fraud. The output is written beside its final name and renamed into place
when complete, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Iterator

KEY = "policy_id"


def chunks(path: Path, rows: int) -> Iterator[tuple[Any, float]]:
    """(DataFrame chunk, fraction of the input read so far)."""
    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        source = pq.ParquetFile(path)
        total, seen = max(source.metadata.num_rows, 1), 0
        for batch in source.iter_batches(batch_size=rows):
            seen += batch.num_rows
            yield batch.to_pandas(), seen / total
        return
    size = max(path.stat().st_size, 1)
    with open(path, "rb") as handle:
        reader = pd.read_csv(handle, chunksize=rows, keep_default_na=False, na_values=["", "N/A"], dtype=str)
        for frame in reader:
            yield frame, min(handle.tell() / size, 1.0)


def transform(model: Any, threshold: float, source: Path, target: Path, rows: int = 200_000,
              progress: bool = True) -> int:
    """Score every row of source into target (CSV or Parquet by suffix); returns the row count."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    partial = target.with_name(f".{target.name}.partial")
    parquet = target.suffix.lower() in (".parquet", ".pq")
    writer, done, started = None, 0, time.time()
    try:
        with open(partial, "wb") as sink:
            for frame, fraction in chunks(source, rows):
                probabilities = model.predict_frame(frame)
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
            if writer is not None:
                writer.close()
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if progress:
        print(file=sys.stderr)
    return done


def _bar(fraction: float, rows: int, seconds: float) -> None:
    filled = int(30 * fraction)
    rate = rows / seconds if seconds > 0 else 0.0
    print(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%}  {rows:,} rows  {rate:,.0f} rows/s",
          end="", file=sys.stderr, flush=True)
