"""`make loadtest`: train and approve a model in a scratch state folder, serve it, and run headless Locust.

Prints Locust's table (requests/s, p50/p99, failures); exits non-zero when any request failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipelines.netutil import free_port, wait_for_http  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sagepipe-loadtest-"))
    env = {**os.environ, "SAGEPIPE_HOME": str(home),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    cli = [sys.executable, "-m", "pipelines.cli"]
    print("training and approving a model in a scratch state folder ...", flush=True)
    subprocess.run([*cli, "run", "configs/fraud-detection.yaml"], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([*cli, "models", "approve", "fraud-detection", "1", "--note", "load test"], cwd=REPO, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    server = subprocess.Popen([*cli, "serve", "fraud-detection@1", "--port", str(port), "--workers",
                               str(args.workers)], cwd=REPO, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server)
        return subprocess.call([sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "locustfile.py"),
                                "--headless", "--host", f"http://127.0.0.1:{port}", "--users", str(args.users),
                                "--spawn-rate", str(args.users), "--run-time", f"{args.seconds}s", "--only-summary"],
                               cwd=REPO, env=env)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
