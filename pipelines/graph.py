"""The pipeline as a DAG, and the checks that make a spec runnable (each check one function)."""

from __future__ import annotations

import graphlib
from pathlib import Path
from typing import Any, Callable, Iterator

from pipelines.errors import Problem, did_you_mean
from pipelines.refs import MetricRef, OutputRef, ParamRef, Ref
from pipelines.spec import PipelineSpec
from pipelines.step_api import Step
from pipelines.yamlsource import SourceMap


def step_refs(step: Step) -> list[Ref]:
    """Every reference a step makes, wherever in its fields it sits (the step type answers)."""
    return step.refs()


class Graph:
    """Steps and the edges between them: data references, depends_on and condition branches."""

    def __init__(self, spec: PipelineSpec):
        self.spec = spec
        self.names = [s.name for s in spec.steps]
        self.upstream: dict[str, set[str]] = {name: set() for name in self.names}
        for step in spec.steps:
            for ref in step_refs(step):
                if isinstance(ref, (OutputRef, MetricRef)) and ref.step in self.upstream:
                    self.upstream[step.name].add(ref.step)
            self.upstream[step.name].update(d for d in step.depends_on if d in self.upstream)
            for targets in step.branch_targets().values():
                for target in targets:
                    if target in self.upstream:
                        self.upstream[target].add(step.name)
        self.children: dict[str, list[str]] = {name: [] for name in self.names}
        for name in self.names:
            for parent in self.upstream[name]:
                self.children[parent].append(name)

    def downstream(self, name: str) -> list[str]:
        return self.children[name]

    def _sorter(self) -> graphlib.TopologicalSorter[str]:
        return graphlib.TopologicalSorter({name: sorted(self.upstream[name]) for name in self.names})

    def topological(self) -> list[str]:
        """Steps in an order where each comes after what it needs (ties keep file order)."""
        order = {name: i for i, name in enumerate(self.names)}
        sorter = self._sorter()
        try:
            sorter.prepare()
        except graphlib.CycleError:
            raise ValueError("cycle") from None
        done: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=order.__getitem__)
            done += ready
            sorter.done(*ready)
        return done

    def find_cycle(self) -> list[str] | None:
        """One cycle as [a, b, ..., a] (each feeds the next), or None."""
        try:
            self._sorter().prepare()
        except graphlib.CycleError as exc:
            return list(exc.args[1])
        return None

    def mermaid(self, overlay: dict[str, Any] | None = None) -> str:
        """Mermaid flowchart text; overlay (StepOutcome by step name, from a run) adds status classes and durations."""
        lines = ["flowchart TD"]
        for step in self.spec.steps:
            extra = f"<br/>{overlay[step.name].detail()}" if overlay and step.name in overlay else ""
            lines.append(f'    {_node_id(step.name)}["{step.name}<br/><i>{step.type}</i>{extra}"]')
        for step in self.spec.steps:
            branches = {t: b for b, targets in step.branch_targets().items() for t in targets}
            for child in self.downstream(step.name):
                label = f"|{branches[child]}|" if child in branches else ""
                lines.append(f"    {_node_id(step.name)} -->{label} {_node_id(child)}")
        if overlay:
            lines += _mermaid_classes(overlay)
        return "\n".join(lines) + "\n"

    def dot(self, overlay: dict[str, Any] | None = None) -> str:
        """Graphviz dot text; overlay (StepOutcome by step name, from a run) fills each node by its status."""
        lines = [f'digraph "{self.spec.name}" {{', "    rankdir=TB;", "    node [shape=box, style=rounded];"]
        for step in self.spec.steps:
            outcome = overlay.get(step.name) if overlay else None
            extra = f"\\n{outcome.detail()}" if outcome else ""
            lines.append(f'    "{step.name}" [label="{step.name}\\n({step.type}){extra}"{_dot_style(outcome)}];')
        for step in self.spec.steps:
            branches = {t: b for b, targets in step.branch_targets().items() for t in targets}
            for child in self.downstream(step.name):
                label = f' [label="{branches[child]}"]' if child in branches else ""
                lines.append(f'    "{step.name}" -> "{child}"{label};')
        return "\n".join(lines) + "\n}\n"


def _node_id(name: str) -> str:
    return "s_" + name.replace("-", "_")


def _mermaid_classes(overlay: dict[str, Any]) -> list[str]:
    from pipelines.status import STYLES

    lines = []
    for cls in sorted({o.status for o in overlay.values()}):
        fill, stroke, text, _ = STYLES[cls]
        dash = ",stroke-dasharray:5 3" if cls in ("skipped", "not-run") else ""
        lines.append(f"    classDef {cls.replace('-', '_')} fill:{fill},stroke:{stroke},color:{text}{dash}")
    for name, outcome in overlay.items():
        lines.append(f"    class {_node_id(name)} {outcome.status.replace('-', '_')}")
    return lines


