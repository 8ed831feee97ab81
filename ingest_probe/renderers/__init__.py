"""Pure renderers: ``Report -> str``; no I/O, no clock, no network. One module per format, listed here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from ingest_probe.report.model import Report

#: ``--format`` value → the module whose ``render(report)`` writes it (imported on first use).
RENDERERS = {
    "json": "ingest_probe.renderers.json",
    "markdown": "ingest_probe.renderers.markdown",
    "prometheus": "ingest_probe.renderers.prometheus",
}
FORMATS = tuple(RENDERERS)


def get_renderer(name: str) -> Callable[[Report], str]:
    """The renderer for a ``--format`` value."""
    if name not in RENDERERS:  # click's Choice keeps other values out
        raise ValueError(f"unknown format {name!r}")
    return cast("Callable[[Report], str]", importlib.import_module(RENDERERS[name]).render)
