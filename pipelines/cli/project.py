"""`sagepipe validate|describe|graph|schema|completion`: a pipeline file read, checked and shown; the editor's
schema and the shell's completion script."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.cli.support import check_cloud, load_spec, print_json, state_root
from pipelines.errors import EXIT_CONFIG, EXIT_OK, ConfigError

if TYPE_CHECKING:
    from pipelines.spec import PipelineSpec


def validate_command(args: argparse.Namespace) -> int:
    if args.json:
        return _validate_json(args)
    spec = load_spec(args)
    check_cloud(spec)
    print(f"ok: {spec.source_file}: pipeline '{spec.name}' (env {spec.env}): {len(spec.steps)} steps, "
          f"{len(spec.parameters)} parameters")
    return EXIT_OK


def _validate_json(args: argparse.Namespace) -> int:
    """`validate --json`: {"ok", "config", "env", "problems": [{file, line, field, message}], ...}; exit 2 on problems."""
    result: dict[str, Any] = {"config": args.config, "env": args.env}
    try:
        spec = load_spec(args)
        check_cloud(spec)
    except ConfigError as exc:
        problems = [{"file": p.file, "line": p.line, "field": p.path, "message": p.message} for p in exc.problems]
        print_json({**result, "ok": False, "problems": problems})
        return EXIT_CONFIG
    print_json({**result, "ok": True, "problems": [], "pipeline": spec.name, "steps": [s.name for s in spec.steps],
                "parameters": spec.param_values})
    return EXIT_OK


def describe_command(args: argparse.Namespace) -> int:
    print(describe(load_spec(args)))
    return EXIT_OK


def describe(spec: PipelineSpec) -> str:
    lines = [f"pipeline {spec.name} ({spec.source_file}, env {spec.env})"]
    if spec.description:
        lines.append(f"  {spec.description.strip()}")
    lines.append("parameters:")
    for name, param in spec.parameters.items():
        value = spec.param_values.get(name)
        lines.append(f"  {name:<18} {param.type:<8} = {value!r}"
                     + (f"  (allowed: {param.allowed})" if param.allowed else ""))
    lines.append("steps:")
    for step in spec.steps:
        lines.append(f"  {step.name} [{step.type}]" + (f"  code: {step.code_path()}" if step.code_path() else ""))
        for name, value in step.input_values().items():
            lines.append(f"      in  {name}: {value}")
        for name in step.output_names():
            lines.append(f"      out {name}")
        for branch, targets in step.branch_targets().items():
            lines.append(f"      {branch}: {', '.join(targets) or '-'}")
    return "\n".join(lines)


def graph_command(args: argparse.Namespace) -> int:
    from pipelines.graph import Graph

    spec = load_spec(args)
    graph = Graph(spec)
    overlay = None
    if args.run:
        from pipelines.report import run_overlay

        overlay = run_overlay(state_root(), args.run, spec)
    print(graph.mermaid(overlay) if args.format == "mermaid" else graph.dot(overlay), end="")
    return EXIT_OK


def schema_command(args: argparse.Namespace) -> int:
    import json

    from pipelines.config_schema import pipeline_schema

    text = json.dumps(pipeline_schema(), indent=2, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    from pipelines.fsutil import atomic_write_text

    atomic_write_text(Path(args.output), text)
    print(f"wrote the pipeline JSON Schema to {args.output}", file=sys.stderr)
    return EXIT_OK


def completion_command(args: argparse.Namespace) -> int:
    from pipelines.extras import require

    argcomplete = require("argcomplete", "sagepipe completion")
    sys.stdout.write(argcomplete.shellcode(["sagepipe"], shell=args.shell))
    return EXIT_OK
