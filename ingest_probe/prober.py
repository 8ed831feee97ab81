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
  caller of ``check()`` only *waits* for it. Single-flight is per target: a caller joins the check already
  in flight for each target it selected and starts one check for the rest, so concurrent callers — with
  the same selection or overlapping ones — never check a target twice at once, whatever the request rate
  (never more than one connection per target; the supervisor's per-target lock backs this up). A caller
  that is cancelled does not orphan the check other callers are waiting for — it still ends within its
  deadlines.
* Each target's latest result is kept with the time its check ended (``latest()``); ``check(max_age=S)``
  answers from it for targets checked within the last S seconds and checks only the others (a server's
  cache: many readiness requests, one check per target per S seconds). ``ready(fail_on=...)`` is the
  verdict of the readiness policy (``report.policy``) over such a check.
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

import dataclasses
import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

import anyio

from ingest_probe.connectors._net import bounded_close
from ingest_probe.defaults import CLOSE_BUDGET, CONCURRENCY, JITTER, TIMEOUT
from ingest_probe.engine.run import jobs, preload_drivers
from ingest_probe.engine.supervisor import RunInfo, TaskSupervisor
from ingest_probe.report import policy
from ingest_probe.report.builder import build_report
from ingest_probe.settings.service import Settings, load_settings
from ingest_probe.settings.targets import Target, check_unique, classic_targets, select

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ingest_probe.connectors.base import Probe
    from ingest_probe.report.model import Report
    from ingest_probe.results import ProbeResult
    from ingest_probe.topics.plan import ProvisioningSection


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """A target's result and when the check that produced it ended (``ended``: ``time.monotonic()``,
    ``ended_at``: UTC), with that check's ``run`` block."""

    result: ProbeResult
    ended: float
    ended_at: dt.datetime
    run: RunInfo

    def age(self, now: float | None = None) -> float:
        """Seconds since the check ended."""
        return (time.monotonic() if now is None else now) - self.ended


class _Flight:
    """One in-flight check of some targets and its outcome, shared by everyone waiting for any of them."""

    __slots__ = ("ceiling", "done", "error", "observed", "targets")

    def __init__(self, targets: tuple[Target, ...], ceiling: float | None) -> None:
        self.targets = targets
        self.ceiling = ceiling
        self.done = anyio.Event()
        self.observed: dict[str, Observation] | None = None
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
        self._flights: dict[str, _Flight] = {}  # target name -> the check in flight for it
        self._latest: dict[str, Observation] = {}
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
        # The swap itself has no checkpoint: a check starting after it sees only the new targets. A check in
        # flight for a target removed or changed is no longer joined, and what it finds is not kept as that
        # name's latest result (nor is an older one).
        self.settings, self.targets, self._probes, self._given = new_settings, targets, current, given
        in_flight = list({id(f): f for f in self._flights.values()
                          if any(t.name in dropped for t in f.targets)}.values())
        for name in set(old) - set(kept):
            self._flights.pop(name, None)
            self._latest.pop(name, None)
        if in_flight:  # closed by the prober once those checks end (or when it closes)
            self._tg.start_soon(self._retire, dropped, in_flight, name="ingest-probe-retire")
        else:
            await self._close(dropped)
        return Swap(kept=kept, added=tuple(t.name for t in fresh), removed=tuple(n for n in old if n not in kept))

    # ---------------------------------------------------------------------------------------- checks

    @property
    def running(self) -> bool:
        """Whether the prober has been entered (``async with``) and not closed yet."""
        return self._tg is not None and not self._closed

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

    @property
    def timeout(self) -> float:
        """The per-probe deadline ceiling of every check (``check(ceiling=)`` may set another)."""
        return self._supervisor.timeout

    async def check(
        self,
        *,
        only: Sequence[str] = (),
        skip: Sequence[str] = (),
        max_age: float | None = None,
        ceiling: float | None = None,
    ) -> list[ProbeResult]:
        """Check the targets ``only``/``skip`` select (target names or kinds, globs allowed; default: every
        target); results in target order.

        A target whose check is in flight is not checked again: the caller joins that check. With
        ``max_age``, a target checked within the last ``max_age`` seconds is answered from its latest result
        (``latest()``). ``ceiling``: the deadline ceiling of the checks this call starts, instead of
        ``timeout`` (``serve``'s ``/probe`` takes it from the scrape timeout).
        """
        observed = await self._gather(select(self.targets, only=only, skip=skip), max_age, ceiling)
        return [o.result for o in observed]

    def latest(self, *, only: Sequence[str] = (), skip: Sequence[str] = ()) -> list[Observation]:
        """The latest result of each selected target that has been checked, in target order (no check)."""
        return [self._latest[t.name] for t in select(self.targets, only=only, skip=skip) if t.name in self._latest]

    async def ready(
        self,
        *,
        fail_on: str = "down",
        only: Sequence[str] = (),
        skip: Sequence[str] = (),
        max_age: float | None = None,
    ) -> bool:
        """Whether the selected targets pass the readiness policy: ``check(only=, skip=, max_age=)``, then
        ``fail_on="down"`` (default) fails only on a target down, ``"degraded"`` on anything but ok
        (``report.policy``; a skipped target never fails)."""
        return policy.ready(await self.check(only=only, skip=skip, max_age=max_age), fail_on)

    async def report(
        self,
        *,
        only: Sequence[str] = (),
        skip: Sequence[str] = (),
        topics: ProvisioningSection | None = None,
        max_age: float | None = None,
    ) -> Report:
        """``check(only=, skip=, max_age=)`` and build the report from its results (``topics``: a provisioning
        section to include). ``generated_at`` is when the oldest of those results was obtained; the ``run``
        block is that of the check(s) behind them."""
        selected = select(self.targets, only=only, skip=skip)
        observed = await self._gather(selected, max_age, None)
        return build_report(self.settings or load_settings(), targets=selected,
                            results=[o.result for o in observed], run=self._run_of(selected, observed),
                            topics=topics, now=min((o.ended_at for o in observed), default=None))

    def _run_of(self, targets: Sequence[Target], observed: Sequence[Observation]) -> RunInfo | None:
        """The run block behind these results: their check's, or one merged from the checks they came from."""
        runs = list({id(o.run): o.run for o in observed}.values())
        if not runs:
            return None
        wanted = {self._supervisor.task_name(t) for t in targets}
        if len(runs) == 1 and {t.name for t in runs[0].tasks} <= wanted:
            return runs[0]
        tasks = tuple(task for target, o in zip(targets, observed, strict=True) for task in o.run.tasks
                      if task.name == self._supervisor.task_name(target))
        durations = [r.duration_ms for r in runs if r.duration_ms is not None]
        return dataclasses.replace(runs[-1], tasks=tasks, duration_ms=max(durations, default=None),
                                   check=max((r.check or 0 for r in runs), default=None))

    async def _gather(
        self, targets: tuple[Target, ...], max_age: float | None, ceiling: float | None
    ) -> list[Observation]:
        """The observations of ``targets``: fresh enough ones as kept, the others from the checks in flight
        for them (joined) or from one new check of all the rest."""
        if self._tg is None:
            raise RuntimeError("use `async with Prober(settings) as prober:` before calling check()")
        if self._closed:
            raise anyio.ClosedResourceError("this Prober is closed")
        now = time.monotonic()
        kept: dict[str, Observation] = {}
        waiting: list[_Flight] = []
        new: list[Target] = []
        for target in targets:
            seen = self._latest.get(target.name)
            if max_age is not None and seen is not None and seen.age(now) <= max_age:
                kept[target.name] = seen
                continue
            flight = self._flights.get(target.name)
            if flight is None:
                new.append(target)
            elif flight not in waiting:
                waiting.append(flight)
        if new:
            flight = _Flight(tuple(new), ceiling)
            for target in new:
                self._flights[target.name] = flight
            self._tg.start_soon(self._fly, flight, name="ingest-probe-check")
            waiting.append(flight)
        for flight in waiting:
            await flight.done.wait()
            if flight.error is not None:
                if self._undelivered is flight.error:
                    self._undelivered = None
                raise flight.error
            if flight.observed is None:  # cancelled because the prober is closing
                raise anyio.ClosedResourceError("the Prober was closed during the check")
            kept.update((name, o) for name, o in flight.observed.items() if name not in kept)
        return [kept[t.name] for t in targets]

    async def _fly(self, flight: _Flight) -> None:
        """Run one check for every waiter; always wakes them, whatever happens."""
        started = time.monotonic()
        try:
            work = [(t, self._probes.get(t.name)) for t in flight.targets]
            results = await self._supervisor.run(work, close=False, ceiling=flight.ceiling)
            self._checks += 1
            ended = time.monotonic()
            run = self._supervisor.run_info(flight.targets, check=self._checks,
                                            duration_ms=round((ended - started) * 1000.0, 3))
            ended_at = dt.datetime.now(dt.UTC)
            flight.observed = {r.name: Observation(r, ended, ended_at, run) for r in results}
            current = {t.name: t for t in self.targets}  # an update() meanwhile may have changed some
            self._latest.update((t.name, flight.observed[t.name]) for t in flight.targets
                                if current.get(t.name) == t)
            self._last_run = run
        except Exception as exc:  # noqa: BLE001 - not a probe's (those are results): handed to every waiter, re-raised
            flight.error = exc
            self._undelivered = exc
        finally:
            for target in flight.targets:
                if self._flights.get(target.name) is flight:
                    del self._flights[target.name]
            flight.done.set()


async def _close_one(probe: Probe, budget: float) -> None:
    await bounded_close(probe.aclose, budget=budget)
