"""The image is part of the contract: each job's requirements must install in its image's Python and platform.

pip resolves against a folder of tiny wheels built here (`--no-index --find-links`): no network beyond loopback."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
import socket
import zipfile
from pathlib import Path

import pytest

from pipelines.errors import ConfigError
from pipelines.loader import load_pipeline
from pipelines.sagemaker import images, requirements_check
from pipelines.sagemaker.images import IMAGES
from pipelines.sagemaker.requirements_check import check_requirements, requirements_in_entrypoint, stands_in_for
from tests.conftest import GOLDEN, REPO, make_project, run_cli

SKLEARN = IMAGES["sklearn-1.9-0"]  # Python 3.12


def wheel(folder: Path, name: str, version: str, requires_python: str = ">=3.9",
          requires: tuple[str, ...] = ()) -> Path:
    """A minimal installable wheel: NAME-VER.dist-info/{METADATA, WHEEL, RECORD}, tag py3-none-any."""
    info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: {requires_python}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{name}/__init__.py": "", f"{info}/METADATA": metadata,
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}

    def digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(text)},{len(text)}\n" for path, text in files.items())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
        archive.writestr(f"{info}/RECORD", record + f"{info}/RECORD,,\n")
    return path


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local package index: `fitting` (Python >= 3.11), `newpy` (>= 3.13) and `wants-newpy` (needs newpy)."""
    wheels = tmp_path / "wheels"
    wheel(wheels, "fitting", "1.0", ">=3.11")
    wheel(wheels, "newpy", "1.0", ">=3.13")
    wheel(wheels, "wants_newpy", "2.0", ">=3.9", ("newpy>=1.0",))
    monkeypatch.setenv("SAGEPIPE_PIP_INDEX_ARGS", f"--isolated --no-index --find-links {wheels}")
    monkeypatch.delenv("SAGEPIPE_REQUIREMENTS_CHECK", raising=False)
    return wheels


@pytest.fixture
def pip_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = requirements_check.run_pip

    def counting(argv: list[str]) -> object:
        calls.append(argv)
        return real(argv)

    monkeypatch.setattr(requirements_check, "run_pip", counting)
    return calls


