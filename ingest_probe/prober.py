"""Prober: the embeddable, long-lived check of many targets, with warm clients and single-flight checks.

::

    async with Prober(settings) as prober:          # or Prober([target, ...])
        results = await prober.check()              # list[ProbeResult], target order
        await prober.update(new_targets)            # swap targets; unchanged ones keep their warm clients
        redis = await prober.check(only=["redis"])  # a subset: names or kinds, globs allowed
        report = await prober.report()              # the same Report the CLI renders

Design (structured concurrency, as in trio's nurseries):

* ``__aenter__`` imports the targets' client libraries in a worker thread (never on the caller's loop),
  builds one probe per configured target and opens a task group owned by the prober. The probes keep one
  warm client each between checks and reconnect after a failure.
* A check runs in a task of that task group, through ``TaskSupervisor.run(jobs, close=False)``; every
  caller of ``check()`` only *waits* for it. So concurrent ``check()`` calls with the same selection share
  one in-flight check (single-flight: never more than one connection per target), a target is never
  checked twice at once (the supervisor's per-target lock), and a caller that is cancelled does not orphan
  the check other callers are waiting for — the check still ends within its deadlines.
* ``__aexit__`` cancels a check still in flight and closes every probe's client, concurrently, bounded
  and shielded from cancellation — also when the caller leaves because it was itself cancelled.

Whatever a probe raises is that target's result (a bug: status ``down``, kind ``internal``, the exception
in ``ProbeResult.exception``), so a check always returns every result. A failure of the check machinery
itself (not of a probe) is raised to every caller waiting for that check; if every such caller had already
given up, it is raised from ``__aexit__`` instead.

The Prober sits above the report layer (``report()`` builds a ``Report``); the engine below it is the
supervisor and the one-shot run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

import anyio

from ingest_probe.connectors._net import bounded_close
from ingest_probe.defaults import CLOSE_BUDGET, CONCURRENCY, JITTER, TIMEOUT
from ingest_probe.engine.run import jobs, preload_drivers
from ingest_probe.engine.supervisor import RunInfo, TaskSupervisor
from ingest_probe.report.builder import build_report
from ingest_probe.settings.service import Settings, load_settings
from ingest_probe.settings.targets import Target, check_unique, classic_targets, select

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ingest_probe.connectors.base import Probe
    from ingest_probe.report.model import Report
    from ingest_probe.results import ProbeResult
    from ingest_probe.topics.plan import ProvisioningSection


class _Flight:
    """One in-flight check of a selection of targets and its outcome, shared by everyone waiting for it."""

    __slots__ = ("done", "error", "results", "run", "targets")

    def __init__(self, targets: tuple[Target, ...]) -> None:
        self.targets = targets
        self.done = anyio.Event()
        self.results: list[ProbeResult] | None = None
        self.run: RunInfo | None = None
        self.error: Exception | None = None


class Swap(NamedTuple):
    """What ``Prober.update`` did, by target name: clients kept warm, targets added (or changed), removed."""

    kept: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]


class Prober:
    """Checks targets on demand, keeping one warm client per target.

    ``source``: a service's ``Settings`` (its classic targets: ``timescale``, ``redis``, ``kafka``) or any
    targets (unique names; e.g. from ``target_from_url``), then ``settings`` is the service ``report()``
    describes (default: the built-in defaults). ``timeout``/``jitter``/``seed``/``concurrency``
    mean what they mean for ``TaskSupervisor`` (and ``report --connectivity``); one supervisor serves every
    check, so a seed reproduces the whole sequence of deadlines. ``probes`` maps a target name to the probe
    to use instead of its connector's (tests, custom probes).
    """

    def __init__(
        self,
        source: Settings | Iterable[Target],
        *,
        settings: Settings | None = None,
        timeout: float = TIMEOUT,
        jitter: float = JITTER,
        seed: int | None = None,
        concurrency: int = CONCURRENCY,
        probes: Mapping[str, Probe] | None = None,
        close_budget: float = CLOSE_BUDGET,
    ) -> None:
        if isinstance(source, Settings):
            self.settings: Settings | None = source
            self.targets = classic_targets(source)
        else:
            self.settings, self.targets = settings, tuple(source)
        check_unique(self.targets)
        self.close_budget = close_budget
        # Built now so bad arguments fail at construction, outside any event loop.
        self._supervisor = TaskSupervisor(timeout=timeout, jitter=jitter, seed=seed, concurrency=concurrency,
                                          close_budget=close_budget)
        self._given = dict(probes or {})
        self._probes: dict[str, Probe] = {}
        self._tg: TaskGroup | None = None
        self._closed = False
        self._flights: dict[tuple[str, ...], _Flight] = {}
        self._undelivered: Exception | None = None
        self._checks = 0
        self._last_run: RunInfo | None = None

    # ------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Prober:
        if self._tg is not None or self._closed:
            raise RuntimeError("a Prober can be entered only once; create a new one")
        # Import the client libraries in a worker thread: ~0.15 s of imports on the caller's loop would stall
        # its other tasks and be charged to the first check's phases.
        await anyio.to_thread.run_sync(preload_drivers, [t for t in self.targets if t.name not in self._given])
        self._probes = {target.name: probe for target, probe in jobs(self.targets, self._given) if probe is not None}
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
        await self._close(self._probes)

    async def _close(self, probes: Mapping[str, Probe]) -> None:
        """Close clients concurrently; each gets ``close_budget`` s, shielded from cancellation (the owner's
        shield: probes close within the time they are given)."""
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for name, probe in probes.items():
                    tg.start_soon(_close_one, probe, self.close_budget, name=f"ingest-probe-close-{name}")

    async def _retire(self, probes: Mapping[str, Probe], flights: Sequence[_Flight]) -> None:
        """Close the clients ``update`` dropped once the checks still using them end."""
        try:
            for flight in flights:
                await flight.done.wait()
        finally:
            await self._close(probes)

    async def update(
        self,
        source: Settings | Iterable[Target],
        *,
        settings: Settings | None = None,
        probes: Mapping[str, Probe] | None = None,
    ) -> Swap:
        """Swap the targets for ``source`` (``settings``, ``probes``: as in the constructor), keeping the warm
        client of every target that is unchanged — equal by value: name, kind, labels and settings — and
        closing the clients of the targets removed or changed (bounded and shielded, as on exit). A check
        already in flight finishes with the targets it started with; the clients it uses are closed only after
        it ends. Returns what was kept, added and removed (a changed target is both removed and added).

        A ``ConfigError`` (duplicate names) leaves the prober as it was.
        """
        if isinstance(source, Settings):
            new_settings: Settings | None = source
            targets = classic_targets(source)
        else:
            new_settings, targets = settings, tuple(source)
        check_unique(targets)
        if self._tg is None or self._closed:
            raise RuntimeError("update() needs an open Prober (inside `async with`)")
        old = {t.name: t for t in self.targets}
        kept = tuple(t.name for t in targets if old.get(t.name) == t)
        fresh = [t for t in targets if t.name not in kept]
        given = dict(probes or {})
        await anyio.to_thread.run_sync(preload_drivers, [t for t in fresh if t.name not in given])
        current = {name: self._probes[name] for name in kept if name in self._probes}
        current.update({t.name: p for t, p in jobs(fresh, given) if p is not None})
        dropped = {name: p for name, p in self._probes.items() if current.get(name) is not p}
        # The swap itself has no checkpoint: a check starting after it sees only the new targets.
        self.settings, self.targets, self._probes, self._given = new_settings, targets, current, given
        in_flight = [f for f in self._flights.values() if any(t.name in dropped for t in f.targets)]
        if in_flight:  # closed by the prober once those checks end (or when it closes)
            self._tg.start_soon(self._retire, dropped, in_flight, name="ingest-probe-retire")
        else:
            await self._close(dropped)
        return Swap(kept=kept, added=tuple(t.name for t in fresh), removed=tuple(n for n in old if n not in kept))

    # ---------------------------------------------------------------------------------------- checks

    @property
    def probes(self) -> Mapping[str, Probe]:
        """The probe of each configured target, by target name (empty before ``__aenter__``)."""
        return self._probes

    @property
    def seed(self) -> int:
        """The seed of the deadline jitter (pass it back as ``seed=`` to reproduce the deadlines)."""
        return self._supervisor.seed

    @property
    def last_run(self) -> RunInfo | None:
        """The ``run`` block of the last completed check, or None before the first one."""
        return self._last_run

    async def check(self, *, only: Sequence[str] = (), skip: Sequence[str] = ()) -> list[ProbeResult]:
        """Check the targets ``only``/``skip`` select (target names or kinds, globs allowed; default: every
        target), joining a check of the same selection already in flight; results in target order."""
        flight = await self._join(select(self.targets, only=only, skip=skip))
        assert flight.results is not None
        return list(flight.results)

    async def report(
        self,
        *,
        only: Sequence[str] = (),
        skip: Sequence[str] = (),
        topics: ProvisioningSection | None = None,
    ) -> Report:
        """``check()`` and build the report from its results and its ``run`` block (``topics``: a provisioning
        section to include)."""
        selected = select(self.targets, only=only, skip=skip)
        flight = await self._join(selected)
        return build_report(self.settings or load_settings(), targets=selected, results=flight.results,
                            run=flight.run, topics=topics)

    async def _join(self, targets: tuple[Target, ...]) -> _Flight:
        if self._tg is None:
            raise RuntimeError("use `async with Prober(settings) as prober:` before calling check()")
        if self._closed:
            raise anyio.ClosedResourceError("this Prober is closed")
        key = tuple(t.name for t in targets)
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight(targets)
            self._tg.start_soon(self._fly, key, flight, name="ingest-probe-check")
        await flight.done.wait()
        if flight.error is not None:
            if self._undelivered is flight.error:
                self._undelivered = None
            raise flight.error
        if flight.results is None:  # cancelled because the prober is closing
            raise anyio.ClosedResourceError("the Prober was closed during the check")
        return flight

    async def _fly(self, key: tuple[str, ...], flight: _Flight) -> None:
        """Run one check for every waiter; always wakes them, whatever happens."""
        started = time.monotonic()
        try:
            work = [(t, self._probes.get(t.name)) for t in flight.targets]
            results = await self._supervisor.run(work, close=False)
            self._checks += 1
            run = self._supervisor.run_info(flight.targets, check=self._checks,
                                            duration_ms=round((time.monotonic() - started) * 1000.0, 3))
            flight.results, flight.run = results, run
            self._last_run = run
        except Exception as exc:  # noqa: BLE001 - not a probe's (those are results): handed to every waiter, re-raised
            flight.error = exc
            self._undelivered = exc
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()


async def _close_one(probe: Probe, budget: float) -> None:
    await bounded_close(probe.aclose, budget=budget)
