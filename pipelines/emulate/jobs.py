"""Training jobs as SageMaker runs them, in a local container folder, with S3 in moto; the S3 transfers and
container folders every job kind uses (processing jobs: pipelines/emulate/processing.py).

Inputs are downloaded from S3 before the job, outputs uploaded when it ends; a training job restores its
CheckpointConfig.S3Uri into the checkpoint folder first and syncs it back after, and its model directory
becomes `<S3OutputPath>/<job>/output/model.tar.gz`.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from pipelines.emulate.container import TEXT_SUFFIXES, Container, ContainerPathError
from pipelines.errors import StepFailed

RunProcess = Callable[[list[str], dict[str, str], Path], int]
EMULATE_BUCKET = "sagepipe-emulate"  # emulate's own: parameter uploads and the service's step cache
TRANSFER_THREADS, CHUNK = 8, 1 << 20
NOT_HERE = ("data in your AWS account is not in it: pass a local copy as the parameter that names it, "
            "e.g. --param input_data=path/to/folder (emulate uploads it)")


def split_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise StepFailed(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def download(s3: Any, uri: str, target: Path, required: bool = True,
             shard: tuple[int, int] | None = None) -> int:
    """Every object under the S3Prefix uri into target (as an S3Prefix input or a checkpoint restore); with
    shard (index, count) only that instance's share: the objects sorted by key, every count-th from index."""
    from botocore.exceptions import ClientError

    bucket, prefix = split_uri(uri)
    target.mkdir(parents=True, exist_ok=True)
    try:
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket" or not required:
            raise
        raise StepFailed(f"{uri}: the emulated S3 has no bucket {bucket}; {NOT_HERE}") from None
    wanted = []
    for page in pages:
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):].lstrip("/") or item["Key"].rsplit("/", 1)[-1]
            if ".." in Path(relative).parts:
                raise StepFailed(f"S3 key {item['Key']!r} would land outside {target}")
            wanted.append((item["Key"], target / relative))
    if required and not wanted:
        raise StepFailed(f"no S3 objects found under {uri}; {NOT_HERE}")
    if shard is not None:
        wanted = sorted(wanted)[shard[0]::shard[1]]

    def fetch(key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            shutil.copyfileobj(s3.get_object(Bucket=bucket, Key=key)["Body"], out, CHUNK)

    in_parallel(fetch, wanted)
    return len(wanted)


def upload(s3: Any, folder: Path, uri: str, files: list[Path] | None = None) -> None:
    """Every file in folder (or the given files in it) to uri, under its path relative to folder."""
    bucket, prefix = split_uri(uri)

    def put(file: Path) -> None:
        with open(file, "rb") as body:
            s3.put_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{file.relative_to(folder)}".lstrip("/"), Body=body)

    chosen = files if files is not None else sorted(p for p in folder.rglob("*") if p.is_file())
    in_parallel(put, [(file,) for file in chosen])


def in_parallel(work: Callable[..., None], calls: list[tuple[Any, ...]]) -> None:
    """Each call of work at once on a few threads (S3 requests wait on the network, not the CPU): a job's code
    folder is dozens of small objects, one request each. The first error is raised."""
    if len(calls) <= 1:
        for call in calls:
            work(*call)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(TRANSFER_THREADS, len(calls))) as pool:
        for done in [pool.submit(work, *call) for call in calls]:
            done.result()


@contextmanager
def fresh_container(root: Path, pip_verdicts: Path) -> Iterator[Container]:
    """An empty container folder, held by one job at a time. Its path is the same for every execution of a step,
    so the files whose /opt/ml it rewrites come out the same each time, as the real ones are."""
    import fcntl

    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if root.exists():
            shutil.rmtree(root)
        yield Container(root, pip_verdicts)


