"""`sagepipe emulate|emulated list|emulated clean`, and the resume of an emulated run: the compiled definition
run here with SageMaker's semantics, on the emulated AWS that emulations share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.cli.drive import drive
from pipelines.cli.support import state_root
from pipelines.errors import ConfigError, Problem

if TYPE_CHECKING:
    from pipelines.emulate.execution import ReadyToRun
    from pipelines.local.state import RunState


def emulate_command(args: argparse.Namespace) -> int:
    """Run a compiled config or a definition file; the exit code of `sagepipe run`."""
    from pipelines.emulate.launch import started

    if bool(args.config) == bool(args.definition):
        raise ConfigError([Problem("sagepipe emulate", None, "CONFIG", "give a pipeline config or --definition "
                                   "FILE.json (one of the two)")])
    spec = None
    if args.config:
        from pipelines.loader import load_pipeline

        spec = load_pipeline(args.config, args.env)
    root = state_root()
    with started(spec, args.definition, args.param, root, args.max_parallel) as ready:
        print(f"emulating SageMaker pipeline execution {ready.arn}", file=sys.stderr if args.json else sys.stdout,
              flush=True)
        return _drive(ready, root, args.json, args.tail)


def resume_emulated(state: RunState, root: Path, max_parallel: int | None, as_json: bool, tail: int = 0) -> int:
    from pipelines.emulate.execution import resumed

    with resumed(state, root, max_parallel) as ready:
        return _drive(ready, root, as_json, tail)


def _drive(ready: ReadyToRun, root: Path, as_json: bool, tail: int) -> int:
    return drive(ready.pipeline, root, ready.max_parallel, as_json, False, ready.start, ready.title, tail)


def _emulated_home() -> Path:
    from pipelines.emulate.server import aws_dir

    return aws_dir(state_root() / "emulate")


def emulated_list_command(args: argparse.Namespace) -> int:
    from pipelines.emulate.aws_state import list_command

    return list_command(_emulated_home(), args.json)


def emulated_clean_command(args: argparse.Namespace) -> int:
    from pipelines.emulate.aws_state import clean_command

    return clean_command(_emulated_home())
