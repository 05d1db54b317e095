"""The package's import graph: no cycles, and no layer imports a higher one.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` anywhere in
a module counts, including imports inside functions and under ``TYPE_CHECKING`` (a lazy import is
still a dependency, and a typing-only cycle still ties two modules together). A name taken from the
root package (``from llamakit import connect``) counts as an import of the module that defines it,
read from the root's ``_LAZY`` and ``_SUBMODULES`` tables. Importing ``a.b.c`` also runs ``a.b``'s
``__init__``; that implicit edge is not counted, so a package ``__init__`` must stay free of imports
of its own submodules' dependents (each of ours holds a docstring, re-exports, or lazy lookups).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llamakit"

# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # the root package (a lazy facade: it imports only errors at import time), errors, defaults
    ("base", ("llamakit", "llamakit.errors", "llamakit._defaults", "llamakit.safe_yaml")),
    ("tokens", ("llamakit.tokens",)),
    # the one sandbox that prompt templates (experiment) and judge rubrics (scoring) render in
    ("templating", ("llamakit.templating",)),
    ("client", ("llamakit.client",)),
    # the stand-in server; it may hand out a client (ServerHandle.client(), connect())
    ("server", ("llamakit.server",)),
    ("store", ("llamakit.store",)),
    ("scoring", ("llamakit.scoring",)),
    ("experiment", ("llamakit.experiment",)),
    ("views", ("llamakit.plots", "llamakit.widgets")),
    ("cli", ("llamakit.cli",)),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index in LAYERS of the entry naming ``module`` or a package holding it; -1 if none.
    (The root package ``llamakit`` names only itself.)"""
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or (p != "llamakit" and module.startswith(p + ".")) for p in prefixes):
            return index
    return -1


def _root_tables() -> dict[str, str]:
    """Names the root package loads lazily -> the module that defines them."""
    tree = ast.parse(MODULES["llamakit"].read_text())
    out: dict[str, str] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if (
            isinstance(target, ast.Name)
            and target.id in ("_LAZY", "_SUBMODULES")
            and isinstance(value, ast.Dict)
        ):
            out.update(ast.literal_eval(value))
    return out


ROOT_NAMES = _root_tables()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[: len(parts) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported llamakit module, line) for every import statement in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in MODULES:
                    yield candidate, node.lineno
                elif base == "llamakit" and alias.name in ROOT_NAMES:
                    yield ROOT_NAMES[alias.name], node.lineno
                else:
                    yield base, node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module of the package: first line that imports it}."""
    graph: dict[str, dict[str, int]] = {}
    for module in MODULES:
        edges = graph.setdefault(module, {})
        for target, line in imports(module):
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]  # an attribute path: its module
            if target in MODULES and target != module:
                edges.setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in MODULES if layer_of(m) < 0)
    assert not missing, f"add these modules' package to LAYERS in {__file__}: {missing}"


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    found = cycles(graph)
    detail = [
        " <-> ".join(c)
        + ": "
        + ", ".join(f"{a} imports {b} (line {graph[a][b]})" for a in c for b in c if b in graph[a])
        for c in found
    ]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_no_layer_imports_a_higher_one() -> None:
    graph = import_graph()
    names = [name for name, _ in LAYERS]
    wrong = [
        f"{MODULES[a].relative_to(PACKAGE.parent)}:{line}: {a} ({names[layer_of(a)]}) imports "
        f"{b} ({names[layer_of(b)]})"
        for a, edges in sorted(graph.items())
        for b, line in sorted(edges.items())
        if layer_of(b) > layer_of(a) >= 0  # a module without a layer is the test above's
    ]
    assert not wrong, (
        "imports against the layer order " + " < ".join(names) + ":\n" + "\n".join(wrong)
    )


# The checks themselves, on small graphs: they must be able to fail.
def test_cycle_finder_finds_a_cycle_through_three_modules() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 2}}) == []


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("llamakit", "base"),
        ("llamakit.errors", "base"),
        ("llamakit.client.core", "client"),
        ("llamakit.experiment.runner", "experiment"),
        ("llamakit.plots", "views"),
        ("llamakit.cli.serve", "cli"),
    ],
)
def test_layer_of(module: str, layer: str) -> None:
    assert LAYERS[layer_of(module)][0] == layer


def test_imports_are_resolved_through_relative_and_root_names() -> None:
    found = dict(imports("llamakit.widgets.chat"))
    # `from .. import connect` is the module that defines connect, not the root package
    assert ROOT_NAMES["connect"] == "llamakit.server.connect"
    assert "llamakit.server.connect" in found and "llamakit" not in found
    assert "llamakit.errors" in found
    graph = import_graph()
    # lazy imports inside functions count: Experiment._prepare imports the runner
    assert "llamakit.experiment.runner" in graph["llamakit.experiment.experiment"]


def test_every_layer_package_says_what_it_may_import() -> None:
    packages = [p for _, prefixes in LAYERS for p in prefixes if p != "llamakit"]
    silent = [
        p
        for p in packages
        if p in MODULES
        and MODULES[p].name == "__init__.py"
        and "import" not in (ast.get_docstring(ast.parse(MODULES[p].read_text())) or "")
    ]
    assert not silent, f"say in each package's __init__ docstring what it may import: {silent}"
