"""`sagepipe serve|transform`: a registered model version behind a local endpoint, or over a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli.stores import open_for_env
from pipelines.cli.support import state_root
from pipelines.errors import UsageError


def serve_command(args: argparse.Namespace) -> int:
    from pipelines.serving import limits  # noqa: F401  (a bad SAGEPIPE_* limit is a usage error before anything)
    from pipelines.serving.serve import resolve, run_server

    root = state_root()
    record = resolve(args.target, open_for_env(args.env, root), root)
    return run_server(record, args.port, args.workers, capture=args.capture, capture_percent=args.capture_percent)


def transform_command(args: argparse.Namespace) -> int:
    """Score source into output (missing folders on its way are made); input the model cannot score is a
    UsageError at its file, line and column, and leaves no output."""
    import json

    from pipelines.serving.app import _import_inference
    from pipelines.serving.serve import resolve
    from pipelines.serving.transform import transform

    source, output, root = args.input, args.output, state_root()
    source_path, target_path = Path(source), Path(output)
    if source_path.is_dir():
        raise UsageError(f"input {source} is a folder; name the file to score (a .csv with a header row, or a "
                         ".parquet file)")
    if not source_path.is_file():
        raise UsageError(f"input {source} does not exist (a .csv with a header row, or a .parquet file)")
    if target_path.is_dir():
        raise UsageError(f"output {output} is a folder; name the file to write in it, e.g. "
                         f"{target_path / 'scored.csv'}")
    if target_path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise UsageError(f"output {output}: name it .csv or .parquet")
    if target_path.exists() and target_path.resolve() == source_path.resolve():
        raise UsageError(f"output {output} is the input file: the scores would replace the claims; name another "
                         "output file")
    record = json.loads(resolve(args.target, open_for_env(args.env, root), root).read_text())
    inference = _import_inference(Path(record["code_dir"]))
    model = inference.model_fn(record["model_dir"])
    print(f"transform {source} with {record['model_group']} version {record['version']} -> {output}",
          file=sys.stderr)
    count = transform(model, float(record["threshold"]), source_path, target_path, args.chunk_rows,
                      progress=sys.stderr.isatty(), input_error=inference.InputError)
    print(f"wrote {count:,} rows to {output}", file=sys.stderr)
    return 0
