"""A processing job as SageMaker Processing runs it: one container per instance, each with /opt/ml/config.

`ProcessingResources.ClusterConfig.InstanceCount` containers run, one after another (sequentially, in
`<container folder>/algo-<i>`; a one-instance job uses the container folder itself). Each container gets:

- every FullyReplicated input whole, and its shard of each ShardedByS3Key input: the objects under the prefix,
  sorted by key, dealt round-robin (algo-1 the 1st, (N+1)th, ... object; algo-2 the 2nd, (N+2)th, ...), so each
  of N instances gets about 1/N of the objects (none, when there are fewer objects than instances);
- `/opt/ml/config/processingjobconfig.json` (the CreateProcessingJob request as the platform writes it, with the
  job's ARN) and `/opt/ml/config/resourceconfig.json` (`{"current_host": "algo-<i>", "hosts": [...]}`).

When a container ends, its outputs are uploaded to each output's S3Uri: the instances' files merge under the
prefix, as on SageMaker (a file that several instances write under the same name keeps the last one's copy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.emulate.container import Container
from pipelines.emulate.jobs import RunProcess, download, upload
from pipelines.errors import StepFailed

ACCOUNT = "123456789012"  # for ARNs when the role names no account


def cannot_emulate(args: dict[str, Any]) -> str | None:
    """Why a processing job's inputs or outputs cannot be had here (None when they can)."""
    for item in args.get("ProcessingInputs") or []:
        if "S3Input" not in item:
            return (f"processing input {item.get('InputName')!r} is not an S3Input (a DatasetDefinition queries "
                    "Athena or Redshift); emulate reads S3Input inputs")
    for item in (args.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
        if "S3Output" not in item:
            return (f"processing output {item.get('OutputName')!r} is not an S3Output (a FeatureStoreOutput needs "
                    "Feature Store); emulate writes S3Output outputs")
    return None


def processing_job(s3: Any, args: dict[str, Any], job: str, box: Container, step_dir: Path,
                   run: RunProcess) -> dict[str, Any]:
    """Run one processing job on its instances; its properties as DescribeProcessingJob gives them."""
    count = int((args.get("ProcessingResources") or {}).get("ClusterConfig", {}).get("InstanceCount", 1))
    hosts = [f"algo-{i + 1}" for i in range(count)]
    arn = _arn(s3, args, job)
    outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs", [])
    app = args["AppSpecification"]
    for index, host in enumerate(hosts):
        instance = box if count == 1 else Container(box.root / host, box.pip_verdicts)
        instance.image = box.image
        _prepare(s3, args, instance, index, hosts, arn, job)
        argv = instance.command(app.get("ContainerEntrypoint") or [], app.get("ContainerArguments") or [])
        env = instance.environment({**args.get("Environment", {}),
                                    "SAGEPIPE_PROCESSING_DIR": str(instance.path("/opt/ml/processing"))})
        code = run(argv, env, instance.root)
        if code != 0:
            where = f" on {host} of {count} instances" if count > 1 else ""
            raise StepFailed(f"processing job {job} failed{where}: {' '.join(app.get('ContainerEntrypoint') or [])} "
                             f"exited with code {code}")
        for i, item in enumerate(outputs):
            upload(s3, instance.path(item["S3Output"]["LocalPath"], _output_field(i)), item["S3Output"]["S3Uri"])
    return {"ProcessingJobName": job, "ProcessingJobArn": arn, "ProcessingJobStatus": "Completed",
            "AppSpecification": app, "ProcessingOutputConfig": {"Outputs": {item["OutputName"]: item for item in outputs}},
            "ProcessingResources": args["ProcessingResources"]}


def _prepare(s3: Any, args: dict[str, Any], box: Container, index: int, hosts: list[str], arn: str, job: str) -> None:
    """One instance's inputs (its shards), output folders and /opt/ml/config."""
    inputs = args.get("ProcessingInputs", [])
    outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs", [])
    folders = [box.path(item["S3Input"]["LocalPath"], f"ProcessingInputs[{i}].S3Input.LocalPath")
               for i, item in enumerate(inputs)]  # every one checked before anything is written
    folders += [box.path(item["S3Output"]["LocalPath"], _output_field(i)) for i, item in enumerate(outputs)]
    for item, folder in zip(inputs, folders):
        source = item["S3Input"]
        sharded = source.get("S3DataDistributionType") == "ShardedByS3Key"
        download(s3, source["S3Uri"], folder, shard=(index, len(hosts)) if sharded else None)
        box.rewrite_files(folder)
    for folder in folders[len(inputs):]:
        folder.mkdir(parents=True, exist_ok=True)
    config = box.path("/opt/ml/config")
    config.mkdir(parents=True, exist_ok=True)
    # paths in it name the container's folders, as the entrypoint's and the scripts' /opt/ml do
    (config / "processingjobconfig.json").write_text(box.rewrite(json.dumps(job_config(args, job, arn), indent=4)))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": hosts[index], "hosts": hosts}))


def _output_field(index: int) -> str:
    return f"ProcessingOutputConfig.Outputs[{index}].S3Output.LocalPath"


def job_config(args: dict[str, Any], job: str, arn: str) -> dict[str, Any]:
    """processingjobconfig.json: the request, with the defaults the service fills in (developer guide, "How
    Amazon SageMaker Processing Configures Your Processing Container")."""
    app = args.get("AppSpecification") or {}
    inputs = [{**item, "S3Input": {"S3DataDistributionType": "FullyReplicated", "S3InputMode": "File",
                                   "S3CompressionType": "None", "S3DownloadMode": "StartOfJob", **item["S3Input"]}}
              for item in args.get("ProcessingInputs") or []]
    outputs = [{**item, "S3Output": {"S3UploadMode": "EndOfJob", **item["S3Output"]}}
               for item in (args.get("ProcessingOutputConfig") or {}).get("Outputs") or []]
    cluster = (args.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    config = {"ProcessingJobArn": arn, "ProcessingJobName": job,
              "AppSpecification": {"ImageUri": app.get("ImageUri"), "ContainerEntrypoint": app.get("ContainerEntrypoint"),
                                   "ContainerArguments": app.get("ContainerArguments")},
              "Environment": args.get("Environment") or {}, "ProcessingInputs": inputs,
              "ProcessingOutputConfig": {"Outputs": outputs,
                                         "KmsKeyId": (args.get("ProcessingOutputConfig") or {}).get("KmsKeyId")},
              "ProcessingResources": {"ClusterConfig": {"VolumeKmsKeyId": None, **cluster}},
              "RoleArn": args.get("RoleArn"),
              "StoppingCondition": args.get("StoppingCondition") or {"MaxRuntimeInSeconds": 86400}}
    for optional in ("NetworkConfig", "ExperimentConfig"):
        if optional in args:
            config[optional] = args[optional]
    return config


def _arn(s3: Any, args: dict[str, Any], job: str) -> str:
    role = str(args.get("RoleArn") or "").split(":")
    account = role[4] if len(role) > 4 and role[4].isdigit() else ACCOUNT
    region = getattr(getattr(s3, "meta", None), "region_name", None) or "us-east-1"
    return f"arn:aws:sagemaker:{region}:{account}:processing-job/{job.lower()}"
