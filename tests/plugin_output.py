"""A strict parser of monitoring-plugin output (Nagios plugin guidelines, "Plugin Output" and "Performance
data"), for the tests: anything the guidelines do not allow raises ``ValueError`` naming the problem.

    STATUS TEXT | 'label'=value[UOM];[warn];[crit];[min];[max] ...
    long output line
    ...

* label: any characters but ``=`` and ``'``; quoted with ``'`` (required when it holds a space), a literal
  quote written ``''``.
* value, min, max: ``[-0-9.]`` forming one number (or ``U`` for the value: could not be determined).
* UOM: none, ``s``, ``ms``, ``us``, ``%``, ``B``, ``KB``, ``MB``, ``TB``, ``c``.
* warn, crit: a range, ``[@][start:][end]``, start a number or ``~``; empty when not defined.
* at most five ``;``-separated fields; trailing empty fields may be dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER = r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_NUMBER = re.compile(NUMBER)
_RANGE = re.compile(rf"@?(?:(?:{NUMBER}|~):)?(?:{NUMBER})?")
UOMS = ("", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c")
_VALUE = re.compile(rf"(?P<value>{NUMBER}|U)(?P<uom>[a-zA-Z%]*)")
STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")


@dataclass(frozen=True)
class Perf:
    label: str
    value: float | None  # None for "U"
    uom: str
    warn: str
    crit: str
    min: float | None
    max: float | None


@dataclass(frozen=True)
class PluginOutput:
    service: str
    state: str
    text: str
    perfdata: list[Perf]
    long_output: list[str]


def parse_label(text: str, pos: int) -> tuple[str, int]:
    """The label starting at ``pos`` and the position of its ``=``."""
    if text.startswith("'", pos):
        out, i = [], pos + 1
        while True:
            if i >= len(text):
                raise ValueError(f"unterminated quoted label at {pos}")
            if text[i] == "'":
                if text.startswith("''", i):
                    out.append("'")
                    i += 2
                    continue
                i += 1
                break
            out.append(text[i])
            i += 1
        label = "".join(out)
    else:
        end = text.find("=", pos)
        if end < 0:
            raise ValueError(f"no '=' after the label at {pos}")
        label, i = text[pos:end], end
        if " " in label or "'" in label:
            raise ValueError(f"label {label!r} needs quotes or holds a quote")
    if not label or "=" in label:
        raise ValueError(f"empty label or '=' in label {label!r}")
    if not text.startswith("=", i):
        raise ValueError(f"expected '=' after label {label!r}")
    return label, i


def _number(field: str, what: str) -> float | None:
    if field == "":
        return None
    if not _NUMBER.fullmatch(field):
        raise ValueError(f"{what} {field!r} is not a number of [-0-9.]")
    return float(field)


def parse_perfdata(text: str) -> list[Perf]:
    """Every ``label=value...`` item of a perfdata string (items separated by single spaces)."""
    items: list[Perf] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        label, eq = parse_label(text, pos)
        end = text.find(" ", eq)
        end = len(text) if end < 0 else end
        fields = text[eq + 1 : end].split(";")
        if len(fields) > 5:
            raise ValueError(f"{label}: more than five fields")
        fields += [""] * (5 - len(fields))
        match = _VALUE.fullmatch(fields[0])
        if not match:
            raise ValueError(f"{label}: value {fields[0]!r} is not a number (or U) with a unit")
        if match["uom"] not in UOMS:
            raise ValueError(f"{label}: unknown unit {match['uom']!r}")
        for name, field in (("warn", fields[1]), ("crit", fields[2])):
            if not _RANGE.fullmatch(field):
                raise ValueError(f"{label}: {name} {field!r} is not a range")
        items.append(Perf(label=label, value=None if match["value"] == "U" else float(match["value"]),
                          uom=match["uom"], warn=fields[1], crit=fields[2], min=_number(fields[3], "min"),
                          max=_number(fields[4], "max")))
        pos = end + 1
        if pos < len(text) and text[pos] == " ":
            raise ValueError("items must be separated by one space")
    return items


def parse_plugin_output(output: str) -> PluginOutput:
    """The whole output: ``SERVICE STATE - text | perfdata`` on the first line, long output after it."""
    if not output.endswith("\n"):
        raise ValueError("output does not end with a newline")
    first, *rest = output[:-1].split("\n")
    head, bar, perf = first.partition("|")
    if "|" in perf:
        raise ValueError("more than one '|' in the status line")
    match = re.fullmatch(r"(?P<service>[A-Z][A-Z0-9_-]*) (?P<state>[A-Z]+) - (?P<text>.+?)\s*", head)
    if not match or match["state"] not in STATES:
        raise ValueError(f"status line is not 'SERVICE STATE - text': {head!r}")
    if any("|" in line for line in rest):
        raise ValueError("a '|' in the long output (it would start more performance data)")
    if any(not line.strip() for line in rest):
        raise ValueError("an empty long-output line")
    return PluginOutput(service=match["service"], state=match["state"], text=match["text"],
                        perfdata=parse_perfdata(perf) if bar else [], long_output=rest)
