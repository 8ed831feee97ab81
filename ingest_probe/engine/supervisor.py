"""TaskSupervisor: runs the probes of many targets concurrently in one task group, at most ``concurrency`` at a
time, each under its own jittered deadline; ``RunInfo`` says what was asked and what each task got."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.connectors._log_secrets import scrub
from ingest_probe.connectors._net import SILENT_PEER, bounded_close, cert_expiry, one_line
from ingest_probe.defaults import CERT_WARN_DAYS, CLIENT_NAME, CLOSE_BUDGET, CONCURRENCY, JITTER, TIMEOUT
from ingest_probe.results import ProbeResult, Recorder, Status
from ingest_probe.settings.targets import check_unique

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Probe
    from ingest_probe.settings.targets import Target

#: One unit of work: a target and the probe that checks it (None for a target that is not configured).
Job = tuple["Target", "Probe | None"]
#: Called with each result as soon as it is known (a skipped target's at once), in the event loop: it must
#: not block or raise (the CLI prints a progress line; an embedder may stream results).
OnResult = Callable[[ProbeResult], None]
STATES = ("running", "finished", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Jitter:
    """Draws each probe's deadline uniformly from ``[timeout * (1 - fraction), timeout]``."""

    fraction: float = JITTER

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise errors.UsageError(f"--jitter must be in [0, 1), got {self.fraction}")

    def deadline(self, timeout: float, rng: random.Random) -> float:
        return timeout * (1.0 - self.fraction * rng.random())


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInfo:
    """One probe task: its name (``ingest-probe-<target>``), state, age and deadline in seconds."""

    name: str
    state: str
    age_s: float
    deadline_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "age_s": self.age_s, "deadline_s": self.deadline_s}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """The report's ``run`` block: what a run was asked (timeout, jitter, seed, cap) and what each task got."""

    timeout_s: float
    jitter: float
    seed: int
    concurrency: int
    tasks: tuple[TaskInfo, ...] = ()
    duration_ms: float | None = None
    #: ``report --splay``: the seconds slept before contacting anything.
    splay_s: float | None = None
    #: ``Prober``: the number of this check (1 for the first).
    check: int | None = None

    @property
    def deadlines_s(self) -> dict[str, float]:
        return {t.name: t.deadline_s for t in self.tasks}

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for t in self.tasks:
            counts[t.state] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeout_s": self.timeout_s,
            "jitter": self.jitter,
            "seed": self.seed,
            "concurrency": self.concurrency,
            "deadlines_s": self.deadlines_s,
            "tasks": [t.to_dict() for t in self.tasks],
            "counts": self.counts,
            "duration_ms": self.duration_ms,
            "splay_s": self.splay_s,
            "check": self.check,
        }


class _Task:
    __slots__ = ("deadline", "ended", "name", "started", "state")

    def __init__(self, name: str, deadline: float) -> None:
        self.name = name
        self.deadline = deadline
        self.started = time.monotonic()
        self.ended: float | None = None
        self.state = "running"

    def finish(self, state: str) -> None:
        self.state = state
        self.ended = time.monotonic()


