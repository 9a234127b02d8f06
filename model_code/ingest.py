"""Processing step: the raw input — the `source` folder when given, else freshly generated data.

Input (optional): input/source/{claims.csv,customers.csv}. Output: output/raw/{claims.csv,customers.csv}.
Generated rows are generate_data's, chunk by chunk, written by Arrow's CSV writer (7x pandas' to_csv).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import generate_data

ROOT = Path(os.environ.get("SAGEPIPE_PROCESSING_DIR", "/opt/ml/processing"))
FILES = ("claims.csv", "customers.csv")


def generate(rows: int, seed: int, out: Path) -> None:
    """generate_data.generate's rows (same generator, same chunks), written through Arrow."""
    import numpy as np
    import pyarrow as pa

    from raw_tables import write_csv

    rng = np.random.default_rng(seed)
    for start in range(0, rows, generate_data.CHUNK):
        ids = np.arange(start + 1, min(rows, start + generate_data.CHUNK) + 1, dtype=np.int64)
        customers = generate_data._customers(rng, ids)
        claims = generate_data._claims(rng, customers)
        for name, frame in (("claims.csv", claims), ("customers.csv", customers)):
            write_csv(pa.Table.from_pandas(frame, preserve_index=False), out / name, header=start == 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    source, out = ROOT / "input" / "source", ROOT / "output" / "raw"
    out.mkdir(parents=True, exist_ok=True)
    if source.exists():
        missing = [f for f in FILES if not (source / f).is_file()]
        if missing:
            print(f"ERROR: input folder {source.resolve()} has no {', '.join(missing)}; it needs both "
                  f"{' and '.join(FILES)}", file=sys.stderr)
            sys.exit(1)
        for name in FILES:
            shutil.copyfile(source / name, out / name)
        print(f"copied {', '.join(FILES)} from {source.resolve()}")
    else:
        generate(args.rows, args.seed, out)
        print(f"generated {args.rows} rows (seed {args.seed})")


if __name__ == "__main__":
    main()
