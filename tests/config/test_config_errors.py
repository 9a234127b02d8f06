"""Every invalid fixture pipeline gives its expected message, with file and line, and exit code 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.errors import ConfigError
from pipelines.loader import load_pipeline
from tests.conftest import FIXTURES, REPO, run_cli

INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))


def _header(path: Path) -> tuple[str, int]:
    text = path.read_text()
    expect = re.search(r"^# expect: (.+)$", text, re.M).group(1)
    line = int(re.search(r"^# line: (\d+)$", text, re.M).group(1))
    return expect, line


@pytest.mark.parametrize("fixture", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture_names_file_line_and_problem(fixture: Path) -> None:
    expect, line = _header(fixture)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(fixture)
    messages = [str(p) for p in caught.value.problems]
    assert any(expect in m for m in messages), messages
    matching = [p for p in caught.value.problems if expect in str(p)]
    assert matching[0].line == line, messages
    assert matching[0].file.endswith(fixture.name)


@pytest.mark.parametrize("name", ["unknown_type", "cycle", "yaml_syntax", "missing_param", "input_name_traversal",
                                  "environment_name", "yaml_alias_bomb", "yaml_recursive_alias", "yaml_too_deep",
                                  "yaml_bad_timestamp"])
def test_cli_exits_2_without_traceback(name: str, home: Path) -> None:
    fixture = FIXTURES / "invalid" / f"{name}.yaml"
    done = run_cli("validate", str(fixture), home=home)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert f"{name}.yaml:" in done.stderr
    assert _header(fixture)[0] in done.stderr


def test_unknown_env_names_known_ones(home: Path) -> None:
    done = run_cli("validate", "configs/fraud-detection.yaml", "--env", "prdo", home=home)
    assert done.returncode == 2
    assert "no environment 'prdo'" in done.stderr and "did you mean 'prod'" in done.stderr


def test_param_override_is_type_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(REPO / "configs" / "fraud-detection.yaml", params=["min_auc=high"])
    assert "'high' is not a float" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(REPO / "configs" / "fraud-detection.yaml", params=["min_acu=0.9"])
    assert "did you mean 'min_auc'" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(REPO / "configs" / "fraud-detection.yaml", params=["class_imbalance=smote"])
    assert "not allowed" in str(caught.value)


def test_param_override_and_overlay_apply() -> None:
    spec = load_pipeline(REPO / "configs" / "fraud-detection.yaml", params=["min_auc=0.8", "rows=700"])
    assert spec.param_values["min_auc"] == 0.8 and spec.param_values["rows"] == 700
    prod = load_pipeline(REPO / "configs" / "fraud-detection.yaml", env="prod")
    assert prod.param_values["min_auc"] == 0.78
    assert prod.defaults.resources.instance_type == "ml.m5.2xlarge"
    assert prod.step("deploy").enabled is False
    assert prod.settings.sagemaker["bucket"] == "sagepipe-prod-artifacts"


def test_overlay_errors_point_into_the_overlay_file(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "p.yaml").write_text("name: p\nsteps:\n  - name: stop\n    type: fail\n")
    (tmp_path / "env" / "dev.yaml").write_text("steps:\n  stpo: {message: x}\n")
    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path / "p.yaml", env="dev")
    problem = caught.value.problems[0]
    assert problem.file.endswith("dev.yaml") and problem.line == 2
    assert "did you mean 'stop'" in problem.message


def test_example_configs_are_valid() -> None:
    for env in ("local", "dev", "prod"):
        spec = load_pipeline(REPO / "configs" / "fraud-detection.yaml", env=env)
        assert [s.name for s in spec.steps][:4] == ["ingest", "preprocess", "train", "evaluate"]
