"""A WSGI app that speaks SageMaker's inference-container protocol; gunicorn runs N worker processes of it.

GET (or HEAD) /ping is 200 once the model is loaded (503 before, or when loading failed); POST /invocations
takes text/csv or application/json, with a Content-Length or chunked. The app serves what an endpoint record
($SAGEPIPE_ENDPOINT_RECORD) names, and re-reads the record when it changes: an approval switches the
version between two requests, so nothing in flight is dropped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

from pipelines.serving.limits import MAX_BODY_BYTES, READ_TIMEOUT_S, SlowClient


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
    assert spec is not None and spec.loader is not None  # a .py path always has a spec and a loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Refused(Exception):
    """A request answered with an error status before the model sees it."""

    def __init__(self, status: str, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status, self.headers = status, headers


def read_body(environ: dict[str, Any]) -> bytes:
    """The body: Content-Length bytes, or a chunked one to its end; 413 over MAX_BODY_BYTES, 408 when it stops
    arriving (the worker's read timeout), takes over BODY_TIMEOUT_S in all, or its connection is closed to make
    room (SlowClient, whose text says which); 400 when the client closes before Content-Length bytes."""
    declared = environ.get("CONTENT_LENGTH") or ""
    length = int(declared) if declared else None  # gunicorn has checked it is a number
    if length is not None and length > MAX_BODY_BYTES:
        raise Refused("413 Payload Too Large", f"the body is {length} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        body = environ["wsgi.input"].read(MAX_BODY_BYTES + 1 if length is None else length)
    except TimeoutError as exc:  # the worker's read timeout, body deadline or room-making (worker.py)
        if "gunicorn.socket" in environ:  # read nothing more: gunicorn closes after the answer, not draining the rest
            try:
                environ["gunicorn.socket"].shutdown(socket.SHUT_RD)
            except OSError:  # the client has gone
                pass
        stopped = f"the body stopped arriving: nothing for {READ_TIMEOUT_S:g} s"
        what = str(exc) if isinstance(exc, SlowClient) else stopped
        sent = f"Content-Length {declared}" if declared else "a chunked body"
        raise Refused("408 Request Timeout", f"{what} ({sent}); send the whole body without pauses") from None
    if length is None and len(body) > MAX_BODY_BYTES:
        raise Refused("413 Payload Too Large", f"the chunked body is over the limit of {MAX_BODY_BYTES} bytes")
    if length is not None and len(body) < length:
        raise Refused("400 Bad Request", f"the body ended after {len(body)} of its Content-Length {length} bytes")
    return body


def route(path: str, method: str) -> None:
    """Refuse what is neither GET (or HEAD) /ping nor POST /invocations."""
    allowed = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",)}.get(path)
    if allowed is None:
        raise Refused("404 Not Found", f"no route {path}; use GET /ping or POST /invocations")
    if method not in allowed:
        raise Refused("405 Method Not Allowed", f"{method} {path}: use {' or '.join(allowed)} {path}",
                      (("Allow", ", ".join(allowed)),))


def make_app(record_path: Path) -> Callable[..., Iterable[bytes]]:
    from pipelines.serving.capture import Capture

    endpoint = Endpoint(record_path)
    endpoint.current()  # load at worker start, so /ping turns 200 as soon as possible
    capture = Capture.from_env(record_path.stem)

    def respond(start: Callable, status: str, body: bytes, content_type: str,
                headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
        start(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
        return [body]

    def error(start: Callable, status: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
        return respond(start, status, json.dumps({"error": message}).encode(), "application/json", headers)

    def app(environ: dict[str, Any], start: Callable) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        model = endpoint.current()
        try:
            route(path, method)
            if model is None:
                raise Refused("503 Service Unavailable", endpoint.error)
            version = (("X-Model-Version", model.version),) if model.version else ()
            if path == "/ping":
                return respond(start, "200 OK", b"", "text/plain", version)
            body = read_body(environ)
        except Refused as refused:
            return error(start, refused.status, str(refused), refused.headers)
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
        if capture is not None and capture.sampled():  # written before the answer: SIGTERM loses no answered call
            capture.record(body, environ.get("CONTENT_TYPE", ""), out, content_type,
                           environ.get("HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID"))
        return respond(start, "200 OK", out, content_type, version)

    return app


if "SAGEPIPE_ENDPOINT_RECORD" in os.environ:  # under gunicorn: `pipelines.serving.app:app`
    app = make_app(Path(os.environ["SAGEPIPE_ENDPOINT_RECORD"]))
