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
FORBIDDEN = {
    "ingest_probe.errors": ("ingest_probe.",),
    "ingest_probe.results": ("ingest_probe.",),
    "ingest_probe._version": ("ingest_probe.",),
    "ingest_probe._signals": ("ingest_probe.",),
    "ingest_probe._io": ("ingest_probe.cli", "ingest_probe.report", "ingest_probe.renderers", "ingest_probe.probes",
                         "ingest_probe.settings", "ingest_probe.config", "ingest_probe.errors"),
    "ingest_probe.config": ("ingest_probe.settings", "ingest_probe.probes", "ingest_probe.report",
                            "ingest_probe.renderers", "ingest_probe.cli", "ingest_probe.supervisor"),
    "ingest_probe.settings": ("ingest_probe.probes", "ingest_probe.report", "ingest_probe.renderers",
                              "ingest_probe.cli", "ingest_probe.supervisor", "ingest_probe.manifest"),
    "ingest_probe.manifest": ("ingest_probe.probes", "ingest_probe.report", "ingest_probe.renderers",
                              "ingest_probe.cli", "ingest_probe.supervisor"),
    "ingest_probe.probes": ("ingest_probe.report", "ingest_probe.renderers", "ingest_probe.cli",
                            "ingest_probe.manifest", "ingest_probe.prober", "ingest_probe._watch"),
    "ingest_probe.supervisor": ("ingest_probe.report", "ingest_probe.renderers", "ingest_probe.cli"),
    "ingest_probe.report": ("ingest_probe.probes", "ingest_probe.supervisor", "ingest_probe.renderers",
                            "ingest_probe.cli"),
    "ingest_probe.renderers": ("ingest_probe.probes", "ingest_probe.supervisor", "ingest_probe.cli",
                               "ingest_probe.config", "ingest_probe.topics", "ingest_probe.drill"),
    "ingest_probe.topics": ("ingest_probe.renderers", "ingest_probe.report", "ingest_probe.cli"),
    "ingest_probe._topics_admin": ("ingest_probe.renderers", "ingest_probe.report", "ingest_probe.cli"),
    "ingest_probe.drill": ("ingest_probe.probes", "ingest_probe.supervisor", "ingest_probe.renderers",
                           "ingest_probe.report", "ingest_probe.cli"),
    "ingest_probe._ingest_results": ("ingest_probe.settings", "ingest_probe.probes", "ingest_probe.supervisor",
                                     "ingest_probe.report", "ingest_probe.renderers", "ingest_probe.cli",
                                     "ingest_probe.drill"),
    "ingest_probe.readiness": ("ingest_probe.renderers", "ingest_probe.cli"),
    "ingest_probe.prober": ("ingest_probe.renderers", "ingest_probe.cli", "ingest_probe._watch"),
    "ingest_probe._watch": ("ingest_probe.cli",),
    "ingest_probe._oneshot": ("ingest_probe.report", "ingest_probe.renderers", "ingest_probe.cli"),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_import_directions(name):
    """No module imports against the data flow (leaf modules import nothing from the package)."""
    rules = [bad for prefix, bad in FORBIDDEN.items() if name == prefix or name.startswith(prefix + ".")]
    imported = package_imports(MODULES[name])
    for bad_prefixes in rules:
        wrong = sorted(m for m in imported if m.startswith(bad_prefixes) and not m.startswith(name))
        assert wrong == [], f"{name} imports {wrong}"


def test_every_module_opens_with_a_docstring():
    """Every module says in its first line what it owns."""
    missing = [name for name, path in MODULES.items() if not name.endswith("__main__")
               and not ast.get_docstring(ast.parse(path.read_text()))]
    assert missing == []
