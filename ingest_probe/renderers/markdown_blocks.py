"""Markdown building blocks shared by the report renderer and its section renderers (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ingest_probe.renderers.printable import printable

_WS = re.compile(r"\s+")


def fmt(value: Any) -> str:
    """A value as a person reads it: yes/no, an em dash for nothing, lists comma-joined; one line, control
    characters (a server's ESC sequences) shown as escapes."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{round(value, 2):g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{fmt(k)}={fmt(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) or "—"
    return printable(_WS.sub(" ", str(value)).strip())


def rounded(value: float | None) -> float | None:
    """A duration as the JSON document has it (3 decimals), so both show the same number."""
    return None if value is None else round(value, 3)


def cell(value: Any) -> str:
    """A table cell: one line, pipes escaped."""
    return fmt(value).replace("|", "\\|")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def bullets(data: Mapping[str, Any], indent: int = 0) -> list[str]:
    """Nested bullets; nested mappings become sub-lists, everything else one line."""
    pad = "  " * indent
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"{pad}- {fmt(key)}:")
            lines += bullets(value, indent + 1)
        else:
            lines.append(f"{pad}- {fmt(key)}: {fmt(value)}")
    return lines
