"""One event-loop entry for a command-line run: every configured probe (plus extras) under one supervisor."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Probe
    from ingest_probe.results import ProbeResult
    from ingest_probe.settings.service import Settings


def run_probes(
    settings: Settings,
    *,
    timeout: float,
    jitter: float,
    seed: int | None,
    extra: Sequence[Probe] = (),
    connectors: bool = True,
) -> tuple[list[ProbeResult], dict[str, Any]]:
    """Results in manifest order (then ``extra``), and the report's ``run`` block with ``duration_ms``;
    ``connectors=False``: only the ``extra`` probes.

    Client libraries are imported before the loop starts: imports inside it would be charged to the first
    probe's deadline and stall the concurrent ones.
    """
    from ingest_probe.commands.loop import run as run_command
    from ingest_probe.connectors.base import build_probes, preload_drivers
    from ingest_probe.engine.supervisor import TaskSupervisor

    if connectors:
        preload_drivers(settings)

    async def main() -> tuple[list[ProbeResult], dict[str, Any]]:
        supervisor = TaskSupervisor(timeout=timeout, jitter=jitter, seed=seed)
        started = time.monotonic()
        results = await supervisor.run([*(build_probes(settings) if connectors else ()), *extra])
        run = supervisor.run_block()
        run["duration_ms"] = round((time.monotonic() - started) * 1000.0, 3)
        return results, run

    return run_command(main)
