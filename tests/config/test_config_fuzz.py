"""Random mutations of a valid config load or give a ConfigError — never any other exception."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import ConfigError
from pipelines.loader import load_pipeline
from tests.conftest import FIXTURES, REPO

BASE = yaml.safe_load((FIXTURES / "valid" / "gated.yaml").read_text())
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                 st.text(max_size=12), st.just("${steps.nope.outputs.x}"), st.just("${params.}"),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
                 st.dictionaries(st.sampled_from(["../x", "..", "A=B", "größe", "/abs"]), st.just("v"), max_size=2))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, prefix + (index,))
    return found


@st.composite
def mutated(draw: Any) -> Any:
    config = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(config) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = config
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "rename"]))
        if action == "replace":
            parent[path[-1]] = draw(JUNK)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[str(path[-1]) + draw(st.text("xyz_", min_size=1, max_size=2))] = parent.pop(path[-1])
    return config


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=mutated())
def test_mutations_never_raise_anything_but_config_error(config: Any, tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    # code paths in the base config are relative to the repository; keep them resolvable
    (folder / "pyproject.toml").write_text("")
    (folder / "tests").symlink_to(REPO / "tests")
    try:
        load_pipeline(path)
    except ConfigError as exc:
        assert exc.problems and all(p.message for p in exc.problems)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_but_config_error(text: str, tmp_path_factory: Any) -> None:
    path = Path(tmp_path_factory.mktemp("text")) / "pipeline.yaml"
    path.write_text(text)
    try:
        load_pipeline(path)
    except ConfigError:
        pass
