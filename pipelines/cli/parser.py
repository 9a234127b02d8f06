"""The `sagepipe` argument parser and the table from each command to the function that carries it out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from pipelines.cli import cloud, emulate, models, project, runs, serving, support

Handler = Callable[[argparse.Namespace], int]

# "COMMAND" or "COMMAND ACTION" (`runs list`) -> its handler; help lists the commands in parser order.
COMMANDS: dict[str, Handler] = {
    "validate": project.validate_command,
    "describe": project.describe_command,
    "graph": project.graph_command,
    "report": runs.report_command,
    "run": runs.run_command,
    "resume": runs.resume_command,
    "logs": runs.logs_command,
    "runs list": runs.runs_list_command,
    "runs show": runs.runs_show_command,
    "emulate": emulate.emulate_command,
    "emulated list": emulate.emulated_list_command,
    "emulated clean": emulate.emulated_clean_command,
    "compile": cloud.compile_command,
    "upsert": cloud.upsert_command,
    "start": cloud.start_command,
    "status": cloud.status_command,
    "executions list": cloud.executions_list_command,
    "serve": serving.serve_command,
    "transform": serving.transform_command,
    "endpoint-params": cloud.endpoint_params_command,
    "models list": models.list_command,
    "models show": models.show_command,
    "models approve": models.approve_command,
    "models reject": models.reject_command,
    "ui": models.ui_command,
    "schema": project.schema_command,
    "completion": project.completion_command,
}


def command_name(args: argparse.Namespace) -> str:
    """The COMMANDS key of parsed arguments: the command, and its action where it has actions."""
    action = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {action}" if action else args.command


def handler_of(args: argparse.Namespace) -> Handler:
    return COMMANDS[command_name(args)]


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


def _float_in(low: float, high: float) -> Any:
    """An argparse type: a number from low to high."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not low <= value <= high:  # NaN is refused too
            raise argparse.ArgumentTypeError(f"{text} is out of range: {low:g} to {high:g}")
        return value

    return parse


def _tail_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tail", type=_int_in(0, 50), default=0, metavar="N",
                        help="on a terminal, show the last N lines of each running step's log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagepipe", description="Declarative ML pipelines: run them here, "
                                     "compile them to SageMaker Pipelines.")
    parser.add_argument("--version", action="version", version=f"sagepipe {support.version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _project_args(sub)
    _runs_args(sub)
    _emulate_args(sub)
    _cloud_args(sub)
    _serving_args(sub)
    _endpoint_params_args(sub)
    _models_args(sub)
    ui = sub.add_parser("ui", help="open the MLflow UI (a local mlflow server) over the tracking store")
    ui.add_argument("--env", default="local", help="whose tracking store (default: local)")
    ui.add_argument("--port", type=int, default=5000)
    schema = sub.add_parser("schema", help="the JSON Schema of a pipeline file, for editors")
    schema.add_argument("-o", "--output", metavar="FILE", help="write it here (default: stdout)")
    completion = sub.add_parser("completion", help="print the shell completion script: "
                                'eval "$(sagepipe completion bash)"')
    completion.add_argument("shell", nargs="?", choices=["bash", "zsh", "fish"], default="bash")
    support.verbosity_args(parser, top=True)
    return parser


def _project_args(sub: Any) -> None:
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


def _runs_args(sub: Any) -> None:
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
    runs_parser = sub.add_parser("runs", help="list or show local runs")
    actions = runs_parser.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="recent runs, newest first").add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one run's steps")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")


def _emulate_args(sub: Any) -> None:
    emulate_parser = sub.add_parser("emulate", help="run the compiled SageMaker definition here, with SageMaker's "
                                    "semantics")
    emulate_parser.add_argument("config", nargs="?", help="pipeline YAML file (or give --definition)")
    emulate_parser.add_argument("--env", default="dev", help="the cloud env to compile for (default: dev)")
    emulate_parser.add_argument("--definition", metavar="FILE.json", help="run this definition instead of "
                                "compiling one")
    emulate_parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                                help="an execution parameter; a local path is uploaded to the emulated S3 "
                                "(repeatable)")
    emulate_parser.add_argument("--max-parallel", type=int, default=None, metavar="N")
    emulate_parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    _tail_arg(emulate_parser)
    emulated = sub.add_parser("emulated", help="list or clean the emulated AWS that emulations share (S3, model "
                              "packages, endpoints, executions, the step cache)")
    actions = emulated.add_subparsers(dest="emulated_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="what it holds").add_argument("--json", action="store_true")
    actions.add_parser("clean", help="forget it: the next emulation starts from an empty account")


def _cloud_args(sub: Any) -> None:
    compile_parser = sub.add_parser("compile", help="compile to a SageMaker Pipeline definition (offline)")
    _config_args(compile_parser, params=False)
    compile_parser.add_argument("-o", "--output", metavar="FILE", help="write the definition here (default: "
                                "stdout)")
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
    actions = executions.add_subparsers(dest="executions_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="newest first")
    _config_args(listing, params=False)
    listing.add_argument("--json", action="store_true")


def _serving_args(sub: Any) -> None:
    serve = sub.add_parser("serve", help="a local endpoint (SageMaker's inference protocol) for a model version")
    serve.add_argument("target", metavar="GROUP[@VERSION|@approved]|ENDPOINT")
    serve.add_argument("--port", type=_int_in(1, 65535), default=8080, help="TCP port on 127.0.0.1 (default 8080)")
    serve.add_argument("--workers", type=_int_in(1), default=2, help="worker processes (default 2)")
    serve.add_argument("--capture", type=Path, metavar="DIR",
                       help="capture requests and responses under DIR in SageMaker's data-capture format")
    serve.add_argument("--capture-percent", type=_float_in(0, 100), default=100.0, metavar="P",
                       help="the percentage of calls to capture (default 100)")
    serve.add_argument("--env", default="local")
    batch = sub.add_parser("transform", help="batch inference over a CSV or Parquet file")
    batch.add_argument("target", metavar="GROUP[@VERSION|@approved]")
    batch.add_argument("input")
    batch.add_argument("output", help="the file to write (.csv or .parquet); missing folders are made, as aws s3 cp "
                       "would; written whole or not at all")
    batch.add_argument("--chunk-rows", type=_int_in(1), default=200_000, help="rows scored at once (default 200000)")
    batch.add_argument("--env", default="local")


def _endpoint_params_args(sub: Any) -> None:
    params = sub.add_parser("endpoint-params", help="CloudFormation parameters for infra/endpoint.yaml")
    _config_args(params, params=False)
    params.add_argument("--model-package", required=True, metavar="ARN|approved",
                        help="the version to serve; 'approved' looks up the newest Approved one")
    params.add_argument("--step", default=None, help="the deploy step (default: the first)")


def _models_args(sub: Any) -> None:
    models_parser = sub.add_parser("models", help="list, show, approve or reject registered model versions")
    actions = models_parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
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
