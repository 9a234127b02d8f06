"""torchrun on every host of a SageMaker training job (standard library only; packed into the code archive).

Script mode runs this as the program, with the hyperparameters as arguments. It reads the cluster from
SM_HOSTS / SM_CURRENT_HOST, and starts `torchrun` with one node per host (static rendezvous at the first
host), `--sagepipe_processes_per_host` processes per node (default: one per GPU, else one), and the
training script `--sagepipe_entry_point` with the remaining arguments. The SDK's own Torchrun driver needs
a container entrypoint that the published pipeline-definition schema does not allow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

PORT = 29500


def torchrun_command(argv: list[str], env: dict[str, str]) -> list[str]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--sagepipe_entry_point", required=True)
    parser.add_argument("--sagepipe_processes_per_host", type=int, default=0)
    parser.add_argument("--sagepipe_master_port", type=int, default=PORT)
    ours, rest = parser.parse_known_args(argv)
    hosts = json.loads(env.get("SM_HOSTS", '["algo-1"]'))
    current = env.get("SM_CURRENT_HOST", hosts[0])
    if current not in hosts:
        raise SystemExit(f"torchrun launcher: SM_CURRENT_HOST {current!r} is not in SM_HOSTS {hosts}")
    processes = ours.sagepipe_processes_per_host or max(1, int(env.get("SM_NUM_GPUS", "0") or 0))
    entry = Path(ours.sagepipe_entry_point)
    if not entry.is_absolute():
        entry = Path(__file__).resolve().parent / entry
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(len(hosts)),
            "--node_rank", str(hosts.index(current)), "--nproc_per_node", str(processes),
            "--master_addr", hosts[0], "--master_port", str(ours.sagepipe_master_port), str(entry), *rest]


def main() -> None:
    command = torchrun_command(sys.argv[1:], dict(os.environ))
    print("torchrun launcher:", " ".join(command[1:]), flush=True)
    os.execv(command[0], command)  # torchrun takes this process: signals and the exit code are its


if __name__ == "__main__":
    main()
