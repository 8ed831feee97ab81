"""Typed, validated access to a ``config.RawConfig``: alias resolution, parsing, ranges, one-line errors."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Collection

from ingest_probe.config.keys import Fallback, KeyRegistry
from ingest_probe.config.sources import DEFAULT_ORIGIN, RawConfig, RawValue, Source, quoted
from ingest_probe.config.urls import UrlError, check_host
from ingest_probe.errors import ConfigError
from ingest_probe.secret import Secret

#: How a URL and its part keys combine (Redis; Kafka credentials and protocol), for warnings and the README.
URL_PARTS_RULE = ("a part key overrides what a URL sets only from the same or a higher source; from a lower "
                  "source it only fills in what the URL leaves out")
_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


def bad(raw: RawValue, reason: str) -> ConfigError:
    """``KEY='value' from location: reason`` (``***`` instead of the value of a secret-bearing key)."""
    key = raw.key if len(raw.key) <= 80 else raw.key[:79] + "…"  # a pattern key may be any length
    return ConfigError(f"{key}={raw.shown} from {raw.origin.location}: {reason}")


class Reader:
    """Typed access to a ``RawConfig``: alias resolution, parsing, range checks, notes for ``config``."""

    def __init__(self, raw: RawConfig, keys: KeyRegistry, *, skip: Collection[str] = ()) -> None:
        self.raw = raw
        self.keys = keys
        #: Names never read (fallbacks made irrelevant by the keys they stand in for; see ``set_aside``).
        self.skip = frozenset(skip)
        self.warnings: list[str] = []
        self.notes: dict[str, str] = {}
        #: ``ingest-probe config`` rows for parts a URL supplies: key → (value, source), e.g. REDIS_PORT.
        self.supplied: dict[str, tuple[str, str]] = {}
        #: Legacy names read (``KeySpec.legacy``): name → (the key it is read as, where it was set).
        self.legacy: dict[str, tuple[str, str]] = {}

    def legacy_warning(self) -> str | None:
        """One line naming every legacy name read and the key it was read as, else None."""
        if not self.legacy:
            return None
        read = ", ".join(f"{name} ({where}) as {key}" for name, (key, where) in self.legacy.items())
        return (f"names from the ingest service's env template that its own code never read are read as the keys"
                f" it did read: {read}; rename them")

    def supply(self, name: str, value: object, url: RawValue) -> None:
        """Record that the part ``name`` is taken from the URL in ``url`` (never for a secret part)."""
        self.supplied[name] = (str(value), f"{url.key} ({url.origin.location})")

    def over_url(self, name: str, url: RawValue | None, stated: bool, what: str) -> RawValue | None:
        """The explicitly set part key ``name`` if it overrides the URL in ``url``, else None.

        A part key set in the same or a higher source than the URL wins over the URL's part. From a lower
        source it only fills in what the URL leaves out (``stated`` False): a ``REDIS_HOST`` left in the
        shell must not re-target the ``REDIS_URL`` of ``--env-file prod.env``; it is noted and warned about.
        """
        raw = self.pick(name, explicit=True)
        if raw is None or url is None or not stated or rank(raw) >= rank(url):
            return raw
        self.notes[raw.key] = f"ignored: {url.key} from a higher source sets it"
        self.warnings.append(
            f"{raw.key} from {raw.origin.location} is ignored: {url.key} from {url.origin.location} sets the "
            f"{what} and comes from a higher source ({URL_PARTS_RULE})"
        )
        return None

    def pick(self, name: str, *, explicit: bool = False) -> RawValue | None:
        """The first of ``name`` and its aliases with a non-empty value, else the default (unless explicit).

        Between different names the registry order decides, whatever their sources: an alias never
        overrides across sources (``--extra TIMESCALE_URL`` loses to ``TIMESCALEDB_URL`` from YAML), and
        the warning says so.
        """
        spec = self.keys.spec(name)
        names = (name,) if spec is None or spec.is_pattern else spec.names
        present = [v for v in map(self.raw.explicit, names)
                   if v is not None and v.value.strip() and v.key not in self.skip]
        for other in present[1:]:
            self.notes[other.key] = f"shadowed by {present[0].key}"
            if other.value != present[0].value:
                self.warnings.append(_shadowed(other, present[0], names))
        if present:
            if spec is not None and present[0].key in spec.legacy:
                self.legacy[present[0].key] = (spec.name, present[0].origin.location)
                self.notes.setdefault(present[0].key, f"read as {spec.name}")
            return present[0]
        if explicit or spec is None or spec.default is None:
            return None
        return RawValue(key=name, value=spec.default, origin=DEFAULT_ORIGIN, spec=spec)

    def text(self, name: str, *, explicit: bool = False) -> str | None:
        raw = self.pick(name, explicit=explicit)
        if raw is None:
            return None
        return raw.value if raw.secret else raw.value.strip()

    def secret(self, name: str) -> Secret | None:
        value = self.text(name)
        return Secret(value) if value else None

    def integer(self, name: str, *, explicit: bool = False) -> int | None:
        """The value; ``None`` when unset or one of the key's ``none_words``; below a ``clamp`` key's minimum,
        the minimum (with a warning)."""
        raw = self.pick(name, explicit=explicit)
        if raw is None or is_none_word(raw):
            return None
        value = parse_int(raw)
        if raw.spec is not None and raw.spec.clamp and raw.spec.minimum is not None and value < raw.spec.minimum:
            self.warnings.append(f"{raw.key}={raw.shown} from {raw.origin.location} is below {raw.spec.minimum}: "
                                 f"{raw.spec.minimum} is used (as the ingest service does)")
            return raw.spec.minimum
        return value

    def service_default(self, name: str) -> str | None:
        """The ingest service's own default for ``name`` when no name of the key has a value, else None."""
        spec = self.keys.spec(name)
        if spec is None or spec.service_default is None or self.pick(name, explicit=True) is not None:
            return None
        return spec.service_default

    def number(self, name: str) -> float | None:
        raw = self.pick(name)
        return None if raw is None else parse_float(raw)

    def boolean(self, name: str, *, explicit: bool = False) -> bool | None:
        raw = self.pick(name, explicit=explicit)
        return None if raw is None else parse_bool(raw)

    def flag(self, name: str) -> bool:
        return bool(self.boolean(name))

    def choice(self, name: str) -> str | None:
        raw = self.pick(name)
        return None if raw is None else parse_choice(raw)

    def csv(self, name: str) -> tuple[str, ...]:
        """Items stripped, empties dropped, duplicates (case-insensitive) dropped, order kept."""
        raw = self.pick(name)
        if raw is None:
            return ()
        seen: dict[str, str] = {}
        for item in (part.strip() for part in raw.value.split(",")):
            if item and item.upper() not in seen:
                seen[item.upper()] = item
        return tuple(seen.values())

    def ignore(self, names: tuple[str, ...], reason: str, *, warn: bool = True) -> None:
        """Note (and warn about) explicitly set keys that have no effect because of ``reason``."""
        for name in names:
            spec = self.keys.spec(name)
            for alias in spec.names if spec is not None else (name,):
                raw = self.raw.explicit(alias)
                if raw is not None and raw.value.strip() and alias not in self.skip:
                    self.notes[alias] = f"ignored: {reason}"
                    if warn:
                        self.warnings.append(f"{alias} from {raw.origin.location} is ignored: {reason}")


