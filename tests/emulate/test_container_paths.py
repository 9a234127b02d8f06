"""Defence in depth behind the definition checks (paths_outside_the_container): every folder a container builds
from a definition's value stays inside that container's /opt/ml, whatever '..' or planted link the value uses.
The functions are called directly, with values compile's checks would have refused."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pipelines.emulate import jobs, processing
from pipelines.emulate.container import Container, ContainerPathError


class NoS3:
    """An S3 client that must never be reached: a refused job writes nothing and downloads nothing."""

    meta = None

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 reached ({name}) for a job that should have been refused")


def _box(tmp_path: Path) -> Container:
    box = Container(tmp_path / "containers" / "p" / "step", tmp_path / "verdicts")
    box.image = {"SAGEPIPE_EMULATED_STEP": "preprocess"}
    return box


def _files(tmp_path: Path) -> set[str]:
    return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}


HOSTILE = ["/opt/ml/processing/../../../etc", "/opt/ml/../../outside", "/opt/ml/processing/input/../../../../x",
           "/opt/mlx/processing", "/etc/passwd", "opt/ml/processing", "", "/opt/ml/a\0b"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_path_that_leaves_opt_ml_is_refused_with_step_field_and_value(tmp_path: Path, value: str) -> None:
    box = _box(tmp_path)
    with pytest.raises(ContainerPathError) as caught:
        box.path(value, "ProcessingInputs[0].S3Input.LocalPath")
    message = str(caught.value)
    assert "'preprocess'" in message and "ProcessingInputs[0].S3Input.LocalPath" in message and repr(value) in message


@pytest.mark.parametrize("value, local", [("/opt/ml", "opt/ml"), ("/opt/ml/processing/input/data", "opt/ml/processing/input/data"),
                                          ("/opt/ml/processing/./output/", "opt/ml/processing/output"),
                                          ("/opt/ml//checkpoints", "opt/ml/checkpoints")])
def test_absolute_container_paths_map_under_the_container_root(tmp_path: Path, value: str, local: str) -> None:
    box = _box(tmp_path)
    assert box.path(value) == box.root / local


def test_a_planted_link_inside_opt_ml_cannot_lead_out(tmp_path: Path) -> None:
    box, outside = _box(tmp_path), tmp_path / "outside"
    outside.mkdir()
    (box.opt_ml / "processing").mkdir(parents=True)
    (box.opt_ml / "processing" / "input").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ContainerPathError, match="symbolic link"):
        box.path("/opt/ml/processing/input/data", "ProcessingInputs[0].S3Input.LocalPath")
    (box.opt_ml / "processing" / "inside").symlink_to(box.opt_ml / "model", target_is_directory=True)
    assert box.path("/opt/ml/processing/inside/x") == box.opt_ml / "processing" / "inside" / "x"  # a link within


def test_a_planted_opt_folder_cannot_lead_out(tmp_path: Path) -> None:
    box, outside = _box(tmp_path), tmp_path / "outside"
    (outside / "ml").mkdir(parents=True)
    box.root.mkdir(parents=True)
    (box.root / "opt").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ContainerPathError, match="symbolic link"):
        box.path("/opt/ml/model", "AlgorithmSpecification")


def _processing_args(local_in: str, local_out: str) -> dict[str, Any]:
    return {"AppSpecification": {"ImageUri": "x", "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/a.py"]},
            "ProcessingInputs": [{"InputName": "data", "S3Input": {"S3Uri": "s3://b/data", "LocalPath": local_in}}],
            "ProcessingOutputConfig": {"Outputs": [{"OutputName": "out", "S3Output": {
                "S3Uri": "s3://b/out", "LocalPath": local_out}}]},
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 2, "InstanceType": "ml.m5.large"}},
            "RoleArn": "arn:aws:iam::123456789012:role/r"}


@pytest.mark.parametrize("field, local_in, local_out", [
    ("ProcessingInputs[0].S3Input.LocalPath", "/opt/ml/processing/../../../../escaped", "/opt/ml/processing/output/out"),
    ("ProcessingOutputConfig.Outputs[0].S3Output.LocalPath", "/opt/ml/processing/input/data",
     "/opt/ml/processing/output/../../../../escaped"),
])
def test_a_processing_job_with_a_climbing_local_path_writes_nothing(tmp_path: Path, field: str, local_in: str,
                                                                    local_out: str) -> None:
    box = _box(tmp_path)
    ran: list = []
    with pytest.raises(ContainerPathError, match=field.replace("[", r"\[").replace("]", r"\]")) as caught:
        processing.processing_job(NoS3(), _processing_args(local_in, local_out), "job-1", box, tmp_path / "step",
                                  lambda *a: ran.append(a) or 0)
    assert "preprocess" in str(caught.value)  # the step, on every instance (algo-1, algo-2)
    assert not ran and not (tmp_path / "escaped").exists() and not any("escaped" in f for f in _files(tmp_path))


def _training_args(channel: str = "train", checkpoint: str = "/opt/ml/checkpoints",
                   entrypoint: list[str] | None = None, arguments: list[str] | None = None) -> dict[str, Any]:
    return {"AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "File",
                                       "ContainerEntrypoint": entrypoint or ["/bin/bash"],
                                       "ContainerArguments": arguments or ["-c", "true"]},
            "InputDataConfig": [{"ChannelName": channel, "DataSource": {"S3DataSource": {"S3Uri": "s3://b/train"}}}],
            "CheckpointConfig": {"S3Uri": "s3://b/checkpoints", "LocalPath": checkpoint},
            "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
            "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large"}}


@pytest.mark.parametrize("args, field", [
    (_training_args(channel="../../../../escaped"), r"InputDataConfig\[0\].ChannelName"),
    (_training_args(channel=".."), r"InputDataConfig\[0\].ChannelName"),
    (_training_args(channel="a/../../../../../escaped"), r"InputDataConfig\[0\].ChannelName"),
    (_training_args(checkpoint="/opt/ml/../../../../escaped"), "CheckpointConfig.LocalPath"),
    (_training_args(checkpoint="/tmp/escaped"), "CheckpointConfig.LocalPath"),
    (_training_args(entrypoint=["/bin/bash", "/opt/ml/../../../escaped.sh"]),
     r"AlgorithmSpecification.ContainerEntrypoint\[1\]"),
    (_training_args(arguments=["-c", "echo x > /opt/ml/model/../../../../escaped"]),
     r"AlgorithmSpecification.ContainerArguments\[1\]"),
], ids=["channel", "channel-dotdot", "channel-slash", "checkpoint", "checkpoint-absolute", "entrypoint", "arguments"])
def test_a_training_job_with_a_path_outside_its_container_is_refused(tmp_path: Path, args: dict, field: str) -> None:
    box, ran = _box(tmp_path), []

    class S3:
        def get_paginator(self, name: str) -> Any:
            class Pages:
                def paginate(self, **kwargs: Any) -> list:
                    return [{"Contents": [{"Key": "train/data.csv"}]}]
            return Pages()

        def get_object(self, **kwargs: Any) -> dict:
            return {"Body": io.BytesIO(b"a,b\n")}

    with pytest.raises(ContainerPathError, match=field):
        jobs.training_job(S3(), args, "job-1", box, tmp_path / "step", lambda *a: ran.append(a) or 0)
    assert not ran and not any("escaped" in f for f in _files(tmp_path))


def test_an_entrypoint_inside_opt_ml_is_rewritten_not_refused(tmp_path: Path) -> None:
    box = _box(tmp_path)
    argv = box.command(["/bin/bash", "-c", 'pip install -r /opt/ml/processing/input/code/requirements.txt && exec '
                        'python3 /opt/ml/processing/input/code/a.py "$@"', "--"], ["--out", "/opt/ml/processing/output"])
    assert str(box.opt_ml / "processing" / "input" / "code" / "a.py") in argv[2]
    assert argv[-1] == str(box.opt_ml / "processing" / "output")


def _submit(tmp_path: Path, program: str) -> tuple[Any, dict[str, Any]]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        body = b"print('hi')\n"
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))

    class S3:
        def download_file(self, bucket: str, key: str, path: str) -> None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(buffer.getvalue())

    args = {"HyperParameters": {"sagemaker_program": program, "sagemaker_submit_directory": "s3://b/src.tar.gz",
                                "epochs": "2"}, "ResourceConfig": {"InstanceCount": 1}}
    return S3(), args


@pytest.mark.parametrize("program", ["../../../../escaped.py", "/etc/passwd", "missing.py",
                                     'train.py"; touch escaped; "'])
def test_the_toolkits_entry_point_must_be_a_script_in_the_code_folder(tmp_path: Path, program: str) -> None:
    box = _box(tmp_path)
    s3, args = _submit(tmp_path, program)
    with pytest.raises(Exception, match="sagemaker_program") as caught:
        jobs._toolkit_command(s3, box, args, [])
    assert "preprocess" in str(caught.value)


def test_the_toolkits_entry_point_reaches_the_shell_as_an_argument(tmp_path: Path) -> None:
    box = _box(tmp_path)
    s3, args = _submit(tmp_path, "train.py")
    argv, env = jobs._toolkit_command(s3, box, args, [])
    assert argv[:2] == ["/bin/sh", "-c"] and "train.py" not in argv[2]
    assert argv[4:] == [str(box.path("/opt/ml/code")), "train.py", "--epochs", "2"]
    assert os.path.isfile(Path(argv[4]) / argv[5])
