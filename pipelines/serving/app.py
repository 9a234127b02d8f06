"""A WSGI app that speaks SageMaker's inference-container protocol; gunicorn runs N worker processes of it.

GET /ping is 200 once the model is loaded (503 before, or when loading failed); POST /invocations
takes text/csv or application/json. The app serves what an endpoint record
($SAGEPIPE_ENDPOINT_RECORD) names, and re-reads the record when it changes: an approval switches the
version between two requests, so nothing in flight is dropped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

MAX_BODY_BYTES = int(os.environ.get("SAGEPIPE_MAX_BODY_BYTES", str(6 * 1024 * 1024)))  # SageMaker's limit


class Endpoint:
    """The model an endpoint record names, reloaded when the record changes."""

    def __init__(self, record_path: Path):
        self.record_path = record_path
        self.stamp: tuple[int, int] | None = None
        self.model: Any = None
        self.inference: Any = None
        self.record: dict[str, Any] = {}
        self.error = "the model is loading"

    def current(self) -> Any:
        try:
            stat = self.record_path.stat()
        except OSError as exc:
            self.error = f"endpoint record {self.record_path}: {exc.strerror}"
            return self.model
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self.stamp:
            self.stamp = stamp
            self._load()
        return self.model

    def _load(self) -> None:
        try:
            record = json.loads(self.record_path.read_text())
            inference = _import_inference(Path(record["code_dir"]))
            model = inference.model_fn(record["model_dir"])
            model.threshold = float(record.get("threshold", model.threshold))
            model.version = str(record.get("version", ""))
        except Exception as exc:  # keep serving the previous version; /ping reports the failure
            self.error = f"loading the model failed: {exc!r}"
            print(f"[sagepipe serve] {self.error}", file=sys.stderr, flush=True)
            return
        self.model, self.inference, self.record, self.error = model, inference, record, ""
        print(f"[sagepipe serve] pid {os.getpid()} serves {record.get('model_group')} version "
              f"{record.get('version')}", file=sys.stderr, flush=True)


def _import_inference(code_dir: Path) -> Any:
    name = f"sagepipe_inference_{abs(hash(str(code_dir)))}"
    if name in sys.modules:
        return sys.modules[name]
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))  # inference.py imports its neighbours (schema, features)
    spec = importlib.util.spec_from_file_location(name, code_dir / "inference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_app(record_path: Path) -> Callable[..., Iterable[bytes]]:
    endpoint = Endpoint(record_path)
    endpoint.current()  # load at worker start, so /ping turns 200 as soon as possible

    def respond(start: Callable, status: str, body: bytes, content_type: str, version: str = "") -> list[bytes]:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if version:
            headers.append(("X-Model-Version", version))
        start(status, headers)
        return [body]

    def error(start: Callable, status: str, message: str) -> list[bytes]:
        return respond(start, status, json.dumps({"error": message}).encode(), "application/json")

    def app(environ: dict[str, Any], start: Callable) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        model = endpoint.current()
        if path == "/ping" and method == "GET":
            if model is None:
                return error(start, "503 Service Unavailable", endpoint.error)
            return respond(start, "200 OK", b"", "text/plain", model.version)
        if path != "/invocations":
            return error(start, "404 Not Found", f"no route {path}; use GET /ping or POST /invocations")
        if method != "POST":
            return error(start, "405 Method Not Allowed", "POST /invocations")
        if model is None:
            return error(start, "503 Service Unavailable", endpoint.error)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_BODY_BYTES:
            return error(start, "413 Payload Too Large", f"the body is {length} bytes; the limit is {MAX_BODY_BYTES}")
        body = environ["wsgi.input"].read(length) if length else b""
        inference = endpoint.inference
        try:
            records = inference.input_fn(body, environ.get("CONTENT_TYPE", ""))
            probabilities = inference.predict_fn(records, model)
            out, content_type = inference.output_fn(probabilities, environ.get("HTTP_ACCEPT", ""), model.threshold)
        except UnicodeDecodeError as exc:
            return error(start, "400 Bad Request", f"the body is not UTF-8 text (byte {exc.start})")
        except inference.InputError as exc:
            return error(start, "400 Bad Request", str(exc))
        except Exception as exc:  # a bug, not bad input: log it, answer 500 without the traceback
            traceback.print_exc()
            return error(start, "500 Internal Server Error", f"prediction failed: {type(exc).__name__}")
        return respond(start, "200 OK", out, content_type, model.version)

    return app


if "SAGEPIPE_ENDPOINT_RECORD" in os.environ:  # under gunicorn: `pipelines.serving.app:app`
    app = make_app(Path(os.environ["SAGEPIPE_ENDPOINT_RECORD"]))
