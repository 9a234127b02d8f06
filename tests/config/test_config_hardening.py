"""Hostile configs (issue 14): alias bombs, deep nesting, long chains and huge files end in a ConfigError
with file and line, quickly, and never in a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines import yamlsource
from pipelines.errors import ConfigError
from pipelines.graph import Graph
from pipelines.loader import load_pipeline
from tests.conftest import FIXTURES, run_cli

INVALID = FIXTURES / "invalid"


def _chain(folder: Path, steps: int, reverse: bool = True, closed: bool = False) -> Path:
    """A pipeline of processing steps s0 -> s1 -> ... (written last first when reverse)."""
    (folder / "pyproject.toml").write_text("")
    (folder / "step.py").write_text("")
    bodies = []
    for i in range(steps):
        body = f"  - name: s{i}\n    type: processing\n    code: step.py\n    outputs: [out]\n"
        upstream = i - 1 if i else (steps - 1 if closed else None)
        if upstream is not None:
            body += f"    inputs: {{data: \"${{steps.s{upstream}.outputs.out}}\"}}\n"
        bodies.append(body)
    path = folder / "chain.yaml"
    path.write_text("name: chain\nsteps:\n" + "".join(reversed(bodies) if reverse else bodies))
    return path


def test_alias_bomb_is_refused_in_well_under_a_second() -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_pipeline(INVALID / "yaml_alias_bomb.yaml")
    assert time.perf_counter() - started < 1.0
    assert caught.value.problems[0].line == 9


def test_aliases_within_the_limit_still_load(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: shared\nx-env: &env {A: '1', B: '2'}\nsteps:\n"
                    + "".join(f"  - {{name: s{i}, type: fail, message: m}}\n" for i in range(3)))
    data = yamlsource.load_yaml(path, "p.yaml", yamlsource.SourceMap("p.yaml"))
    assert data["x-env"] == {"A": "1", "B": "2"}


@pytest.mark.parametrize("opening,closing", [("[", "]"), ("{k: ", "}")])
def test_2000_deep_nesting_is_a_config_error_with_a_line(tmp_path: Path, home: Path, opening: str,
                                                          closing: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nsteps: " + opening * 2000 + "1" + closing * 2000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    assert caught.value.problems[0].line == 2
    assert "nest" in str(caught.value)
    done = run_cli("validate", str(path), home=home)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "deep.yaml:2:" in done.stderr


def test_reversed_1000_step_chain_validates_and_sorts(tmp_path: Path, home: Path) -> None:
    path = _chain(tmp_path, 1000)
    spec = load_pipeline(path)
    assert Graph(spec).topological() == [f"s{i}" for i in range(1000)]
    done = run_cli("validate", str(path), home=home)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_1000_step_cycle_names_its_steps(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(_chain(tmp_path, 1000, closed=True))
    message = str(caught.value)
    assert "steps form a cycle: " in message and "s998 -> s999" in message


def test_each_config_file_is_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    class Counting(yamlsource._Loader):
        def get_single_node(self) -> object:
            parsed.append("x")
            return super().get_single_node()

    monkeypatch.setattr(yamlsource, "_Loader", Counting)
    load_pipeline(_chain(tmp_path, 3))
    assert len(parsed) == 1


def test_a_parameter_name_the_reference_syntax_accepts_is_usable(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nparameters:\n  max-depth: {type: integer, default: 3}\n  _seed: {type: integer, default: 1}\n"
                    "steps:\n  - {name: stop, type: fail, message: 'depth ${params.max-depth} ${params._seed}'}\n")
    assert load_pipeline(path).param_values == {"max-depth": 3, "_seed": 1}
