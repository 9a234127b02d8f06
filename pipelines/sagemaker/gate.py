"""The metric gate as a SageMaker processing job (standard library only; runs in any Python image).

A condition over metrics reports compiles to this job, because the published pipeline-definition
schema has no JsonGet or PropertyFiles. It reads each report from /opt/ml/processing/input/<step>/,
evaluates the condition, and exits non-zero with the fail message when it does not hold, which
stops the pipeline before the steps of the true branch.

    python3 gate.py --condition '<json>' --message 'AUC {evaluate:auc.value} below {min_auc}' \
        --param min_auc 0.75 --report evaluate evaluation.json
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from pathlib import Path

ROOT = Path("/opt/ml/processing")
OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
       "!=": operator.ne, "in": lambda a, b: a in b}


def value(node, reports: dict, params: dict):
    """A condition operand: {"metric": [step, dotted.key]}, {"param": name}, or a literal."""
    if isinstance(node, dict) and "metric" in node:
        step, key = node["metric"]
        found = reports[step]
        for part in key.split("."):
            if not isinstance(found, dict) or part not in found:
                raise SystemExit(f"gate: the report of step '{step}' has no '{key}'")
            found = found[part]
        return found
    if isinstance(node, dict) and "param" in node:
        return params[node["param"]]
    return node


def holds(expr: dict, reports: dict, params: dict) -> bool:
    if "op" in expr:
        return bool(OPS[expr["op"]](value(expr["left"], reports, params), value(expr["right"], reports, params)))
    if "and" in expr:
        return all(holds(e, reports, params) for e in expr["and"])
    if "or" in expr:
        return any(holds(e, reports, params) for e in expr["or"])
    return not holds(expr["not"], reports, params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--condition", required=True)
    parser.add_argument("--message", default="the condition does not hold")
    parser.add_argument("--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--report", nargs=2, action="append", default=[], metavar=("STEP", "FILE"))
    args = parser.parse_args()
    params = {name: json.loads(text) if text[:1] in "-0123456789[{tf" else text for name, text in args.param}
    reports = {step: json.loads((ROOT / "input" / step / file).read_text()) for step, file in args.report}
    condition = json.loads(args.condition)
    if holds(condition, reports, params):
        print("gate: the condition holds")
        return
    message = args.message
    for step, report in reports.items():
        for key in [k for k in _keys(report)]:
            message = message.replace(f"<{step}.{key}>", str(value({"metric": [step, key]}, reports, params)))
    for name, param in params.items():
        message = message.replace(f"<{name}>", str(param))
    print(f"gate: {message}", file=sys.stderr)
    try:
        Path("/opt/ml/output/message").parent.mkdir(parents=True, exist_ok=True)
        Path("/opt/ml/output/message").write_text(message)
    except OSError:
        pass
    sys.exit(1)


def _keys(report, prefix=""):
    if isinstance(report, dict):
        for key, inner in report.items():
            yield from _keys(inner, f"{prefix}{key}.")
    elif prefix:
        yield prefix[:-1]


if __name__ == "__main__":
    main()
