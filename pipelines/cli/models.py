"""`sagepipe models list|show|approve|reject` and `sagepipe ui`: the model registry and the MLflow UI from the
command line."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipelines.cli.stores import announce, env_settings, open_for_env
from pipelines.cli.support import state_root
from pipelines.errors import UsageError

def list_command(args: argparse.Namespace) -> int:
    return models_list(open_for_env(args.env, state_root()), args.group, args.json)


def show_command(args: argparse.Namespace) -> int:
    return models_show(open_for_env(args.env, state_root()), args.group, args.version, args.json)


def approve_command(args: argparse.Namespace) -> int:
    started = time.time()  # when this command began: a registry decision recorded later by someone else conflicts
    return models_decide(open_for_env(args.env, state_root()), state_root(), args.group, args.version, "Approved",
                         args.note, args.force, started, False, args.env)


def reject_command(args: argparse.Namespace) -> int:
    started = time.time()
    return models_decide(open_for_env(args.env, state_root()), state_root(), args.group, args.version, "Rejected",
                         args.note, False, started, args.rollback, args.env)


def ui_command(args: argparse.Namespace) -> int:
    return ui(args.env, state_root(), args.port)


HEADLINE = ("auc", "pr_auc", "f1", "precision", "recall", "log_loss", "accuracy", "threshold")


def summary_metrics(package: dict[str, Any]) -> dict[str, float]:
    """The version's numeric metrics by short name (auc, pr_auc, ...), headline metrics first."""
    from pipelines.tracking import report_metrics

    metrics = report_metrics(package.get("metrics") or {})
    first = {k: metrics[k] for k in HEADLINE if k in metrics}
    return {**first, **{k: v for k, v in metrics.items() if k not in first}}


def models_list(registry: Any, group: str | None, as_json: bool) -> int:
    """The versions of every group (or one), oldest first. A version whose record does not read is listed as
    `unreadable` among the others and named on stderr (file, fault, fix); then the exit code is 5, as `ls`
    lists what it can and still fails."""
    from pipelines.errors import EXIT_REGISTRY

    packages: list[dict[str, Any]] = []
    broken: list[Any] = []
    for name in [group] if group else registry.groups():
        found, unreadable = registry.listing(name)
        packages += found
        broken += unreadable
    rows = sorted([*packages, *({"group": e.group, "version": e.version, "status": "unreadable", "error": str(e)}
                                for e in broken)], key=lambda p: (p["group"], p["version"]))
    if as_json:
        print(json.dumps([{"group": p["group"], "version": p["version"], "status": p["status"],
                           **({"error": p["error"]} if "error" in p else
                              {"metrics": summary_metrics(p), "run_id": p.get("run_id")})} for p in rows], indent=2))
    elif not rows:
        print("no registered models yet; a pipeline run whose model passes its gate registers one")
    else:
        print(f"{'GROUP':<24} {'VERSION':>7}  {'STATUS':<22} {'AUC':>6}  {'CREATED':<25} RUN")
        for p in rows:
            auc = summary_metrics(p).get("auc")
            shown = f"{auc:.3f}" if auc is not None else "-"
            print(f"{p['group'][:24]:<24} {p['version']:>7}  {p['status']:<22} {shown:>6}  "
                  f"{p.get('created_at', '-'):<25} {p.get('run_id') or '-'}")
    sys.stdout.flush()
    for error in broken:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_REGISTRY if broken else 0


def models_show(registry: Any, group: str, version: int, as_json: bool) -> int:
    package = registry.show(group, version)
    if as_json:
        print(json.dumps(package, indent=2, sort_keys=True, default=str))
        return 0
    print(f"{package['group']} version {package['version']}: {package['status']}")
    print(f"  created       {package['created_at']}")
    print(f"  model         {package['model_uri']}")
    if package.get("aliases"):
        print(f"  aliases       {', '.join('@' + a for a in package['aliases'])}")
    lineage = package.get("lineage") or {}
    for key in ("run_id", "pipeline", "env", "config", "git_commit", "training_step", "source_run", "mlflow_run_id",
                "model_hash", "code_hash"):
        if lineage.get(key):
            print(f"  {key:<13} {lineage[key]}")
    for name, digest in (lineage.get("data_hashes") or {}).items():
        print(f"  {'data ' + name:<13} {digest}")
    metrics = summary_metrics(package)
    headline = [f"{k} {metrics[k]:.4g}" for k in HEADLINE if k in metrics] or \
        [f"{k} {v:.4g}" for k, v in list(metrics.items())[:6]]
    if headline:
        print("  metrics       " + ", ".join(headline))
    print("  history:")
    for change in package.get("history") or []:
        before = f" (was {change['previous']})" if change.get("previous") else ""
        note = f" — {change['note']}" if change.get("note") else ""
        print(f"    {change['at']}  {change['status']}{before} by {change['by']}{note}")
    return 0


