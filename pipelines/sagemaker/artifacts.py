"""Content-addressed code artifacts: the same files always get the same S3 location.

The SDK names uploads after job names with timestamps; a definition that changes on every compile
makes SageMaker's step cache miss on every upsert. Each S3 location in the definition that names
uploaded objects is rewritten to `s3://<bucket>/<pipeline>/artifacts/<sha256 of the contents>/`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pipelines.archives import is_noise


# Where jobs write: locations, not uploaded code, whatever objects happen to lie below them.
OUTPUT_KEYS = {"OutputDataConfig", "CheckpointConfig", "ProcessingOutputConfig", "S3OutputPath"}


def content_address(definition: Any, objects: dict[str, bytes], bucket: str,
                    prefix: str) -> tuple[Any, dict[str, bytes]]:
    """(definition with content-addressed S3 URIs, {new key: bytes} to upload at upsert)."""
    objects = {k: v for k, v in objects.items() if not is_noise(k)}
    root = f"s3://{bucket}/"
    artifacts: dict[str, bytes] = {}
    rewritten: dict[str, str] = {}

    def address(uri: str) -> str:
        if uri in rewritten:
            return rewritten[uri]
        key = uri[len(root):]
        if key in objects:
            members, single = {key.rsplit("/", 1)[-1]: objects[key]}, True
        else:
            base = key.rstrip("/") + "/"
            members, single = {k[len(base):]: v for k, v in objects.items() if k.startswith(base)}, False
            if not members:
                return uri  # an output location, or data that is not ours
        folder = artifact_folder(prefix, members)
        for name, data in members.items():
            artifacts[f"{folder}/{name}"] = data
        new_uri = root + (f"{folder}/{next(iter(members))}" if single else folder)
        rewritten[uri] = new_uri
        return new_uri

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if k in OUTPUT_KEYS else walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and value.startswith(root):
            return address(value)
        return value

    return walk(definition), artifacts


def artifact_folder(prefix: str, members: dict[str, bytes]) -> str:
    """The key of an artifact folder: `<prefix>/artifacts/` and a digest of its members' names and contents."""
    digest = hashlib.sha256()
    for name in sorted(members):
        digest.update(name.encode() + b"\0" + hashlib.sha256(members[name]).digest())
    return f"{prefix}/artifacts/{digest.hexdigest()[:24]}"
