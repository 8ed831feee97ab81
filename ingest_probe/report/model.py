"""The typed report: frozen objects that renderers, the CLI's problem lines and the watch loop walk.

``Report.to_dict()`` gives the JSON document (schema_version 1); only the JSON renderer (and tests) use it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

if TYPE_CHECKING:
    from ingest_probe.engine.supervisor import RunInfo
    from ingest_probe.readiness.drill import DrillSnapshot
    from ingest_probe.results import ProbeResult, Status
    from ingest_probe.settings.plan import FailoverSettings, PlanSettings, ScheduleSettings
    from ingest_probe.topics.plan import ProvisioningSection

TOOL = "ingest-probe"


class ManifestEntry(NamedTuple):
    """One target as configured: ``supervised`` means a ``--connectivity`` run probes it. ``metadata`` is the
    kind's own description, from allow-listed parts only; its ``summary`` is one line. (A named tuple, not a
    dataclass: it is built on the start-up path of every manifest-only report.)"""

    name: str
    kind: str
    labels: Mapping[str, str]
    configured: bool
    metadata: Mapping[str, Any]

    @property
    def supervised(self) -> bool:
        return self.configured

    @property
    def summary(self) -> str | None:
        summary = self.metadata.get("summary")
        return None if summary is None else str(summary)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "labels": dict(self.labels), "configured": self.configured,
                "supervised": self.supervised, "metadata": dict(self.metadata)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """A built report: the service's plan and gate, the manifest, the results, the run and the sections.

    ``status`` is the worst configured result (None for a manifest-only report); ``exit_code`` the worst of
    the results and sections. ``internal_errors``: the unexpected exceptions behind ``internal`` results
    and sections (their tracebacks are for ``--debug``; the document only has their one-line messages).
    """

    schema_version: ClassVar[int] = 1

    generated_at: dt.datetime
    version: str
    plan: PlanSettings
    should_run: bool
    reason: str | None
    schedule: ScheduleSettings | None
    failover: FailoverSettings | None
    #: The failover standby as the manifest shows a Timescale target's connection (redacted), if configured.
    standby: Mapping[str, Any] | None
    manifest: tuple[ManifestEntry, ...]
    results: tuple[ProbeResult, ...] | None
    run: RunInfo | None
    topics: ProvisioningSection | None
    drill: DrillSnapshot | None
    status: Status | None
    exit_code: int
    internal_errors: tuple[BaseException, ...] = field(default=(), compare=False)
    #: The host name of the machine the report was made on (where the probes ran from).
    probed_from: str | None = None
    #: The configuration sources read, lowest precedence first: file names as given, ``environment``,
    #: ``--extra``; never their contents.
    config_sources: tuple[str, ...] = ()

    @property
    def timestamp(self) -> str:
        """``generated_at`` as the document writes it: UTC, seconds, ``Z``."""
        return self.generated_at.isoformat(timespec="seconds").replace("+00:00", "Z")

    def failover_block(self) -> dict[str, Any] | None:
        """The drill's configuration, when the drill is enabled."""
        f = self.failover
        if f is None:
            return None
        return {"dimensions": list(f.dimensions), "label": f.label, "run_fallback": f.run_fallback,
                "freshness_sla_seconds": f.freshness_sla_seconds,
                "target": None if self.standby is None else dict(self.standby)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: every key always present (null when not computed), stable for diffing."""
        return {
            "schema_version": self.schema_version,
            "generated_at": self.timestamp,
            "tool": {"name": TOOL, "version": self.version},
            "probed_from": self.probed_from,
            "config_sources": list(self.config_sources),
            "status": None if self.status is None else self.status.value,
            "should_run": self.should_run,
            "reason": self.reason,
            "dimensions": list(self.plan.dimensions),
            "schedule": None if self.schedule is None else self.schedule.to_dict(),
            "failover": self.failover_block(),
            "configuration": self.plan.to_dict(),
            "manifest": [m.to_dict() for m in self.manifest],
            "connectivity": None if self.results is None else [r.to_dict() for r in self.results],
            "run": None if self.run is None else self.run.to_dict(),
            "kafka_topic_provisioning": None if self.topics is None else self.topics.to_dict(),
            "failover_drill": None if self.drill is None else self.drill.to_dict(),
        }
