"""The Timescale failover drill as data: ingest results (strictly validated), health, decision, snapshot.

    load_ingest_results(path)                 the file, or a ConfigError naming every problem (exit 3)
    assess(settings, results, dimensions=)    health per dimension + the failover decision (pure)
    assess(..., rehearse=True)                the same after a simulated outage of the required dimensions
    Assessment.fallback_target                the standby to probe, or None (not needed / not possible)
    conclude(assessment, settings, fallback=) the snapshot, given the fallback probe's result (pure)
    not_run(reason)                           the snapshot when there is nothing to drill

Dimension vocabulary (the ingest service's names such as ``daily_bars`` read as the report's ``daily``, and the
notes on names that do not line up) lives in ``readiness.vocabulary`` and is re-exported here.

The judgement is the replaced system's (its ``evaluate_ingest_health`` and ``decide_ingest_failover``), in the
report's names, with the drill's required dimensions (``TIMESCALE_FAILOVER_DRILL_DIMENSIONS`` or
``--dimensions``) in the role its policy gave every planned dimension but ``macro_events``:

* health of each dimension that is required, planned (``settings.plan.dimensions``) or in the results:
  zero rows of a required or planned one is an error when symbols are expected (``TIMESCALE_SYMBOLS``, for
  ``daily`` and ``intraday`` only), else a warning; any other dimension warns below its minimum rows
  (``MIN_ROWS``: daily 1, intraday 1, macro 0). All expected symbols missing is an error, some a warning.
  Freshness over the dimension's limit (``settings.failover.freshness_sla_by_dimension``: daily 1 day,
  intraday 15 min, macro 7 days, others ``TIMESCALE_FRESHNESS_SLA_SECONDS``) warns; unknown freshness
  (``null``) warns for a required or planned dimension ("Freshness metric unavailable" in the old tool).
* failover triggers, for required and planned dimensions: absent from the results, zero rows, any missing
  expected symbol (the old ``fail_on_missing_symbols``), or health ``error``. A required dimension's trigger
  decides a failover; a planned one's is an optional trigger (reported, no failover).
* unlike the old decision, an ``error`` in a dimension neither required nor planned does not fail over (its
  "overall status=error" rule): the operator said which dimensions the failover depends on.

``rehearse=True`` (the ``drill`` command) first replaces each required dimension's result by an empty one (0
rows, no symbols, unknown times and freshness, the same ``source``), as the old drill did, so the decision and
the standby probe are exercised whatever the file says; readiness judges the file as written.

Everything here is plain ``def``; the fallback probe itself runs under the supervisor (``readiness``, ``drill``).
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
    Note,
    iso,
    load_ingest_results,
    parse_ingest_results,
    safe_source,
)
from ingest_probe.readiness.vocabulary import (
    DIMENSIONS_KEY,
    LEGACY_DIMENSIONS,
    Vocabulary,
    canonical_dimension,
    operator_set,
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
    "load_ingest_results", "not_enabled", "not_run", "parse_ingest_results", "required_dimensions", "safe_source",
    "scenario_label", "vocabulary",
]

#: Dimensions ingested per symbol: only these are checked against TIMESCALE_SYMBOLS.
SYMBOL_DIMENSIONS = frozenset({"daily", "intraday"})
#: The old minimum rows per dimension (any other: 0); zero rows of a required or planned dimension is judged
#: on its own (error when symbols are expected, else a warning).
MIN_ROWS: Mapping[str, int] = {"daily": 1, "intraday": 1, "macro": 0}
SIMULATED = "simulated outage: the result is replaced by an empty one"
ENABLED_KEY = "TIMESCALE_FAILOVER_DRILL"


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
    planned: bool
    status: Health
    reasons: tuple[str, ...]
    missing_symbols: tuple[str, ...]
    result: DimensionResult | None  # None: required or planned, but absent from the results file
    freshness_sla_seconds: int
    #: What makes it a failover trigger (required) or an optional trigger (planned); empty otherwise.
    triggers: tuple[str, ...] = ()
    simulated: bool = False

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "name": self.name,
            "name_in_results": None if r is None else r.name,
            "required": self.required,
            "planned": self.planned,
            "simulated": self.simulated,
            "status": self.status.value,
            "reasons": list(self.reasons),
            "triggers": list(self.triggers),
            "rows_written": None if r is None else r.rows_written,
            "symbol_count": None if r is None else len(r.symbols),
            "missing_symbols": list(self.missing_symbols),
            "start_ts": None if r is None or r.start_ts is None else iso(r.start_ts),
            "end_ts": None if r is None or r.end_ts is None else iso(r.end_ts),
            "ingest_duration_seconds": None if r is None else r.ingest_duration_seconds,
            "freshness_seconds": None if r is None else r.freshness_seconds,
            "freshness_sla_seconds": self.freshness_sla_seconds,
            "source": None if r is None or r.source is None else safe_source(r.source),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverDecision:
    should_failover: bool
    reason: str
    triggered: tuple[str, ...]  # required dimensions with a trigger: these decide the failover
    optional_triggers: tuple[str, ...]  # planned, not required, with a trigger: reported only
    warnings: tuple[str, ...]  # every other dimension that is not ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "should_failover": self.should_failover,
            "reason": self.reason,
            "triggered_dimensions": list(self.triggered),
            "optional_triggers": list(self.optional_triggers),
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
    #: Notes on the results file itself (naive timestamps read as UTC); they change no status.
    results_notes: tuple[Note, ...] = ()
    #: The required dimensions whose outage was simulated (``rehearse=True``), else empty.
    simulated: tuple[str, ...] = ()

    def health_report(self) -> dict[str, Any]:
        counts = {h.value: sum(1 for d in self.health if d.status is h) for h in Health}
        return {
            "results_file": self.results_file,
            "vocabulary": self.vocabulary.to_dict(),
            "notes": [n.to_dict() for n in self.results_notes],
            "counts": counts,
            "dimensions": [d.to_dict() for d in self.health],
        }


def assess(settings: Settings, results: IngestResults, *, dimensions: Sequence[str] = (),
           rehearse: bool = False, probe_standby: bool = True) -> Assessment:
    """Health per dimension, then the decision: fail over when a required dimension has a trigger.

    ``rehearse``: simulate the outage of the required dimensions first (the ``drill`` command).
    ``probe_standby=False``: no server may be contacted (``readiness`` without ``--connectivity``), so a
    decided failover's standby is not probed: the fallback warns, as without a standby.
    """
    vocab, by_name = vocabulary(settings, results, dimensions)
    required = vocab.required
    simulated = required if rehearse else ()
    for name in simulated:
        prior = by_name.get(name)
        by_name[name] = DimensionResult(name=prior.name if prior else name, rows_written=0, symbols=(),
                                        source=prior.source if prior else None)
    planned = settings.plan.dimensions
    order = [*required, *(d for d in planned if d not in required), *(d for d in vocab.present
                                                                     if d not in required and d not in planned)]
    health = tuple(_health(name, required=name in required, planned=name in planned, r=by_name.get(name),
                           settings=settings, simulated=name in simulated)
                   for name in dict.fromkeys(order))
    decision = _decide(health, required)
    skip: tuple[Step, str] | None = None
    target = settings.failover.target
    if not decision.should_failover:
        skip = (Step.SKIPPED, "not needed: no failover decided")
    elif not settings.failover.run_fallback:
        skip = (Step.WARN, "fallback not rehearsed: TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK is false")
    elif target is None or not target.configured:
        skip = (Step.WARN, "no standby configured: set TIMESCALEDB_FAILOVER_URL or TIMESCALEDB_FAILOVER_HOST")
    elif not probe_standby:
        skip = (Step.WARN, "standby not probed: readiness contacts no server without --connectivity (add it,"
                           " or rehearse with `ingest-probe drill`)")
    return Assessment(results_file=results.path, vocabulary=vocab, health=health, decision=decision,
                      fallback_target=None if skip else target, fallback_skip=skip,
                      results_notes=results.notes, simulated=tuple(simulated))


def freshness_limit(settings: Settings, name: str) -> tuple[int, str]:
    """The dimension's freshness limit in seconds, and the key that sets it (or how to set it)."""
    f, overall = settings.failover, "TIMESCALE_FRESHNESS_SLA_SECONDS"
    own = f"TIMESCALE_FRESHNESS_SLA_{name.upper()}_SECONDS"
    if name not in f.freshness_sla_by_dimension:
        return f.freshness_sla_seconds, overall
    if operator_set(settings, own):
        source = own
    elif operator_set(settings, overall):
        source = overall
    else:
        source = f"default for {name}; set {own}"
    return f.freshness_sla_by_dimension[name], source


