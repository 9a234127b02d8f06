"""CLI conventions: --version, -v/-q through logging, shell completion, `schema`, a closed stdout pipe."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EXIT_OK = 0


def version() -> str:
    try:
        from importlib.metadata import version as package_version

        return package_version("sagepipe")
    except Exception:  # not installed (run from a checkout): the package's own number
        from pipelines import __version__

        return __version__


def verbosity_args(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """-v/-q on the command and every subcommand (`sagepipe -v run ...` and `sagepipe run ... -v`)."""
    default = 0 if top else argparse.SUPPRESS
    taken = parser._option_string_actions  # a subcommand with its own -v or -q keeps it
    if not {"-v", "--verbose"} & taken.keys():
        parser.add_argument("-v", "--verbose", action="count", default=default, help="more log output (-vv: debug)")
    if not {"-q", "--quiet"} & taken.keys():
        parser.add_argument("-q", "--quiet", action="count", default=default, help="less output (-qq: errors only)")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                verbosity_args(child)


def setup_logging(verbose: int, quiet: int) -> None:
    """sagepipe's own messages (the `sagepipe` logger, plain text on stderr) at INFO by default; -v adds
    DEBUG and other libraries' INFO, -q hides INFO, -qq WARNING."""
    shift = verbose - quiet
    own = logging.getLogger("sagepipe")
    own.setLevel({1: logging.DEBUG, 0: logging.INFO, -1: logging.WARNING}.get(max(min(shift, 1), -2),
                                                                            logging.ERROR))
    if not own.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        own.addHandler(handler)
        own.propagate = False
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s",
                        level=logging.DEBUG if shift >= 2 else logging.INFO if shift == 1 else logging.WARNING)


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer a shell's completion request (argcomplete sets _ARGCOMPLETE); a no-op without argcomplete."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ModuleNotFoundError:
        return
    argcomplete.autocomplete(parser)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush finds no broken pipe to complain of."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def schema(output: str | None) -> int:
    from pipelines.config_schema import pipeline_schema

    text = json.dumps(pipeline_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        sys.stdout.write(text)
        return EXIT_OK
    from pipelines.fsutil import atomic_write_text

    atomic_write_text(Path(output), text)
    print(f"wrote the pipeline JSON Schema to {output}", file=sys.stderr)
    return EXIT_OK


def completion(shell: str) -> int:
    from pipelines.extras import require

    argcomplete = require("argcomplete", "sagepipe completion")
    sys.stdout.write(argcomplete.shellcode(["sagepipe"], shell=shell))
    return EXIT_OK
