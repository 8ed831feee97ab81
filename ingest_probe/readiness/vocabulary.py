"""The failover drill's dimension vocabulary: required names, the ingest service's names, notes on mismatches.

The report names its ingest dimensions ``daily``, ``intraday``, ``macro`` (from the plan: ``TIMESCALE_SYMBOLS``,
``TIMESCALE_ENABLE_INTRADAY``, ``TIMESCALE_ENABLE_MACRO``), while the ingest service (and the drill this replaces)
calls them ``daily_bars``, ``intraday_trades``, ``macro_events`` (hence the default
``TIMESCALE_FAILOVER_DRILL_DIMENSIONS`` of ``daily_bars``, kept so existing env files mean the same). Choice: a
service name is *the same dimension* as its report name. Both sides (the required names, from ``--dimensions``
or the key, and the results file's names) are normalised to the report's name before they are compared, so a
healthy ``daily`` result under the default settings is ``ok``, not "required 'daily_bars' absent" and a failover.
``intraday_bars`` is not one of them: the replaced code never wrote it.

Notes (a stable ``code``, listed in ``health_report.vocabulary``, counted in the health component's metadata and
repeated in the snapshot's ``reason``) say what does not line up. A service name is noted
(``legacy_dimension_names``) only where the operator wrote it: ``--dimensions`` or a
``TIMESCALE_FAILOVER_DRILL_DIMENSIONS`` they set. The key's own default and the results file's names (what the
service writes on every run) are read silently; every rename is still listed in ``vocabulary.legacy_names``
and shown in the health table. A results file holding both names of one dimension is ambiguous and refused
(``ConfigError``, exit 3). The required names are also compared with this configuration's own ingest
dimensions (``settings.plan.dimensions``). Notes never change a status: a missing required dimension is already
a failover trigger.

Re-exported by ``ingest_probe.readiness.drill``; import the names from there.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ingest_probe.config.sources import Source
from ingest_probe.errors import ConfigError
from ingest_probe.readiness.results_file import DimensionResult, IngestResults, Note
from ingest_probe.settings.service import Settings

DIMENSIONS_KEY = "TIMESCALE_FAILOVER_DRILL_DIMENSIONS"
PLAN_KEYS = "TIMESCALE_SYMBOLS, TIMESCALE_ENABLE_INTRADAY, TIMESCALE_ENABLE_MACRO"
#: The ingest service's dimension names (``TimescaleIngestResult.dimension``), read as the report's.
LEGACY_DIMENSIONS: Mapping[str, str] = {"daily_bars": "daily", "intraday_trades": "intraday", "macro_events": "macro"}
#: Where the results file's names were written (never noted: it is what the ingest service writes).
IN_RESULTS = "ingest results"


def operator_set(settings: Settings, key: str) -> bool:
    """Whether ``key`` has a value from a source the operator controls (not the registry's default)."""
    origin = settings.origins.get(key)
    return origin is not None and origin.source is not Source.DEFAULT


def canonical_dimension(name: str) -> str:
    """The report's name for a dimension (a legacy name maps to it; any other name is itself)."""
    return LEGACY_DIMENSIONS.get(name, name)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Vocabulary:
    """The required names, the results file's and the plan's, all in the report's names, and what differs."""

    required: tuple[str, ...]
    required_source: str
    present: tuple[str, ...]
    configured: tuple[str, ...]  # the key's names, for comparison with --dimensions
    overridden: bool  # --dimensions given
    planned: tuple[str, ...]  # settings.plan.dimensions
    #: Legacy names read as the report's: (name as written, report name, where it was written).
    aliases: tuple[tuple[str, str, str], ...] = ()

    @property
    def required_absent(self) -> tuple[str, ...]:
        return tuple(d for d in self.required if d not in self.present)

    @property
    def not_required(self) -> tuple[str, ...]:
        return tuple(d for d in self.present if d not in self.required)

    @property
    def not_planned(self) -> tuple[str, ...]:
        return tuple(d for d in self.required if d not in self.planned)

    @property
    def matches(self) -> bool:
        return not (self.required_absent or self.not_required or self.not_planned)

    def notes(self) -> list[Note]:
        notes: list[Note] = []
        typed = [(old, new, where) for old, new, where in self.aliases if where != IN_RESULTS]
        if typed:
            pairs: dict[tuple[str, str], list[str]] = {}  # each rename once, with every place it was written
            for old, new, where in typed:
                pairs.setdefault((old, new), []).append(where)
            renamed = ", ".join(f"{old} -> {new} ({', '.join(where)})" for (old, new), where in pairs.items())
            notes.append(Note(code="legacy_dimension_names",
                              message=f"the ingest service's dimension names read as this report's: {renamed}",
                              brief=", ".join(f"{old} read as {new}" for old, new in pairs)))
        if self.overridden and set(self.required) != set(self.configured):
            notes.append(Note(code="dimensions_flag_differs",
                              message=f"--dimensions ({', '.join(self.required)}) differs from {DIMENSIONS_KEY}"
                                      f" ({', '.join(self.configured) or 'empty'}); --dimensions wins for this run",
                              brief=f"--dimensions overrides {DIMENSIONS_KEY}"))
        if not self.required:
            notes.append(Note(code="no_required_dimensions",
                              message=f"no required dimensions ({DIMENSIONS_KEY} is empty and no --dimensions):"
                                      " the drill can never decide to fail over",
                              brief="no required dimensions"))
        if self.not_planned:
            plan = (f"this configuration's ingest dimensions are {', '.join(self.planned)} (from {PLAN_KEYS})"
                    if self.planned else f"this configuration plans no ingest dimensions (set {PLAN_KEYS})")
            notes.append(Note(code="required_not_planned",
                              message=f"{plural(len(self.not_planned), 'required dimension')}"
                                      f" ({self.required_source}) not in the ingest plan:"
                                      f" {', '.join(self.not_planned)}; {plan}",
                              brief=f"{', '.join(self.not_planned)} not in the ingest plan"
                                    f" ({', '.join(self.planned) or 'empty'})"))
        for name in self.required_absent:
            close = difflib.get_close_matches(name, self.not_required, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            notes.append(Note(code="required_absent",
                              message=f"required dimension {name!r} ({self.required_source}) is absent from the"
                                      f" ingest results{hint}",
                              brief=f"required {name} absent from the results{hint}"))
        if self.not_required:
            notes.append(Note(code="present_not_required",
                              message="in the ingest results but not required, treated as optional:"
                                      f" {', '.join(self.not_required)}",
                              brief=f"{', '.join(self.not_required)} optional"))
        return notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "required": list(self.required),
            "required_source": self.required_source,
            "in_results": list(self.present),
            "planned": list(self.planned),
            "required_absent": list(self.required_absent),
            "present_not_required": list(self.not_required),
            "required_not_planned": list(self.not_planned),
            "legacy_names": [{"name": old, "read_as": new, "in": where} for old, new, where in self.aliases],
            "matches": self.matches,
            "notes": [n.to_dict() for n in self.notes()],
        }


def required_dimensions(settings: Settings, dimensions: Sequence[str] = (), *,
                        results: IngestResults | None = None) -> tuple[tuple[str, ...], str]:
    """The required names and where they came from: ``--dimensions``, else the key; for a drill run without
    ``TIMESCALE_FAILOVER_DRILL`` and without the key set, every dimension of the results (as the old drill)."""
    if dimensions:
        names = [part.strip() for value in dimensions for part in value.split(",")]
        if any(not n for n in names):
            raise ConfigError("--dimensions: empty dimension name")
        return tuple(dict.fromkeys(names)), "--dimensions"
    origin = settings.origins.get(DIMENSIONS_KEY)
    if results is not None and not operator_set(settings, DIMENSIONS_KEY) and not settings.failover.enabled:
        return tuple(results.dimensions), (f"every dimension of the ingest results (TIMESCALE_FAILOVER_DRILL"
                                           f" is off and {DIMENSIONS_KEY} unset)")
    return settings.failover.dimensions, f"{DIMENSIONS_KEY} [{origin or 'default'}]"


def _legacy(names: Sequence[str], where: str) -> list[tuple[str, str, str]]:
    return [(n, LEGACY_DIMENSIONS[n], where) for n in names if n in LEGACY_DIMENSIONS]


def vocabulary(settings: Settings, results: IngestResults,
               dimensions: Sequence[str] = ()) -> tuple[Vocabulary, dict[str, DimensionResult]]:
    """The names in the report's vocabulary, and the results keyed by them (service names normalised)."""
    raw, source = required_dimensions(settings, dimensions, results=results)
    by_name: dict[str, DimensionResult] = {}
    for name, result in results.dimensions.items():
        key = canonical_dimension(name)
        if key in by_name:
            first = by_name[key].name
            raise ConfigError(f"ingest results {results.path}: dimensions {first!r} and {name!r} are the same"
                              f" dimension ({key!r}; the ingest service's names are read as the report's):"
                              " keep one")
        by_name[key] = result
    if dimensions:
        where = "--dimensions"
    elif source.startswith(DIMENSIONS_KEY) and operator_set(settings, DIMENSIONS_KEY):
        where = DIMENSIONS_KEY
    else:
        where = ""  # the key's own default, or the results' names: nothing the operator typed
    aliases = (_legacy(raw, where) if where else []) + _legacy(list(results.dimensions), IN_RESULTS)
    vocab = Vocabulary(required=tuple(dict.fromkeys(map(canonical_dimension, raw))), required_source=source,
                       present=tuple(by_name),
                       configured=tuple(dict.fromkeys(map(canonical_dimension, settings.failover.dimensions))),
                       overridden=bool(dimensions), planned=settings.plan.dimensions, aliases=tuple(aliases))
    return vocab, by_name
