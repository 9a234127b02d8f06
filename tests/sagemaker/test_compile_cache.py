"""A compile is reused while the config, every local file it read, sagepipe's code and the SDK are unchanged,
and redone when any of them changes; a broken or unwanted cache only costs a compile."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.loader import load_pipeline
from pipelines.sagemaker.commands import compile_pipeline_or_explain
from pipelines.sagemaker.compile_cache import compiled_or_cached
from pipelines.sagemaker.compiler import compile_pipeline
from tests.conftest import run_cli
from tests.sagemaker.test_compile import _project


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, spec: object, read: set[Path]) -> object:
        self.calls += 1
        return compile_pipeline(spec, read)  # type: ignore[arg-type]


def test_an_unchanged_config_is_compiled_once_and_any_change_compiles_again(tmp_path: Path) -> None:
    config, cache, compile_ = _project(tmp_path / "p"), tmp_path / "compiled", Counting()

    def compiled() -> object:
        return compiled_or_cached(load_pipeline(config, "dev"), cache, compile_)

    first = compiled()
    again = compiled()
    assert compile_.calls == 1
    assert again.json() == first.json() and again.artifacts == first.artifacts
    assert (again.name, again.bucket, again.region, again.role, again.tags) == \
        (first.name, first.bucket, first.region, first.role, first.tags)

    (tmp_path / "p" / "scripts" / "score.py").write_text("print('changed')\n")  # code a step ships
    changed = compiled()
    assert compile_.calls == 2 and changed.json() != first.json()
    (tmp_path / "p" / "settings.yaml").write_text("threshold: 0.7\n")  # a repository file staged as an input
    compiled()
    assert compile_.calls == 3
    text = config.read_text()
    config.write_text(text.replace("instance_count: 2, volume_gb: 50", "instance_count: 1, volume_gb: 50"))
    resized = compiled()
    assert compile_.calls == 4 and resized.json() != changed.json()
    compiled()
    assert compile_.calls == 4


def test_a_broken_entry_or_a_cache_turned_off_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, cache, compile_ = _project(tmp_path / "p"), tmp_path / "compiled", Counting()
    spec = load_pipeline(config, "dev")
    compiled_or_cached(spec, cache, compile_)
    (entry,) = cache.iterdir()
    entry.write_text('{"format": 1, "inputs": {}, "compiled": {"name": ')  # cut short
    compiled_or_cached(spec, cache, compile_)
    assert compile_.calls == 2
    monkeypatch.setenv("SAGEPIPE_COMPILE_CACHE", "off")
    compiled_or_cached(spec, cache, compile_)
    assert compile_.calls == 3
    assert compile_pipeline_or_explain(spec).json() == compile_pipeline(spec).json()  # no folder: no cache


def test_the_compile_command_writes_the_same_bytes_from_the_cache(tmp_path: Path) -> None:
    config, home = _project(tmp_path / "p"), tmp_path / "home"
    outputs = []
    for n in (1, 2):
        done = run_cli("compile", str(config), "--env", "dev", "-o", str(tmp_path / f"{n}.json"), home=home)
        assert done.returncode == 0, done.stderr
        outputs.append((tmp_path / f"{n}.json").read_bytes())
    assert outputs[0] == outputs[1] and len(list((home / "compiled").iterdir())) == 1