def _health(name: str, *, required: bool, planned: bool, r: DimensionResult | None, settings: Settings,
            simulated: bool) -> DimensionHealth:
    sla, sla_source = freshness_limit(settings, name)
    if r is None:  # required or planned, absent: a trigger, an error only when required
        return DimensionHealth(name=name, required=required, planned=planned, missing_symbols=(), result=None,
                               status=Health.ERROR if required else Health.WARN, freshness_sla_seconds=sla,
                               reasons=(f"{'required' if required else 'planned'} but absent from the ingest"
                                        " results",), triggers=("absent",))
    errors: list[str] = []
    warnings: list[str] = [SIMULATED] if simulated else []
    expected = settings.plan.symbols if name in SYMBOL_DIMENSIONS else ()  # macro and others: rows, freshness
    missing = tuple(s for s in expected if s not in r.symbols)
    if (required or planned) and r.rows_written == 0:
        (errors if expected else warnings).append("no rows written")
    elif r.rows_written < MIN_ROWS.get(name, 0):
        warnings.append(f"rows below the minimum ({r.rows_written} < {MIN_ROWS[name]})")
    if missing and len(missing) == len(expected):
        errors.append(f"all {plural(len(expected), 'expected symbol')} of TIMESCALE_SYMBOLS missing:"
                      f" {', '.join(missing)}")
    elif missing:
        warnings.append(f"missing {plural(len(missing), 'expected symbol')} of TIMESCALE_SYMBOLS:"
                        f" {', '.join(missing)}")
    if r.freshness_seconds is None:
        if (required or planned) and not simulated:
            warnings.append("freshness unknown: the results give no freshness_seconds")
    elif r.freshness_seconds > sla:
        warnings.append(f"stale: freshness {r.freshness_seconds:g} s is over the {sla} s limit ({sla_source})")
    status = Health.ERROR if errors else Health.WARN if warnings else Health.OK
    triggers: tuple[str, ...] = ()
    if required or planned:
        triggers = tuple(t for t, hit in (("zero rows", r.rows_written == 0), ("missing symbols", bool(missing)),
                                          ("status error", status is Health.ERROR)) if hit)
    reasons = (*warnings[:1], *errors, *warnings[1:]) if simulated else (*errors, *warnings)
    return DimensionHealth(name=name, required=required, planned=planned, status=status, reasons=reasons,
                           missing_symbols=missing, result=r, freshness_sla_seconds=sla, triggers=triggers,
                           simulated=simulated)


