"""An emulated execution as a run of the local runner: started, or resumed where it stopped.

The run's state header keeps what it takes to pick the execution up again (`emulation`: the definition,
content-addressed under `<state>/emulate/definitions/`, the parameter values, the execution's start and
region); each finished step's record keeps its properties (`emulated`). `sagepipe resume RUN` starts the
emulated AWS again (it kept the objects those properties point at), puts the recorded properties back in the
scope and lets the runner continue.

This package runs nothing itself: `started` (launch.py) and `resumed` yield a ReadyToRun, which the command
line runs with its live progress while the emulated AWS is up.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pipelines.errors import ConfigError, Problem

if TYPE_CHECKING:
    from pipelines.local.runner import LocalRunner
    from pipelines.local.state import RunState
    from pipelines.spec import PipelineSpec


@dataclass(frozen=True)
class Execution:
    """What identifies one emulated execution and what its steps resolve against."""

    name: str
    arn: str
    definition: dict[str, Any]
    values: dict[str, Any]
    source: str
    region: str
    started: str

    def header(self, root: Path) -> dict[str, Any]:
        text = json.dumps(self.definition, sort_keys=True)
        path = root / "emulate" / "definitions" / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"
        if not path.exists():
            from pipelines.fsutil import atomic_write_json

            atomic_write_json(path, self.definition)
        return {"execution_arn": self.arn, "emulation": {
            "pipeline": self.name, "definition": str(path), "values": self.values,
            "source": str(Path(self.source).resolve()) if Path(self.source).exists() else self.source,
            "region": self.region, "started": self.started}}


@dataclass(frozen=True)
class ReadyToRun:
    """An emulated execution, started or picked up again, as the local runner runs it."""

    pipeline: PipelineSpec
    max_parallel: int | None
    start: Callable[[LocalRunner], RunState]  # the runner's run (with the execution's header) or resume
    title: str
    arn: str


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def runnable(spec: Any, execution: Execution, s3: Any, sm: Any, root: Path,
             done: dict[str, dict[str, Any]] | None = None) -> Any:
    """The execution as a PipelineSpec of DefinitionSteps, which the runner's scheduler, state, progress and
    tracking run; `done` holds the recorded properties of steps that already finished (a resume)."""
    from pipelines.emulate.emulation import Emulation
    from pipelines.emulate.expressions import Scope
    from pipelines.emulate.steps import DefinitionStep
    from pipelines.sagemaker.definition_checks import all_steps, own_gets
    from pipelines.spec import EnvSettings, PipelineSpec

    variables = {"PipelineExecutionId": execution.arn.rsplit("/", 1)[-1], "PipelineExecutionArn": execution.arn,
                 "PipelineName": execution.name, "PipelineArn": execution.arn.split("/execution/")[0],
                 "StartDateTime": execution.started, "CurrentDateTime": execution.started}
    emulation = Emulation(execution.name, execution.arn, s3, sm, Scope(execution.values, variables), root / "emulate")
    emulation.scope.read_property_file = emulation.read_property_file
    raw_steps = list(all_steps(execution.definition["Steps"]))
    emulation.steps = {s["Name"]: s for s in raw_steps}
    emulation.scope.properties.update(done or {})

    steps = []
    for raw in raw_steps:
        upstream = set(raw.get("DependsOn") or [])
        upstream.update(get.split(".")[1] for get, _, _ in own_gets(raw) if get.startswith("Steps."))
        args = raw.get("Arguments") or {}
        branches = {"if_true": [s["Name"] for s in args.get("IfSteps", [])],
                    "if_false": [s["Name"] for s in args.get("ElseSteps", [])]} if raw["Type"] == "Condition" else {}
        steps.append(DefinitionStep(raw, emulation, sorted(upstream - {raw["Name"]}), branches))
    return PipelineSpec.model_construct(
        name=execution.name, description="", parameters={},
        defaults=spec.defaults if spec else PipelineSpec.model_fields["defaults"].default, steps=tuple(steps),
        env=getattr(spec, "env", "emulate"), settings=EnvSettings(tracking_uri=local_tracking(execution.source)),
        source_file=execution.source, repo_root=getattr(spec, "repo_root", "."), param_values=execution.values)


def local_tracking(source: str) -> str | None:
    """Emulated runs are tracked where local runs are: the local env's tracking URI (none for a definition)."""
    if not source.endswith((".yaml", ".yml")):
        return None
    from pipelines.errors import ConfigError
    from pipelines.loader import load_pipeline

    try:
        return load_pipeline(source, "local").settings.tracking_uri
    except ConfigError:
        return None


@contextmanager
def resumed(state: RunState, root: Path, max_parallel: int | None) -> Iterator[ReadyToRun]:
    """`sagepipe resume RUN` of an emulated execution: the same execution continues on the emulated AWS, which
    stays up while the caller runs what this yields."""
    from pipelines.emulate.server import emulated_aws
    from pipelines.local.state import DONE_OK, RunUnavailable

    record = state.data.get("emulation") or {}
    try:
        definition = json.loads(Path(record["definition"]).read_text())
    except (KeyError, OSError, ValueError) as exc:
        raise RunUnavailable(f"run {state.data['run_id']} cannot be resumed: its definition is not readable "
                             f"({exc}); run `sagepipe emulate` again (its step cache returns finished jobs at "
                             "once)") from None
    execution = Execution(record["pipeline"], state.data["execution_arn"], definition, record["values"],
                          record["source"], record["region"], record["started"])
    max_parallel = steps_at_once(execution.source, definition, max_parallel)
    done = {name: (step.get("emulated") or {}).get("properties") or {}
            for name, step in state.data["steps"].items() if step.get("status") in DONE_OK}
    with emulated_aws(root / "emulate") as connect:
        connect(execution.region)
        import boto3

        s3 = boto3.client("s3", region_name=execution.region)
        sm = boto3.client("sagemaker", region_name=execution.region)
        pipeline = runnable(None, execution, s3, sm, root, done)
        yield ReadyToRun(pipeline, max_parallel, lambda runner: runner.resume(state),
                         f"resuming emulated execution {execution.arn.rsplit('/', 1)[-1]} of {execution.name}",
                         execution.arn)


def steps_at_once(source: str, definition: dict[str, Any], requested: int | None) -> int | None:
    """How many steps may run at once: --max-parallel, capped by the execution's ParallelismConfiguration
    (MaxParallelExecutionSteps, kept at the definition's top level or in describe-pipeline output)."""
    given = definition.get("ParallelismConfiguration")
    if given is None:
        return requested
    limit = given.get("MaxParallelExecutionSteps") if isinstance(given, dict) else None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError([Problem(source, None, "ParallelismConfiguration.MaxParallelExecutionSteps",
                                   f"{limit!r} is not a whole number of steps, 1 or more")])
    return min(limit, requested) if requested else limit
