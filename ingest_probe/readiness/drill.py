"""The Timescale failover drill as data: ingest results (strictly validated), health, decision, snapshot.

    load_ingest_results(path)                 the file, or a ConfigError naming dimension and field (exit 3)
    assess(settings, results, dimensions=)    health per dimension + the failover decision (pure)
    Assessment.fallback_target                the standby to probe, or None (not needed / not possible)
    conclude(assessment, settings, fallback=) the snapshot, given the fallback probe's result (pure)
    not_run(reason)                           the snapshot when there is nothing to drill

Dimension vocabulary (legacy names such as ``daily_bars`` read as the report's ``daily``, and the notes on names
that do not line up) lives in ``readiness.vocabulary`` and is re-exported here.

The expected-symbols check (``TIMESCALE_SYMBOLS``) applies only to the symbol-based dimensions (``daily``,
``intraday``); ``macro`` and any other dimension are judged on rows written and freshness alone.

Everything here is plain ``def``; the fallback probe itself runs under the supervisor (the readiness command).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ingest_probe.connectors.timescale.settings import TimescaleSettings
from ingest_probe.defaults import EXIT_CRITICAL, EXIT_OK, EXIT_WARNING
from ingest_probe.readiness.results_file import (
    SOURCE_WITHHELD,
    DimensionResult,
    IngestResults,
    iso,
    load_ingest_results,
    parse_ingest_results,
    safe_source,
)
from ingest_probe.readiness.vocabulary import (
    DIMENSIONS_KEY,
    LEGACY_DIMENSIONS,
    Note,
    Vocabulary,
    canonical_dimension,
    plural,
    required_dimensions,
    vocabulary,
)
from ingest_probe.results import ProbeResult, Status
from ingest_probe.settings.service import Settings

__all__ = [
    "DIMENSIONS_KEY", "LEGACY_DIMENSIONS", "SOURCE_WITHHELD", "SYMBOL_DIMENSIONS", "Assessment", "Component",
    "DimensionHealth", "DimensionResult", "DrillSnapshot", "DrillStatus", "FailoverDecision", "Health",
    "IngestResults", "Note", "Step", "Vocabulary", "assess", "canonical_dimension", "conclude",
    "load_ingest_results", "not_run", "parse_ingest_results", "required_dimensions", "safe_source",
    "scenario_label", "vocabulary",
]

#: Dimensions ingested per symbol: only these are checked against TIMESCALE_SYMBOLS.
SYMBOL_DIMENSIONS = frozenset({"daily", "intraday"})


class DrillStatus(StrEnum):
    """The drill's verdict; ``exit_code`` has the Nagios meaning (``not_run`` does not fail a run)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    NOT_RUN = "not_run"

    @property
    def exit_code(self) -> int:
        return {DrillStatus.FAIL: EXIT_CRITICAL, DrillStatus.WARN: EXIT_WARNING}.get(self, EXIT_OK)


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
    # macro (and any unknown dimension): rows and freshness only
    symbols = settings.plan.symbols if name in SYMBOL_DIMENSIONS else ()
    missing = tuple(s for s in symbols if s not in r.symbols)
    if missing:
        warnings.append(f"missing {plural(len(missing), 'expected symbol')} of TIMESCALE_SYMBOLS:"
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
        reason = f"fail over: {plural(len(failing), 'required dimension')} in error: {why(failing)}{also}"
    elif not required:
        reason = f"no failover: no required dimensions to judge{also}"
    else:
        reason = f"no failover: no required dimension in error ({', '.join(required)}){also}"
    return FailoverDecision(should_failover=bool(failing), reason=reason,
                            required_in_error=tuple(d.name for d in failing),
                            warnings=tuple(d.name for d in warned))


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
    #: What the drill judged (None when it was not run).
    assessment: Assessment | None = None

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    @property
    def failover_decision(self) -> FailoverDecision | None:
        return None if self.assessment is None else self.assessment.decision

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "generated_at": iso(self.generated_at.replace(microsecond=0)),
            "scenario": self.scenario,
            "reason": self.reason,
            "components": [c.to_dict() for c in self.components],
            "health_report": None if self.assessment is None else self.assessment.health_report(),
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
    all_ok = all(d.status is Health.OK for d in a.health)
    health = Component(
        name="health",  # FAIL exactly when failover is decided: a required dimension is in error
        status=Step.FAIL if decision.should_failover else Step.OK if all_ok else Step.WARN,
        summary=", ".join(f"{d.name} {d.status.value}" for d in a.health) or "no dimensions",
        metadata={"dimensions": len(a.health), "required": len(a.vocabulary.required),
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
        components=(health, failover, fb), assessment=a,
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
