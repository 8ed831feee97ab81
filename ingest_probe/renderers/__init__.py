"""Pure renderers: ``Report -> str``; no I/O, no clock, no network. One module per format, listed here.

Some take options beyond the report (``OPTIONS``): the terminal view its width and colour, Markdown its
sections, the exit-code-bearing formats the ``--fail-on`` policy. ``render`` passes each only its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ingest_probe.report.model import Report

#: ``--format`` value → the module whose ``render(report)`` writes it (imported on first use).
RENDERERS = {
    "json": "ingest_probe.renderers.json",
    "text": "ingest_probe.renderers.text",
    "markdown": "ingest_probe.renderers.markdown",
    "prometheus": "ingest_probe.renderers.prometheus",
    "nagios": "ingest_probe.renderers.nagios",
}
FORMATS = tuple(RENDERERS)
#: The keyword options each format's ``render`` takes besides the report.
OPTIONS = {
    "text": ("width", "color", "fail_on"),
    "markdown": ("sections",),
    "nagios": ("fail_on", "cert_warn_days"),
}


def get_renderer(name: str) -> Callable[[Report], str]:
    """The renderer for a ``--format`` value."""
    if name not in RENDERERS:  # click's Choice keeps other values out
        raise ValueError(f"unknown format {name!r}")
    return cast("Callable[[Report], str]", importlib.import_module(RENDERERS[name]).render)


def render(name: str, report: Report, **options: Any) -> str:
    """Render ``report`` as ``name``, with the options that format takes (the others are not its concern)."""
    get_renderer(name)  # the same check of the name
    function = importlib.import_module(RENDERERS[name]).render
    return cast("str", function(report, **{k: v for k, v in options.items() if k in OPTIONS.get(name, ())}))
