"""The layers, written down: which part of the framework may import which (docs/ARCHITECTURE.md draws them).

A module may import its own layer and the layers below it, never one above. Every import counts, late ones
inside functions included (tests/project/test_import_graph.py reads them); only `if TYPE_CHECKING:` imports
are left out. A new module must be placed in a layer here, or this test names it.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import pytest

from tests.project.test_import_graph import import_graph

# Lowest first. Patterns are module names without the leading "pipelines." (steps.* are the step types).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("pipelines", "errors", "fsutil", "netutil", "yamlsource", "refs", "pydantic_errors", "extras",
                    "values", "archives", "status", "sagemaker", "sagemaker.images", "sagemaker.offline",
                    "sagemaker.definition_checks", "sagemaker.service_limits")),
    ("model", ("spec", "step_api", "input_names", "graph")),
    ("services", ("tracking", "tracking_journal", "tracking_writer", "model_archive", "tuning", "registry",
                  "registry.*", "serving", "serving.*", "sagemaker.aws", "sagemaker.artifacts",
                  "sagemaker.requirements_check", "sagemaker.security", "local", "local.state", "local.cache",
                  "local.processes", "local.logs", "local.progress", "local.context")),
    ("steps", ("steps", "steps.*")),
    ("backends", ("loader", "config_schema", "local.*", "sagemaker.*", "emulate", "emulate.*", "approvals")),
    ("views", ("report", "report.*", "explain")),
    ("app", ("cli", "cli.*", "stores")),
]

# Arrows the layers alone would allow but the design does not (issue 27): each is (importer, imported) patterns.
FORBIDDEN: list[tuple[str, str, str]] = [
    ("steps*", "registry*", "step types reach the registry through ctx.services"),
    ("steps*", "serving*", "step types reach endpoints through ctx.services"),
    ("steps*", "tracking*", "step types reach MLflow through ctx.services"),
    ("report*", "steps*", "the report reads decisions and versions from the run's state"),
    ("emulate*", "cli*", "the CLI drives emulate, not the other way"),
    ("model_archive", "sagemaker*", "archives are below the cloud backend"),
    ("graph", "report*", "status styles live in pipelines.status"),
]


def _short(module: str) -> str:
    return module[len("pipelines."):] if module.startswith("pipelines.") else module


def layer_of(module: str) -> int | None:
    short = _short(module)
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatchcase(short, p) for p in patterns):
            return index
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, f"place these modules in a layer in {__file__}: {unplaced}"


def test_no_module_imports_a_layer_above_its_own(graph: dict[str, set[str]]) -> None:
    upward = [f"{m} ({LAYERS[layer_of(m) or 0][0]}) imports {t} ({LAYERS[layer_of(t) or 0][0]})"
              for m, targets in sorted(graph.items()) for t in sorted(targets)
              if (layer_of(t) or 0) > (layer_of(m) or 0)]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_forbidden_arrows(graph: dict[str, set[str]]) -> None:
    found = [f"{m} imports {t}: {why}" for m, targets in sorted(graph.items()) for t in sorted(targets)
             for source, target, why in FORBIDDEN
             if fnmatchcase(_short(m), source) and fnmatchcase(_short(t), target)]
    assert not found, "\n".join(found)


def test_only_the_cli_imports_the_cli(graph: dict[str, set[str]]) -> None:
    found = [f"{m} imports {t}" for m, targets in sorted(graph.items()) for t in targets
             if _short(t).split(".")[0] == "cli" and _short(m).split(".")[0] != "cli"]
    assert not found, "\n".join(found)


def test_the_checks_catch_an_upward_and_a_forbidden_arrow() -> None:
    assert layer_of("pipelines.errors") < layer_of("steps.deploy") < layer_of("pipelines.cli.runs")  # type: ignore
    fake = {"pipelines.graph": {"pipelines.report.html"}, "steps.deploy": {"pipelines.registry.factory"}}
    upward = [(m, t) for m, ts in fake.items() for t in ts if (layer_of(t) or 0) > (layer_of(m) or 0)]
    assert upward == [("pipelines.graph", "pipelines.report.html")]
    forbidden = [(m, t) for m, ts in fake.items() for t in ts for s, d, _ in FORBIDDEN
                 if fnmatchcase(_short(m), s) and fnmatchcase(_short(t), d)]
    assert ("steps.deploy", "pipelines.registry.factory") in forbidden