def training_job(s3: Any, args: dict[str, Any], job: str, box: Container, step_dir: Path,
                 run: RunProcess) -> dict[str, Any]:
    """Run one training job (SDK v3 ModelTrainer driver form); its properties as DescribeTrainingJob gives them."""
    from pipelines.model_archive import pack

    channels = args.get("InputDataConfig", [])
    folders = [_channel_dir(box, channel, i) for i, channel in enumerate(channels)]  # all checked before a download
    checkpoint = args.get("CheckpointConfig")
    checkpoints = box.path((checkpoint or {}).get("LocalPath", "/opt/ml/checkpoints"), "CheckpointConfig.LocalPath")
    for channel, folder in zip(channels, folders):
        download(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], folder)
    box.rewrite_files(box.path("/opt/ml/input/data"))  # scripts in the code channel
    box.rewrite_files(box.path("/opt/ml/input/data/sm_drivers"), TEXT_SUFFIXES)  # and the SDK's driver files
    box.route_pip(box.path("/opt/ml/input/data/sm_drivers"))
    _write_config(box, args, channels)
    checkpoints.mkdir(parents=True, exist_ok=True)
    if checkpoint:  # SageMaker restores the checkpoint URI before the job starts
        download(s3, checkpoint["S3Uri"], checkpoints, required=False)
    for container_folder in ("/opt/ml/model", "/opt/ml/output/data"):
        box.path(container_folder).mkdir(parents=True, exist_ok=True)
    algorithm = args["AlgorithmSpecification"]
    toolkit: dict[str, str] = {}
    if algorithm.get("ContainerEntrypoint"):
        argv = box.command(algorithm["ContainerEntrypoint"], algorithm.get("ContainerArguments") or [],
                           "AlgorithmSpecification")
    else:  # no entrypoint (a tuning job's trials): the framework image's training toolkit runs the script
        argv, toolkit = _toolkit_command(s3, box, args, channels)
    env = box.environment({**toolkit, **args.get("Environment", {}), "TRAINING_JOB_NAME": job,
                           "SAGEPIPE_CHECKPOINT_DIR": str(checkpoints)})
    code = run(argv, env, box.root)
    if checkpoint:  # and syncs it back, whether the job succeeded or not
        upload(s3, checkpoints, checkpoint["S3Uri"])
    if code != 0:
        raise StepFailed(f"training job {job} failed: the container exited with code {code}")
    output = args["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    archive = step_dir / "artifacts" / "model.tar.gz"
    pack(box.path("/opt/ml/model"), archive)
    bucket, key = split_uri(f"{output}/{job}/output/model.tar.gz")
    s3.upload_file(str(archive), bucket, key)
    pack(box.path("/opt/ml/output/data"), step_dir / "artifacts" / "output.tar.gz")
    s3.upload_file(str(step_dir / "artifacts" / "output.tar.gz"), bucket, key.replace("model.tar.gz", "output.tar.gz"))
    return {"TrainingJobName": job, "TrainingJobStatus": "Completed", "HyperParameters": args.get("HyperParameters", {}),
            "ModelArtifacts": {"S3ModelArtifacts": f"{output}/{job}/output/model.tar.gz"},
            "OutputDataConfig": args["OutputDataConfig"], "AlgorithmSpecification": algorithm,
            "ResourceConfig": args["ResourceConfig"]}


def _channel_dir(box: Container, channel: dict[str, Any], index: int) -> Path:
    """A channel's folder, /opt/ml/input/data/<ChannelName>: a name that is not one folder there is refused."""
    name, field = channel.get("ChannelName"), f"InputDataConfig[{index}].ChannelName"
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ContainerPathError(box.step, field, name, "is not a channel name (one folder under /opt/ml/input/data)")
    return box.path(f"/opt/ml/input/data/{name}", field)


def _toolkit_command(s3: Any, box: Container, args: dict[str, Any],
                     channels: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """What a framework image's training toolkit does: sagemaker_submit_directory's archive extracted into
    /opt/ml/code, its requirements.txt installed, `python3 <sagemaker_program> --name value ...` (sorted, the
    sagemaker_* ones left out) run there with the SM_* variables."""
    import os
    import tarfile

    hps = {k: str(v) for k, v in args.get("HyperParameters", {}).items()}
    program, submit = hps.get("sagemaker_program"), hps.get("sagemaker_submit_directory")
    if not program or not submit:
        raise StepFailed("the training job has no ContainerEntrypoint and no sagemaker_program and "
                         "sagemaker_submit_directory hyperparameters: emulate cannot tell what it runs")
    code, archive = box.path("/opt/ml/code"), box.path("/opt/ml/input/sourcedir.tar.gz")
    code.mkdir(parents=True, exist_ok=True)
    bucket, key = split_uri(submit)
    s3.download_file(bucket, key, str(archive))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(code, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise StepFailed(f"sagemaker_submit_directory {submit} is not a readable tar.gz: {exc}") from None
    box.rewrite_files(code)
    # the script must lie in the code folder; it reaches the shell as an argument, never as shell text
    box.path(f"/opt/ml/code/{program}", "HyperParameters.sagemaker_program")
    if program.startswith("/") or not (code / program).is_file():
        raise StepFailed(f"step {box.step!r}: HyperParameters.sagemaker_program {program!r} is not a file in "
                         f"sagemaker_submit_directory {submit}: name the script by its path inside that archive")
    user = {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
    arguments = [item for name in sorted(user) for item in (f"--{name}", user[name])]
    install = "if [ -f requirements.txt ]; then pip install --quiet -r requirements.txt; fi"
    run = f'code="$1" program="$2"; shift 2; cd "$code" && {install} && exec python3 "$program" "$@"'
    argv = ["/bin/sh", "-c", run, "sh", str(code), program, *arguments]
    names = [c["ChannelName"] for c in channels]
    hosts = [f"algo-{i + 1}" for i in range(int(args["ResourceConfig"].get("InstanceCount", 1)))]
    env = {f"SM_CHANNEL_{n.upper().replace('-', '_')}": str(box.path(f"/opt/ml/input/data/{n}")) for n in names}
    env.update({f"SM_HP_{n.upper().replace('-', '_')}": v for n, v in user.items()})
    env.update({"SM_CHANNELS": json.dumps(sorted(names)), "SM_HPS": json.dumps({k: _decoded(v) for k, v in user.items()}),
                "SM_MODEL_DIR": str(box.path("/opt/ml/model")), "SM_OUTPUT_DATA_DIR": str(box.path("/opt/ml/output/data")),
                "SM_OUTPUT_DIR": str(box.path("/opt/ml/output")), "SM_INPUT_DIR": str(box.path("/opt/ml/input")),
                "SM_INPUT_CONFIG_DIR": str(box.path("/opt/ml/input/config")), "SM_HOSTS": json.dumps(hosts),
                "SM_CURRENT_HOST": hosts[0], "SM_NUM_CPUS": str(os.cpu_count() or 1), "SM_NUM_GPUS": "0",
                "SM_MODULE_DIR": submit, "SM_USER_ENTRY_POINT": program, "SM_USER_ARGS": json.dumps(arguments)})
    return argv, env


def _decoded(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _write_config(box: Container, args: dict[str, Any], channels: list[dict[str, Any]]) -> None:
    """/opt/ml/input/config as the training platform writes it."""
    config = box.path("/opt/ml/input/config")
    config.mkdir(parents=True, exist_ok=True)
    resources = args["ResourceConfig"]
    hosts = [f"algo-{i + 1}" for i in range(int(resources.get("InstanceCount", 1)))]
    files = {
        "hyperparameters.json": {k: str(v) for k, v in args.get("HyperParameters", {}).items()},
        "resourceconfig.json": {"current_host": hosts[0], "current_instance_type": resources["InstanceType"],
                                "current_group_name": "homogeneousCluster", "hosts": hosts,
                                "network_interface_name": "eth0"},
        "inputdataconfig.json": {c["ChannelName"]: {"TrainingInputMode": c.get("InputMode", "File"),
                                                    "S3DistributionType": c["DataSource"]["S3DataSource"].get(
                                                        "S3DataDistributionType", "FullyReplicated"),
                                                    "RecordWrapperType": "None"} for c in channels},
    }
    for name, data in files.items():
        (config / name).write_text(json.dumps(data))
