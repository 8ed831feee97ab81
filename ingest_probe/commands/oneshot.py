"""One event-loop entry per one-shot command: probe targets once (``report``, ``readiness``, ``drill``) or
provision topics.

Everything that can fail without a network is done before the loop starts: settings, a bad drill results
file (exit 3, nothing contacted), the client-library imports. ``readiness`` contacts servers only with
``connectivity``: the connectors and, when the drill decides a failover, the failover standby as one more
target (``timescale_failover``, label role=standby) under the same supervisor (one seed, every deadline in
``run``); the standby's result goes to the drill, not to ``connectivity``. ``readiness`` judges the results as written;
``drill`` rehearses: it simulates the outage of the required dimensions (as the replaced
``run_failover_drill``), so the standby is always the thing tested, and probes no connector.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ingest_probe.defaults import CERT_WARN_DAYS, CONCURRENCY, JITTER, TIMEOUT
from ingest_probe.errors import ConfigError
from ingest_probe.report.builder import build_report
from ingest_probe.settings.targets import STANDBY, Target, classic_targets, standby_target

if TYPE_CHECKING:
    from ingest_probe.connectors.kafka.settings import KafkaSettings
    from ingest_probe.engine.supervisor import OnResult, RunInfo
    from ingest_probe.readiness.drill import Assessment, DrillSnapshot, IngestResults
    from ingest_probe.report.model import Report
    from ingest_probe.results import ProbeResult
    from ingest_probe.settings.service import Settings
    from ingest_probe.topics.plan import ProvisioningSection


def probe_once(
    targets: Sequence[Target],
    *,
    timeout: float = TIMEOUT,
    jitter: float = JITTER,
    seed: int | None = None,
    concurrency: int = CONCURRENCY,
    cert_warn_days: float = CERT_WARN_DAYS,
    on_result: OnResult | None = None,
) -> tuple[list[ProbeResult], RunInfo]:
    """Probe ``targets`` once in one event loop (SIGINT/SIGTERM cancel it; every client closes); each result
    also goes to ``on_result`` as soon as it is known.

    The engine (anyio, the probes' modules) is imported here: a manifest-only run never loads it.
    """
    from ingest_probe.commands.loop import run as run_loop
    from ingest_probe.engine.run import preload_drivers, run_targets
    from ingest_probe.engine.supervisor import TaskSupervisor

    supervisor = TaskSupervisor(timeout=timeout, jitter=jitter, seed=seed, concurrency=concurrency,
                                cert_warn_days=cert_warn_days)
    preload_drivers(targets)  # before the loop: imports inside it would be charged to the first deadlines
    return run_loop(functools.partial(run_targets, targets, supervisor, on_result))


def run_report(
    settings: Settings,
    *,
    connectivity: bool,
    timeout: float = TIMEOUT,
    jitter: float = JITTER,
    seed: int | None = None,
    topics: ProvisioningSection | None = None,
    splay_s: float | None = None,
    cert_warn_days: float = CERT_WARN_DAYS,
    on_result: OnResult | None = None,
    targets: Sequence[Target] | None = None,
    concurrency: int = CONCURRENCY,
) -> Report:
    """``report``: the manifest; with ``connectivity``, every target (default: the classic ones) probed once."""
    targets = classic_targets(settings) if targets is None else targets
    if not connectivity:
        return build_report(settings, targets=targets, topics=topics)
    results, run = probe_once(targets, timeout=timeout, jitter=jitter, seed=seed, cert_warn_days=cert_warn_days,
                              on_result=on_result, concurrency=concurrency)
    return build_report(settings, targets=targets, results=results, run=_with_splay(run, splay_s), topics=topics)


#: The replaced ``run_failover_drill``'s default scenario label (readiness: TIMESCALE_FAILOVER_DRILL_LABEL).
DRILL_SCENARIO = "timescale_failover"


def run_readiness(
    settings: Settings,
    *,
    ingest_results: Path | IngestResults | None,
    dimensions: Sequence[str] = (),
    scenario: str | None = None,
    connectivity: bool = True,
    timeout: float = TIMEOUT,
    jitter: float = JITTER,
    seed: int | None = None,
    now: dt.datetime | None = None,
    topics: ProvisioningSection | None = None,
    splay_s: float | None = None,
    cert_warn_days: float = CERT_WARN_DAYS,
    on_result: OnResult | None = None,
    targets: Sequence[Target] | None = None,
    concurrency: int = CONCURRENCY,
) -> Report:
    """The readiness report: the manifest, ``connectivity`` (unless False) of ``targets`` (default: the classic
    ones), ``failover_drill``; the exit code is the worst. The drill runs only with
    ``TIMESCALE_FAILOVER_DRILL`` on (else ``not_run``, saying why); it probes the standby of a decided failover
    only with ``connectivity`` (without it nothing is contacted and the fallback warns)."""
    from ingest_probe.readiness import drill

    now = now or dt.datetime.now(dt.UTC)
    results = drill.load_ingest_results(ingest_results) if isinstance(ingest_results, Path) else ingest_results
    if dimensions:
        drill.required_dimensions(settings, dimensions)  # validate the flag even when the drill does not run
    assessment = None
    snapshot: DrillSnapshot | None = None
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
        assessment = drill.assess(settings, results, dimensions=dimensions, probe_standby=connectivity)
    return _run(settings, assessment, snapshot, connectivity=connectivity, scenario=scenario, timeout=timeout,
                jitter=jitter, seed=seed, now=now, topics=topics, splay_s=splay_s, cert_warn_days=cert_warn_days,
                on_result=on_result, targets=targets, concurrency=concurrency)


def run_drill(
    settings: Settings,
    *,
    ingest_results: Path | IngestResults,
    dimensions: Sequence[str] = (),
    scenario: str | None = DRILL_SCENARIO,
    timeout: float = TIMEOUT,
    jitter: float = JITTER,
    seed: int | None = None,
    now: dt.datetime | None = None,
    splay_s: float | None = None,
) -> Report:
    """The ``drill`` report: the manifest and a rehearsal (``assess(rehearse=True)``), the standby probed when
    the simulated outage decides a failover; no connector probe. Runs whatever ``TIMESCALE_FAILOVER_DRILL``
    says (an explicit request, as the replaced command)."""
    from ingest_probe.readiness import drill

    now = now or dt.datetime.now(dt.UTC)
    results = drill.load_ingest_results(ingest_results) if isinstance(ingest_results, Path) else ingest_results
    assessment = drill.assess(settings, results, dimensions=dimensions, rehearse=True)
    return _run(settings, assessment, None, connectivity=False, scenario=scenario, timeout=timeout,
                jitter=jitter, seed=seed, now=now, topics=None, splay_s=splay_s)


def _run(settings: Settings, assessment: Assessment | None, snapshot: DrillSnapshot | None, *,
         connectivity: bool, scenario: str | None, timeout: float, jitter: float, seed: int | None,
         now: dt.datetime, topics: ProvisioningSection | None, splay_s: float | None,
         cert_warn_days: float = CERT_WARN_DAYS, on_result: OnResult | None = None,
         targets: Sequence[Target] | None = None, concurrency: int = CONCURRENCY) -> Report:
    """Probe ``targets`` (default: the classic ones; with ``connectivity``) and the standby when the drill
    needs it, in one run; then conclude the drill. Nothing to contact: no event loop, no ``run`` block."""
    from ingest_probe.readiness import drill

    targets = classic_targets(settings) if targets is None else targets
    standby = standby_target(settings) if assessment is not None and assessment.fallback_target else None
    probing = [*(targets if connectivity else ()), *([standby] if standby else [])]
    probed: list[ProbeResult] = []
    run: RunInfo | None = None
    if probing:
        probed, run = probe_once(probing, timeout=timeout, jitter=jitter, seed=seed, cert_warn_days=cert_warn_days,
                                 on_result=on_result, concurrency=concurrency)
        run = _with_splay(run, splay_s)
    if assessment is not None:
        fallback = next((r for r in probed if r.name == STANDBY), None)
        snapshot = drill.conclude(assessment, settings, fallback=fallback, scenario=scenario, now=now)
    connected = [r for r in probed if r.name != STANDBY] if connectivity else None
    return build_report(settings, targets=targets, results=connected, run=run, topics=topics, drill=snapshot,
                        now=now)


def provision_topics(kafka: KafkaSettings, *, dry_run: bool, fix_drift: bool = False,
                     validate_on_broker: bool = False, timeout: float) -> ProvisioningSection:
    """Plan (``dry_run``) or apply the declared topics in one event loop; ``timeout`` is the deadline of the
    whole run (connect, read, create, fix, re-read), plus a bounded close of the admin client."""
    if not kafka.configured or not kafka.bootstrap_servers:
        raise ConfigError("--ensure-topics and `topics` need Kafka bootstrap servers: set KAFKA_BROKERS"
                          " (or KAFKA_BOOTSTRAP_SERVERS / KAFKA_URL)")
    from ingest_probe.commands.loop import run as run_loop

    # Imports aiokafka (~150 ms): here, before the loop starts, so nothing in the loop blocks on it.
    from ingest_probe.topics.admin import provision

    return run_loop(functools.partial(provision, kafka, dry_run=dry_run, fix_drift=fix_drift,
                                      validate_on_broker=validate_on_broker, timeout=timeout))


def _with_splay(run: RunInfo, splay_s: float | None) -> RunInfo:
    return run if splay_s is None else replace(run, splay_s=splay_s)
