"""The `sagepipe` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from pipelines import cli_support
from pipelines.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ConfigError, Problem, UserError
STARTED = time.time()  # when this command began: a registry decision recorded later by someone else conflicts


def state_root() -> Path:
    """Where local state lives: $SAGEPIPE_HOME, else .sagepipe in the repository (or current folder)."""
    if os.environ.get("SAGEPIPE_HOME"):  # absolute: steps, resumes and the background MLflow writer run elsewhere
        return Path(os.environ["SAGEPIPE_HOME"]).resolve()
    from pipelines.loader import find_repo_root

    return find_repo_root(Path.cwd() / "sagepipe.yaml") / ".sagepipe"


def _config_args(parser: argparse.ArgumentParser, params: bool = True) -> None:
    parser.add_argument("config", help="pipeline YAML file, e.g. configs/fraud-detection.yaml")
    parser.add_argument("--env", default="local", help="overlay configs/env/ENV.yaml (default: local)")
    if params:
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                            help="override a pipeline parameter (repeatable)")


def _int_in(low: int, high: int | None = None) -> Any:
    """An argparse type: a whole number from low to high (argparse then says what is wrong and exits 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: {low} to {high}" if high is not None
                                             else f"{value} is out of range: at least {low}")
        return value

    return parse


def _tail_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tail", type=_int_in(0, 50), default=0, metavar="N",
                        help="on a terminal, show the last N lines of each running step's log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagepipe", description="Declarative ML pipelines: run them here, "
                                     "compile them to SageMaker Pipelines.")
    parser.add_argument("--version", action="version", version=f"sagepipe {cli_support.version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = sub.add_parser("validate", help="check a pipeline config and report every problem")
    _config_args(validate)
    validate.add_argument("--json", action="store_true", help="print the result and every problem (file, line, "
                          "field, message) as JSON on stdout")
    _config_args(sub.add_parser("describe", help="show a pipeline's parameters and steps"))
    graph = sub.add_parser("graph", help="print the pipeline graph (mermaid or dot)")
    _config_args(graph, params=False)
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    graph.add_argument("--run", metavar="RUN_ID", help="colour each step by its status in this local run, with "
                       "durations")
    report = sub.add_parser("report", help="write a run's self-contained HTML report (DAG, gate, metrics, plots)")
    report.add_argument("run_id")
    report.add_argument("-o", "--output", metavar="FILE", help="write it here (default: <run dir>/report.html)")
    run = sub.add_parser("run", help="run a pipeline on this machine")
    _config_args(run)
    run.add_argument("--no-cache", action="store_true", help="run every step even when cached")
    run.add_argument("--max-parallel", type=int, default=None, metavar="N",
                     help="steps at once (default: CPU count)")
    run.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    _tail_arg(run)
    resume = sub.add_parser("resume", help="continue a failed or interrupted run")
    resume.add_argument("run_id")
    resume.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="change a parameter: the steps that use it (and what follows) run again")
    resume.add_argument("--max-parallel", type=int, default=None, metavar="N")
    resume.add_argument("--json", action="store_true")
    _tail_arg(resume)
    logs = sub.add_parser("logs", help="print a step's log from a local run")
    logs.add_argument("run_id")
    logs.add_argument("step")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the step ends")
    runs = sub.add_parser("runs", help="list or show local runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    runs_sub.add_parser("list", help="recent runs, newest first").add_argument("--json", action="store_true")
    show = runs_sub.add_parser("show", help="one run's steps")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    emulate = sub.add_parser("emulate", help="run the compiled SageMaker definition here, with SageMaker's semantics")
    emulate.add_argument("config", nargs="?", help="pipeline YAML file (or give --definition)")
    emulate.add_argument("--env", default="dev", help="the cloud env to compile for (default: dev)")
    emulate.add_argument("--definition", metavar="FILE.json", help="run this definition instead of compiling one")
    emulate.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help="an execution parameter; a local path is uploaded to the emulated S3 (repeatable)")
    emulate.add_argument("--max-parallel", type=int, default=None, metavar="N")
    emulate.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    _tail_arg(emulate)
    emulated = sub.add_parser("emulated", help="list or clean the emulated AWS that emulations share (S3, model "
                              "packages, endpoints, executions, the step cache)")
    emulated_sub = emulated.add_subparsers(dest="emulated_command", required=True, metavar="ACTION")
    emulated_sub.add_parser("list", help="what it holds").add_argument("--json", action="store_true")
    emulated_sub.add_parser("clean", help="forget it: the next emulation starts from an empty account")
    compile_ = sub.add_parser("compile", help="compile to a SageMaker Pipeline definition (offline)")
    _config_args(compile_, params=False)
    compile_.add_argument("-o", "--output", metavar="FILE", help="write the definition here (default: stdout)")
    _config_args(sub.add_parser("upsert", help="upload code, create or update the SageMaker pipeline"), params=False)
    start = sub.add_parser("start", help="start an execution of the SageMaker pipeline")
    _config_args(start)
    start.add_argument("--wait", action="store_true", help="follow it to the end (exit 1 if it fails)")
    start.add_argument("--json", action="store_true")
    status = sub.add_parser("status", help="a SageMaker pipeline execution's status and steps")
    status.add_argument("execution_arn")
    status.add_argument("--wait", action="store_true")
    status.add_argument("--json", action="store_true")
    executions = sub.add_parser("executions", help="a SageMaker pipeline's executions")
    executions_sub = executions.add_subparsers(dest="executions_command", required=True, metavar="ACTION")
    listing = executions_sub.add_parser("list", help="newest first")
    _config_args(listing, params=False)
    listing.add_argument("--json", action="store_true")
    serve = sub.add_parser("serve", help="a local endpoint (SageMaker's inference protocol) for a model version")
    serve.add_argument("target", metavar="GROUP[@VERSION|@approved]|ENDPOINT")
    serve.add_argument("--port", type=_int_in(1, 65535), default=8080, help="TCP port on 127.0.0.1 (default 8080)")
    serve.add_argument("--workers", type=_int_in(1), default=2, help="worker processes (default 2)")
    serve.add_argument("--env", default="local")
    batch = sub.add_parser("transform", help="batch inference over a CSV or Parquet file")
    batch.add_argument("target", metavar="GROUP[@VERSION|@approved]")
    batch.add_argument("input")
    batch.add_argument("output", help="the file to write (.csv or .parquet); missing folders are made, as aws s3 cp "
                       "would; written whole or not at all")
    batch.add_argument("--chunk-rows", type=_int_in(1), default=200_000, help="rows scored at once (default 200000)")
    batch.add_argument("--env", default="local")
    params = sub.add_parser("endpoint-params", help="CloudFormation parameters for infra/endpoint.yaml")
    _config_args(params, params=False)
    params.add_argument("--model-package", required=True, metavar="ARN|approved",
                        help="the version to serve; 'approved' looks up the newest Approved one")
    params.add_argument("--step", default=None, help="the deploy step (default: the first)")
    _models_args(sub)
    ui = sub.add_parser("ui", help="open the MLflow UI (a local mlflow server) over the tracking store")
    ui.add_argument("--env", default="local", help="whose tracking store (default: local)")
    ui.add_argument("--port", type=int, default=5000)
    schema = sub.add_parser("schema", help="the JSON Schema of a pipeline file, for editors")
    schema.add_argument("-o", "--output", metavar="FILE", help="write it here (default: stdout)")
    completion = sub.add_parser("completion", help="print the shell completion script: "
                                'eval "$(sagepipe completion bash)"')
    completion.add_argument("shell", nargs="?", choices=["bash", "zsh", "fish"], default="bash")
    cli_support.verbosity_args(parser, top=True)
    return parser


