"""One emulated execution: its S3 and control plane (moto), the values references resolve against, the
service's step cache (kept in the emulated AWS itself) and the property files its steps wrote."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.emulate import jobs
from pipelines.emulate.expressions import Scope
from pipelines.errors import StepFailed


@dataclass
class Emulation:
    """One emulated execution: its S3 and control plane (moto), references, and the step cache."""

    pipeline: str
    execution_arn: str
    s3: Any
    sagemaker: Any
    scope: Scope
    home: Path  # <state root>/emulate
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (step, file) -> (the step's properties when read, the document): read once per job, as the service does
    property_documents: dict[tuple[str, str], tuple[Any, Any]] = field(default_factory=dict)

    def _cache_entry(self, step: str, key: str) -> tuple[str, str]:
        """Where the service keeps a step's cache entry: in the emulated AWS itself, so that it lives exactly
        as long as the objects it points at."""
        return jobs.EMULATE_BUCKET, f"step-cache/{self.pipeline}/{step}/{key}.json"

    def cached(self, step: str, key: str, expire_after: str | None) -> dict[str, Any] | None:
        """The entry of an earlier successful execution of the step with this cache key, still within
        ExpireAfter; None when there is none."""
        from pipelines.values import duration_seconds

        bucket, name = self._cache_entry(step, key)
        try:
            entry = json.loads(self.s3.get_object(Bucket=bucket, Key=name)["Body"].read())
        except Exception:  # noqa: BLE001 - no entry (NoSuchKey) or an unreadable one: not a hit
            return None
        if expire_after and time.time() - float(entry.get("created_at", 0)) > duration_seconds(expire_after):
            return None
        return entry

    def remember(self, step: str, key: str, properties: dict[str, Any]) -> None:
        bucket, name = self._cache_entry(step, key)
        self.s3.put_object(Bucket=bucket, Key=name, Body=json.dumps(
            {"properties": properties, "execution": self.execution_id, "created_at": time.time()}, default=str))

    def image_env(self, step: str, image: Any) -> dict[str, str]:
        """What a job's container learns of the image it stands in for (container_pip.py checks its
        requirements against that image's Python and platform)."""
        return {"SAGEPIPE_EMULATED_IMAGE": str(image), "SAGEPIPE_EMULATED_STEP": step} if image else {}

    def container_root(self, step: str) -> Path:
        return self.home / "containers" / self.pipeline / step

    @property
    def pip_verdicts(self) -> Path:
        return self.home / "pip-verdicts"

    @property
    def execution_id(self) -> str:
        return self.execution_arn.rsplit("/", 1)[-1]

    def read_property_file(self, step: str, name: str) -> Any:
        """The step's property file, read from S3 the first time a reference (or its report) asks after the job."""
        properties = self.scope.properties[step]
        known = self.property_documents.get((step, name))
        if known is not None and known[0] is properties:  # same job (a retry or a later execution reads anew)
            return known[1]
        declared = {f["PropertyFileName"]: f for f in self.steps[step].get("PropertyFiles", [])}[name]
        output = properties["ProcessingOutputConfig"]["Outputs"][declared["OutputName"]]
        bucket, key = jobs.split_uri(f"{output['S3Output']['S3Uri'].rstrip('/')}/{declared['FilePath']}")
        try:
            document = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as exc:  # missing object or bad JSON: the step that reads it fails, as on SageMaker
            raise StepFailed(f"property file {name} of step '{step}' (s3://{bucket}/{key}) cannot be read: "
                             f"{exc}") from None
        self.property_documents[(step, name)] = (properties, document)
        return document