def _file(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.txt"
    path.write_text(text)
    return path


def test_a_package_that_needs_a_newer_python_is_refused_and_a_fitting_one_passes(
        index: Path, pip_calls: list, tmp_path: Path) -> None:
    state = tmp_path / "state"
    bad = _file(tmp_path / "bad", "fitting==1.0\nnewpy==1.0\n")
    problem = check_requirements("sklearn-1.9-0", bad, "prepare", state, shown="scripts/job.txt",
                                 config_file="configs/p.yaml")
    assert problem is not None and problem.path == "steps.prepare.requirements" and problem.file == "configs/p.yaml"
    assert "scripts/job.txt cannot be installed in the job's image" in problem.message
    assert "sagemaker-scikit-learn 1.9-0 (Python 3.12, manylinux_2_34_x86_64)" in problem.message
    assert "newpy: requires Python >=3.13, and the image has Python 3.12" in problem.message
    # a dependency that needs a newer Python is named too
    deep = _file(tmp_path / "deep", "wants_newpy==2.0\n")
    assert "newpy: requires Python >=3.13" in check_requirements(SKLEARN, deep, "x", state).message
    assert check_requirements(SKLEARN, _file(tmp_path / "ok", "fitting==1.0\n"), "x", state) is None
    assert len(pip_calls) == 3
    absent = check_requirements(SKLEARN, _file(tmp_path / "absent", "nothere==1.0\n"), "x", state)
    assert "nothere==1.0: no release has a wheel for Python 3.12" in absent.message
    # the pip call is the resolve-only one, for the image's interpreter and platforms
    argv = pip_calls[0]
    assert {"--dry-run", "--ignore-installed", "--only-binary=:all:"} <= set(argv)
    assert argv[argv.index("--python-version") + 1] == "3.12" and argv[argv.index("--abi") + 1] == "cp312"
    assert "manylinux_2_34_x86_64" in argv and "manylinux_2_17_x86_64" in argv and "manylinux_2_35_x86_64" not in argv


def test_a_second_check_is_answered_from_the_cache(index: Path, pip_calls: list, tmp_path: Path) -> None:
    state, bad = tmp_path / "state", _file(tmp_path / "bad", "newpy==1.0\n")
    first = check_requirements(SKLEARN, bad, "x", state)
    second = check_requirements(SKLEARN, bad, "x", state)
    assert first == second is not None and len(pip_calls) == 1
    (entry,) = (state / "requirements-checks").glob("*.json")
    assert json.loads(entry.read_text())["ok"] is False
    bad.write_text("newpy==1.0\n# edited\n")  # other contents: asked again
    check_requirements(SKLEARN, bad, "x", state)
    assert len(pip_calls) == 2
    older = IMAGES["sklearn-1.4-2"]  # another Python: asked again
    assert "requires Python >=3.13, and the image has Python 3.10" in check_requirements(older, bad, "x", state).message
    assert len(pip_calls) == 3


def test_what_the_image_preinstalls_is_not_resolved(index: Path, pip_calls: list, tmp_path: Path) -> None:
    preinstalled = _file(tmp_path / "pre", "scikit-learn==1.9.0\nPyYAML>=6\n")  # neither is in the local index
    assert check_requirements(SKLEARN, preinstalled, "x", tmp_path / "state") is None and pip_calls == []
    assert check_requirements(IMAGES["sklearn-1.4-2"], preinstalled, "x", tmp_path / "state") is not None


def test_an_unreachable_index_warns_in_one_line_and_refuses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SAGEPIPE_PIP_INDEX_ARGS", f"--isolated --index-url http://127.0.0.1:{port}/simple")
    monkeypatch.delenv("SAGEPIPE_REQUIREMENTS_CHECK", raising=False)  # tests/conftest.py turns it off
    bad = _file(tmp_path / "bad", "newpy==1.0\n")
    with caplog.at_level(logging.WARNING, logger="sagepipe"):
        assert check_requirements(SKLEARN, bad, "x", tmp_path / "state") is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert "pip could not reach its package index" in line and "\n" not in line
    assert not (tmp_path / "state" / "requirements-checks").exists()  # nothing remembered: the next compile asks


def test_compile_and_validate_refuse_with_exit_2_naming_step_image_python_and_package(
        index: Path, tmp_path: Path) -> None:
    pipeline = """
name: fits
steps:
  - name: prepare
    type: processing
    code: scripts/emit.py
    requirements: scripts/requirements/prepare.txt
    outputs: [data]
"""
    dev = "sagemaker: {region: us-east-1, role: 'arn:aws:iam::111122223333:role/exec', bucket: fits-bucket}\n"
    config = make_project(tmp_path / "p", "fits", pipeline, {"dev": dev}, ("emit.py",))
    requirements = _file(tmp_path / "p" / "scripts" / "requirements", "")
    requirements = requirements.rename(requirements.with_name("prepare.txt"))
    requirements.write_text("fitting==1.0\nnewpy==1.0\n")
    home = tmp_path / "home"
    for command in ("compile", "validate"):
        done = run_cli(command, str(config), "--env", "dev", home=home, cwd=tmp_path / "p")
        assert done.returncode == 2, done.stderr
        assert "steps.prepare.requirements: scripts/requirements/prepare.txt cannot be installed in the job's " \
               "image sagemaker-scikit-learn 1.9-0 (Python 3.12, manylinux_2_34_x86_64): newpy: requires Python " \
               ">=3.13, and the image has Python 3.12" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    # answered from the cache: without the wheels pip would say something else (no release found)
    shutil.rmtree(index)
    again = run_cli("validate", str(config), "--env", "dev", home=home, cwd=tmp_path / "p")
    assert again.returncode == 2 and "requires Python >=3.13" in again.stderr, again.stderr
    wheel(index, "fitting", "1.0", ">=3.11")
    requirements.write_text("fitting==1.0\n")
    done = run_cli("compile", str(config), "--env", "dev", home=home, cwd=tmp_path / "p")
    assert done.returncode == 0, done.stderr
    (step,) = json.loads(done.stdout)["Steps"]
    assert "-r /opt/ml/processing/input/code/requirements/prepare.txt" in step["Arguments"]["AppSpecification"][
        "ContainerEntrypoint"][2]


def test_requirements_must_ship_with_the_script(tmp_path: Path) -> None:
    pipeline = """
name: outside
steps:
  - {name: prepare, type: processing, code: scripts/emit.py, requirements: other/prepare.txt, outputs: [data]}
"""
    config = make_project(tmp_path / "p", "outside", pipeline, {}, ("emit.py",))
    with pytest.raises(ConfigError) as raised:
        load_pipeline(config)
    assert "must lie in the script's folder 'scripts/'" in str(raised.value)


def test_the_doc_shows_the_table_the_check_reads() -> None:
    doc = (REPO / "docs" / "containers.md").read_text()
    assert images.markdown_table() in doc
    assert "(docs/containers.md)" in (REPO / "README.md").read_text()


def test_every_image_the_examples_compile_to_is_in_the_table_with_a_python_that_fits() -> None:
    from steps.base import FRAMEWORK_IMAGE, MODEL_IMAGE
    from steps.register import INFERENCE_IMAGE

    for default in (FRAMEWORK_IMAGE, MODEL_IMAGE, INFERENCE_IMAGE):
        assert images.find(default) is not None, default
    emitted = set()
    for golden in GOLDEN.glob("*.json"):
        emitted |= {text for text in _strings(json.loads(golden.read_text())) if ".dkr.ecr." in text}
    assert emitted
    for uri in emitted:
        record = images.from_uri(uri)
        assert record is not None and record.used_by.endswith("(default)"), uri
        assert tuple(map(int, record.python.split("."))) >= (3, 11), uri


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_image_records_are_found_by_uri_and_by_sdk_name() -> None:
    assert images.from_uri("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3") \
        is IMAGES["sklearn-1.9-0"]
    assert images.from_uri("763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.6-gpu-py312") \
        is IMAGES["pytorch-training-2.6.0-py312"]
    assert images.from_uri("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312") \
        is IMAGES["pytorch-inference-2.6.0-py312"]
    assert images.from_uri("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3") \
        is IMAGES["sklearn-1.4-2-py312"]
    assert images.find({"framework": "pytorch", "version": "2.6", "py_version": "py312", "scope": "inference"}) \
        is IMAGES["pytorch-inference-2.6.0-py312"]
    unknown = images.resolve("1234.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.5-gpu-py311")
    assert unknown is not None and unknown.python == "3.11" and unknown.preinstalled == {}
    assert images.resolve("1234.dkr.ecr.eu-west-1.amazonaws.com/mine:latest") is None


def test_the_check_can_be_switched_off(index: Path, pip_calls: list, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEPIPE_REQUIREMENTS_CHECK", "off")
    assert check_requirements(SKLEARN, _file(tmp_path / "bad", "newpy==1.0\n"), "x", tmp_path / "state") is None
    assert pip_calls == []


def test_emulate_finds_a_compiled_processing_job_s_requirements() -> None:
    steps = {s["Name"]: s for s in json.loads((GOLDEN / "fraud-detection.dev.json").read_text())["Steps"]}
    entrypoint = steps["ingest"]["Arguments"]["AppSpecification"]["ContainerEntrypoint"]
    assert requirements_in_entrypoint(entrypoint) == "/opt/ml/processing/input/code/requirements/ingest.txt"
    assert requirements_in_entrypoint(["python3", "/opt/ml/processing/input/code/emit.py"]) is None


def test_emulate_says_which_image_and_python_it_stands_in_for() -> None:
    line = stands_in_for("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312")
    assert line.startswith("[sagepipe] emulating image 763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:"
                           "2.6.0-cpu-py312 (Python 3.12, manylinux_2_35_x86_64) with this machine's Python 3.")


def test_a_step_type_picks_its_image_and_an_override_of_another_framework_stands_alone() -> None:
    spec = load_pipeline(REPO / "configs" / "fraud-detection.yaml", "dev")
    kinds = {step.name: step.job_image() for step in spec.steps if step.runs_script}
    assert kinds["ingest"] == kinds["preprocess"] == {"framework": "sklearn", "version": "1.9-0"}
    assert kinds["train"] == kinds["evaluate"] == {"framework": "pytorch", "version": "2.6.0", "py_version": "py312",
                                                   "scope": "training"}
    from steps.training import TrainingStep

    step = TrainingStep.model_validate({"name": "t", "code": "model_code/train_lightgbm.py",
                                        "sagemaker": {"framework_image": {"framework": "sklearn", "version": "1.9-0"}}})
    assert step.framework() == {"framework": "sklearn", "version": "1.9-0"}
    step = TrainingStep.model_validate({"name": "t", "code": "model_code/train_lightgbm.py",
                                        "sagemaker": {"framework_image": {"version": "2.7.1"}}})
    assert step.framework()["version"] == "2.7.1" and step.framework()["py_version"] == "py312"
