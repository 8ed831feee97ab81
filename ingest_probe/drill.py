"""The Timescale failover drill as data: ingest results (strictly validated), health, decision, snapshot.

    load_ingest_results(path)                 the file, or a ConfigError naming dimension and field (exit 3)
    assess(settings, results, dimensions=)    health per dimension + the failover decision (pure)
    Assessment.fallback_target                the standby to probe, or None (not needed / not possible)
    conclude(assessment, settings, fallback=) the snapshot, given the fallback probe's result (pure)
    not_run(reason)                           the snapshot when there is nothing to drill

Dimension vocabulary. The report names its ingest dimensions ``daily``, ``intraday``, ``macro`` (from the plan:
``TIMESCALE_SYMBOLS``, ``TIMESCALE_ENABLE_INTRADAY``, ``TIMESCALE_ENABLE_MACRO``), while the system this replaces
wrote ``daily_bars``, ``intraday_bars``, ``macro_events`` (hence the default ``TIMESCALE_FAILOVER_DRILL_DIMENSIONS``
of ``daily_bars``, kept so existing env files mean the same). Choice: a legacy name is *the same dimension* as
its report name. Both sides (the required names, from ``--dimensions`` or the key, and the results file's keys)
are normalised to the report's name before they are compared, and every rewrite is said in a note
(``legacy_dimension_names``), so a healthy ``daily`` result under the default settings is ``ok`` with a note,
not "required 'daily_bars' absent" and a failover. Reporting only would turn every default-configured run
into a false failover, which no operator wants. A results file holding both names of one dimension is
ambiguous and refused (``ConfigError``, exit 3). The required names are also compared with this configuration's
own ingest dimensions (``settings.plan.dimensions``); anything that does not line up is a note with a stable
``code``, listed in ``health_report.vocabulary``, counted in the health component's metadata and repeated in
the snapshot's ``reason``. Notes never change a status: a missing required dimension is already an error.

The expected-symbols check (``TIMESCALE_SYMBOLS``) applies only to the symbol-based dimensions (``daily``,
``intraday``); ``macro`` and any other dimension are judged on rows written and freshness alone.

Everything here is plain ``def``; the fallback probe itself runs under the supervisor (``readiness``).
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ingest_probe._ingest_results import (
    SOURCE_WITHHELD,
    DimensionResult,
    IngestResults,
    iso,
    load_ingest_results,
    parse_ingest_results,
    safe_source,
)
from ingest_probe.errors import ConfigError
from ingest_probe.results import ProbeResult, Status
from ingest_probe.settings import Settings, TimescaleSettings

__all__ = [
    "LEGACY_DIMENSIONS", "SOURCE_WITHHELD", "SYMBOL_DIMENSIONS", "Assessment", "Component", "DimensionHealth",
    "DimensionResult", "DrillSnapshot", "DrillStatus", "FailoverDecision", "Health", "IngestResults", "Note",
    "Step", "Vocabulary", "assess", "canonical_dimension", "conclude", "load_ingest_results", "not_run",
    "parse_ingest_results", "required_dimensions", "safe_source", "scenario_label", "vocabulary",
]

DIMENSIONS_KEY = "TIMESCALE_FAILOVER_DRILL_DIMENSIONS"
PLAN_KEYS = "TIMESCALE_SYMBOLS, TIMESCALE_ENABLE_INTRADAY, TIMESCALE_ENABLE_MACRO"
#: The predecessor's dimension names, read as the report's (see the module docstring).
LEGACY_DIMENSIONS: Mapping[str, str] = {"daily_bars": "daily", "intraday_bars": "intraday", "macro_events": "macro"}
#: Dimensions ingested per symbol: only these are checked against TIMESCALE_SYMBOLS.
SYMBOL_DIMENSIONS = frozenset({"daily", "intraday"})


def canonical_dimension(name: str) -> str:
    """The report's name for a dimension (a legacy name maps to it; any other name is itself)."""
    return LEGACY_DIMENSIONS.get(name, name)


class DrillStatus(StrEnum):
    """The drill's verdict; ``exit_code`` has the Nagios meaning (``not_run`` does not fail a run)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    NOT_RUN = "not_run"

    @property
    def exit_code(self) -> int:
        return {DrillStatus.FAIL: 2, DrillStatus.WARN: 1}.get(self, 0)


class Health(StrEnum):
    """Health of one ingest dimension."""

    OK = "ok"
    WARN = "warn"
    ERROR = "error"


class Step(StrEnum):
    """Status of one drill component (health, failover, fallback)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


# ----------------------------------------------------------------------------------- health and decision


