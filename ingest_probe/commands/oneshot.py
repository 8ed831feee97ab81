"""``ingest-probe readiness``: connectivity probes plus the failover drill, in one supervised run, one report.

The drill's inputs are read and judged before the event loop starts (a bad results file is exit 3 and
nothing is probed); then the connector probes and, when the drill calls for it, the standby probe run
concurrently under one ``TaskSupervisor`` (one seed, every deadline recorded in ``run``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest_probe.readiness import drill
from ingest_probe.report.builder import Report, Section, build_report
from ingest_probe.results import ProbeResult
from ingest_probe.settings.service import Settings, TimescaleSettings

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Probe

FALLBACK_PROBE = "timescale_failover"


def fallback_probe(target: TimescaleSettings) -> Probe:
    """The standby is checked by the Timescale probe itself, under its own name in the run block."""
    from ingest_probe.connectors.timescale.probe import TimescaleProbe

    probe = TimescaleProbe(target)
    probe.name = FALLBACK_PROBE  # an instance attribute: results and task names say which database it was
    return probe


def run_readiness(
    settings: Settings,
    *,
    ingest_results: Path | drill.IngestResults | None,
    dimensions: Sequence[str] = (),
    scenario: str | None = None,
    timeout: float = 5.0,
    jitter: float = 0.1,
    seed: int | None = None,
    now: dt.datetime | None = None,
    sections: Mapping[str, Section | None] | None = None,
    splay_s: float | None = None,
) -> Report:
    """The readiness report: ``report --connectivity`` plus ``failover_drill``; exit code is the worst.

    ``sections`` adds other report sections computed by the caller (e.g. ``kafka_topic_provisioning``).
    """
    now = now or dt.datetime.now(dt.UTC)
    results = drill.load_ingest_results(ingest_results) if isinstance(ingest_results, Path) else ingest_results
    if dimensions:
        drill.required_dimensions(settings, dimensions)  # validate the flag even when the drill does not run
    assessment = None
    snapshot: drill.DrillSnapshot | None = None
    if results is None:
        snapshot = drill.not_run(
            "no --ingest-results file given; the drill needs the ingest results (dimension -> rows_written,"
            " symbols, start_ts, end_ts, ingest_duration_seconds, freshness_seconds, source) to decide",
            settings=settings, scenario=scenario, now=now,
        )
    elif not settings.failover.enabled:
        snapshot = drill.not_run(
            "the failover drill is disabled (TIMESCALE_FAILOVER_DRILL is false); set it to true to run it",
            settings=settings, scenario=scenario, now=now,
        )
    else:
        assessment = drill.assess(settings, results, dimensions=dimensions)
    target = assessment.fallback_target if assessment is not None else None
    connectivity, run, fallback = _probe(settings, target, timeout=timeout, jitter=jitter, seed=seed)
    if splay_s is not None:
        run["splay_s"] = splay_s
    if assessment is not None:
        snapshot = drill.conclude(assessment, settings, fallback=fallback, scenario=scenario, now=now)
    every = {**(sections or {}), "failover_drill": snapshot}
    return build_report(settings, results=connectivity, run=run, sections=every, now=now)


def _probe(settings: Settings, target: TimescaleSettings | None, *, timeout: float, jitter: float,
           seed: int | None) -> tuple[list[ProbeResult], dict[str, Any], ProbeResult | None]:
    """One event-loop entry: every configured connector, and the standby when the drill asks for it."""
    from ingest_probe.engine.run import run_probes

    if target is not None and target.backend == "postgresql":
        with contextlib.suppress(ImportError):  # a missing driver is the probe's DriverError to report
            import asyncpg  # noqa: F401  (preloaded for the standby; the primary may not be PostgreSQL)
    extra = [fallback_probe(target)] if target is not None else []
    results, run = run_probes(settings, timeout=timeout, jitter=jitter, seed=seed, extra=extra)
    connectors = len(results) - len(extra)
    return results[:connectors], run, results[connectors] if extra else None
