"""CLI conventions: --version, -v/-q, validate --json, schema, completion, closed pipes, file modes, the
embedded store as the default and env overlays found from the repository root."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import ConfigError
from pipelines.fsutil import atomic_write_text
from pipelines.loader import load_pipeline
from tests.conftest import FIXTURES, REPO, run_cli

CLI = [sys.executable, "-m", "pipelines.cli"]
CONFIG = "configs/fraud-detection.yaml"


def test_version(home: Path) -> None:
    from pipelines import __version__

    done = run_cli("--version", home=home)
    assert done.returncode == 0 and done.stdout.strip() == f"sagepipe {__version__}"


def test_validate_json_reports_ok_and_each_problem_with_file_line_field(home: Path) -> None:
    good = run_cli("validate", CONFIG, "--json", home=home)
    result = json.loads(good.stdout)
    assert good.returncode == 0 and result["ok"] is True and result["problems"] == []
    assert result["pipeline"] == "fraud-detection" and "train" in result["steps"]
    bad = run_cli("validate", "tests/fixtures/invalid/unknown_type.yaml", "--json", home=home)
    result = json.loads(bad.stdout)
    assert bad.returncode == 2 and result["ok"] is False
    assert result["problems"] == [{"file": "tests/fixtures/invalid/unknown_type.yaml", "line": 6,
                                   "field": "steps.train.type",
                                   "message": "unknown step type 'trainig' — did you mean 'training'?"}]


def test_schema_accepts_every_shipped_pipeline_and_flags_typos(home: Path, tmp_path: Path) -> None:
    import jsonschema
    import yaml

    out = tmp_path / "pipeline.schema.json"
    assert run_cli("schema", "-o", str(out), home=home).returncode == 0
    validator = jsonschema.Draft202012Validator(json.loads(out.read_text()))
    for config in sorted((REPO / "configs").glob("*.yaml")) + [FIXTURES / "valid" / "gated.yaml"]:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(config.read_text()))]
        assert errors == [], (config, errors)
    for name in ("unknown_top_key", "unknown_type", "unknown_step_key"):
        data = yaml.safe_load((FIXTURES / "invalid" / f"{name}.yaml").read_text())
        assert list(validator.iter_errors(data)), name


@pytest.mark.parametrize("args", [["describe", CONFIG], ["schema"]])
def test_output_into_a_closed_pipe_ends_quietly(args: list[str], home: Path) -> None:
    command = " ".join([*CLI, *args]) + " | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "SAGEPIPE_HOME": str(home)})
    assert done.stdout.count("\n") == 1
    assert done.stderr == "", done.stderr  # no BrokenPipeError traceback, no "Exception ignored"
    assert done.returncode in (0, 141)


def test_completion_script_and_answers(home: Path, tmp_path: Path) -> None:
    script = run_cli("completion", "bash", home=home)
    assert script.returncode == 0 and "complete " in script.stdout and "sagepipe" in script.stdout
    answer = tmp_path / "answer.txt"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": "sagepipe val", "COMP_POINT": "12",
           "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}
    done = subprocess.run(CLI, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and answer.read_text().split() == ["validate"]


def test_verbosity_sets_the_log_levels() -> None:
    from pipelines.cli import build_parser
    from pipelines.cli.support import setup_logging

    own = logging.getLogger("sagepipe")
    for argv, level in ((["runs", "list"], logging.INFO), (["-q", "runs", "list"], logging.WARNING),
                        (["runs", "list", "-qq"], logging.ERROR), (["-v", "runs", "list"], logging.DEBUG)):
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose, args.quiet)
        assert own.level == level, argv
    setup_logging(0, 0)


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every command argparse knows, as "COMMAND" or "COMMAND ACTION"; each level's dest names its command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert action.dest == (f"{prefix[0]}_command" if prefix else "command"), prefix
            return [name for key, child in action.choices.items() for name in _subcommands(child, (*prefix, key))]
    return [" ".join(prefix)]


def test_the_command_table_covers_every_subcommand_with_a_cli_function() -> None:
    import inspect

    from pipelines.cli.parser import COMMANDS, build_parser, command_name

    parser = build_parser()
    assert sorted(_subcommands(parser)) == sorted(COMMANDS)
    for name, handler in COMMANDS.items():
        assert inspect.isfunction(handler) and handler.__module__.startswith("pipelines.cli."), name
    assert command_name(parser.parse_args(["runs", "show", "r1"])) == "runs show"
    assert command_name(parser.parse_args(["models", "reject", "g", "1"])) == "models reject"
    assert command_name(parser.parse_args(["schema"])) == "schema"


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


@pytest.mark.slow
def test_a_compiled_definition_is_readable_by_others(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "definition.json"
    done = subprocess.run(["bash", "-c", f"umask 022 && exec {' '.join(CLI)} compile {CONFIG} --env dev -o {out}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SAGEPIPE_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) & 0o044 == 0o044


@pytest.mark.tracked
def test_the_embedded_store_is_the_default_and_none_turns_it_off(tmp_path: Path) -> None:
    from pipelines.tracking import resolve_tracking_uri

    state = tmp_path / "state"
    assert resolve_tracking_uri(None, state, tmp_path) == f"sqlite:///{state.resolve() / 'mlflow.db'}"
    assert resolve_tracking_uri("none", state, tmp_path) is None


@pytest.mark.tracked
def test_store_line_from_outside_the_repository(home: Path, tmp_path: Path) -> None:
    shown = run_cli("models", "list", home=home, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"store: MLflow store {home.resolve() / 'mlflow.db'} (the embedded default)" in shown.stderr
    quiet = run_cli("models", "list", "-q", home=home, cwd=tmp_path)
    assert quiet.returncode == 0 and "store:" not in quiet.stderr


def project_with_pipeline_outside_configs(folder: Path) -> Path:
    (folder / "configs" / "env").mkdir(parents=True)
    (folder / "pyproject.toml").touch()
    (folder / "configs" / "env" / "dev.yaml").write_text("parameters: {greeting: from-root}\n")
    (folder / "ml").mkdir()
    pipeline = folder / "ml" / "p.yaml"
    pipeline.write_text("name: p\nparameters:\n  greeting: {type: string, default: hi}\n"
                        "steps:\n  - {name: stop, type: fail, message: '${params.greeting}'}\n")
    return pipeline


def test_a_pipeline_outside_configs_keeps_its_overlay(tmp_path: Path) -> None:
    pipeline = project_with_pipeline_outside_configs(tmp_path)
    assert load_pipeline(pipeline, env="dev").param_values["greeting"] == "from-root"
    with pytest.raises(ConfigError) as caught:
        load_pipeline(pipeline, env="staging")
    message = str(caught.value)
    assert "no environment 'staging'" in message and "ml/env/staging.yaml" in message
    assert "configs/env/staging.yaml" in message


def test_serving_handlers_pass_key_columns_through() -> None:
    sys.path.insert(0, str(REPO / "model_code"))
    import inference

    class Stub:
        def predict(self, records: list) -> np.ndarray:
            return np.array([0.1, 0.9])[: len(records)]

    scores = inference.predict_fn([{"policy_id": "P-1"}, {"policy_id": "P,2"}], Stub())
    body, _ = inference.output_fn(scores, "application/json", 0.5)
    assert [(p["policy_id"], p["fraud"]) for p in json.loads(body)["predictions"]] == [("P-1", 0), ("P,2", 1)]
    body, _ = inference.output_fn(scores, "text/csv", 0.5)
    assert body.decode().splitlines() == ["P-1,0.100000,0", '"P,2",0.900000,1']
    body, _ = inference.output_fn(inference.predict_fn([{"a": 1}], Stub()), "application/json", 0.5)
    assert json.loads(body)["predictions"] == [{"fraud_probability": 0.1, "fraud": 0}]


def test_a_relative_sagepipe_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps, resumes and the background MLflow writer run in other folders: a relative home must not follow them
    there (a resume once wrote an empty output and MLflow files into the installation folder)."""
    from pipelines.cli import state_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAGEPIPE_HOME", "relative-home")
    assert state_root() == tmp_path.resolve() / "relative-home"


def test_the_readme_gives_a_busy_run_folder_its_real_exit_code() -> None:
    import re

    from pipelines.local.state import RunUnavailable

    said = re.search(r"`sagepipe resume` of a run in use exits (\d)", (REPO / "README.md").read_text())
    assert said and int(said[1]) == RunUnavailable.exit_code == 4


def test_main_called_twice_writes_its_messages_to_the_stderr_of_each_call(home: Path) -> None:
    """sagepipe's log handler follows sys.stderr: a second main() in one process (a test, an embedding tool)
    once wrote to the first call's redirected stream, closed by then ("I/O operation on closed file")."""
    import contextlib
    import io

    from pipelines.cli import main

    seen = []
    for _ in range(2):
        with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
            assert main(["models", "list"]) == 0
        seen.append(err.getvalue())
        err.close()  # as a test's capture is closed after its test
    assert all(s.startswith(f"store: tracking off (tracking_uri: none); registry: files under {home}")
               and "Logging error" not in s for s in seen), seen
