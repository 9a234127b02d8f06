"""What a person reads when a run ends: the outcome, why a step failed, and the commands that come next."""

from __future__ import annotations

import time
from typing import Any

from pipelines.local.progress import last_lines, readable
from pipelines.local.resume import used_params

DONE_OK = {"succeeded", "cached"}


def explain(state: Any, stream: Any, spec: Any = None) -> None:
    """Print the outcome of a run (or resume) of spec, recorded in state."""
    data = state.data
    took = (data.get("ended_at") or time.time()) - data["started_at"]
    say = lambda text="": print(text, file=stream)  # noqa: E731
    say(f"{data['status']} in {took:.1f}s — run {data['run_id']}")
    if data.get("error"):
        say(f"error: {data['error']}")
    gate = gate_failure(spec, data) if spec is not None else None
    for name, step in data["steps"].items():
        if step["status"] != "failed" or (gate and name == gate["fail_step"]):
            continue
        say(f"\nstep '{name}' failed: {step.get('error', '')}")
        log = state.path.parent / name / "log.txt"
        lines = last_lines(log, 12)
        if lines:
            say("  last lines of its log:")
            for line in lines:
                say(f"    {line}")
        say(f"  full log: {log}  (or: sagepipe logs {data['run_id']} {name})")
    for line in next_steps(state, spec, gate):
        say(line)


def gate_failure(spec: Any, data: dict[str, Any]) -> dict[str, Any] | None:
    """A failed fail step reached through a condition that decided: that gate, its values, its parameters."""
    steps = data["steps"]
    for condition in spec.steps:
        if condition.type != "condition" or steps.get(condition.name, {}).get("status") not in DONE_OK:
            continue
        for branch in condition.branch_targets().values():
            for target in branch:
                if steps.get(target, {}).get("status") == "failed" and spec.step(target).type == "fail":
                    return {"condition": condition.name, "fail_step": target,
                            "decision": steps[condition.name].get("note", ""),
                            "message": steps[target].get("error", ""),
                            "params": {p: spec.param_values.get(p) for p in used_params(condition)}}
    return None


def next_steps(state: Any, spec: Any, gate: dict[str, Any] | None) -> list[str]:
    """The commands that make sense after this outcome."""
    data = state.data
    run_id, status = data["run_id"], data["status"]
    if data.get("execution_arn"):
        if status == "failed":
            return ["\nfix the problem, then run `sagepipe emulate` again (cached jobs are reused)"]
        return []
    if status == "interrupted":
        return [f"resume with: sagepipe resume {run_id}"]
    if gate:
        lines = [f"\nthe model did not pass the gate '{gate['condition']}': {gate['decision']}",
                 f"  {gate['fail_step']}: {readable(gate['message'])}", "what to change:"]
        for name, value in gate["params"].items():
            lines.append(f"  the gate itself:  sagepipe resume {run_id} --param {name}=VALUE   (now {_text(value)})")
        lines.append(f"  or the model (features, hyperparameters, data), then a new run: "
                     f"sagepipe run {data['config']}")
        return lines
    if status == "failed":
        return [f"\nfix the problem (changed input data is read again), then: sagepipe resume {run_id}",
                f"  (to change a parameter: sagepipe resume {run_id} --param KEY=VALUE)"]
    env = f" --env {data['env']}" if data.get("env") not in (None, "local") else ""
    todo = []
    for group, version, approval in registered(state):
        if approval == "PendingManualApproval":
            todo.append((f"sagepipe models approve {group} {version}{env}",
                         "approve the registered version (this deploys it)"))
        else:
            todo.append((f"sagepipe models show {group} {version}{env}", f"the registered version ({approval})"))
    todo.append((f"sagepipe report {run_id}", "the run's report: graph, metrics, gate, data quality"))
    if data.get("mlflow"):
        todo.append((f"sagepipe ui{env}", "MLflow, with this run and its steps"))
    width = max(len(command) for command, _ in todo)
    return ["next:"] + [f"  {command:<{width}}   {why}" for command, why in todo]


def registered(state: Any) -> list[tuple[str, str, str]]:
    """(group, version, approval status) of each model version a register step of this run recorded."""
    return [(done["group"], str(done["version"]), done["status"]) for step in state.data["steps"].values()
            if step["status"] in DONE_OK and (done := step.get("registered"))]


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)