def models_decide(registry: Any, root: Path, group: str, version: int, status: str, note: str,
                  force: bool, since: float | None = None, rollback: bool = False, env: str = "local") -> int:
    from pipelines.approvals import change_status

    decision = change_status(registry, group, version, status, note, force, root, since, rollback)
    package = decision.package
    if decision.changed:
        print(f"{group} version {version}: {package['history'][-1]['previous']} -> {package['status']}")
    else:
        print(f"{group} version {version}: already {package['status']}")
    for line in decision.deployments:
        print(f"  deploy: {line}")
    for line in decision.rollbacks:
        print(f"  rollback: {line}")
    if status != "Approved" and not decision.rollbacks:
        print("  no deployment: only an approval deploys")
    for endpoint in decision.still_serving:
        print(f"WARNING: endpoint {endpoint} still serves {group} version {version}, which is Rejected", file=sys.stderr)
    for problem in decision.problems:
        print(f"WARNING: {problem}", file=sys.stderr)
    if decision.still_serving:
        env_flag = f" --env {env}" if env != "local" else ""
        if decision.fallback is None and not decision.problems:
            print(f"WARNING: {group} has no other Approved version to roll back to; approve one "
                  f"(sagepipe models approve {group} VERSION{env_flag}) or stop the endpoint", file=sys.stderr)
        elif decision.fallback is not None:
            print(f"WARNING: roll back to version {decision.fallback} (the newest Approved) with: "
                  f"sagepipe models reject {group} {version} --rollback{env_flag}", file=sys.stderr)
    return 0


def ui(env: str, root: Path, port: int) -> int:
    """Become a real `mlflow server` on 127.0.0.1 over the local tracking store (os.execve: Ctrl-C or SIGTERM
    reach the server itself, so nothing is left running), after printing the direct URLs of each
    experiment's runs and each registered model (MLflow 3 otherwise opens on its GenAI overview)."""
    from pipelines.extras import require
    from pipelines.tracking import artifact_root, resolve_tracking_uri

    settings, repo_root = env_settings(env)
    uri = resolve_tracking_uri(settings.tracking_uri, root, repo_root)
    if uri is None or not uri.startswith("sqlite:"):
        where = f"the MLflow server {uri}: open it in a browser" if uri else \
            "nowhere (tracking_uri: none); remove that line to use the embedded store"
        raise UsageError(f"env '{env}' tracks to {where}; `sagepipe ui` serves a local SQLite store")
    require("mlflow", "sagepipe ui")
    announce(settings, root, repo_root)
    artifacts = artifact_root(uri)
    url = f"http://127.0.0.1:{port}"
    print(f"MLflow UI on {url} over {uri} (Ctrl-C stops it)")
    for line in ui_links(Path(uri[len("sqlite:///"):]), url):
        print(f"  {line}")
    sys.stdout.flush()
    argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
            "--port", str(port), "--default-artifact-root", str(artifacts), "--artifacts-destination", str(artifacts)]
    bin_dir = str(Path(sys.executable).parent)  # mlflow execs uvicorn from PATH
    env_vars = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    os.execve(sys.executable, argv, env_vars)
    return 0  # not reached


def ui_links(database: Path, url: str) -> list[str]:
    """'runs of <experiment>: URL' and 'model <name>: URL' lines, read straight from the SQLite store."""
    if not database.is_file():
        return ["no runs yet: `sagepipe run CONFIG` tracks one here"]
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            experiments = db.execute("SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active' "
                                     "AND name != 'Default' ORDER BY experiment_id").fetchall()
            models = [row[0] for row in db.execute("SELECT name FROM registered_models ORDER BY name")]
    except sqlite3.Error:  # a store MLflow has not created its tables in yet
        return []
    return [f"runs of {name}: {url}/#/experiments/{exp_id}/runs" for exp_id, name in experiments] + \
        [f"model {name}: {url}/#/models/{quote(name, safe='')}" for name in models]
