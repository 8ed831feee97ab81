"""Import directions: data flows config → settings → manifest → probes → results → report → renderers → CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ingest_probe"


def package_imports(path: Path) -> set[str]:
    """Every ``ingest_probe.*`` module a file imports, at top level or lazily inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ingest_probe"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ingest_probe"))
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


# module (prefix) → module prefixes it must never import
def _p(*names: str) -> tuple[str, ...]:
    return tuple(f"ingest_probe.{n}" for n in names)


FORBIDDEN = {
    "errors": _p(
        "",
    ),
    "results": _p(
        "",
    ),
    "_version": _p(
        "",
    ),
    "commands.signals": _p(
        "",
    ),
    "commands.output": _p(
        "commands.cli", "report.builder", "renderers", "connectors.base", "settings.service", "config.sources", "errors"
    ),
    "config.sources": _p(
        "settings.service", "connectors.base", "report.builder", "renderers", "commands.cli", "engine.supervisor"
    ),
    "settings.service": _p(
        "connectors.base", "report.builder", "renderers", "commands.cli", "engine.supervisor", "report.manifest"
    ),
    "report.manifest": _p("connectors.base", "report.builder", "renderers", "commands.cli", "engine.supervisor"),
    "connectors.base": _p(
        "report.builder", "renderers", "commands.cli", "report.manifest", "engine.prober", "commands.watch"
    ),
    "engine.supervisor": _p("report.builder", "renderers", "commands.cli"),
    "report.builder": _p("connectors.base", "engine.supervisor", "renderers", "commands.cli"),
    "renderers": _p(
        "connectors.base", "engine.supervisor", "commands.cli", "config.sources", "topics.plan", "readiness.drill"
    ),
    "topics.plan": _p("renderers", "report.builder", "commands.cli"),
    "topics.admin": _p("renderers", "report.builder", "commands.cli"),
    "readiness.drill": _p("connectors.base", "engine.supervisor", "renderers", "report.builder", "commands.cli"),
    "readiness.results_file": _p(
        "settings.service",
        "connectors.base",
        "engine.supervisor",
        "report.builder",
        "renderers",
        "commands.cli",
        "readiness.drill",
    ),
    "commands.oneshot": _p("renderers", "commands.cli"),
    "engine.prober": _p("renderers", "commands.cli", "commands.watch"),
    "commands.watch": _p(
        "commands.cli",
    ),
    "engine.run": _p("report.builder", "renderers", "commands.cli"),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_import_directions(name):
    """No module imports against the data flow (leaf modules import nothing from the package)."""
    rules = [
        bad
        for short, bad in FORBIDDEN.items()
        if name == (prefix := f"ingest_probe.{short}") or name.startswith(prefix + ".")
    ]
    imported = package_imports(MODULES[name])
    for bad_prefixes in rules:
        wrong = sorted(m for m in imported if m.startswith(bad_prefixes) and not m.startswith(name))
        assert wrong == [], f"{name} imports {wrong}"


def test_every_module_opens_with_a_docstring():
    """Every module says in its first line what it owns."""
    missing = [
        name
        for name, path in MODULES.items()
        if not name.endswith("__main__") and not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert missing == []
