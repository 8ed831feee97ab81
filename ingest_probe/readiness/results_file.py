"""The failover drill's ingest results file, ``{dimension: {rows_written, symbols, ...}}``, strictly read.

Every problem is a one-line ``ConfigError`` (exit 3) naming the file, the dimension and the field. Timestamps
must be ISO-8601 with a UTC offset: an epoch number or a naive time is refused, never read as 1970 or local.
The free-text ``source`` field is shown only through ``safe_source`` (an allow-list), and never echoed in errors.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ingest_probe.errors import ConfigError

FIELDS = ("rows_written", "symbols", "start_ts", "end_ts", "ingest_duration_seconds", "freshness_seconds",
          "source")


@dataclass(frozen=True, slots=True, kw_only=True)
class DimensionResult:
    """One validated entry of the ingest results file."""

    name: str
    rows_written: int
    symbols: tuple[str, ...]
    start_ts: dt.datetime
    end_ts: dt.datetime
    ingest_duration_seconds: float
    freshness_seconds: float
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResults:
    path: str
    dimensions: Mapping[str, DimensionResult]  # in file order


def load_ingest_results(path: Path) -> IngestResults:
    """Read and validate ``--ingest-results``; any problem is a one-line ``ConfigError`` (exit 3)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"--ingest-results {path}: cannot read the file ({reason})") from exc
    return parse_ingest_results(text, path=str(path))


def parse_ingest_results(text: str, *, path: str) -> IngestResults:
    """Validate the JSON text of an ingest results file: ``{dimension: {rows_written, symbols, ...}}``."""
    where = f"--ingest-results {path}"

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise ConfigError(f"{where}: key {key!r} appears twice in one object")
            seen[key] = value
        return seen

    def no_constant(name: str) -> None:
        raise ConfigError(f"{where}: {name} is not valid JSON (use a finite number)")

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        where_in = f"line {exc.lineno} column {exc.colno}"
        raise ConfigError(f"{where}: not valid JSON: {exc.msg} at {where_in}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected a JSON object mapping each dimension to its result, got {_type(data)}"
        )
    dims = {name: _dimension(where, name, entry) for name, entry in data.items()}
    return IngestResults(path=path, dimensions=dims)


def _dimension(where: str, name: str, entry: object) -> DimensionResult:
    if not name.strip():
        raise ConfigError(f"{where}: a dimension name is empty")
    at = f"{where}: dimension {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{at}: expected an object with {', '.join(FIELDS)}, got {_type(entry)}")
    unknown = [k for k in entry if k not in FIELDS]
    if unknown:
        raise ConfigError(
            f"{at}: unknown field {', '.join(map(repr, unknown))} (fields: {', '.join(FIELDS)})"
        )
    missing = [k for k in FIELDS if k not in entry]
    if missing:
        raise ConfigError(f"{at}: missing field {', '.join(map(repr, missing))}")
    start, end = _timestamp(at, "start_ts", entry["start_ts"]), _timestamp(at, "end_ts", entry["end_ts"])
    if end < start:
        raise ConfigError(f"{at}: field 'end_ts' ({iso(end)}) is before start_ts ({iso(start)})")
    return DimensionResult(
        name=name,
        rows_written=_count(at, "rows_written", entry["rows_written"]),
        symbols=_symbols(at, entry["symbols"]),
        start_ts=start,
        end_ts=end,
        ingest_duration_seconds=_seconds(at, "ingest_duration_seconds", entry["ingest_duration_seconds"]),
        freshness_seconds=_seconds(at, "freshness_seconds", entry["freshness_seconds"]),
        source=_text(at, "source", entry["source"]),
    )


def _type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _got(value: object) -> str:
    return f"{_type(value)} {_shown(value)}"


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:59] + "…"


def _count(at: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{at}: field {field!r} must be a whole number >= 0, got {_got(value)}")
    if value < 0:
        raise ConfigError(f"{at}: field {field!r} must be >= 0, got {value}")
    return value


def _seconds(at: str, field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{at}: field {field!r} must be a number of seconds, got {_got(value)}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{at}: field {field!r} must be a finite number >= 0, got {value}")
    return value


def _text(at: str, field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():  # the type only: the value may hold a credential
        raise ConfigError(f"{at}: field {field!r} must be a non-empty string, got {_type(value)}")
    return value


def _symbols(at: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(
            f"{at}: field 'symbols' must be a list of symbols, not a string: write [{_shown(value)}]"
        )
    if not isinstance(value, list):
        raise ConfigError(f"{at}: field 'symbols' must be a list of symbols, got {_type(value)}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{at}: field 'symbols' must hold non-empty strings, got {_shown(item)}")
    return tuple(value)


def _timestamp(at: str, field: str, value: object) -> dt.datetime:
    """ISO-8601 with a UTC offset; an epoch number or a naive time is refused (never 1970, never local)."""
    example = "like 2026-11-25T00:00:00Z"
    if not isinstance(value, str):
        raise ConfigError(
            f"{at}: field {field!r} must be an ISO-8601 string {example}, got {_type(value)} {_shown(value)}"
        )
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{at}: field {field!r} is not an ISO-8601 timestamp {example}: {_shown(value)}"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ConfigError(f"{at}: field {field!r} has no UTC offset (add Z or +00:00): {_shown(value)}")
    return parsed.astimezone(dt.UTC)


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
