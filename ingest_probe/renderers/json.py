"""Deterministic JSON: sorted keys, two-space indent, trailing newline, stable for diffing; every value exact,
no raw control character (``json_text``). The only renderer that reads ``Report.to_dict()``."""

from __future__ import annotations

import json

from ingest_probe.renderers.printable import json_text
from ingest_probe.report.model import Report


def render(report: Report) -> str:
    return json_text(json.dumps(report.to_dict(), sort_keys=True, indent=2, ensure_ascii=False)) + "\n"


def render_line(report: Report) -> str:
    """One compact document on one line (JSON Lines: ``watch`` writes a cycle per line on stdout)."""
    return json_text(json.dumps(report.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)) + "\n"
