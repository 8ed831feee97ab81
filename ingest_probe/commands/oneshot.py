"""``readiness`` and ``drill``: the failover drill (plus, for readiness, the connectors), one supervised run.

The drill's inputs are read and judged before the event loop starts (a bad results file is exit 3 and
nothing is contacted); then the connector probes (readiness with ``connectivity``) and, when the drill decides
a failover, the standby probe run concurrently under one ``TaskSupervisor`` (one seed, every deadline recorded
in ``run``). ``readiness`` judges the results as written; ``drill`` rehearses: it simulates the outage of the
required dimensions (as the replaced ``run_failover_drill``), so the standby is always the thing tested.
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


#: The replaced ``run_failover_drill``'s default scenario label (readiness: TIMESCALE_FAILOVER_DRILL_LABEL).
DRILL_SCENARIO = "timescale_failover"


def run_readiness(
    settings: Settings,
    *,
    ingest_results: Path | drill.IngestResults | None,
    dimensions: Sequence[str] = (),
    scenario: str | None = None,
    connectivity: bool = True,
    timeout: float = 5.0,
    jitter: float = 0.1,
    seed: int | None = None,
    now: dt.datetime | None = None,
    sections: Mapping[str, Section | None] | None = None,
    splay_s: float | None = None,
) -> Report:
    """The readiness report: the manifest, ``connectivity`` (unless False), ``failover_drill``; the exit code
    is the worst. The drill runs only with ``TIMESCALE_FAILOVER_DRILL`` on (else ``not_run``, saying why).

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
        snapshot = drill.not_run(f"{drill.not_enabled(settings)}; set it to true, or run `ingest-probe drill`",
                                 settings=settings, scenario=scenario, now=now)
    else:
        assessment = drill.assess(settings, results, dimensions=dimensions)
    return _run(settings, assessment, snapshot, connectivity=connectivity, scenario=scenario, timeout=timeout,
                jitter=jitter, seed=seed, now=now, sections=sections, splay_s=splay_s)


def run_drill(
    settings: Settings,
    *,
    ingest_results: Path | drill.IngestResults,
    dimensions: Sequence[str] = (),
    scenario: str | None = DRILL_SCENARIO,
    timeout: float = 5.0,
    jitter: float = 0.1,
    seed: int | None = None,
    now: dt.datetime | None = None,
    splay_s: float | None = None,
) -> Report:
    """The ``drill`` report: the manifest and a rehearsal (``assess(rehearse=True)``), the standby probed when
    the simulated outage decides a failover; no connector probe. Runs whatever ``TIMESCALE_FAILOVER_DRILL``
    says (an explicit request, as the replaced command)."""
    now = now or dt.datetime.now(dt.UTC)
    results = drill.load_ingest_results(ingest_results) if isinstance(ingest_results, Path) else ingest_results
    assessment = drill.assess(settings, results, dimensions=dimensions, rehearse=True)
    return _run(settings, assessment, None, connectivity=False, scenario=scenario, timeout=timeout,
                jitter=jitter, seed=seed, now=now, sections=None, splay_s=splay_s)


def _run(settings: Settings, assessment: drill.Assessment | None, snapshot: drill.DrillSnapshot | None, *,
         connectivity: bool, scenario: str | None, timeout: float, jitter: float, seed: int | None,
         now: dt.datetime, sections: Mapping[str, Section | None] | None, splay_s: float | None) -> Report:
    target = assessment.fallback_target if assessment is not None else None
    results, run, fallback = _probe(settings, target, connectors=connectivity, timeout=timeout, jitter=jitter,
                                    seed=seed)
    if run is not None and splay_s is not None:
        run["splay_s"] = splay_s
    if assessment is not None:
        snapshot = drill.conclude(assessment, settings, fallback=fallback, scenario=scenario, now=now)
    every = {**(sections or {}), "failover_drill": snapshot}
    return build_report(settings, results=results, run=run, sections=every, now=now)


def _probe(settings: Settings, target: TimescaleSettings | None, *, connectors: bool, timeout: float,
           jitter: float, seed: int | None
           ) -> tuple[list[ProbeResult] | None, dict[str, Any] | None, ProbeResult | None]:
    """One event-loop entry: the configured connectors (if asked), and the standby when the drill needs it."""
    from ingest_probe.engine.run import run_probes

    if not connectors and target is None:
        return None, None, None  # nothing to contact
    if target is not None and target.backend == "postgresql":
        with contextlib.suppress(ImportError):  # a missing driver is the probe's DriverError to report
            import asyncpg  # noqa: F401  (preloaded for the standby; the primary may not be PostgreSQL)
    extra = [fallback_probe(target)] if target is not None else []
    results, run = run_probes(settings, timeout=timeout, jitter=jitter, seed=seed, extra=extra,
                              connectors=connectors)
    count = len(results) - len(extra)
    return results[:count] if connectors else None, run, results[count] if extra else None
