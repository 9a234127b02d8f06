"""The `sagepipe` command line: the top layer, which nothing else in the framework imports.

parser.py builds the arguments and maps each command to its handler; one module per command group carries
them out (project, runs, emulate, cloud, serving, models); drive.py runs a pipeline with live progress."""

from __future__ import annotations

import sys
from typing import Sequence

from pipelines.cli.parser import build_parser, handler_of
from pipelines.cli.support import complete, setup_logging, silence_stdout, state_root
from pipelines.errors import EXIT_INTERRUPTED, UserError

__all__ = ["build_parser", "main", "state_root"]


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.extras import MissingExtra, missing_extra_message

    parser = build_parser()
    complete(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    try:
        code = handler_of(args)(args)
        sys.stdout.flush()  # a closed pipe shows here, while BrokenPipeError can still be handled
        return code
    except BrokenPipeError:  # `sagepipe ... | head`: the reader has gone, which is no error of ours
        silence_stdout()
        return 141
    except ModuleNotFoundError as exc:  # an optional dependency imported where the command needs it
        message = missing_extra_message(exc, f"sagepipe {args.command}")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return MissingExtra.exit_code
    except UserError as exc:  # config, usage, run not found or unavailable, registry, AWS: one line, its code
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
