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

        with shared_botocore_loader(), mock_aws():
            import boto3

            boto = boto3.Session(region_name=region)
            s3 = boto.client("s3")
            create_bucket(s3, bucket, region)
            from sagemaker.core.workflow.pipeline_context import PipelineSession

            for name in ("sagemaker", "sagemaker.config", "botocore", "boto3"):  # set again: imports reset them
                logging.getLogger(name).setLevel(logging.ERROR)

            with _schema_checked_once():
                session = PipelineSession(boto_session=boto, default_bucket=bucket, sagemaker_config=SDK_DEFAULTS)
                yield session, s3
    finally:
        restore_environ(saved)


@contextmanager
def _schema_checked_once() -> Iterator[None]:
    """The SDK validates its defaults config ~70 times per compile through jsonschema.validate, which first checks
    the SDK's whole schema against the metaschema (~0.2 s) and then the config (milliseconds). Here each schema
    is checked once and every config is still validated against it."""
    from unittest import mock

    import jsonschema

    original = jsonschema.validate
    checked: dict[int, Any] = {}

    def validate(instance: Any, schema: Any, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            return original(instance, schema, *args, **kwargs)
        if id(schema) not in checked:
            kind = jsonschema.validators.validator_for(schema)
            kind.check_schema(schema)
            checked[id(schema)] = kind(schema)
        error = jsonschema.exceptions.best_match(checked[id(schema)].iter_errors(instance))
        if error is not None:
            raise error
        return None

    with mock.patch.object(jsonschema, "validate", validate):
        yield


@contextmanager
def shared_botocore_loader() -> Iterator[None]:
    """Every botocore session made in the block shares one data loader. The SDK makes several sessions per
    compile (and emulate more), and each would parse the service models again (sagemaker's alone is ~0.3 s)
    and the endpoint data on every image lookup; the files are the same, so they are parsed once."""
    import botocore.loaders
    import botocore.session
    from unittest import mock

    create = botocore.loaders.create_loader
    loaders: dict[str | None, Any] = {}

    def shared(search_path_string: str | None = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = create(search_path_string)
        return loaders[search_path_string]

    with mock.patch.object(botocore.loaders, "create_loader", shared), \
            mock.patch.object(botocore.session, "create_loader", shared):
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
