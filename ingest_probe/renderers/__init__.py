"""Pure renderers: ``Report -> str``; no I/O, no clock, no network."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest_probe.report.builder import Report

FORMATS = ("json", "markdown", "prometheus")


def get_renderer(name: str) -> Callable[[Report], str]:
    """The renderer for a ``--format`` value."""
    if name == "json":
        from ingest_probe.renderers.json import render
    elif name == "markdown":
        from ingest_probe.renderers.markdown import render
    elif name == "prometheus":
        from ingest_probe.renderers.prometheus import render
    else:  # click's Choice keeps other values out; a new format must be added here
        raise ValueError(f"unknown format {name!r}")
    return render
