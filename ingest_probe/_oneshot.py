"""One event-loop entry for a command-line run: every configured probe (plus extras) under one supervisor."""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ingest_probe import errors

if TYPE_CHECKING:
    from anyio import CancelScope

    from ingest_probe.probes import Probe
    from ingest_probe.results import ProbeResult
    from ingest_probe.settings import Settings


def run_probes(
    settings: Settings,
    *,
    timeout: float,
    jitter: float,
    seed: int | None,
    extra: Sequence[Probe] = (),
) -> tuple[list[ProbeResult], dict[str, Any]]:
    """Results in manifest order (then ``extra``), and the report's ``run`` block with ``duration_ms``.

    Client libraries are imported before the loop starts: imports inside it would be charged to the first
    probe's deadline and stall the concurrent ones.
    """
    import anyio

    from ingest_probe.probes import build_probes, preload_drivers
    from ingest_probe.supervisor import TaskSupervisor

    preload_drivers(settings)

    async def main() -> tuple[list[ProbeResult], dict[str, Any]]:
        supervisor = TaskSupervisor(timeout=timeout, jitter=jitter, seed=seed)
        started = time.monotonic()
        results: list[ProbeResult] | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_sigterm, tg.cancel_scope)
            results = await supervisor.run([*build_probes(settings), *extra])
            tg.cancel_scope.cancel()
        if results is None:  # SIGTERM cancelled the run; the supervisor closed every client on the way out
            raise errors.Terminated("terminated by SIGTERM; every connection was closed")
        run = supervisor.run_block()
        run["duration_ms"] = round((time.monotonic() - started) * 1000.0, 3)
        return results, run

    return anyio.run(main)


async def _cancel_on_sigterm(scope: CancelScope) -> None:
    """SIGTERM (cron timeouts, Kubernetes) cancels the run like SIGINT does, so clients still close."""
    import anyio

    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