class TaskSupervisor:
    """Owns every probe task of a run: one task group, named tasks, a cap, deadlines, bounded cleanup.

    At most ``concurrency`` probes are in flight (an ``anyio.CapacityLimiter``); a probe's deadline starts
    when it gets its slot, so a whole run of ``n`` targets takes at most ``ceil(n / concurrency)`` deadlines
    plus the close budget. One target is never checked twice at once by one supervisor.

    The supervisor owns the ``random.Random`` that jitters deadlines; pass ``seed`` to reproduce a run.
    A TLS peer certificate that expires within ``cert_warn_days`` (or has expired, when verification is off)
    makes an otherwise successful check ``degraded`` (``cert_expiry``).
    Whatever a probe raises becomes its result, so one probe never costs the others theirs: expected
    failures (``ProbeError``) and deadline overruns as themselves, anything else (a bug, ours or a client
    library's) as status ``down`` with kind ``internal``, a one-line error naming the target and the
    exception, and the exception in ``ProbeResult.exception``. Only cancellation propagates.
    """

    def __init__(
        self,
        *,
        timeout: float = TIMEOUT,
        jitter: float = JITTER,
        seed: int | None = None,
        concurrency: int = CONCURRENCY,
        namespace: str = CLIENT_NAME,
        close_budget: float = CLOSE_BUDGET,
        cert_warn_days: float = CERT_WARN_DAYS,
    ) -> None:
        if not timeout > 0:
            raise errors.UsageError(f"--timeout must be positive, got {timeout}")
        if concurrency < 1:
            raise errors.UsageError(f"--concurrency must be at least 1, got {concurrency}")
        self.timeout = timeout
        self.jitter = Jitter(jitter)
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self.concurrency = concurrency
        self.namespace = namespace
        self.close_budget = close_budget
        self.cert_warn_days = cert_warn_days
        self._rng = random.Random(self.seed)
        self._tasks: dict[str, _Task] = {}
        # Made in the event loop, on first use (anyio's primitives belong to a loop).
        self._limiter: anyio.CapacityLimiter | None = None
        self._locks: dict[str, anyio.Lock] = {}

    async def run(self, jobs: Sequence[Job], *, close: bool = True, on_result: OnResult | None = None,
                  ceiling: float | None = None) -> list[ProbeResult]:
        """Check every configured target concurrently; results come back in the order given, and each one
        goes to ``on_result`` as soon as it is known.

        With ``close=True`` each probe's clients are closed as soon as its check ends; with ``close=False``
        (a warm client kept for the next run) only after a check that did not succeed. Closing is the
        owner's: bounded by ``close_budget`` and shielded from cancellation (probes never shield).
        ``ceiling``: this run's deadline ceiling instead of ``timeout`` (``serve``'s ``/probe`` takes it from
        the scrape timeout); the jitter applies to it as usual.
        """
        check_unique(target for target, _ in jobs)
        ceiling = self.timeout if ceiling is None else ceiling
        if not ceiling > 0:
            raise errors.UsageError(f"a run's deadline ceiling must be positive, got {ceiling}")
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        results: list[ProbeResult | None] = [None] * len(jobs)
        async with anyio.create_task_group() as tg:
            for index, (target, probe) in enumerate(jobs):
                if probe is None or not target.configured:
                    results[index] = skipped = ProbeResult(name=target.name, configured=False,
                                                           status=Status.SKIPPED, kind=target.kind,
                                                           labels=dict(target.labels))
                    if on_result is not None:
                        on_result(skipped)
                    continue
                deadline = self.jitter.deadline(ceiling, self._rng)
                name = self.task_name(target)
                task = self._tasks[name] = _Task(name, deadline)
                lock = self._locks.setdefault(target.name, anyio.Lock())
                tg.start_soon(self._guard, target, probe, task, lock, results, index, close, on_result, name=name)
        return [r for r in results if r is not None]

    async def _guard(
        self,
        target: Target,
        probe: Probe,
        task: _Task,
        lock: anyio.Lock,
        results: list[ProbeResult | None],
        index: int,
        close: bool,
        on_result: OnResult | None,
    ) -> None:
        assert self._limiter is not None
        try:
            async with _slot(lock, self._limiter):  # the deadline starts with the slot
                rec = Recorder(endpoint=target.settings.endpoint, phase_names=probe.phase_names)
                run = _Run(target, probe, rec, task.deadline, self.cert_warn_days)
                try:
                    result, state = await self._check(run)
                except BaseException:  # cancelled from outside (SIGTERM, the caller's scope): close, propagate
                    task.finish("cancelled")
                    await self._close(probe)
                    raise
                if close or state != "finished":
                    bug = await self._close(probe)
                    if bug is not None and result.error_kind != errors.InternalError.kind:
                        result = run.internal(bug, doing="closing its client")
                        state = "failed"
        except BaseException:
            if task.state == "running":  # cancelled while waiting for its turn: nothing was opened
                task.finish("cancelled")
            raise
        results[index] = result
        task.finish(state)
        if on_result is not None:
            on_result(result)

    async def _check(self, run: _Run) -> tuple[ProbeResult, str]:
        """One check under its deadline: its result and task state. Raises only a cancellation from outside."""
        try:
            with anyio.move_on_after(run.deadline) as scope:
                await run.probe.check(run.rec)
        except errors.ProbeError as exc:
            return run.failed(exc), "failed"
        except Exception as exc:  # noqa: BLE001 -- a bug is that target's result, never the end of the run
            return run.internal(exc), "failed"
        if scope.cancelled_caught:
            where = run.target.settings.endpoint or run.target.name
            timeout = errors.ProbeTimeoutError(
                f"no answer from {where} within {run.deadline:.2f} s{_stuck(run.rec.current_phase)}"
            )
            return run.failed(timeout), "cancelled"
        return run.succeeded(), "finished"

    async def _close(self, probe: Probe) -> Exception | None:
        """Close the probe's clients, bounded and shielded; a bug in closing is returned, never raised."""
        try:
            await bounded_close(probe.aclose, budget=self.close_budget)
        except Exception as exc:  # noqa: BLE001 -- becomes the result (see _guard)
            return exc
        return None

    def task_name(self, target: Target) -> str:
        """The name of a target's task: ``<namespace>-<target name>``."""
        return f"{self.namespace}-{target.name}"

    def describe(self) -> dict[str, Any]:
        """Task states (running/finished/failed/cancelled), ages and deadlines, plus counts per state."""
        info = self.run_info()
        return {"tasks": [t.to_dict() for t in info.tasks], "counts": info.counts}

    def run_info(self, targets: Sequence[Target] | None = None, **extra: Any) -> RunInfo:
        """The report's ``run`` block: what was asked and what each task got, for ``targets`` (default: every
        task so far; a target checked again has its latest task). ``extra``: duration_ms, check, splay_s."""
        now = time.monotonic()
        names = None if targets is None else {self.task_name(t) for t in targets}
        tasks = tuple(TaskInfo(name=t.name, state=t.state, age_s=round((t.ended or now) - t.started, 4),
                               deadline_s=round(t.deadline, 4))
                      for t in self._tasks.values() if names is None or t.name in names)
        return RunInfo(timeout_s=self.timeout, jitter=self.jitter.fraction, seed=self.seed,
                       concurrency=self.concurrency, tasks=tasks, **extra)