def _dot_style(outcome: Any) -> str:
    if outcome is None:
        return ""
    from pipelines.status import STYLES

    fill, stroke, text, _ = STYLES[outcome.status]
    style = "rounded,filled,dashed" if outcome.status in ("skipped", "not-run") else "rounded,filled"
    return (f', class="{outcome.status}", style="{style}", fillcolor="{fill}", color="{stroke}", '
            f'fontcolor="{text}", penwidth=1.5')


Sites = list[tuple[Any, Any, tuple, Callable[[tuple, str], Problem]]]


def lint(spec: PipelineSpec, sites: Sites, smap: SourceMap) -> list[Problem]:
    """Run every check; each returns the problems it found."""
    index = {step.name: i for i, step in enumerate(spec.steps)}

    def at(step: str, *fields: Any) -> Callable[[str], Problem]:
        return lambda message: smap.problem(("steps", index.get(step, 0)) + fields, message,
                                            ".".join(["steps", step, *map(str, fields)]))

    problems: list[Problem] = []
    for check in (check_unique_names, check_depends_on, check_branches, check_code_paths):
        problems += list(check(spec, at))
    problems += list(check_references(spec, sites))
    if not problems:
        problems += list(check_cycles(spec, at))
    return problems


def check_unique_names(spec: PipelineSpec, at: Any) -> Iterator[Problem]:
    seen: set[str] = set()
    for step in spec.steps:
        if step.name in seen:
            yield at(step.name, "name")(f"duplicate step name '{step.name}'; step names must be unique")
        seen.add(step.name)


def check_depends_on(spec: PipelineSpec, at: Any) -> Iterator[Problem]:
    names = {s.name for s in spec.steps}
    for step in spec.steps:
        for dep in step.depends_on:
            if dep not in names:
                yield at(step.name, "depends_on")(f"no step named '{dep}'{did_you_mean(dep, names)}")
            elif dep == step.name:
                yield at(step.name, "depends_on")("a step cannot depend on itself")


def check_branches(spec: PipelineSpec, at: Any) -> Iterator[Problem]:
    names = {s.name for s in spec.steps}
    for step in spec.steps:
        branches = step.branch_targets()
        for branch, targets in branches.items():
            for target in targets:
                if target not in names:
                    yield at(step.name, branch)(f"no step named '{target}'{did_you_mean(target, names)}")
                elif target == step.name:
                    yield at(step.name, branch)("a condition cannot branch to itself")
        both = set(branches.get("if_true", [])) & set(branches.get("if_false", []))
        for target in sorted(both):
            yield at(step.name, "if_false")(f"'{target}' is in both if_true and if_false; keep it in one")


def check_code_paths(spec: PipelineSpec, at: Any) -> Iterator[Problem]:
    root = Path(spec.repo_root).resolve()
    verdicts: dict[str, str | None] = {}
    for step in spec.steps:
        code = step.code_path()
        if code is not None and code not in verdicts:
            verdicts[code] = _code_path_problem(root, code)
        if code is not None and verdicts[code]:
            yield at(step.name, "code")(verdicts[code])


def _code_path_problem(root: Path, code: str) -> str | None:
    path = (root / code).resolve()
    if not path.is_relative_to(root):
        return f"script '{code}' is outside the repository ({root}); keep code under the repository"
    if not path.is_file():
        near = [str(p.relative_to(root)) for p in path.parent.glob("*.py")] if path.parent.is_dir() else []
        return f"script '{code}' does not exist{did_you_mean(code, near)}"
    return None


def check_references(spec: PipelineSpec, sites: Sites) -> Iterator[Problem]:
    steps = {s.name: s for s in spec.steps}
    for owner, ref, path, locate in sites:
        if isinstance(ref, ParamRef):
            if ref.name not in spec.parameters:
                yield locate(path, f"{ref}: no parameter '{ref.name}'{did_you_mean(ref.name, spec.parameters)}")
            continue
        target = steps.get(ref.step)
        if target is None:
            yield locate(path, f"{ref}: no step named '{ref.step}'{did_you_mean(ref.step, steps)}")
        elif ref.step == owner:
            yield locate(path, f"{ref}: a step cannot refer to itself")
        elif isinstance(ref, OutputRef) and ref.output not in target.output_names():
            outputs = target.output_names()
            hint = did_you_mean(ref.output, outputs) if outputs else f" (step '{ref.step}' has no outputs)"
            yield locate(path, f"{ref}: step '{ref.step}' has no output '{ref.output}'{hint}")
        elif isinstance(ref, MetricRef) and not target.has_metrics():
            yield locate(path, f"{ref}: step '{ref.step}' ({target.type}) writes no metrics report; "
                               "refer to an evaluation step")


def check_cycles(spec: PipelineSpec, at: Any) -> Iterator[Problem]:
    cycle = Graph(spec).find_cycle()
    if cycle:
        yield at(cycle[0])(f"steps form a cycle: {' -> '.join(cycle)}; remove one of these dependencies")