def _models_args(sub: Any) -> None:
    models = sub.add_parser("models", help="list, show, approve or reject registered model versions")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="versions of every group, or of one")
    listing.add_argument("group", nargs="?")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one version: status, metrics, lineage, history")
    show.add_argument("group")
    show.add_argument("version", type=int)
    show.add_argument("--json", action="store_true")
    for verb, text in (("approve", "approve a version (this deploys it)"), ("reject", "reject a version")):
        decide = actions.add_parser(verb, help=text)
        decide.add_argument("group")
        decide.add_argument("version", type=int)
        decide.add_argument("--note", default="", help="why (recorded in the history)")
        if verb == "approve":
            decide.add_argument("--force", action="store_true", help="approve a version that was rejected")
        else:
            decide.add_argument("--rollback", action="store_true", help="move each local endpoint serving it to "
                                "the newest version still Approved (also for a version already rejected)")
    for parser in (listing, show, *actions.choices.values()):
        if not any(a.dest == "env" for a in parser._actions):
            parser.add_argument("--env", default="local", help="whose registry: configs/env/ENV.yaml (default: local)")


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.extras import MissingExtra, missing_extra_message

    parser = build_parser()
    cli_support.complete(parser)
    args = parser.parse_args(argv)
    cli_support.setup_logging(args.verbose, args.quiet)
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, while BrokenPipeError can still be handled
        return code
    except BrokenPipeError:  # `sagepipe ... | head`: the reader has gone, which is no error of ours
        cli_support.silence_stdout()
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


