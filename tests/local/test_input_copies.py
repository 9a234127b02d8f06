"""A step's inputs are copies, as a SageMaker job's are (downloaded from S3): a script that writes, appends to or
deletes what lies in its input folder changes neither the user's files nor another step's outputs, and a second
run still reuses the cached steps."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.fsutil import copy_tree, hash_path
from tests.local.test_runner import run

VANDAL = """import os, pathlib
root = pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"]) / "input"
data = root / "data"
with open(data / "keep.txt", "a") as f:
    f.write("appended by the step\\n")
(data / "other.txt").write_text("overwritten by the step")
(data / "gone.txt").unlink()
(data / "sub" / "nested.txt").write_text("changed")
(data / "sub" / "new.txt").write_text("new")
(data / "link.txt").write_text("written through the link")
(root / "single" / "single.csv").write_text("changed")
for file in (root / "upstream").iterdir():
    file.unlink()
out = pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"]) / "output" / "data"
(out / "seen.txt").write_text(",".join(sorted(p.name for p in data.iterdir())))
"""
SEED = """import os, pathlib
out = pathlib.Path(os.environ["SAGEPIPE_PROCESSING_DIR"]) / "output" / "data"
(out / "made.txt").write_text("made by seed")
"""
TRAIN = """import json, os, pathlib
channel = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"])
(channel / "keep.txt").write_text("overwritten by training")
(channel / "other.txt").unlink()
(pathlib.Path(os.environ["SM_MODEL_DIR"]) / "model.json").write_text(json.dumps({"ok": True}))
"""
PIPELINE = """
name: copies
steps:
  - name: seed
    type: processing
    code: scripts/seed.py
    outputs: [data]
  - name: vandal
    type: processing
    code: scripts/vandal.py
    inputs: {data: data, single: single.csv, upstream: "${steps.seed.outputs.data}"}
    outputs: [data]
  - name: train
    type: training
    code: trainer/train.py
    inputs: {train: data}
"""


def _project(folder: Path) -> tuple[Path, dict[str, str]]:
    folder.mkdir()
    (folder / "pyproject.toml").touch()
    for path, text in {"scripts/seed.py": SEED, "scripts/vandal.py": VANDAL, "trainer/train.py": TRAIN,
                       "pipeline.yaml": PIPELINE, "data/keep.txt": "precious\n", "data/other.txt": "other",
                       "data/gone.txt": "still here", "data/sub/nested.txt": "nested", "single.csv": "a,b\n1,2\n",
                       "outside.txt": "outside the data folder"}.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    (folder / "data" / "link.txt").symlink_to(folder / "outside.txt")
    return folder / "pipeline.yaml", _contents(folder)


def _contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".yaml" and "__pycache__" not in p.parts}


def test_a_script_that_writes_into_its_inputs_changes_nothing_of_the_users(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "project"
    pipeline, before = _project(project)
    state = run(pipeline, home)
    steps = state.data["steps"]
    assert state.data["status"] == "succeeded", {n: s.get("error") for n, s in steps.items()}
    assert _contents(project) == before  # appended, overwritten, deleted, written through a link: all copies
    assert (project / "data" / "link.txt").is_symlink()
    seen = Path(steps["vandal"]["outputs"]["data"], "seen.txt").read_text().split(",")
    assert seen == ["keep.txt", "link.txt", "other.txt", "sub"]  # the step saw its copy change
    assert Path(steps["seed"]["outputs"]["data"], "made.txt").read_text() == "made by seed"  # upstream intact

    again = run(pipeline, home)  # the cache is keyed on the user's files, which did not change
    assert {n: s["status"] for n, s in again.data["steps"].items()} == {
        "seed": "cached", "vandal": "cached", "train": "cached"}
    assert _contents(project) == before


def test_input_mounts_are_folders_of_their_own_not_links(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "project"
    pipeline, _ = _project(project)
    run_dir = home / "runs" / run(pipeline, home).data["run_id"]
    mounts = [run_dir / "vandal" / "processing" / "input" / name for name in ("data", "single", "upstream")]
    mounts.append(run_dir / "train" / "input" / "data" / "train")
    for mount in mounts:
        assert mount.is_dir() and not mount.is_symlink(), mount
        for file in mount.rglob("*"):
            assert not file.is_symlink() and (file.is_dir() or file.stat().st_nlink == 1), file


def test_copies_are_writable_and_hold_what_links_point_to(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "locked").mkdir(parents=True)
    (source / "locked" / "a.txt").write_text("a")
    (tmp_path / "elsewhere.txt").write_text("elsewhere")
    (source / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    (source / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (source / "locked" / "a.txt").chmod(0o444)
    (source / "locked").chmod(0o555)
    try:
        copy_tree(source, tmp_path / "copy")
        digest = hash_path(source)
    finally:
        (source / "locked").chmod(0o755)
    copy = tmp_path / "copy"
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == ["link.txt", "locked", "locked/a.txt"]
    assert not (copy / "link.txt").is_symlink() and (copy / "link.txt").read_text() == "elsewhere"
    assert os.access(copy / "locked", os.W_OK) and (copy / "locked").stat().st_mode & 0o700 == 0o700
    assert (copy / "locked" / "a.txt").stat().st_mode & 0o200  # writable, as a job's downloaded input is
    assert hash_path(copy) == digest


def test_a_single_file_input_is_a_copy_in_a_folder(tmp_path: Path) -> None:
    from steps.base import stage_input

    name = "file.csv"
    source, root = tmp_path / name, tmp_path / "run"
    source.write_text("x")
    stage_input(source, root / "step" / "processing" / "input" / "one", root)
    staged = root / "step" / "processing" / "input" / "one" / name
    staged.write_text("changed")
    assert source.read_text() == "x" and not staged.is_symlink()
