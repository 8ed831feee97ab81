"""The report builder (pure): settings, targets, results and sections in, one typed ``Report`` out."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ingest_probe._version import __version__
from ingest_probe.connectors import registry
from ingest_probe.connectors.timescale import connection_facts
from ingest_probe.defaults import EXIT_OK
from ingest_probe.errors import InternalError
from ingest_probe.report.model import ManifestEntry, Report
from ingest_probe.report.policy import results_exit_code
from ingest_probe.results import overall_status
from ingest_probe.settings.targets import Target, classic_targets

if TYPE_CHECKING:
    from ingest_probe.engine.supervisor import RunInfo
    from ingest_probe.readiness.drill import DrillSnapshot
    from ingest_probe.results import ProbeResult
    from ingest_probe.settings.plan import PlanSettings
    from ingest_probe.settings.service import Settings
    from ingest_probe.topics.plan import ProvisioningSection

REASON_NOT_INSTITUTIONAL = "Data backbone mode is not institutional"
REASON_NOT_TIER_1 = "Timescale ingest currently targets Tier-1 institutional runs"
REASON_NO_DIMENSIONS = "No ingest slices configured via extras or fallback symbols"


def gate(plan: PlanSettings) -> tuple[bool, str | None]:
    """``should_run`` and its ``reason``, checked in the order operators expect."""
    if plan.mode != "institutional":
        return False, REASON_NOT_INSTITUTIONAL
    if plan.tier != "tier_1":
        return False, REASON_NOT_TIER_1
    if not plan.dimensions:
        return False, REASON_NO_DIMENSIONS
    return True, None


def build_manifest(targets: Sequence[Target]) -> tuple[ManifestEntry, ...]:
    """One entry per target, in target order, each described by its kind (allow-listed parts only)."""
    return tuple(ManifestEntry(name=t.name, kind=t.kind, labels=dict(t.labels), configured=t.configured,
                               metadata=registry.get_connector(t.kind).manifest(t.settings)) for t in targets)


def build_report(
    settings: Settings,
    *,
    targets: Sequence[Target] | None = None,
    results: Sequence[ProbeResult] | None = None,
    run: RunInfo | None = None,
    topics: ProvisioningSection | None = None,
    drill: DrillSnapshot | None = None,
    now: dt.datetime | None = None,
    probed_from: str | None = None,
) -> Report:
    """Assemble the report. ``targets`` default to the service's classic ones; ``results`` is None for a
    manifest-only run; ``topics`` and ``drill`` are optional sections whose exit codes count towards the run's.
    ``probed_from`` defaults to this machine's host name."""
    should_run, reason = gate(settings.plan)
    status = overall_status([r.status for r in results]) if results is not None else None
    exit_code = EXIT_OK if results is None else results_exit_code(results)
    internal = [r.exception for r in results or () if r.error_kind == InternalError.kind]
    for section in (topics, drill):
        if section is not None:
            exit_code = max(exit_code, section.exit_code)
    if topics is not None:
        internal.append(topics.exception)
    standby = settings.failover.target
    return Report(
        generated_at=(now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC),
        version=__version__,
        plan=settings.plan,
        should_run=should_run,
        reason=reason,
        schedule=settings.schedule if settings.schedule.enabled else None,
        failover=settings.failover if settings.failover.enabled else None,
        standby=None if standby is None or not standby.configured else connection_facts(standby),
        manifest=build_manifest(classic_targets(settings) if targets is None else targets),
        results=None if results is None else tuple(results),
        run=run,
        topics=topics,
        drill=drill,
        status=status,
        exit_code=exit_code,
        internal_errors=tuple(exc for exc in internal if exc is not None),
        probed_from=probed_from if probed_from is not None else os.uname().nodename,  # gethostname(), no socket import
        config_sources=settings.sources,
    )
