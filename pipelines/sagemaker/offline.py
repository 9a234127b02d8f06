"""An SDK session that never leaves this machine: compile runs against moto's in-memory AWS.

The SageMaker SDK uploads code to S3 while it builds a definition. Compile lets it, into moto,
then reads back what it uploaded; upsert later puts those bytes into the real bucket under
content-addressed keys (see `artifacts.py`).
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

# The SDK's defaults config, which is where telemetry is switched off (an env var does not do it).
SDK_DEFAULTS = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "offline-compile", "AWS_SECRET_ACCESS_KEY": "offline-compile",
                    "AWS_SESSION_TOKEN": "offline-compile"}


@contextmanager
def offline_session(region: str, bucket: str) -> Iterator[tuple[Any, Any]]:
    """(PipelineSession, s3 client) on an in-memory AWS; real credentials are never read."""
    saved = {k: os.environ.get(k) for k in (*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_PROFILE",
                                           "SAGEMAKER_VALIDATE_ROLE", "AWS_DEFAULT_REGION")}
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"  # ModelTrainer would ask IAM about the role
    os.environ["AWS_DEFAULT_REGION"] = region
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(key, None)
    import logging

    for name in ("sagemaker", "botocore", "boto3"):  # "popping out ... from the definition", credential notes
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Running within a PipelineSession")
    try:
        from moto import mock_aws

        with mock_aws():
            import boto3

            boto = boto3.Session(region_name=region)
            s3 = boto.client("s3")
            create_bucket(s3, bucket, region)
            from sagemaker.core.workflow.pipeline_context import PipelineSession

            for name in ("sagemaker", "sagemaker.config", "botocore", "boto3"):  # set again: imports reset them
                logging.getLogger(name).setLevel(logging.ERROR)

            session = PipelineSession(boto_session=boto, default_bucket=bucket, sagemaker_config=SDK_DEFAULTS)
            with _validate_config_once():
                yield session, s3
    finally:
        restore_environ(saved)


@contextmanager
def _validate_config_once() -> Iterator[None]:
    """The SDK re-validates its defaults config (schema check included) on every lookup, ~70 times per
    compile at ~0.1 s each; our config never changes, so each distinct one is validated once."""
    import json
    from unittest import mock

    from sagemaker.core.config.config_manager import SageMakerConfig

    original = SageMakerConfig.validate_sagemaker_config
    seen: set[str] = set()

    def validate_once(sagemaker_config: dict | None = None) -> None:
        key = json.dumps(sagemaker_config, sort_keys=True, default=str)
        if key not in seen:
            original(sagemaker_config)
            seen.add(key)

    with mock.patch.object(SageMakerConfig, "validate_sagemaker_config", staticmethod(validate_once)):
        yield


def create_bucket(s3: Any, bucket: str, region: str) -> None:
    """A bucket in region (us-east-1 takes no location constraint; every other region needs one)."""
    extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **extra)


def restore_environ(saved: dict[str, str | None]) -> None:
    """Put environment variables back as saved ({name: value, or None for unset})."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def uploaded_objects(s3: Any, bucket: str) -> dict[str, bytes]:
    """Every object the SDK (or the compiler) put into the in-memory bucket, by key."""
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            objects[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return objects
