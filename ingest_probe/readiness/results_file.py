"""The failover drill's ingest results file, in every shape the replaced drill read, strictly validated.

Shapes (those of the ingest service's ``TimescaleIngestResult.as_dict()`` and of the old drill): a mapping
``{dimension: result}`` (a ``dimension`` field inside a result may repeat its key; a different one is a problem),
a list of results each naming its ``dimension``, or one result object with a ``dimension`` field.
``rows_written`` and ``symbols`` are required; ``start_ts``, ``end_ts``, ``ingest_duration_seconds``,
``freshness_seconds`` and ``source`` may be ``null`` or absent: unknown, never a made-up 0 or 1970.
Timestamps are ISO-8601; one without a UTC offset (or a bare date) reads as UTC, and the results carry one
note listing them. Every problem of a file is collected and reported in a single one-line ``ConfigError``
(exit 3) naming ``dimension.field``. The free-text ``source`` is shown only through ``safe_source`` (an
allow-list), and never echoed in errors.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ingest_probe.errors import ConfigError

REQUIRED = ("rows_written", "symbols")
#: ``null`` or absent: unknown.
OPTIONAL = ("start_ts", "end_ts", "ingest_duration_seconds", "freshness_seconds", "source")
FIELDS = ("dimension", *REQUIRED, *OPTIONAL)
#: Problems shown in the one-line error; the rest are counted.
MAX_PROBLEMS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """Something the reader should know that changes no status; ``code`` is stable, ``message`` for people."""

    code: str
    message: str
    brief: str  # the few words repeated in a snapshot's reason

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class DimensionResult:
    """One validated result; ``None`` is unknown (the file said ``null`` or nothing)."""

    name: str
    rows_written: int
    symbols: tuple[str, ...]
    start_ts: dt.datetime | None = None
    end_ts: dt.datetime | None = None
    ingest_duration_seconds: float | None = None
    freshness_seconds: float | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResults:
    path: str
    dimensions: Mapping[str, DimensionResult]  # in file order
    #: ``dimension.field`` of each timestamp that had no UTC offset and was read as UTC.
    naive_timestamps: tuple[str, ...] = ()

    @property
    def notes(self) -> tuple[Note, ...]:
        if not self.naive_timestamps:
            return ()
        n = len(self.naive_timestamps)
        what = "timestamp" if n == 1 else "timestamps"
        return (Note(code="naive_timestamps_read_as_utc",
                     message=f"{n} {what} without a UTC offset read as UTC: {', '.join(self.naive_timestamps)}",
                     brief=f"{n} {what} read as UTC"),)


def load_ingest_results(path: Path) -> IngestResults:
    """Read and validate an ingest results file; any problem is a one-line ``ConfigError`` (exit 3)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"ingest results {path}: cannot read the file ({reason})") from exc
    return parse_ingest_results(text, path=str(path))


def parse_ingest_results(text: str, *, path: str) -> IngestResults:
    """Validate the JSON text of an ingest results file (any of the three shapes, see the module)."""
    where = f"ingest results {path}"

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise ConfigError(f"{where}: key {key[:60]!r} appears twice in one object")
            seen[key] = value
        return seen

    def no_constant(name: str) -> None:
        raise ConfigError(f"{where}: {name} is not valid JSON (use a finite number)")

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    reader = _Reader()
    for at, key, index, entry in _entries(data, reader):
        reader.result(at, key, index, entry)
    if not reader.problems and not reader.dimensions:
        reader.problems.append("the file holds no ingest results")
    if reader.problems:
        shown = reader.problems[:MAX_PROBLEMS]
        more = len(reader.problems) - len(shown)
        count = f"{len(reader.problems)} problem{'' if len(reader.problems) == 1 else 's'}"
        raise ConfigError(f"{where}: {count}: {'; '.join(shown)}{f'; and {more} more' if more else ''}")
    return IngestResults(path=path, dimensions=reader.dimensions, naive_timestamps=tuple(reader.naive))


def _entries(data: object, reader: _Reader) -> list[tuple[str, str | None, int, object]]:
    """``(where, mapping key or None, position, entry)`` for each result of the three shapes."""
    if isinstance(data, list):
        return [(f"entry {i}", None, i, entry) for i, entry in enumerate(data, 1)]
    if not isinstance(data, dict):
        reader.problems.append(f"expected a JSON object or list of results, got {_type(data)}")
        return []
    if "dimension" in data and not isinstance(data["dimension"], dict):
        return [("the result", None, 1, data)]  # one result object, not a mapping
    out: list[tuple[str, str | None, int, object]] = []
    for i, (key, entry) in enumerate(data.items(), 1):
        if key.strip():
            out.append((_label(key), key, i, entry))
        else:
            reader.problems.append("a dimension name is empty")
    return out


class _Bad(ValueError):
    """One field's problem: collected by ``_Reader``, never raised out of this module."""


