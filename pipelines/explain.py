"""What a person reads when a run ends: the outcome, why a step failed, and the commands that come next."""

from __future__ import annotations

import time
from typing import Any

from pipelines.local.progress import last_lines, readable
from pipelines.local.resume import used_params
from pipelines.report.gate import decision_words, recorded_decision
from pipelines.values import value_text

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
    """A failed fail step reached through a gate that decided: that gate, its decision in words, its parameters
    (all from the decision the run recorded; a run recorded before decisions were kept: from the spec)."""
    steps = data["steps"]
    for gate in spec.steps:
        record = steps.get(gate.name, {})
        decision = recorded_decision(record)
        branches = (decision or {}).get("branches") or gate.branch_targets()
        if record.get("status") not in DONE_OK or not branches:
            continue
        for target in (t for branch in branches.values() for t in branch):
            if steps.get(target, {}).get("status") == "failed" and _is_fail(spec, target):
                params = _params(decision) if decision else used_params(gate)
                values = {**spec.param_values, **(data.get("params") or {})}
                return {"condition": gate.name, "fail_step": target,
                        "decision": (decision_words(decision) if decision else "") or record.get("note", ""),
                        "message": steps[target].get("error", ""), "params": {p: values.get(p) for p in params}}
    return None


def _is_fail(spec: Any, name: str) -> bool:
    """A `fail` step (or an emulated FailStep): its failure is the gate's decision, not a fault."""
    return any(s.name == name and str(s.type).split(":")[-1].lower() == "fail" for s in spec.steps)


def _params(decision: dict[str, Any]) -> list[str]:
    """The pipeline parameters a decision compared, in the order it compared them."""
    sources = [str(c.get(side) or "") for c in decision.get("conditions") or [] for side in ("left_from", "right_from")]
    return list(dict.fromkeys(s[len("parameter "):] for s in sources if s.startswith("parameter ")))


def next_steps(state: Any, spec: Any, gate: dict[str, Any] | None) -> list[str]:
    """The commands that make sense after this outcome."""
    data = state.data
    run_id, status = data["run_id"], data["status"]
    if data.get("execution_arn"):
        if gate:
            return [f"\nthe model did not pass the gate '{gate['condition']}': {gate['decision']}",
                    f"  {gate['fail_step']}: {readable(gate['message'])}"]
        if status == "failed":
            return ["\nfix the problem, then run `sagepipe emulate` again (cached jobs are reused)"]
        return []
    if status == "interrupted":
        return [f"resume with: sagepipe resume {run_id}"]
    if gate:
        lines = [f"\nthe model did not pass the gate '{gate['condition']}': {gate['decision']}",
                 f"  {gate['fail_step']}: {readable(gate['message'])}", "what to change:"]
        for name, value in gate["params"].items():
            lines.append(f"  the gate itself:  sagepipe resume {run_id} --param {name}=VALUE   "
                         f"(now {value_text(value)})")
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