def _dispatch(args: argparse.Namespace) -> int:
    from pipelines import commands

    if args.command in ("schema", "completion"):
        return cli_support.schema(args.output) if args.command == "schema" else cli_support.completion(args.shell)
    if args.command == "validate" and args.json:
        return _validate_json(args)
    if args.command == "runs":
        return commands.runs_list(state_root(), args.json) if args.runs_command == "list" \
            else commands.runs_show(state_root(), args.run_id, args.json)
    if args.command in ("models", "ui"):
        return _models(args)
    if args.command in ("serve", "transform"):
        from pipelines.serving import commands as serving

        if args.command == "serve":
            return serving.serve_command(args.target, args.env, state_root(), args.port, args.workers)
        return serving.transform_command(args.target, args.env, state_root(), args.input, args.output,
                                         args.chunk_rows)
    if args.command == "status":
        from pipelines.sagemaker.commands import status_command

        return status_command(args.execution_arn, args.wait, args.json)
    if args.command == "report":
        from pipelines.report import report_command

        return report_command(state_root(), args.run_id, args.output)
    if args.command == "resume":
        return commands.resume(state_root(), args.run_id, args.max_parallel, args.json, args.param, args.tail)
    if args.command == "logs":
        from pipelines.local.logs import show_log

        return show_log(state_root(), args.run_id, args.step, args.follow)
    if args.command == "emulate":
        return _emulate(args)
    if args.command == "emulated":
        from pipelines.emulate import aws_state
        from pipelines.emulate.server import aws_dir

        home = aws_dir(state_root() / "emulate")
        return aws_state.list_command(home, args.json) if args.emulated_command == "list" \
            else aws_state.clean_command(home)
    from pipelines.loader import load_pipeline

    spec = load_pipeline(args.config, args.env, getattr(args, "param", []))
    if args.command == "run":
        from pipelines.stores import announce

        announce(spec.settings, state_root(), Path(spec.repo_root))
    if args.command == "endpoint-params":
        from pipelines.sagemaker.endpoint_params import endpoint_params_command

        return endpoint_params_command(spec, args.model_package, args.step)
    if args.command in ("compile", "upsert", "start", "executions"):
        from pipelines.sagemaker import commands as cloud

        if args.command in ("compile", "upsert"):
            _check_cloud(spec)  # each job's requirements fit its image (asked before any compile cache)
        if args.command == "compile":
            return cloud.compile_command(spec, args.output, state_root() / "compiled")
        if args.command == "upsert":
            return cloud.upsert_command(spec, state_root() / "compiled")
        if args.command == "start":
            return cloud.start_command(spec, args.param, args.wait, args.json)
        return cloud.executions_command(spec, args.json)
    if args.command == "validate":
        _check_cloud(spec)
        print(f"ok: {spec.source_file}: pipeline '{spec.name}' (env {spec.env}): {len(spec.steps)} steps, "
              f"{len(spec.parameters)} parameters")
        return EXIT_OK
    if args.command == "describe":
        print(commands.describe(spec))
        return EXIT_OK
    if args.command == "graph":
        from pipelines.graph import Graph

        graph = Graph(spec)
        overlay = None
        if args.run:
            from pipelines.report import run_overlay

            overlay = run_overlay(state_root(), args.run, spec)
        print(graph.mermaid(overlay) if args.format == "mermaid" else graph.dot(overlay), end="")
        return EXIT_OK
    return commands.run(spec, state_root(), not args.no_cache, args.max_parallel, args.json, args.tail)


def _check_cloud(spec: Any) -> None:
    if spec.settings.sagemaker:  # a cloud env: what compile would refuse, without the SDK
        from pipelines.sagemaker.checks import check_cloud_config

        check_cloud_config(spec, requirements=True)


def _validate_json(args: argparse.Namespace) -> int:
    """`validate --json`: {"ok", "config", "env", "problems": [{file, line, field, message}], ...}; exit 2 on problems."""
    from pipelines.loader import load_pipeline

    result: dict[str, Any] = {"config": args.config, "env": args.env}
    try:
        spec = load_pipeline(args.config, args.env, args.param)
        _check_cloud(spec)
    except ConfigError as exc:
        problems = [{"file": p.file, "line": p.line, "field": p.path, "message": p.message} for p in exc.problems]
        print_json({**result, "ok": False, "problems": problems})
        return EXIT_CONFIG
    print_json({**result, "ok": True, "problems": [], "pipeline": spec.name, "steps": [s.name for s in spec.steps],
                "parameters": spec.param_values})
    return EXIT_OK


def _emulate(args: argparse.Namespace) -> int:
    from pipelines.emulate.command import emulate

    if bool(args.config) == bool(args.definition):
        raise ConfigError([Problem("sagepipe emulate", None, "CONFIG", "give a pipeline config or --definition "
                                   "FILE.json (one of the two)")])
    spec = None
    if args.config:
        from pipelines.loader import load_pipeline

        spec = load_pipeline(args.config, args.env)
    return emulate(spec, args.definition, args.param, state_root(), args.max_parallel, args.json, args.tail)


def _models(args: argparse.Namespace) -> int:
    from pipelines import models_cli

    if args.command == "ui":
        return models_cli.ui(args.env, state_root(), args.port)
    registry = models_cli.open_for_env(args.env, state_root())
    action = args.models_command
    if action == "list":
        return models_cli.models_list(registry, args.group, args.json)
    if action == "show":
        return models_cli.models_show(registry, args.group, args.version, args.json)
    status = "Approved" if action == "approve" else "Rejected"
    return models_cli.models_decide(registry, state_root(), args.group, args.version, status, args.note,
                                    getattr(args, "force", False), STARTED, getattr(args, "rollback", False), args.env)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    sys.exit(main())