class _Reader:
    """Collects the valid results and every problem, in file order."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.naive: list[str] = []
        self.dimensions: dict[str, DimensionResult] = {}
        self.position: dict[str, int] = {}

    def result(self, at: str, key: str | None, index: int, entry: object) -> None:
        if not isinstance(entry, dict):
            self.problems.append(f"{at}: expected an object with {', '.join(FIELDS)}, got {_type(entry)}")
            return
        name = self._dimension(at, key, entry.get("dimension"), "dimension" in entry)
        if name is None:
            return
        at = _label(name)
        if name in self.position:  # only a list can repeat a name: an object's keys are unique
            self.problems.append(f"{at}: listed twice (entries {self.position[name]} and {index})")
            return
        self.position[name] = index
        before = len(self.problems)
        for field in entry:
            if field not in FIELDS:
                close = difflib.get_close_matches(field, FIELDS, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else f"fields: {', '.join(FIELDS)}"
                self.problems.append(f"{at}.{_label(field)}: unknown field ({hint})")
        for field in REQUIRED:
            if field not in entry:
                self.problems.append(f"{at}.{field}: missing")
        values: dict[str, Any] = {}
        for field, check in _CHECKS.items():
            if field in REQUIRED and field in entry or entry.get(field) is not None:
                values[field] = self._check(at, field, check, entry[field])
        start, end = values.get("start_ts"), values.get("end_ts")
        if isinstance(start, dt.datetime) and isinstance(end, dt.datetime) and end < start:
            self.problems.append(f"{at}.end_ts: {iso(end)} is before start_ts {iso(start)}")
        if len(self.problems) == before:
            self.dimensions[name] = DimensionResult(name=name, **values)

    def _dimension(self, at: str, key: str | None, value: object, present: bool) -> str | None:
        """The result's dimension: the mapping key (a ``dimension`` field may repeat it), else the field."""
        if key is None and not present:
            self.problems.append(f"{at}.dimension: missing (each result in a list names its dimension)")
            return None
        if key is not None and value is None:
            return key
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"{at}.dimension: must be a non-empty string, got {_got(value)}")
            return None
        if key is not None and value != key:
            self.problems.append(f"{at}.dimension: {_shown(value)} differs from its key {_shown(key)}"
                                 " (one result, two names: keep one, or drop the field)")
            return None
        return value

    def _check(self, at: str, field: str, check: Callable[[object], object], value: object) -> object:
        try:
            checked = check(value)
        except _Bad as exc:
            self.problems.append(f"{at}.{field}: {exc}")
            return None
        if isinstance(checked, _Naive):
            self.naive.append(f"{at}.{field}")
            return checked.value
        return checked


def _label(name: str) -> str:
    """A dimension or field name as written in a problem: bare when plain, else JSON-quoted and capped."""
    return name if _PLAIN.fullmatch(name) else _shown(name)


_PLAIN = re.compile(r"[A-Za-z0-9_.:-]{1,60}")


def _type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _got(value: object) -> str:
    return "null" if value is None else f"{_type(value)} {_shown(value)}"


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:59] + "…"


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"must be a whole number >= 0, got {_got(value)}")
    if value < 0:
        raise _Bad(f"must be >= 0, got {value}")
    return value


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"must be a number of seconds, got {_got(value)}")
    if not math.isfinite(value) or value < 0:
        raise _Bad(f"must be a finite number >= 0, got {value}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():  # the type only: the value may hold a credential
        raise _Bad(f"must be a non-empty string, got {_type(value)}")
    return value


def _symbols(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise _Bad(f"must be a list of symbols, not a string: write [{_shown(value)}]")
    if not isinstance(value, list):
        raise _Bad(f"must be a list of symbols, got {_got(value) if value is None else _type(value)}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _Bad(f"must hold non-empty strings, got {_shown(item)}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class _Naive:
    """A timestamp that had no UTC offset, read as UTC (``_Reader`` notes where)."""

    value: dt.datetime


def _timestamp(value: object) -> dt.datetime | _Naive:
    """ISO-8601; without an offset (or a bare date) it is UTC. An epoch number is refused (never 1970)."""
    example = "like 2026-11-25T00:00:00Z"
    if not isinstance(value, str):
        raise _Bad(f"must be an ISO-8601 string {example}, got {_type(value)} {_shown(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"not an ISO-8601 timestamp {example}: {_shown(value)}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return _Naive(parsed.replace(tzinfo=dt.UTC))
    return parsed.astimezone(dt.UTC)


_CHECKS: dict[str, Callable[[object], object]] = {
    "rows_written": _count, "symbols": _symbols, "start_ts": _timestamp, "end_ts": _timestamp,
    "ingest_duration_seconds": _seconds, "freshness_seconds": _seconds, "source": _text,
}


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------------- the source field

#: What an unrecognised ``source`` is shown as: the text may hold credentials (``host=db password=...``).
SOURCE_WITHHELD = "<unrecognised source text withheld>"
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:/-]{1,120}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}")
_HOSTNAME = re.compile(r"[A-Za-z0-9.-]{1,253}|[0-9A-Fa-f:.]{2,45}")  # a DNS name or IPv4, or IPv6
_PATH = re.compile(r"[A-Za-z0-9._~:/-]{0,200}")


def safe_source(source: str) -> str:
    """The results file's ``source`` as shown in a report, by allow-list (it is free text from a file).

    A URL keeps only scheme, host, port and path (no userinfo, query or fragment); a bare identifier
    (``[A-Za-z0-9._:/-]{1,120}``: ``yahoo``, ``vendor/bars.csv``) is shown as is; anything else (spaces,
    ``=``, ``@``, quotes, a URL whose parts do not parse cleanly) becomes ``SOURCE_WITHHELD``.
    """
    if "://" in source:
        return _safe_url(source) or SOURCE_WITHHELD
    return source if _IDENTIFIER.fullmatch(source) else SOURCE_WITHHELD


def _safe_url(source: str) -> str | None:
    try:
        parts = urlsplit(source)
        port = parts.port  # ValueError for a non-number: e.g. a password cut short by a raw '#' or '?'
    except ValueError:
        return None
    if any("@" in part for part in (parts.path, parts.query, parts.fragment)):
        return None  # a raw '/', '?' or '#' in a password splits the userinfo: none of it is safe to show
    host = parts.hostname or ""
    if not _SCHEME.fullmatch(parts.scheme) or not _PATH.fullmatch(parts.path):
        return None
    if (parts.netloc and not host) or (host and not _HOSTNAME.fullmatch(host)):
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}{'' if port is None else f':{port}'}{parts.path}"
