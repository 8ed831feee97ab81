"""Probe outcomes as data: statuses, per-target results and the recorder a probe fills in while it runs."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ingest_probe.defaults import EXIT_OK, STATUS_EXIT_CODES


class Status(StrEnum):
    """Health of one target, or of a whole run (``unknown`` only for a run with nothing configured)."""

    OK = "ok"
    DEGRADED = "degraded"
    STARTING = "starting"
    DOWN = "down"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        """Nagios meaning: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (nothing configured to probe)."""
        return STATUS_EXIT_CODES.get(self.value, EXIT_OK)


# Worst first: an overall status is the first of these that any configured connector has.
_SEVERITY = (Status.DOWN, Status.STARTING, Status.DEGRADED, Status.OK)


def overall_status(statuses: Iterator[Status] | list[Status] | tuple[Status, ...]) -> Status:
    """Worst configured status (down > starting > degraded > ok); ``unknown`` when all were skipped."""
    present = {s for s in statuses if s is not Status.SKIPPED}
    for status in _SEVERITY:
        if status in present:
            return status
    return Status.UNKNOWN


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """What one probe of one target found. ``name`` is the target's (unique in a run), ``kind`` its
    connector kind, ``labels`` its labels."""

    name: str
    configured: bool
    status: Status
    latency_ms: float | None = None
    phases: Mapping[str, float | None] = field(default_factory=dict)
    endpoint: str | None = None
    error: str | None = None
    error_kind: str | None = None
    retryable: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)
    deadline_s: float | None = None
    #: The unexpected exception behind an ``internal`` result (its traceback is for ``--debug``); never
    #: part of the report.
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    kind: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Unix time the peer's TLS certificate expires (``details.tls_cert_not_after``), None without TLS.
    tls_not_after: float | None = None

    @property
    def healthy(self) -> bool | None:
        """True for ok/degraded, False for starting/down, None when the probe was skipped."""
        if self.status is Status.SKIPPED:
            return None
        return self.status in (Status.OK, Status.DEGRADED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": dict(self.labels),
            "configured": self.configured,
            "healthy": self.healthy,
            "status": self.status.value,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "phases": {k: None if v is None else round(v, 3) for k, v in self.phases.items()},
            "endpoint": self.endpoint,
            "error": self.error,
            "error_kind": self.error_kind,
            "retryable": self.retryable,
            "deadline_s": None if self.deadline_s is None else round(self.deadline_s, 3),
            "details": dict(self.details),
        }


class Recorder:
    """Filled in by a probe as it goes, so a probe cut short by its deadline still reports how far it got.

    Probes time each step with ``phase()``, add facts to ``details`` and may ``degrade()`` a result they
    otherwise consider reachable. The supervisor turns the recorder into a ``ProbeResult``.
    """

    __slots__ = ("current_phase", "degraded", "details", "endpoint", "phases", "tls_not_after")

    def __init__(self, *, endpoint: str | None = None, phase_names: tuple[str, ...] = ()) -> None:
        self.endpoint = endpoint
        self.phases: dict[str, float | None] = dict.fromkeys(phase_names)
        self.details: dict[str, Any] = {}
        self.current_phase: str | None = None
        #: (error_kind, message) when the connector answered but is not fully ready.
        self.degraded: tuple[str, str] | None = None
        #: Unix time the peer's TLS certificate expires (the earliest, over the probe's connections).
        self.tls_not_after: float | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time one step in milliseconds; a step that raises or is cancelled stays ``None``."""
        self.current_phase = name
        self.phases.setdefault(name, None)
        start = time.monotonic()
        yield
        self.phases[name] = (time.monotonic() - start) * 1000.0
        self.current_phase = None

    def degrade(self, kind: str, message: str) -> None:
        """Mark the connector reachable but not fully ready; the first reason given wins the headline."""
        if self.degraded is None:
            self.degraded = (kind, message)
