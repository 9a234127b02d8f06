"""The process of a local transform step: one input file through the batch engine with the model archive's own
inference handlers (pipelines/serving/transform.py), as SageMaker's batch transform sends it to the container.

    python -m pipelines.local.score_file --model MODEL --input FILE --output FILE [--threshold T] [--chunk-rows N]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Score one file with a model's inference handlers; 2 (with one line) for input the model cannot score."""
    parser = argparse.ArgumentParser(description="score one file with a model's inference handlers")
    for flag in ("--model", "--input", "--output"):
        parser.add_argument(flag, required=True, type=Path)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    args = parser.parse_args(argv)

    from pipelines.errors import UsageError
    from pipelines.model_archive import model_folder
    from pipelines.serving.transform import transform

    with model_folder(args.model) as model_dir:
        code = model_dir / "code"
        if not (code / "inference.py").is_file():
            print(f"the model ({args.model}) carries no code/inference.py to score with", file=sys.stderr)
            return 2
        sys.path.insert(0, str(code))
        spec = importlib.util.spec_from_file_location("inference", code / "inference.py")
        inference = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules["inference"] = inference
        spec.loader.exec_module(inference)  # type: ignore[union-attr]
        model = inference.model_fn(str(model_dir))
        try:
            count = transform(model, args.threshold, args.input, args.output, args.chunk_rows, progress=False,
                              input_error=inference.InputError, names=headerless_fields(args.input, inference))
        except UsageError as exc:  # input the model cannot score: its file, line and column, no traceback
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except inference.InputError as exc:  # a model whose handlers raise it outside predict_frame
            print(f"error: {args.input}: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {count:,} rows to {args.output}")
    return 0


def headerless_fields(source: Path, inference: Any) -> list[str] | None:
    """The field names the model's own input_fn gives a CSV's values when its first line is a record, not a
    header (what SageMaker's batch transform sends the container, line by line), so both backends score the same
    file; None for a file with a header row (or not a CSV)."""
    if source.suffix.lower() != ".csv":
        return None
    import csv

    with open(source, newline="", encoding="utf-8", errors="replace") as handle:  # the engine names bad bytes
        first = handle.readline()
    cells = next(csv.reader([first]), [])
    try:
        fields = list(inference.input_fn(first, "text/csv")[0])
    except Exception:  # noqa: BLE001 - not a record the handler takes as it stands: a header row
        return None
    return None if set(cells) & set(fields) else fields


if __name__ == "__main__":
    sys.exit(main())