class _Run:
    """One check of one target: what the result is built from."""

    __slots__ = ("cert_warn_days", "deadline", "probe", "rec", "started", "target")

    def __init__(self, target: Target, probe: Probe, rec: Recorder, deadline: float,
                 cert_warn_days: float = CERT_WARN_DAYS) -> None:
        self.target, self.probe, self.rec, self.deadline = target, probe, rec, deadline
        self.cert_warn_days = cert_warn_days
        self.started = time.monotonic()

    def _result(self, status: Status, **fields: Any) -> ProbeResult:
        return ProbeResult(
            name=self.target.name, kind=self.target.kind, labels=dict(self.target.labels), configured=True,
            status=status, latency_ms=(time.monotonic() - self.started) * 1000.0, phases=dict(self.rec.phases),
            endpoint=self.rec.endpoint, details=dict(self.rec.details), deadline_s=self.deadline,
            tls_not_after=self.rec.tls_not_after, **fields,
        )

    def succeeded(self) -> ProbeResult:
        expiring = cert_expiry(self.rec, self.cert_warn_days)
        if expiring is not None:  # after the probe's own reasons: theirs keep the headline
            self.rec.degrade("cert_expiry", expiring)
        kind, message = self.rec.degraded if self.rec.degraded else (None, None)
        return self._result(Status.DEGRADED if self.rec.degraded else Status.OK, error=message, error_kind=kind)

    def failed(self, exc: errors.ProbeError) -> ProbeResult:
        return self._result(Status(exc.status), error=str(exc), error_kind=exc.kind, retryable=exc.retryable)

    def internal(self, exc: Exception, *, doing: str = "") -> ProbeResult:
        """An unexpected exception as the target's result: down, kind ``internal``, one line, no secret."""
        detail = scrub(one_line(f"{type(exc).__name__}: {exc}"))  # the secrets any probe holds right now
        while_ = f" while {doing}" if doing else ""
        message = (f"internal error in the {self.target.name} probe{while_}: {detail}; re-run with --debug for a"
                   " traceback")
        return self._result(Status.DOWN, error=message, error_kind=errors.InternalError.kind, exception=exc)


@contextlib.asynccontextmanager
async def _slot(lock: anyio.Lock, limiter: anyio.CapacityLimiter) -> AsyncIterator[None]:
    """The target's lock, then a slot of the cap. Taken without a checkpoint when free, as a check started
    without a cap would begin: a warm client is used before the loop has had a turn to notice it went stale
    (the probe's reconnect handles that), and a thousand uncontended targets cost no extra loop turns."""
    for take in (lock, limiter):
        try:
            take.acquire_nowait()
        except anyio.WouldBlock:
            try:
                await take.acquire()
            except BaseException:
                if take is limiter:
                    lock.release()
                raise
    try:
        yield
    finally:
        limiter.release()
        lock.release()


def _stuck(phase: str | None) -> str:
    """Where a probe was when its deadline hit, and what that suggests."""
    where = f" during {phase}" if phase else ""
    if phase == "resolve":
        return f"{where} (deadline from --timeout): the name lookup hangs; DNS server slow or unreachable?"
    if phase == "query":  # it answered the handshake: the right service, just not answering now
        return f"{where} (deadline from --timeout): server frozen, overloaded or black-holed?"
    return f"{where} (deadline from --timeout): {SILENT_PEER}"
