"""The one-shot run of N targets: their client libraries loaded before a loop starts, then one supervised run."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ingest_probe.connectors import registry
from ingest_probe.engine.supervisor import Job, OnResult, RunInfo, TaskSupervisor

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Probe
    from ingest_probe.results import ProbeResult
    from ingest_probe.settings.targets import Target


def preload_drivers(targets: Iterable[Target]) -> None:
    """Import the client libraries the configured targets' probes use, before an event loop starts.

    Probes import their library lazily, but ~0.2 s of imports inside a running loop would be charged to
    the first probe's phases and stall the concurrent ones. A missing library is left for the probe to
    report as a ``DriverError``.
    """
    modules: dict[str, None] = {}
    for target in targets:
        if target.configured:
            modules.update(dict.fromkeys(registry.get_connector(target.kind).drivers(target.settings)))
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


def jobs(targets: Sequence[Target], probes: Mapping[str, Probe] | None = None) -> list[Job]:
    """Each target with its probe: ``probes[name]`` if given, else a fresh one from its connector (none for a
    target that is not configured)."""
    given = probes or {}
    out: list[Job] = []
    for target in targets:
        probe = given.get(target.name)
        if probe is None and target.configured:
            probe = registry.get_connector(target.kind).probe(target.settings)
        out.append((target, probe))
    return out


async def run_targets(targets: Sequence[Target], supervisor: TaskSupervisor, on_result: OnResult | None = None,
                      ) -> tuple[list[ProbeResult], RunInfo]:
    """Probe every target once under ``supervisor`` (fresh clients, closed at the end): results in target
    order, and the run block; each result also goes to ``on_result`` as soon as it is known."""
    started = time.monotonic()
    results = await supervisor.run(jobs(targets), on_result=on_result)
    return results, supervisor.run_info(targets, duration_ms=round((time.monotonic() - started) * 1000.0, 3))
