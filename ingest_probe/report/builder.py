"""The report builder: settings, manifest and results in, one deterministic JSON-ready document out (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ingest_probe._version import __version__
from ingest_probe.errors import InternalError
from ingest_probe.report.manifest import build_manifest, timescale_target
from ingest_probe.results import ProbeResult, Status, overall_status
from ingest_probe.settings.service import PlanSettings, Settings

SCHEMA_VERSION = 1

REASON_NOT_INSTITUTIONAL = "Data backbone mode is not institutional"
REASON_NOT_TIER_1 = "Timescale ingest currently targets Tier-1 institutional runs"
REASON_NO_DIMENSIONS = "No ingest slices configured via extras or fallback symbols"


class Section(Protocol):
    """An optional report section computed elsewhere (topic provisioning, failover drill)."""

    @property
    def exit_code(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Report:
    """A built report: the JSON document, the overall connector status and the process exit code.

    ``internal_errors``: the unexpected exceptions behind ``internal`` results and sections (their
    tracebacks are for ``--debug``; the document only has their one-line messages).
    """

    document: Mapping[str, Any]
    status: Status | None
    exit_code: int
    internal_errors: tuple[BaseException, ...] = ()


def gate(plan: PlanSettings) -> tuple[bool, str | None]:
    """``should_run`` and its ``reason``, checked in the order operators expect."""
    if plan.mode != "institutional":
        return False, REASON_NOT_INSTITUTIONAL
    if plan.tier != "tier_1":
        return False, REASON_NOT_TIER_1
    if not plan.dimensions:
        return False, REASON_NO_DIMENSIONS
    return True, None


def build_report(
    settings: Settings,
    *,
    results: Sequence[ProbeResult] | None = None,
    run: Mapping[str, Any] | None = None,
    sections: Mapping[str, Section | None] | None = None,
    now: dt.datetime | None = None,
) -> Report:
    """Assemble the report. ``results`` is None for a manifest-only run; ``sections`` adds optional blocks
    (``kafka_topic_provisioning``, ``failover_drill``) whose exit codes count towards the run's."""
    should_run, reason = gate(settings.plan)
    generated_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    status = overall_status([r.status for r in results]) if results is not None else None
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "tool": {"name": "ingest-probe", "version": __version__},
        "status": None if status is None else status.value,
        "should_run": should_run,
        "reason": reason,
        "dimensions": list(settings.plan.dimensions),
        "schedule": _schedule(settings),
        "failover": _failover(settings),
        "configuration": _configuration(settings.plan),
        "manifest": [snapshot.to_dict() for snapshot in build_manifest(settings)],
        "connectivity": None if results is None else [r.to_dict() for r in results],
        "run": None if run is None else dict(run),
    }
    exit_code = 0 if status is None else status.exit_code
    internal = [r.exception for r in results or () if r.error_kind == InternalError.kind]
    if internal:
        exit_code = max(exit_code, InternalError.exit_code)  # UNKNOWN: a bug decided a result, not the server
    # Every report carries the optional sections' keys, null when not computed: stable keys for diffing.
    sections = {"kafka_topic_provisioning": None, "failover_drill": None, **(sections or {})}
    for key, section in sections.items():
        doc[key] = None if section is None else section.to_dict()
        if section is not None:
            exit_code = max(exit_code, section.exit_code)
            internal.append(getattr(section, "exception", None))  # only topic provisioning has one
    errors = tuple(exc for exc in internal if exc is not None)
    return Report(document=doc, status=status, exit_code=exit_code, internal_errors=errors)


def _schedule(settings: Settings) -> dict[str, Any] | None:
    s = settings.schedule
    if not s.enabled:
        return None
    return {
        "interval_seconds": s.interval_seconds,
        "jitter_seconds": s.jitter_seconds,
        "max_failures": s.max_failures,
    }


def _failover(settings: Settings) -> dict[str, Any] | None:
    f = settings.failover
    if not f.enabled:
        return None
    return {
        "dimensions": list(f.dimensions),
        "label": f.label,
        "run_fallback": f.run_fallback,
        "freshness_sla_seconds": f.freshness_sla_seconds,
        "target": None if f.target is None or not f.target.configured else timescale_target(f.target),
    }


def _configuration(plan: PlanSettings) -> dict[str, Any]:
    return {
        "mode": plan.mode,
        "mode_inferred": plan.mode_inferred,
        "tier": plan.tier,
        "symbols": list(plan.symbols),
        "lookback_days": plan.lookback_days,
        "intraday": {
            "enabled": plan.intraday_enabled,
            "interval": plan.intraday_interval,
            "lookback_days": plan.intraday_lookback_days,
        },
        "macro": plan.macro_enabled,
    }
