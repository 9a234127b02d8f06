"""The AWS control plane: upload code, upsert and start pipelines, follow executions (boto3).

Clients use adaptive retries and honour AWS_ENDPOINT_URL (tests point it at a moto server).
Every AWS failure becomes an AwsError whose text says what to do, never a traceback.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Any, Iterator

from pipelines.errors import AwsError
from pipelines.values import value_text

TERMINAL = {"Succeeded", "Failed", "Stopped"}


def client(service: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "adaptive", "max_attempts": 10}, user_agent_extra="sagepipe")
    return boto3.client(service, region_name=region, config=config)


@contextmanager
def explained(action: str) -> Iterator[None]:
    """Turn botocore's exceptions into one-line AwsErrors that name the fix."""
    from botocore.exceptions import (BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError,
                                     NoRegionError)

    try:
        yield
    except NoCredentialsError:
        raise AwsError(f"{action}: no AWS credentials found; set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY), or run `aws sso login`") from None
    except NoRegionError:
        raise AwsError(f"{action}: no AWS region; set sagemaker.region in the env file") from None
    except EndpointConnectionError as exc:
        raise AwsError(f"{action}: cannot reach AWS ({exc})") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", str(exc))
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            raise AwsError(f"{action}: access denied — {message}; the caller's IAM policy must allow "
                           f"{exc.operation_name}") from None
        if code in ("Throttling", "ThrottlingException", "TooManyRequestsException", "SlowDown"):
            raise AwsError(f"{action}: AWS kept throttling {exc.operation_name} after retries; try again "
                           "in a minute") from None
        raise AwsError(f"{action}: {code}: {message}") from None
    except BotoCoreError as exc:
        raise AwsError(f"{action}: {exc}") from None


def upload_artifacts(compiled: Any) -> int:
    """Put the content-addressed code into the bucket; objects already there are left alone."""
    s3 = client("s3", compiled.region)
    uploaded = 0
    with explained(f"uploading code to s3://{compiled.bucket}"):
        for key, data in sorted(compiled.artifacts.items()):
            try:
                s3.head_object(Bucket=compiled.bucket, Key=key)
                continue
            except s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
            s3.put_object(Bucket=compiled.bucket, Key=key, Body=data)
            uploaded += 1
    return uploaded


def upsert(compiled: Any, description: str = "") -> tuple[str, bool]:
    """Create the pipeline, or update its definition; (pipeline ARN, created)."""
    sm = client("sagemaker", compiled.region)
    body = {"PipelineName": compiled.name, "PipelineDefinition": json.dumps(compiled.definition, sort_keys=True),
            "RoleArn": compiled.role, "PipelineDescription": description[:3072]}
    with explained(f"upserting pipeline {compiled.name}"):
        try:
            sm.describe_pipeline(PipelineName=compiled.name)
        except sm.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("ResourceNotFound", "ValidationException"):
                raise
            tags = [{"Key": k, "Value": v} for k, v in sorted(compiled.tags.items())]
            return sm.create_pipeline(**body, Tags=tags)["PipelineArn"], True
        return sm.update_pipeline(**body)["PipelineArn"], False


def start(name: str, region: str, parameters: dict[str, Any]) -> str:
    sm = client("sagemaker", region)
    values = [{"Name": k, "Value": _text(v)} for k, v in sorted(parameters.items())]
    with explained(f"starting pipeline {name}"):
        return sm.start_pipeline_execution(PipelineName=name, PipelineParameters=values)["PipelineExecutionArn"]


def describe(arn: str) -> dict[str, Any]:
    """An execution's status and, where the service lists them, its steps."""
    region = arn.split(":")[3]
    sm = client("sagemaker", region)
    with explained(f"describing {arn}"):
        found = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        steps: list[dict[str, Any]] = []
        try:
            for page in sm.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn):
                steps += [{"name": s.get("StepName"), "status": s.get("StepStatus"),
                           "failure": s.get("FailureReason")} for s in page.get("PipelineExecutionSteps", [])]
        except Exception:  # not every endpoint (moto) lists steps; the execution status is what matters
            steps = []
    return {"arn": arn, "status": found.get("PipelineExecutionStatus"), "failure": found.get("FailureReason"),
            "started": str(found.get("CreationTime")), "steps": steps}


def wait(arn: str, poll_s: float = 30.0, report: Any = None) -> dict[str, Any]:
    """Poll until the execution ends."""
    while True:
        status = describe(arn)
        if report:
            report(status)
        if status["status"] in TERMINAL:
            return status
        time.sleep(poll_s)


def executions(name: str, region: str) -> list[dict[str, Any]]:
    sm = client("sagemaker", region)
    with explained(f"listing executions of {name}"):
        found = sm.list_pipeline_executions(PipelineName=name).get("PipelineExecutionSummaries", [])
    return [{"arn": e.get("PipelineExecutionArn"), "status": e.get("PipelineExecutionStatus"),
             "started": str(e.get("StartTime"))} for e in found]


def _text(value: Any) -> str:
    return value_text(value)
