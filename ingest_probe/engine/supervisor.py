"""TaskSupervisor: runs probes concurrently in one task group, each under its own jittered deadline."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.connectors._log_secrets import scrub
from ingest_probe.connectors._net import CLOSE_BUDGET, SILENT_PEER, bounded_close, one_line
from ingest_probe.results import ProbeResult, Recorder, Status

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Probe


@dataclass(frozen=True, slots=True)
class Jitter:
    """Draws each probe's deadline uniformly from ``[timeout * (1 - fraction), timeout]``."""

    fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise errors.UsageError(f"--jitter must be in [0, 1), got {self.fraction}")

    def deadline(self, timeout: float, rng: random.Random) -> float:
        return timeout * (1.0 - self.fraction * rng.random())


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
    """Owns every probe task of a run: one task group, named tasks, deadlines, bounded cleanup.

    The supervisor owns the ``random.Random`` that jitters deadlines; pass ``seed`` to reproduce a run.
    Whatever a probe raises becomes its result, so one probe never costs the others theirs: expected
    failures (``ProbeError``) and deadline overruns as themselves, anything else (a bug, ours or a client
    library's) as status ``down`` with kind ``internal``, a one-line error naming the probe and the
    exception, and the exception in ``ProbeResult.exception``. Only cancellation propagates.
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        jitter: float = 0.1,
        seed: int | None = None,
        namespace: str = "ingest-probe",
        close_budget: float = CLOSE_BUDGET,
    ) -> None:
        if not timeout > 0:
            raise errors.UsageError(f"--timeout must be positive, got {timeout}")
        self.timeout = timeout
        self.jitter = Jitter(jitter)
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self.namespace = namespace
        self.close_budget = close_budget
        self._rng = random.Random(self.seed)
        self._tasks: dict[str, _Task] = {}

    async def run(self, probes: Sequence[Probe], *, close: bool = True) -> list[ProbeResult]:
        """Check every configured probe concurrently; results come back in the order given.

        With ``close=True`` each probe's clients are closed as soon as its check ends; with ``close=False``
        (a warm client kept for the next run) only after a check that did not succeed. Closing is the
        owner's: bounded by ``close_budget`` and shielded from cancellation (probes never shield), so a run
        lasts at most the longest deadline plus ``close_budget``.
        """
        results: list[ProbeResult | None] = [None] * len(probes)
        async with anyio.create_task_group() as tg:
            for index, probe in enumerate(probes):
                if not probe.configured:
                    results[index] = ProbeResult(name=probe.name, configured=False, status=Status.SKIPPED)
                    continue
                deadline = self.jitter.deadline(self.timeout, self._rng)
                name = f"{self.namespace}-{probe.name}"
                task = self._tasks[name] = _Task(name, deadline)
                tg.start_soon(self._guard, probe, task, results, index, close, name=name)
        return [r for r in results if r is not None]

    async def _guard(
        self,
        probe: Probe,
        task: _Task,
        results: list[ProbeResult | None],
        index: int,
        close: bool,
    ) -> None:
        rec = Recorder(endpoint=probe.endpoint, phase_names=probe.phase_names)
        started = time.monotonic()
        try:
            result, state = await self._check(probe, rec, task.deadline, started)
        except BaseException:  # cancelled from outside (SIGTERM, the caller's scope): close, then propagate
            task.finish("cancelled")
            await self._close(probe)
            raise
        if close or state != "finished":
            bug = await self._close(probe)
            if bug is not None and result.error_kind != errors.InternalError.kind:
                result = _internal(probe, rec, bug, started, task.deadline, doing="closing its client")
                state = "failed"
        results[index] = result
        task.finish(state)

    async def _check(
        self, probe: Probe, rec: Recorder, deadline: float, started: float
    ) -> tuple[ProbeResult, str]:
        """One check under its deadline: its result and task state. Raises only a cancellation from outside."""
        try:
            with anyio.move_on_after(deadline) as scope:
                await probe.check(rec)
        except errors.ProbeError as exc:
            return _failed(probe, rec, exc, started, deadline), "failed"
        except Exception as exc:  # noqa: BLE001 -- a bug is that connector's result, never the end of the run
            return _internal(probe, rec, exc, started, deadline), "failed"
        if scope.cancelled_caught:
            timeout = errors.ProbeTimeoutError(
                f"no answer from {probe.endpoint or probe.name} within {deadline:.2f} s{_stuck(rec.current_phase)}"
            )
            return _failed(probe, rec, timeout, started, deadline), "cancelled"
        return _succeeded(probe, rec, started, deadline), "finished"

    async def _close(self, probe: Probe) -> Exception | None:
        """Close the probe's clients, bounded and shielded; a bug in closing is returned, never raised."""
        try:
            await bounded_close(probe.aclose, budget=self.close_budget)
        except Exception as exc:  # noqa: BLE001 -- becomes the result (see _guard)
            return exc
        return None

    def describe(self) -> dict[str, Any]:
        """Task states (running/finished/failed/cancelled), ages and deadlines, plus counts per state."""
        now = time.monotonic()
        tasks = [
            {
                "name": t.name,
                "state": t.state,
                "age_s": round((t.ended or now) - t.started, 4),
                "deadline_s": round(t.deadline, 4),
            }
            for t in self._tasks.values()
        ]
        counts = {state: 0 for state in ("running", "finished", "failed", "cancelled")}
        for t in self._tasks.values():
            counts[t.state] += 1
        return {"tasks": tasks, "counts": counts}

    def run_block(self) -> dict[str, Any]:
        """The report's ``run`` block: what was asked and what each task got."""
        return {
            "timeout_s": self.timeout,
            "jitter": self.jitter.fraction,
            "seed": self.seed,
            "deadlines_s": {t.name: round(t.deadline, 4) for t in self._tasks.values()},
            **self.describe(),
        }


