"""What every command shares: where state lives, loading the pipeline it names, --version, -v/-q through
logging, shell completion, JSON output and a closed stdout pipe."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.spec import PipelineSpec


def state_root() -> Path:
    """Where local state lives: $SAGEPIPE_HOME, else .sagepipe in the repository (or current folder)."""
    if os.environ.get("SAGEPIPE_HOME"):  # absolute: steps, resumes and the background MLflow writer run elsewhere
        return Path(os.environ["SAGEPIPE_HOME"]).resolve()
    from pipelines.loader import find_repo_root

    return find_repo_root(Path.cwd() / "sagepipe.yaml") / ".sagepipe"


def load_spec(args: argparse.Namespace) -> PipelineSpec:
    """The pipeline of `CONFIG --env ENV [--param KEY=VALUE ...]`, typed by the one --param parser."""
    from pipelines.loader import load_pipeline

    return load_pipeline(args.config, args.env, getattr(args, "param", []))


def check_cloud(spec: PipelineSpec) -> None:
    if spec.settings.sagemaker:  # a cloud env: what compile would refuse, without the SDK
        from pipelines.sagemaker.checks import check_cloud_config

        check_cloud_config(spec, requirements=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


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


class _StderrHandler(logging.StreamHandler):
    """A handler on whatever sys.stderr is when it writes: a program that calls main() twice with its stderr
    redirected (a test's capture, an embedding tool) must not keep writing to the first, closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_logging(verbose: int, quiet: int) -> None:
    """sagepipe's own messages (the `sagepipe` logger, plain text on stderr) at INFO by default; -v adds
    DEBUG and other libraries' INFO, -q hides INFO, -qq WARNING."""
    shift = verbose - quiet
    own = logging.getLogger("sagepipe")
    own.setLevel({1: logging.DEBUG, 0: logging.INFO, -1: logging.WARNING}.get(max(min(shift, 1), -2),
                                                                            logging.ERROR))
    if not any(isinstance(h, _StderrHandler) for h in own.handlers):  # others' handlers (a test's) are extra
        handler = _StderrHandler()
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
