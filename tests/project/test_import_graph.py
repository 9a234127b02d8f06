"""The framework's modules import each other in one direction: no import circles in pipelines/ and steps/.

The graph is read from the source with ast. Every import counts, module-level or inside a function: a
late import keeps a circle from failing at import time but not from being a circle (the registry base
once imported its MLflow backend inside its factory while that backend imported the base at the top).
Only imports under `if TYPE_CHECKING:` are left out; they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("pipelines", "steps")


def module_files(root: Path = REPO) -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def _imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in the module, at any depth, but for those under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            found += _imports(node.orelse)
            continue
        found += [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` imports when it is imported: for `import a.b` the longest
    known prefix of a.b; for `from a import b` the module a.b where b is one, else a."""
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            targets.update(_longest_known(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                targets.add(child if child in known else _longest_known(base, known))
    targets.discard("")
    targets.discard(name)
    return targets


def _longest_known(dotted: str, known: set[str]) -> str:
    parts = dotted.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    files = module_files(root)
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_reader_finds_a_circle_closed_by_a_late_import(tmp_path: Path) -> None:
    # the registry as it was: base + factory in one module, the backend importing it at the top
    (tmp_path / "pipelines" / "sagemaker").mkdir(parents=True)
    (tmp_path / "steps").mkdir()
    for init in ("pipelines", "pipelines/sagemaker", "steps"):
        (tmp_path / init / "__init__.py").touch()
    (tmp_path / "pipelines" / "registry.py").write_text(
        "def open_registry():\n    from pipelines.mlflow_registry import MlflowRegistry\n    return MlflowRegistry\n")
    (tmp_path / "pipelines" / "mlflow_registry.py").write_text(
        "from pipelines.registry import open_registry\nclass MlflowRegistry: pass\n")
    (tmp_path / "pipelines" / "sagemaker" / "checks.py").write_text(
        "from typing import TYPE_CHECKING\nfrom .. import registry\nif TYPE_CHECKING:\n    from steps import deploy\n")
    (tmp_path / "steps" / "deploy.py").write_text("import pipelines.sagemaker.checks\n")
    graph = import_graph(tmp_path)
    assert graph["steps.deploy"] == {"pipelines.sagemaker.checks"}
    assert graph["pipelines.sagemaker.checks"] == {"pipelines.registry"}  # not deploy: TYPE_CHECKING never runs
    assert cycles(graph) == [["pipelines.mlflow_registry", "pipelines.registry"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_registry_package_reads_in_one_direction() -> None:
    graph = import_graph()
    layer = {"base": 0, "locking": 1, "mlflow_tags": 1, "mlflow_model": 1, "mlflow_sqlite": 1, "file_backend": 2, "mlflow_backend": 2,
             "sagemaker_backend": 2, "factory": 3, "": 4}
    prefix = "pipelines.registry"
    for module, targets in graph.items():
        if module != prefix and not module.startswith(prefix + "."):
            continue
        own = layer[module[len(prefix) + 1:]]
        for target in targets:
            if target == prefix or target.startswith(prefix + "."):
                assert layer[target[len(prefix) + 1:]] < own, f"{module} imports {target}, against the direction"


def test_no_import_circles_in_pipelines_and_steps() -> None:
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)
