"""Prober: the embeddable, long-lived check of every connector, with warm clients and single-flight checks.

::

    async with Prober(settings) as prober:
        results = await prober.check()      # list[ProbeResult], manifest order
        report = await prober.report()      # the same Report the CLI renders

Design (structured concurrency, as in trio's nurseries):

* ``__aenter__`` imports the configured connectors' client libraries in a worker thread (never on the
  caller's loop), builds one set of probes and opens a task group owned by the prober. The probes keep one
  warm client each between checks and reconnect after a failure (the ``Probe`` protocol).
* A check runs in a task of that task group, through ``TaskSupervisor.run(probes, close=False)``; every
  caller of ``check()`` only *waits* for it. So concurrent ``check()`` calls share one in-flight check
  (single-flight: never more than one connection per connector), and a caller that is cancelled does not
  orphan the check other callers are waiting for — the check still ends within its deadlines.
* ``__aexit__`` cancels a check still in flight and closes every probe's client, concurrently, bounded
  and shielded from cancellation — also when the caller leaves because it was itself cancelled.

Whatever a probe raises is that connector's result (a bug: status ``down``, kind ``internal``, the exception
in ``ProbeResult.exception``), so a check always returns every result. A failure of the check machinery
itself (not of a probe) is raised to every caller waiting for that check; if every such caller had already
given up, it is raised from ``__aexit__`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe.connectors._net import CLOSE_BUDGET, bounded_close
from ingest_probe.engine.supervisor import TaskSupervisor
from ingest_probe.report.builder import Report, Section, build_report

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ingest_probe.connectors.base import Probe
    from ingest_probe.results import ProbeResult
    from ingest_probe.settings.service import Settings


class _Flight:
    """One in-flight check and its outcome, shared by everyone waiting for it."""

    __slots__ = ("done", "error", "results", "run")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.results: list[ProbeResult] | None = None
        self.run: dict[str, Any] | None = None
        self.error: Exception | None = None


class Prober:
    """Checks every configured connector on demand, keeping one warm client per connector.

    ``timeout``/``jitter``/``seed`` mean what they mean for ``TaskSupervisor`` (and ``report
    --connectivity``); one supervisor serves every check, so a seed reproduces the whole sequence of
    deadlines. ``probes`` replaces the three built from ``settings`` (tests, custom connectors).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float = 5.0,
        jitter: float = 0.1,
        seed: int | None = None,
        probes: Sequence[Probe] | None = None,
        close_budget: float = CLOSE_BUDGET,
    ) -> None:
        self.settings = settings
        self.close_budget = close_budget
        # Built now so bad arguments fail at construction, outside any event loop.
        self._supervisor = TaskSupervisor(
            timeout=timeout, jitter=jitter, seed=seed, namespace="ingest-probe", close_budget=close_budget
        )
        self._given = None if probes is None else tuple(probes)
        self._probes: tuple[Probe, ...] = ()
        self._tg: TaskGroup | None = None
        self._closed = False
        self._flight: _Flight | None = None
        self._undelivered: Exception | None = None
        self._checks = 0
        self._last_run: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Prober:
        if self._tg is not None or self._closed:
            raise RuntimeError("a Prober can be entered only once; create a new one")
        # Import the client libraries in a worker thread: ~0.15 s of imports on the caller's loop would stall
        # its other tasks and be charged to the first check's phases.
        from ingest_probe.connectors.base import build_probes, preload_drivers  # the probe modules, not the clients

        await anyio.to_thread.run_sync(preload_drivers, self.settings)
        if self._given is not None:
            self._probes = self._given
        else:
            self._probes = tuple(build_probes(self.settings))
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        if tg is None or self._closed:
            return None
        self._closed = True
        tg.cancel_scope.cancel()  # a check still in flight ends now; its waiters get ClosedResourceError
        try:
            # Only the prober's own task is awaited here. The caller's exception is deliberately not handed
            # to the task group, which would re-raise it wrapped in an ExceptionGroup; returning None lets
            # it propagate unchanged.
            await tg.__aexit__(None, None, None)
        finally:
            await self._close_probes()
        if exc_type is None and self._undelivered is not None:
            error, self._undelivered = self._undelivered, None
            raise error
        return None

    async def _close_probes(self) -> None:
        """Close every client concurrently; each gets ``close_budget`` s, shielded from cancellation (the
        owner's shield: probes close within the time they are given)."""
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for probe in self._probes:
                    name = f"ingest-probe-close-{probe.name}"
                    tg.start_soon(_close_one, probe, self.close_budget, name=name)

    # ---------------------------------------------------------------------------------------- checks

    @property
    def probes(self) -> tuple[Probe, ...]:
        """The probes this prober owns (empty before ``__aenter__``)."""
        return self._probes

    @property
    def seed(self) -> int:
        """The seed of the deadline jitter (pass it back as ``seed=`` to reproduce the deadlines)."""
        return self._supervisor.seed

    @property
    def last_run(self) -> Mapping[str, Any] | None:
        """The ``run`` block of the last completed check, or None before the first one."""
        return self._last_run

    async def check(self) -> list[ProbeResult]:
        """Check every configured connector (joining a check already in flight); results in manifest order."""
        flight = await self._join()
        assert flight.results is not None
        return list(flight.results)

    async def report(self, *, sections: Mapping[str, Section | None] | None = None) -> Report:
        """``check()`` and build the report from its results and its ``run`` block."""
        flight = await self._join()
        return build_report(self.settings, results=flight.results, run=flight.run, sections=sections)

    async def _join(self) -> _Flight:
        if self._tg is None:
            raise RuntimeError("use `async with Prober(settings) as prober:` before calling check()")
        if self._closed:
            raise anyio.ClosedResourceError("this Prober is closed")
        flight = self._flight
        if flight is None:
            flight = self._flight = _Flight()
            self._tg.start_soon(self._fly, flight, name="ingest-probe-check")
        await flight.done.wait()
        if flight.error is not None:
            if self._undelivered is flight.error:
                self._undelivered = None
            raise flight.error
        if flight.results is None:  # cancelled because the prober is closing
            raise anyio.ClosedResourceError("the Prober was closed during the check")
        return flight

    async def _fly(self, flight: _Flight) -> None:
        """Run one check for every waiter; always wakes them, whatever happens."""
        started = time.monotonic()
        try:
            results = await self._supervisor.run(self._probes, close=False)
            self._checks += 1
            run = self._supervisor.run_block()
            run["duration_ms"] = round((time.monotonic() - started) * 1000.0, 3)
            run["check"] = self._checks
            flight.results, flight.run = results, run
            self._last_run = run
        except Exception as exc:  # noqa: BLE001 - not a probe's (those are results): handed to every waiter, re-raised
            flight.error = exc
            self._undelivered = exc
        finally:
            if self._flight is flight:
                self._flight = None
            flight.done.set()


async def _close_one(probe: Probe, budget: float) -> None:
    await bounded_close(probe.aclose, budget=budget)
