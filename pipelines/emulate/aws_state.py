"""The emulated AWS as a place: a moto server whose S3 objects, model packages, endpoints and pipeline
executions outlive one emulation.

`python -m pipelines.emulate.aws_state --port P --state DIR` serves moto with the state DIR holds, and writes
it back when asked (`POST /_sagepipe/save`, which emulate sends when an execution ends). The state is one
pickle of moto's backends for the services emulate uses, replaced atomically; one that cannot be read is
kept aside under another name (nothing is deleted) and the server starts empty, saying so.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pickle
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SERVICES = {"s3": ("moto.s3.models", "s3_backends"), "sagemaker": ("moto.sagemaker.models", "sagemaker_backends")}
STATE_FILE, LOCK_FILE, SAVE_PATH = "state.pickle", ".lock", "/_sagepipe/save"
FORMAT = 1


def _backends() -> dict[str, Any]:
    import importlib

    return {service: getattr(importlib.import_module(module), name) for service, (module, name) in SERVICES.items()}


def _moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


def load(state_dir: Path) -> str:
    """Put the saved state into this process's moto backends; a line saying what was loaded. One that cannot
    be read is kept aside under another name (the server then starts empty)."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return "emulated AWS: new (nothing saved yet)"
    try:
        _install(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable state is kept aside, never lost
        aside = path.with_name(f"{STATE_FILE}.unreadable-{int(time.time())}")
        os.replace(path, aside)
        return f"warning: emulated AWS state {path} could not be read ({exc}); kept as {aside.name}, starting empty"
    return f"emulated AWS: loaded from {path}"


def _install(path: Path) -> None:
    """The saved state at path in this process's moto backends; raises when it cannot be read."""
    with open(path, "rb") as handle:
        saved = pickle.load(handle)
    if saved.get("format") != FORMAT or saved.get("moto") != _moto_version():
        raise ValueError(f"saved by moto {saved.get('moto')}, format {saved.get('format')}")
    live = _backends()
    for service, backends in saved["backends"].items():
        live[service].clear()
        live[service].update(backends)


def save(state_dir: Path) -> None:
    """Write this process's moto backends to state_dir, atomically."""
    state_dir.mkdir(parents=True, exist_ok=True)
    data = pickle.dumps({"format": FORMAT, "moto": _moto_version(), "saved_at": time.time(),
                         "backends": {service: dict(backends) for service, backends in _backends().items()}},
                        protocol=pickle.HIGHEST_PROTOCOL)
    temporary = state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, state_dir / STATE_FILE)


@contextmanager
def held(state_dir: Path, say: Any = print) -> Iterator[None]:
    """One emulation at a time uses a state folder (each would otherwise save over the other's objects)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another emulation that uses {state_dir} to end")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _with_save(app: Any, state_dir: Path) -> Any:
    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == SAVE_PATH and environ.get("REQUEST_METHOD") == "POST":
            save(state_dir)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"saved"]
        return app(environ, start_response)

    return wrapped


def serve(host: str, port: int, state_dir: Path) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    print(load(state_dir), flush=True)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, _with_save(app, state_dir), threaded=True, request_handler=MotoRequestHandler)


def summary(state_dir: Path) -> dict[str, Any]:
    """What the saved emulated AWS holds: buckets (objects, bytes), model package groups (versions and their
    status), models, endpoints, pipelines (executions)."""
    path = state_dir / STATE_FILE
    found: dict[str, Any] = {"state": str(path), "exists": path.exists(), "buckets": [], "model_package_groups": [],
                             "models": [], "endpoints": [], "pipelines": []}
    if not path.exists():
        return found
    found["bytes_on_disk"] = path.stat().st_size
    try:  # only read: listing never moves a state aside (the next emulation does, saying so)
        _install(path)
    except Exception as exc:  # noqa: BLE001 - shown, not raised
        found["unreadable"] = str(exc)
        return found
    backends = _backends()
    for account in backends["s3"].values():
        for bucket in account["aws"].buckets.values():
            keys = list(bucket.keys.values())
            found["buckets"].append({"name": bucket.name, "objects": len(keys),
                                     "bytes": sum(int(getattr(k, "size", 0) or 0) for k in keys)})
    for account in backends["sagemaker"].values():
        for region, backend in account.items():
            for group in backend.model_package_groups.values():
                versions = [p for p in backend.model_packages.values()
                            if p.model_package_group_name == group.model_package_group_name]
                found["model_package_groups"].append({
                    "name": group.model_package_group_name, "region": region,
                    "versions": [{"version": p.model_package_version, "status": p.model_approval_status}
                                 for p in sorted(versions, key=lambda p: p.model_package_version)]})
            found["models"] += [name for name in backend._models]
            found["endpoints"] += [{"name": e.endpoint_name, "status": e.endpoint_status}
                                   for e in backend.endpoints.values()]
            for pipeline in backend.pipelines.values():
                found["pipelines"].append({"name": pipeline.pipeline_name, "region": region,
                                           "executions": len(pipeline.pipeline_executions)})
    return found


def list_command(home: Path, as_json: bool) -> int:
    """`sagepipe emulated list`: what the emulated AWS of this state folder holds."""
    import json

    found = summary(home)
    if as_json:
        print(json.dumps(found, indent=2))
        return 0
    if not found["exists"]:
        print(f"the emulated AWS is empty ({found['state']} does not exist yet; `sagepipe emulate` makes it)")
        return 0
    print(f"emulated AWS in {Path(found['state']).parent} ({found['bytes_on_disk'] / 1e6:.1f} MB on disk)")
    if found.get("unreadable"):
        print(f"  it cannot be read ({found['unreadable']}); the next emulation keeps it aside and starts empty")
    for bucket in found["buckets"]:
        print(f"  s3://{bucket['name']}: {bucket['objects']} objects, {bucket['bytes'] / 1e6:.1f} MB")
    for pipeline in found["pipelines"]:
        count = pipeline["executions"]
        print(f"  pipeline {pipeline['name']}: {count} execution{'s' if count != 1 else ''}")
    for group in found["model_package_groups"]:
        versions = ", ".join(f"{v['version']} {v['status']}" for v in group["versions"])
        print(f"  model package group {group['name']}: {versions or 'no versions'}")
    for endpoint in found["endpoints"]:
        print(f"  endpoint {endpoint['name']} ({endpoint['status']})")
    if found["models"]:
        print(f"  models: {len(found['models'])}")
    return 0


def clean_command(home: Path) -> int:
    """`sagepipe emulated clean`: forget the emulated AWS (its objects, packages, endpoints, executions and step
    cache); local runs, their reports and the MLflow store are left alone."""
    with held(home):
        removed = [p for p in home.glob(f"{STATE_FILE}*") if p.is_file()]
        for path in removed:
            path.unlink()
    print(f"removed the emulated AWS in {home} ({len(removed)} file{'s' if len(removed) != 1 else ''}); "
          "the next emulation starts from an empty account" if removed else f"the emulated AWS in {home} is empty")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.state)


if __name__ == "__main__":
    main()
