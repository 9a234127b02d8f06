"""Processing step: the raw input — the `source` folder when given, else freshly generated data.

Input (optional): input/source/{claims.csv,customers.csv}. Output: output/raw/{claims.csv,customers.csv}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from generate_data import generate

ROOT = Path(os.environ.get("SAGEPIPE_PROCESSING_DIR", "/opt/ml/processing"))
FILES = ("claims.csv", "customers.csv")


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
