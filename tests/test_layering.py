"""Layering: each layer imports only the layers it is allowed to (an allow-list), and no import cycle exists.

Every import counts, at module level or inside a function (a function-level import that hides a cycle is a
cycle), including ``TYPE_CHECKING`` blocks: what a module names, it depends on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ingest_probe"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}

#: Layers, low to high; a module belongs to the layer of its longest matching prefix.
LAYERS = {
    "defaults": ("ingest_probe.defaults", "ingest_probe._version"),
    "leaves": ("ingest_probe.errors", "ingest_probe.results", "ingest_probe.secret"),
    "config": ("ingest_probe.config",),
    "connectors": ("ingest_probe.connectors",),
    "settings": ("ingest_probe.settings",),
    "engine": ("ingest_probe.engine",),
    "topics": ("ingest_probe.topics",),
    "readiness": ("ingest_probe.readiness",),
    "report": ("ingest_probe.report",),
    "renderers": ("ingest_probe.renderers",),
    "prober": ("ingest_probe.prober",),
    "asgi": ("ingest_probe.asgi",),
    "commands": ("ingest_probe.commands",),
    "api": ("ingest_probe", "ingest_probe.__main__"),
}
_BELOW_ENGINE = ("defaults", "leaves", "config", "connectors", "settings")
#: The allow-list: what each layer may import besides itself. Data flows config → connectors → settings →
#: engine/topics/readiness → report → renderers → commands; the public API (the package) may name anything.
ALLOWED = {
    "defaults": (),
    "leaves": ("defaults",),
    "config": ("defaults", "leaves"),
    "connectors": ("defaults", "leaves", "config"),
    "settings": ("defaults", "leaves", "config", "connectors"),
    "engine": _BELOW_ENGINE,
    "topics": _BELOW_ENGINE,
    "readiness": _BELOW_ENGINE,
    "report": (*_BELOW_ENGINE, "engine", "topics", "readiness"),
    "renderers": (*_BELOW_ENGINE, "engine", "topics", "readiness", "report"),
    "prober": (*_BELOW_ENGINE, "engine", "topics", "readiness", "report"),
    "asgi": (*_BELOW_ENGINE, "engine", "topics", "readiness", "report", "renderers", "prober"),
    "commands": (*_BELOW_ENGINE, "engine", "topics", "readiness", "report", "renderers", "prober", "asgi"),
    "api": tuple(LAYERS),
}


def layer_of(module: str) -> str:
    best, found = -1, ""
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), layer
    assert found, module
    return found


def imports(path: Path) -> set[str]:
    """Every package module a file imports (``from m import x`` counts as ``m.x`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ingest_probe"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ingest_probe"))
    return found


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_every_module_is_in_a_layer():
    """The layer table covers the whole package (a new top-level module must choose its layer)."""
    top_level = {name for name in MODULES if name.count(".") == 1}
    assert {layer_of(name) for name in top_level} <= set(LAYERS)
    assert {layer_of("ingest_probe.prober"), layer_of("ingest_probe.connectors.redis.probe")} == {
        "prober", "connectors"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_follow_the_allow_list(name):
    """A module imports its own layer and the layers its layer's allow-list names, nothing else."""
    layer = layer_of(name)
    allowed = {layer, *ALLOWED[layer]}
    wrong = sorted(m for m in GRAPH[name] if layer_of(m) not in allowed)
    assert wrong == [], f"{name} ({layer}) imports {wrong}"


def test_connectors_never_import_the_command_line():
    """Probes and connectors know nothing of the CLI, its loop or its signal handling (allow-list, spelled out)."""
    for name, deps in GRAPH.items():
        if layer_of(name) in ("connectors", "engine", "report", "renderers"):
            assert not [m for m in deps if m.startswith("ingest_probe.commands")], name


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    """No cycle in the module import graph, counting imports inside functions and TYPE_CHECKING blocks."""
    assert cycles(GRAPH) == []


def test_the_cycle_check_can_fail():
    """The checker finds a cycle hidden two modules deep (so the test above can fail)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]


def test_every_module_opens_with_a_docstring():
    """Every module says in its first line what it owns."""
    missing = [name for name, path in MODULES.items() if not name.endswith("__main__")
               and not ast.get_docstring(ast.parse(path.read_text()))]
    assert missing == []