_SOURCES = list(Source)


def rank(raw: RawValue) -> int:
    """The precedence of the source of ``raw`` (default 0 ... --extra 4)."""
    return _SOURCES.index(raw.origin.source)


def _shadowed(other: RawValue, first: RawValue, names: tuple[str, ...]) -> str:
    rule = f"an alias never overrides across sources: {' > '.join(names)} whatever their sources"
    if _SOURCES.index(other.origin.source) > _SOURCES.index(first.origin.source):
        rule += f"; set {first.key} itself to override it"
    return (f"{other.key} from {other.origin.location} is ignored: {first.key} from {first.origin.location} "
            f"takes precedence ({rule})")


def set_aside(raw: RawConfig, fallback: Fallback) -> tuple[RawValue | None, tuple[RawValue, ...]]:
    """The first key of ``fallback.unless`` that is set (if any) and the fallback names it makes irrelevant.

    Fallbacks are used only as a whole, and only when none of the keys they stand in for is set in any
    source: otherwise a stray ``PGPORT`` in the shell would quietly re-target a host configured in the YAML
    file (registry order alone keeps only *same-part* aliases apart).
    """
    present = [v for v in map(raw.explicit, fallback.unless) if v is not None and v.value.strip()]
    if not present:
        return None, ()
    ignored = [v for v in map(raw.explicit, fallback.names) if v is not None and v.value.strip()]
    return present[0], tuple(sorted(ignored, key=lambda v: v.key))


