"""Data capture as a SageMaker endpoint does it: what the endpoint was asked and answered, as JSON Lines under
`<root>/<endpoint>/<variant>/yyyy/mm/dd/hh/` (UTC), one `captureData` / `eventMetadata` record per sampled call.

Each serving process writes its own files (as each instance does on SageMaker) and starts a new one every hour
and every MAX_RECORDS records. A record is one append of a whole line to an O_APPEND descriptor, made before the
answer is sent: nothing is buffered in the process, so a SIGTERM or a kill loses no answered call, and a reader
never sees half a line. The monitor reads these files as it reads SageMaker's.
"""

from __future__ import annotations

import base64
import json
import os
import random
import uuid
from datetime import datetime, timezone
from pathlib import Path

MAX_RECORDS = 10_000  # per file
ENV_DIR, ENV_PERCENT = "SAGEPIPE_CAPTURE_DIR", "SAGEPIPE_CAPTURE_PERCENT"
DEFAULT_VARIANT = "AllTraffic"  # what a single-variant SageMaker endpoint calls its variant


def encoding_of(content_type: str) -> str:
    """SageMaker's capture encoding for a content type: CSV and JSON are kept as text, anything else base64."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "text/csv":
        return "CSV"
    if kind in ("application/json", "application/jsonlines", "application/x-jsonlines"):
        return "JSON"
    return "BASE64"


def capture_record(request: bytes, request_type: str, response: bytes, response_type: str, at: datetime,
                   event_id: str, inference_id: str | None = None) -> dict:
    """One call in SageMaker's data-capture record shape."""
    def side(mode: str, body: bytes, content_type: str) -> dict:
        encoding, data = encoding_of(content_type), None
        if encoding != "BASE64":
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:  # CSV or JSON that is not UTF-8 text: kept as bytes, and labelled so
                encoding = "BASE64"
        if data is None:
            data = base64.b64encode(body).decode("ascii")
        return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}

    metadata = {"eventId": event_id, "inferenceTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {"captureData": {"endpointInput": side("INPUT", request, request_type),
                            "endpointOutput": side("OUTPUT", response, response_type)},
            "eventMetadata": metadata, "eventVersion": "0"}


class Capture:
    """Appends sampled calls of one endpoint variant under root."""

    def __init__(self, root: Path, endpoint: str, percent: float = 100.0, variant: str = DEFAULT_VARIANT,
                 max_records: int = MAX_RECORDS):
        self.folder = Path(root) / endpoint / variant
        self.percent = percent
        self.max_records = max_records
        self._fd: int | None = None
        self._hour: str | None = None
        self._count = 0

    @classmethod
    def from_env(cls, endpoint: str) -> "Capture | None":
        root = os.environ.get(ENV_DIR)
        return cls(Path(root), endpoint, float(os.environ.get(ENV_PERCENT, "100"))) if root else None

    def sampled(self) -> bool:
        return self.percent >= 100 or random.random() * 100 < self.percent

    def record(self, request: bytes, request_type: str, response: bytes, response_type: str,
               inference_id: str | None = None) -> None:
        at = datetime.now(timezone.utc)
        line = json.dumps(capture_record(request, request_type, response, response_type, at, str(uuid.uuid4()),
                                         inference_id), separators=(",", ":")) + "\n"
        os.write(self._descriptor(at), line.encode())
        self._count += 1

    def _descriptor(self, at: datetime) -> int:
        hour = at.strftime("%Y/%m/%d/%H")
        if self._fd is None or hour != self._hour or self._count >= self.max_records:
            self.close()
            folder = self.folder / hour
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{at:%M-%S}-{at.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            self._fd = os.open(folder / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._hour, self._count = hour, 0
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