def _decide(health: Sequence[DimensionHealth], required: Sequence[str]) -> FailoverDecision:
    def why(dims: Sequence[DimensionHealth]) -> str:
        return "; ".join(f"{d.name}: {', '.join(d.reasons)}" for d in dims)

    triggered = [d for d in health if d.required and d.triggers]
    optional = [d for d in health if not d.required and d.triggers]
    warned = [d for d in health if d.status is not Health.OK and d not in triggered]
    also = f". Warnings only (no failover for these): {why(warned)}" if warned else ""
    if triggered:
        reason = f"fail over: {plural(len(triggered), 'required dimension')} failing: {why(triggered)}{also}"
    elif not required:
        reason = f"no failover: no required dimensions to judge{also}"
    else:
        reason = f"no failover: every required dimension passes ({', '.join(required)}){also}"
    return FailoverDecision(should_failover=bool(triggered), reason=reason,
                            triggered=tuple(d.name for d in triggered),
                            optional_triggers=tuple(d.name for d in optional),
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

    @property
    def simulated_outage(self) -> tuple[str, ...]:
        """The required dimensions whose outage the ``drill`` command simulated (empty for readiness)."""
        return () if self.assessment is None else self.assessment.simulated

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
            "simulated_outage": list(self.simulated_outage),
        }


def not_enabled(settings: Settings) -> str:
    """Why readiness does not judge a results file: the key is off (unset or set false)."""
    state = "false" if operator_set(settings, ENABLED_KEY) else "unset"
    return f"the failover drill is not enabled ({ENABLED_KEY} is {state})"


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
        name="health",  # FAIL exactly when failover is decided: a required dimension has a trigger
        status=Step.FAIL if decision.should_failover else Step.OK if all_ok else Step.WARN,
        summary=", ".join(f"{d.name} {d.status.value}" for d in a.health) or "no dimensions",
        metadata={"dimensions": len(a.health), "required": len(a.vocabulary.required),
                  "vocabulary_matches": a.vocabulary.matches, "vocabulary_notes": [n.code for n in notes]},
    )
    short = (f"fail over: {', '.join(decision.triggered)} failing" if decision.should_failover
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
    if a.simulated:
        reason = f"rehearsal (simulated outage of {', '.join(a.simulated)}): {reason}"
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