def fallback_warning(fallback: Fallback, target: RawValue, ignored: tuple[RawValue, ...]) -> str:
    """One line naming the ignored fallback keys (never their values) and the target that set them aside."""
    by_location: dict[str, list[str]] = {}
    for value in ignored:
        by_location.setdefault(value.origin.location, []).append(value.key)
    names = " and ".join(f"{', '.join(keys)} from {where}" for where, keys in by_location.items())
    return (f"{fallback.what}s {names} are ignored: {target.key} from {target.origin.location} sets "
            f"{fallback.sets} ({fallback.rule})")


def json_object(raw: RawValue) -> dict[str, str]:
    """A topic-config JSON object with string values (numbers and booleans converted)."""
    try:
        data = json.loads(raw.value, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise bad(raw, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise bad(raw, "invalid JSON (nested too deeply)") from None
    except ValueError as exc:  # NaN, Infinity (from _no_constant)
        raise bad(raw, str(exc)) from None
    if not isinstance(data, dict):
        raise bad(raw, f"expected a JSON object, got {type(data).__name__}")
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, float) and not math.isfinite(value):  # 1e400
            raise bad(raw, f"config {quoted(key)} must be a finite number")
        elif isinstance(value, int | float | str):
            out[key] = str(value)
        else:
            raise bad(raw, f"config {quoted(key)} must be a string, number or boolean")
    return out


def _no_constant(name: str) -> object:
    raise ValueError(f"invalid JSON ({name} is not a number a broker accepts)")


# ---------------------------------------------------------------------------------- one value, by kind


#: Decimal text only: ``int()``/``float()`` also take "²"-free Unicode digits (``٣``, ``１``), ``1_000``,
#: ``nan``, ``infinity`` and surrounding whitespace, none of which an operator means as a number here.
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: The ceiling of an int key without its own maximum: every integer we pass on fits a 32-bit field.
INT_MAX = 2**31 - 1
#: The ceiling of a float key (seconds) without its own maximum: a day.
FLOAT_MAX = 86400


def is_none_word(raw: RawValue) -> bool:
    """Whether ``raw`` holds one of its key's words for "none" (``off`` for a cache TTL)."""
    return raw.spec is not None and raw.value.strip().lower() in raw.spec.none_words


def parse_int(raw: RawValue) -> int:
    text = raw.value.strip()
    if not _INT.fullmatch(text):
        words = "/".join(raw.spec.none_words) if raw.spec is not None else ""
        raise bad(raw, f"expected an integer (or {words})" if words else "expected an integer")
    spec = raw.spec
    minimum = spec.minimum if spec is not None and not spec.clamp else None
    maximum = spec.maximum if spec is not None and spec.maximum is not None else INT_MAX
    value = int(text) if len(text) <= 20 else int(text[0] + "1" + "0" * 20)  # int() refuses 4301+ digits
    if minimum is not None and value < minimum:
        raise bad(raw, f"expected an integer >= {minimum}")
    if value > maximum:
        raise bad(raw, f"expected an integer <= {maximum}")
    return value


def parse_number(text: str, *, maximum: float) -> float | str:
    """A decimal number in (0, maximum], else the reason: no NaN, infinity, ``1_0``, hex, non-ASCII digits."""
    text = text.strip()
    if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return "expected a finite number"
    if not _FLOAT.fullmatch(text):
        return "expected a number"
    value = float(text)
    if value <= 0:
        return "expected a number > 0"
    return value if value <= maximum else f"expected a number <= {maximum:g}"


def parse_float(raw: RawValue) -> float:
    spec = raw.spec
    value = parse_number(raw.value, maximum=spec.maximum if spec is not None and spec.maximum else FLOAT_MAX)
    if isinstance(value, str):
        raise bad(raw, value)
    return value


def parse_bool(raw: RawValue) -> bool:
    word = raw.value.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise bad(raw, "expected a boolean (true/false, 1/0, yes/no, y/n, on/off)")


def parse_choice(raw: RawValue) -> str:
    spec = raw.spec
    choices = spec.choices if spec is not None else ()
    word = raw.value.strip()
    if spec is not None:
        word = spec.spellings.get(word.lower(), word)
    found = next((c for c in choices if c.lower() == word.lower()), None)
    if found is None:
        raise bad(raw, f"expected one of {', '.join(choices)}")
    return found


def parse_host(raw: RawValue) -> str:
    try:
        return check_host(raw.value.strip())
    except UrlError as exc:
        raise bad(raw, str(exc)) from None


#: Characters no value may hold: C0/C1 controls but tab (a terminal escape, a NUL a C driver cuts at),
#: lone surrogates (bytes that were not UTF-8, kept by ``surrogateescape``), BOMs and line separators.
_FORBIDDEN = frozenset({"Cc", "Cs"})
_ODD = frozenset("\ufeff\u2028\u2029")


def check_text(raw: RawValue) -> None:
    """A value holding a control character, undecodable bytes or a BOM is an error naming the key."""
    for ch in raw.value:
        if ch == "\t" or (ch not in _ODD and unicodedata.category(ch) not in _FORBIDDEN):
            continue
        if "\ud800" <= ch <= "\udfff":
            raise bad(raw, "holds bytes that are not UTF-8 text")
        what = "a byte-order mark" if ch == "\ufeff" else "a control character"
        raise bad(raw, f"holds {what} (U+{ord(ch):04X})")


def validate_all(raw: RawConfig, keys: KeyRegistry, skip: Collection[str] = ()) -> None:
    """Parse every explicitly set value by its kind, used or not: bad input is never silently ignored.

    A value shadowed by a preferred alias (``TIMESCALE_URL`` when ``TIMESCALEDB_URL`` is set) or a libpq
    fallback in ``skip`` is not checked: it is not used, and a stray one in a shell must not break a run.
    A pattern key that only looks like an instance (``KeySpec.near_miss``: a misspelt per-topic setting) is
    an error.
    """
    parsers = {"int": parse_int, "float": parse_float, "bool": parse_bool, "choice": parse_choice,
               "json": json_object, "host": parse_host}
    effective: dict[str, RawValue] = {}
    for value in raw.values.values():
        spec = keys.spec(value.key)
        if spec is None or value.origin.source is Source.DEFAULT or not value.value.strip():
            continue
        if value.key in skip or spec.service_only or is_none_word(value):
            continue
        if spec.is_pattern and spec.near_miss is not None and (reason := spec.near_miss(value.key)) is not None:
            raise bad(value, reason)
        group = value.key if spec.is_pattern else spec.name
        current = effective.get(group)
        if current is None or spec.names.index(value.key) < spec.names.index(current.key):
            effective[group] = value
    for value in effective.values():
        spec = keys.spec(value.key)
        assert spec is not None  # filtered above
        check_text(value)
        parser = parsers.get(spec.kind)
        if parser is not None:
            parser(value)
        elif spec.shown is not None:
            try:
                spec.shown(value.value)
            except UrlError as exc:
                raise bad(value, str(exc)) from None
