"""A compile is reused while the config, every local file it read, sagepipe's code and the SDK are unchanged,
and redone when any of them changes; a broken or unwanted cache only costs a compile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.loader import load_pipeline
from pipelines.sagemaker.compiling import compile_pipeline_or_explain
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

    (tmp_path / "p" / "scripts" / "extra.py").write_text("X = 1\n")  # a file added where a step's code is
    added = compiled()
    assert compile_.calls == 2 and added.json() != first.json()
    text = config.read_text()
    config.write_text(text.replace("instance_count: 2, volume_gb: 50", "instance_count: 1, volume_gb: 50"))
    resized = compiled()
    assert compile_.calls == 3 and resized.json() != added.json()
    compiled()
    assert compile_.calls == 3


def test_new_contents_of_the_same_files_update_the_entry_as_a_compile_would(tmp_path: Path) -> None:
    """A script edit (code a step ships) and a staged input's edit: no compile, and the definition and
    artifacts are byte for byte those a compile of the edited files gives."""
    config, cache, compile_ = _project(tmp_path / "p"), tmp_path / "compiled", Counting()
    spec = lambda: load_pipeline(config, "dev")  # noqa: E731
    first = compiled_or_cached(spec(), cache, compile_)
    for path, text in (("scripts/score.py", "print('changed')\n"), ("settings.yaml", "threshold: 0.7\n")):
        (tmp_path / "p" / path).write_text(text)
        updated = compiled_or_cached(spec(), cache, compile_)
        fresh = compile_pipeline(spec())
        assert compile_.calls == 1 and updated.reused.endswith(f"new contents of {Path(path).parent.name or path}")
        assert updated.json() == fresh.json() != first.json() and updated.artifacts == fresh.artifacts
    assert compiled_or_cached(spec(), cache, compile_).json() == fresh.json() and compile_.calls == 1


def test_a_file_written_while_it_compiles_keeps_that_compile_out_of_the_cache(tmp_path: Path) -> None:
    """The entry's digests are taken after the compile: an edit saved meanwhile would otherwise stand for
    contents the definition was not made from, and the next emulate would run the old code."""
    config, cache = _project(tmp_path / "p"), tmp_path / "compiled"
    script = tmp_path / "p" / "scripts" / "score.py"

    def saved_meanwhile(spec: object, read: set[Path]) -> object:
        compiled = compile_pipeline(spec, read)  # type: ignore[arg-type]
        script.write_text("print('saved during the compile')\n")
        return compiled

    before = compiled_or_cached(load_pipeline(config, "dev"), cache, saved_meanwhile)
    assert not list(cache.glob("*.json"))
    after = compiled_or_cached(load_pipeline(config, "dev"), cache, Counting())
    assert after.json() != before.json() and after.json() == compile_pipeline(load_pipeline(config, "dev")).json()


def test_a_compile_that_ships_an_archive_compiles_again_on_any_change(tmp_path: Path) -> None:
    """A tuning step packs its code folder into sourcedir.tar.gz: contents that the processing step's artifact
    of the same folder mirrors, and the archive does not."""
    from tests.steps.conftest import HEADER, project
    from tests.steps.test_tuning import STEP

    pipeline = HEADER + "  - {name: prepare, type: processing, code: scripts/emit.py, outputs: [data]}\n" + STEP
    config, cache, compile_ = project(tmp_path / "p", pipeline), tmp_path / "compiled", Counting()
    compiled_or_cached(load_pipeline(config, "dev"), cache, compile_)
    (tmp_path / "p" / "scripts" / "train.py").write_text("print('changed')\n")
    changed = compiled_or_cached(load_pipeline(config, "dev"), cache, compile_)
    assert compile_.calls == 2 and changed.json() == compile_pipeline(load_pipeline(config, "dev")).json()


def test_a_broken_entry_or_a_cache_turned_off_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, cache, compile_ = _project(tmp_path / "p"), tmp_path / "compiled", Counting()
    spec = load_pipeline(config, "dev")
    compiled_or_cached(spec, cache, compile_)
    (entry,) = cache.iterdir()
    entry.write_text('{"format": 1, "inputs": {}, "compiled": {"name": ')  # cut short
    compiled_or_cached(spec, cache, compile_)
    assert compile_.calls == 2
    data = json.loads(entry.read_text())  # sources that do not say what they should, and a script edited
    data["sources"] = {path: {"folder": 7} for path in data["inputs"]}
    entry.write_text(json.dumps(data))
    (tmp_path / "p" / "scripts" / "score.py").write_text("print('changed')\n")
    assert compiled_or_cached(spec, cache, compile_).json() == compile_pipeline(spec).json()
    assert compile_.calls == 3
    monkeypatch.setenv("SAGEPIPE_COMPILE_CACHE", "off")
    compiled_or_cached(spec, cache, compile_)
    assert compile_.calls == 4
    assert compile_pipeline_or_explain(spec).json() == compile_pipeline(spec).json()  # no folder: no cache


def test_the_compile_command_writes_the_same_bytes_from_the_cache(tmp_path: Path) -> None:
    config, home = _project(tmp_path / "p"), tmp_path / "home"
    outputs = []
    for n in (1, 2):
        done = run_cli("compile", str(config), "--env", "dev", "-o", str(tmp_path / f"{n}.json"), home=home)
        assert done.returncode == 0, done.stderr
        outputs.append((tmp_path / f"{n}.json").read_bytes())
    assert outputs[0] == outputs[1] and len(list((home / "compiled").iterdir())) == 1