def _stuck(phase: str | None) -> str:
    """Where a probe was when its deadline hit, and what that suggests."""
    where = f" during {phase}" if phase else ""
    if phase == "resolve":
        return f"{where} (deadline from --timeout): the name lookup hangs; DNS server slow or unreachable?"
    if phase == "query":  # it answered the handshake: the right service, just not answering now
        return f"{where} (deadline from --timeout): server frozen, overloaded or black-holed?"
    return f"{where} (deadline from --timeout): {SILENT_PEER}"


def _elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0


def _succeeded(probe: Probe, rec: Recorder, started: float, deadline: float) -> ProbeResult:
    kind, message = rec.degraded if rec.degraded else (None, None)
    return ProbeResult(
        name=probe.name,
        configured=True,
        status=Status.DEGRADED if rec.degraded else Status.OK,
        latency_ms=_elapsed_ms(started),
        phases=dict(rec.phases),
        endpoint=rec.endpoint,
        error=message,
        error_kind=kind,
        retryable=False,
        details=dict(rec.details),
        deadline_s=deadline,
    )


def _internal(
    probe: Probe, rec: Recorder, exc: Exception, started: float, deadline: float, *, doing: str = ""
) -> ProbeResult:
    """An unexpected exception as the probe's result: down, kind ``internal``, one line, no secret."""
    detail = scrub(one_line(f"{type(exc).__name__}: {exc}"))  # the secrets any probe holds right now
    while_ = f" while {doing}" if doing else ""
    message = f"internal error in the {probe.name} probe{while_}: {detail}; re-run with --debug for a traceback"
    return ProbeResult(
        name=probe.name,
        configured=True,
        status=Status.DOWN,
        latency_ms=_elapsed_ms(started),
        phases=dict(rec.phases),
        endpoint=rec.endpoint,
        error=message,
        error_kind=errors.InternalError.kind,
        retryable=False,
        details=dict(rec.details),
        deadline_s=deadline,
        exception=exc,
    )


def _failed(
    probe: Probe, rec: Recorder, exc: errors.ProbeError, started: float, deadline: float
) -> ProbeResult:
    return ProbeResult(
        name=probe.name,
        configured=True,
        status=Status(exc.status),
        latency_ms=_elapsed_ms(started),
        phases=dict(rec.phases),
        endpoint=rec.endpoint,
        error=str(exc),
        error_kind=exc.kind,
        retryable=exc.retryable,
        details=dict(rec.details),
        deadline_s=deadline,
    )
