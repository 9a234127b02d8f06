"""`sagepipe serve`: endpoint records, and the gunicorn process that serves one.

An endpoint record (`.sagepipe/endpoints/<name>.json`) names the model folder, the inference code and
the threshold. Deploy steps and approvals rewrite records; running servers pick the change up.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.errors import UsageError
from pipelines.fsutil import atomic_write_json
from pipelines.registry import RegistryError


def endpoint_record(package: dict[str, Any], registry: Any, name: str, trigger: str,
                    follow: str | None = None) -> dict[str, Any]:
    """What a server needs to serve one registered version."""
    lineage = package.get("lineage") or {}
    metrics = (package.get("metrics") or {}).get("binary_classification_metrics", {})
    code_dir = lineage.get("inference_code") or str(Path(__file__).resolve().parents[2] / "model_code")
    return {
        "endpoint_name": name, "model_group": package["group"], "version": package["version"],
        "model_dir": str(registry.model_path(package)), "model_uri": package["model_uri"], "code_dir": code_dir,
        "threshold": (metrics.get("threshold") or {}).get("value", 0.5), "trigger": trigger, "follow": follow,
        "deployed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(state_root: Path, record: dict[str, Any]) -> Path:
    path = state_root / "endpoints" / f"{record['endpoint_name']}.json"
    atomic_write_json(path, record)
    return path


def refresh_followers(package: dict[str, Any], registry: Any, state_root: Path, trigger: str) -> list[str]:
    """Point every `serve GROUP@approved` endpoint of this group at a newly approved version."""
    import json

    done = []
    for path in sorted((state_root / "endpoints").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("follow") == "approved" and record.get("model_group") == package["group"]:
            write_record(state_root, endpoint_record(package, registry, record["endpoint_name"], trigger, "approved"))
            done.append(f"endpoint {record['endpoint_name']} now serves {package['group']} version {package['version']}")
    return done


def resolve(target: str, registry: Any, state_root: Path) -> Path:
    """An endpoint record for `NAME` (an existing endpoint) or `GROUP[@VERSION|@approved]`."""
    existing = state_root / "endpoints" / f"{target}.json"
    if "@" not in target and existing.exists():
        return existing
    group, _, which = target.partition("@")
    which = which or "approved"
    if which != "approved" and not which.isdigit():
        raise UsageError(f"'{target}': after @ comes a version number or 'approved'")
    with registry.locked(group):  # the lock decisions take: no rejection between reading the version and the record
        if which == "approved":
            package = registry.approved(group)
            if package is None:
                raise RegistryError(f"{group} has no approved version; approve one with: "
                                    f"sagepipe models approve {group} VERSION")
        else:
            package = registry.show(group, int(which))
        name = f"{group}-{which}"
        record = endpoint_record(package, registry, name, f"sagepipe serve {target}",
                                 follow="approved" if which == "approved" else None)
        return write_record(state_root, record)


def ensure_server(record_path: Path, port: int, workers: int, capture_percent: int | None = None) -> str:
    """Start `sagepipe serve` for an endpoint in the background unless it already runs; says which. With
    capture_percent it captures under the state folder's capture/ (the local stand-in of the S3 destination);
    a server already running keeps the settings it was started with."""
    import json
    import subprocess

    pid_file = record_path.with_suffix(".server.json")
    try:
        running = json.loads(pid_file.read_text())
        os.kill(int(running["pid"]), 0)
        return f"its server, pid {running['pid']}, on port {running['port']} switches to it"
    except (OSError, ValueError, KeyError):
        pass
    log = open(record_path.with_suffix(".server.log"), "ab")
    capture = record_path.parents[1] / "capture"
    extra = [] if capture_percent is None else ["--capture", str(capture), "--capture-percent", str(capture_percent)]
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", record_path.stem, "--port", str(port),
                             "--workers", str(workers), *extra], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "SAGEPIPE_HOME": str(record_path.parents[1])})
    atomic_write_json(pid_file, {"pid": proc.pid, "port": port})
    captured = "" if capture_percent is None else f", capturing {capture_percent} % of calls under {capture}"
    return f"started its server, pid {proc.pid}, on http://127.0.0.1:{port}{captured}; log {log.name}"


def run_server(record_path: Path, port: int, workers: int, host: str = "127.0.0.1", capture: Path | None = None,
               capture_percent: float = 100.0) -> int:
    """Replace this process with gunicorn (so SIGTERM reaches it and shutdown is graceful); its workers are
    gevent workers (pipelines/serving/worker.py), which slow clients cannot block. Each worker holds at most its
    share of SAGEPIPE_MAX_CONNECTIONS (pipelines/serving/limits.py): at the cap, the connection that has waited
    longest on its client makes room for a new one, so /ping is answered however many slow clients connect."""
    from pipelines.serving.limits import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, MAX_CONNECTIONS, worker_connections

    held = worker_connections(workers)
    print(f"serving {record_path.stem} on http://{host}:{port} with {workers} workers, at most {held * workers:,} "
          f"connections (headers {HEADER_TIMEOUT_S:g} s, bodies {BODY_TIMEOUT_S:g} s) "
          f"(POST /invocations, GET /ping; Ctrl-C stops)", file=sys.stderr, flush=True)
    if held * workers < MAX_CONNECTIONS:
        print(f"  (SAGEPIPE_MAX_CONNECTIONS={MAX_CONNECTIONS:,} is over what the open-file limit allows; raise it "
              "with ulimit -n)", file=sys.stderr, flush=True)
    env = {**os.environ, "SAGEPIPE_ENDPOINT_RECORD": str(record_path.resolve()),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    if capture is not None:
        from pipelines.serving.capture import ENV_DIR, ENV_PERCENT

        env.update({ENV_DIR: str(capture.resolve()), ENV_PERCENT: str(capture_percent)})
        print(f"  capturing {capture_percent:g} % of calls under {capture.resolve() / record_path.stem} "
              "(SageMaker's data-capture format)", file=sys.stderr, flush=True)
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers),
            "--worker-class", "pipelines.serving.worker.EndpointWorker", "--worker-connections", str(held),
            "--backlog", "2048", "--graceful-timeout", "20", "--timeout", "60", "--keep-alive", str(HEADER_TIMEOUT_S),
            "--log-level", "warning", "pipelines.serving.app:app"]
    os.execve(sys.executable, argv, env)
    return 0  # not reached
