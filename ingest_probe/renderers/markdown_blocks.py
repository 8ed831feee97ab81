"""Markdown building blocks shared by the report renderer and its section renderers (pure functions)."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from ingest_probe.renderers.printable import printable

_WS = re.compile(r"\s+")
#: Bullets wrap here (continuation lines indented under the item: the same text once rendered).
WRAP = 100
#: A line that Markdown would read as the start of a block (a list item, a heading, a quote, a table row).
_BLOCK_START = re.compile(r"^(\s*)([-+*>#|]|\d+[.)])(?=\s|$)")


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


def cell(value: Any, max_cell: int | None = None) -> str:
    """A table cell: one line (of at most ``max_cell`` characters, cut with "…"), pipes escaped."""
    text = fmt(value)
    if max_cell is not None and len(text) > max_cell:
        text = text[: max_cell - 1].rstrip() + "…"
    return text.replace("|", "\\|")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
          max_cell: int | Sequence[int] | None = None) -> list[str]:
    """A table; with ``max_cell`` (one limit for all columns, or one per column) its cells are cut there, so a
    row stays within reason (show the full value elsewhere)."""
    limits: list[int | None] = ([max_cell] * len(headers) if max_cell is None or isinstance(max_cell, int)
                                else list(max_cell))
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v, limit) for v, limit in zip(row, limits, strict=True)) + " |" for row in rows]
    return lines


def item(line: str, indent: str = "") -> list[str]:
    """A list item (``line`` starts with ``- ``) wrapped at ``WRAP``; a continuation that Markdown would read
    as a new block (``- x``, ``# x``, ``1. x``) has its marker escaped, so it renders as the same text."""
    if len(line) <= WRAP:
        return [line]
    wrapped = textwrap.wrap(line, width=WRAP, subsequent_indent=indent + "  ", break_long_words=False,
                            break_on_hyphens=False)
    return [wrapped[0], *(_BLOCK_START.sub(_escaped, w) for w in wrapped[1:])]


def _escaped(m: re.Match[str]) -> str:
    marker = m[2]
    return f"{m[1]}{marker[:-1]}\\{marker[-1]}" if marker[0].isdigit() else f"{m[1]}\\{marker}"


def bullets(data: Mapping[str, Any], indent: int = 0) -> list[str]:
    """Nested bullets; nested mappings become sub-lists, everything else one line."""
    pad = "  " * indent
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            lines += item(f"{pad}- {fmt(key)}:", pad)
            lines += bullets(value, indent + 1)
        else:
            lines += item(f"{pad}- {fmt(key)}: {fmt(value)}", pad)
    return lines