@dataclass(frozen=True, slots=True, kw_only=True)
class DimensionHealth:
    name: str
    required: bool
    status: Health
    reasons: tuple[str, ...]
    missing_symbols: tuple[str, ...]
    result: DimensionResult | None  # None: required but absent from the results file

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "name": self.name,
            "name_in_results": None if r is None else r.name,
            "required": self.required,
            "status": self.status.value,
            "reasons": list(self.reasons),
            "rows_written": None if r is None else r.rows_written,
            "symbol_count": None if r is None else len(r.symbols),
            "missing_symbols": list(self.missing_symbols),
            "start_ts": None if r is None else iso(r.start_ts),
            "end_ts": None if r is None else iso(r.end_ts),
            "ingest_duration_seconds": None if r is None else r.ingest_duration_seconds,
            "freshness_seconds": None if r is None else r.freshness_seconds,
            "source": None if r is None else safe_source(r.source),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """One thing about the dimension names that does not line up; ``code`` is stable, ``message`` for people."""

    code: str
    message: str
    brief: str  # the few words repeated in the snapshot's reason

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


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

    def renamed(self) -> dict[tuple[str, str], list[str]]:
        """Each legacy rename once, with every place it was written."""
        grouped: dict[tuple[str, str], list[str]] = {}
        for old, new, where in self.aliases:
            grouped.setdefault((old, new), []).append(where)
        return grouped

    def notes(self) -> list[Note]:
        notes: list[Note] = []
        if self.aliases:
            pairs = self.renamed()
            renamed = ", ".join(f"{old} -> {new} ({', '.join(where)})" for (old, new), where in pairs.items())
            notes.append(Note(code="legacy_dimension_names",
                              message=f"legacy dimension names read as this report's: {renamed}",
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
                              message=f"{_n(len(self.not_planned), 'required dimension')}"
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


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverDecision:
    should_failover: bool
    reason: str
    required_in_error: tuple[str, ...]
    warnings: tuple[str, ...]  # dimensions that only warn (optional in error, or any dimension in warn)

    def to_dict(self) -> dict[str, Any]:
        return {
            "should_failover": self.should_failover,
            "reason": self.reason,
            "required_in_error": list(self.required_in_error),
            "warning_dimensions": list(self.warnings),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """Everything the drill knows before the fallback probe: vocabulary, health, decision."""

    results_file: str
    vocabulary: Vocabulary
    health: tuple[DimensionHealth, ...]
    decision: FailoverDecision
    #: The standby to probe (failover decided, fallback enabled, standby configured); else None.
    fallback_target: TimescaleSettings | None
    #: Why the fallback does not run (``None`` when it does), and the component status that implies.
    fallback_skip: tuple[Step, str] | None

    def health_report(self) -> dict[str, Any]:
        counts = {h.value: sum(1 for d in self.health if d.status is h) for h in Health}
        return {
            "results_file": self.results_file,
            "vocabulary": self.vocabulary.to_dict(),
            "counts": counts,
            "dimensions": [d.to_dict() for d in self.health],
        }


def required_dimensions(settings: Settings, dimensions: Sequence[str] = ()) -> tuple[tuple[str, ...], str]:
    """The required names (``--dimensions`` wins over the key) and where they came from."""
    if dimensions:
        names = [part.strip() for value in dimensions for part in value.split(",")]
        if any(not n for n in names):
            raise ConfigError("--dimensions: empty dimension name")
        return tuple(dict.fromkeys(names)), "--dimensions"
    origin = settings.origins.get(DIMENSIONS_KEY)
    return settings.failover.dimensions, f"{DIMENSIONS_KEY} [{origin or 'default'}]"


def vocabulary(settings: Settings, results: IngestResults,
               dimensions: Sequence[str] = ()) -> tuple[Vocabulary, dict[str, DimensionResult]]:
    """The names in the report's vocabulary, and the results keyed by them (legacy names normalised)."""
    raw, source = required_dimensions(settings, dimensions)
    aliases: list[tuple[str, str, str]] = []

    def normalise(names: Sequence[str], where: str) -> tuple[str, ...]:
        aliases.extend((n, LEGACY_DIMENSIONS[n], where) for n in names if n in LEGACY_DIMENSIONS)
        return tuple(dict.fromkeys(canonical_dimension(n) for n in names))

    required = normalise(raw, "--dimensions" if dimensions else DIMENSIONS_KEY)
    by_name: dict[str, DimensionResult] = {}
    for name, result in results.dimensions.items():
        key = canonical_dimension(name)
        if key in by_name:
            first = by_name[key].name
            raise ConfigError(f"--ingest-results {results.path}: dimensions {first!r} and {name!r} are the same"
                              f" dimension ({key!r}; legacy names are read as the report's): keep one")
        by_name[key] = result
    normalise(list(results.dimensions), "ingest results")
    vocab = Vocabulary(required=required, required_source=source, present=tuple(by_name),
                       configured=tuple(dict.fromkeys(map(canonical_dimension, settings.failover.dimensions))),
                       overridden=bool(dimensions), planned=settings.plan.dimensions, aliases=tuple(aliases))
    return vocab, by_name


def assess(settings: Settings, results: IngestResults, *, dimensions: Sequence[str] = ()) -> Assessment:
    """Health per dimension, then the decision: fail over when a required dimension is in error."""
    vocab, by_name = vocabulary(settings, results, dimensions)
    required = vocab.required
    order = [*required, *vocab.not_required]
    health = tuple(_health(name, name in required, by_name.get(name), settings) for name in order)
    decision = _decide(health, required)
    skip: tuple[Step, str] | None = None
    target = settings.failover.target
    if not decision.should_failover:
        skip = (Step.SKIPPED, "not needed: no failover decided")
    elif not settings.failover.run_fallback:
        skip = (Step.WARN, "fallback not rehearsed: TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK is false")
    elif target is None or not target.configured:
        skip = (Step.WARN, "no standby configured: set TIMESCALEDB_FAILOVER_URL or TIMESCALEDB_FAILOVER_HOST")
    return Assessment(results_file=results.path, vocabulary=vocab, health=health, decision=decision,
                      fallback_target=None if skip else target, fallback_skip=skip)


def _health(name: str, required: bool, r: DimensionResult | None, settings: Settings) -> DimensionHealth:
    if r is None:
        return DimensionHealth(name=name, required=required, status=Health.ERROR, missing_symbols=(),
                               reasons=("required but absent from the ingest results",), result=None)
    errors: list[str] = []
    warnings: list[str] = []
    if r.rows_written == 0:
        errors.append("no rows written")
    missing: tuple[str, ...] = ()
    if name in SYMBOL_DIMENSIONS:  # macro (and any unknown dimension): rows and freshness only
        missing = tuple(s for s in settings.plan.symbols if s not in r.symbols)
    if missing:
        warnings.append(f"missing {_n(len(missing), 'expected symbol')} of TIMESCALE_SYMBOLS:"
                        f" {', '.join(missing)}")
    sla = settings.failover.freshness_sla_seconds
    if r.freshness_seconds > sla:
        warnings.append(f"stale: freshness {r.freshness_seconds:g} s is over the {sla} s SLA of"
                        " TIMESCALE_FRESHNESS_SLA_SECONDS")
    status = Health.ERROR if errors else Health.WARN if warnings else Health.OK
    return DimensionHealth(name=name, required=required, status=status, reasons=(*errors, *warnings),
                           missing_symbols=missing, result=r)


def _decide(health: Sequence[DimensionHealth], required: Sequence[str]) -> FailoverDecision:
    def why(dims: Sequence[DimensionHealth]) -> str:
        return "; ".join(f"{d.name}: {', '.join(d.reasons)}" for d in dims)

    failing = [d for d in health if d.required and d.status is Health.ERROR]
    warned = [d for d in health if d.status is not Health.OK and d not in failing]
    also = f". Warnings only (no failover for these): {why(warned)}" if warned else ""
    if failing:
        reason = f"fail over: {_n(len(failing), 'required dimension')} in error: {why(failing)}{also}"
    elif not required:
        reason = f"no failover: no required dimensions to judge{also}"
    else:
        reason = f"no failover: no required dimension in error ({', '.join(required)}){also}"
    return FailoverDecision(should_failover=bool(failing), reason=reason,
                            required_in_error=tuple(d.name for d in failing),
                            warnings=tuple(d.name for d in warned))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# -------------------------------------------------------------------------------------------- snapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class Component:
    name: str
    status: Step
    summary: str
    metadata: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "summary": self.summary,
                "metadata": dict(self.metadata)}


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillSnapshot:
    """The ``failover_drill`` section of a readiness report."""

    status: DrillStatus
    generated_at: dt.datetime
    scenario: str
    reason: str
    components: tuple[Component, ...] = ()
    health_report: Mapping[str, Any] | None = None
    failover_decision: FailoverDecision | None = None

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "generated_at": iso(self.generated_at.replace(microsecond=0)),
            "scenario": self.scenario,
            "reason": self.reason,
            "components": [c.to_dict() for c in self.components],
            "health_report": None if self.health_report is None else dict(self.health_report),
            "failover_decision": None if self.failover_decision is None else self.failover_decision.to_dict(),
        }


def scenario_label(settings: Settings, scenario: str | None) -> str:
    return scenario if scenario else settings.failover.label


def not_run(reason: str, *, settings: Settings, scenario: str | None, now: dt.datetime) -> DrillSnapshot:
    return DrillSnapshot(status=DrillStatus.NOT_RUN, generated_at=now,
                         scenario=scenario_label(settings, scenario), reason=f"not run: {reason}")


def conclude(assessment: Assessment, settings: Settings, *, fallback: ProbeResult | None,
             scenario: str | None, now: dt.datetime) -> DrillSnapshot:
    """The snapshot. ``fallback`` is the standby probe's result (required iff ``fallback_target``)."""
    a, decision = assessment, assessment.decision
    notes = a.vocabulary.notes()
    statuses = [d.status for d in a.health]
    required_error = any(d.required and d.status is Health.ERROR for d in a.health)
    all_ok = all(s is Health.OK for s in statuses)
    health = Component(
        name="health",
        status=Step.FAIL if required_error else Step.OK if all_ok else Step.WARN,
        summary=", ".join(f"{d.name} {d.status.value}" for d in a.health) or "no dimensions",
        metadata={"dimensions": len(statuses), "required": len(a.vocabulary.required),
                  "vocabulary_matches": a.vocabulary.matches, "vocabulary_notes": [n.code for n in notes]},
    )
    short = (f"fail over: {', '.join(decision.required_in_error)} in error" if decision.should_failover
             else "no failover needed")
    failover = Component(name="failover", status=Step.WARN if decision.should_failover else Step.OK,
                         summary=short, metadata={"should_failover": decision.should_failover})
    fb = _fallback_component(a, fallback)

    if decision.should_failover:
        status = {Step.OK: DrillStatus.OK, Step.FAIL: DrillStatus.FAIL}.get(fb.status, DrillStatus.WARN)
        reason = {
            DrillStatus.OK: "failover needed and the standby is a healthy failover target",
            DrillStatus.FAIL: "failover needed and the standby is not a usable failover target",
            DrillStatus.WARN: "failover needed but the fallback was not probed",
        }[status]
    elif not a.vocabulary.required:
        status, reason = DrillStatus.WARN, "no required dimensions: the drill cannot decide on failover"
    elif health.status is Step.OK:
        status, reason = DrillStatus.OK, "no failover needed: every dimension healthy"
    else:
        status, reason = DrillStatus.WARN, "no failover needed, but not every dimension is healthy"
    if decision.should_failover:
        reason = f"{reason}: {fb.summary}"
    if notes:  # said here too, not only in the vocabulary block: a name mismatch can decide a failover
        reason += ". Dimension vocabulary: " + "; ".join(f"[{n.code}] {n.brief}" for n in notes)
    return DrillSnapshot(
        status=status, generated_at=now, scenario=scenario_label(settings, scenario),
        reason=reason,
        components=(health, failover, fb), health_report=a.health_report(), failover_decision=decision,
    )


def _fallback_component(a: Assessment, result: ProbeResult | None) -> Component:
    if a.fallback_skip is not None:
        return Component(name="fallback", status=a.fallback_skip[0], summary=a.fallback_skip[1], metadata={})
    target = a.fallback_target
    assert target is not None, "a planned fallback has a target"
    assert result is not None, "a planned fallback needs its probe result"
    url = target.redacted_url()
    in_recovery = result.details.get("in_recovery")
    meta: dict[str, Any] = {
        "target": url,
        "probe_status": result.status.value,
        "latency_ms": None if result.latency_ms is None else round(result.latency_ms, 3),
        "reachable": bool(result.healthy),
        "in_recovery": in_recovery,
        "writable": in_recovery is False and bool(result.healthy),
        "server_version": result.details.get("server_version"),
        "error_kind": result.error_kind,
        "error": result.error,
    }
    if not result.healthy:
        summary = f"standby {url} is unreachable ({result.error_kind}): {result.error}"
        return Component(name="fallback", status=Step.FAIL, summary=summary, metadata=meta)
    if in_recovery is True:
        summary = (f"standby {url} is reachable but still in recovery (read-only, not promoted): promote it"
                   " (pg_ctl promote or SELECT pg_promote()) before it can take writes")
        return Component(name="fallback", status=Step.FAIL, summary=summary, metadata=meta)
    if in_recovery is not False or result.status is not Status.OK:
        summary = (f"standby {url} answered but is not a writable PostgreSQL/TimescaleDB"
                   f" ({result.error or 'pg_is_in_recovery() unknown'})")
        return Component(name="fallback", status=Step.FAIL, summary=summary, metadata=meta)
    summary = f"standby {url} is reachable and writable (pg_is_in_recovery() = false)"
    return Component(name="fallback", status=Step.OK, summary=summary, metadata=meta)
