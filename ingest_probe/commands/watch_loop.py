"""The ``watch`` loop: one long-lived Prober, a check per cycle on the ingest schedule, atomic outputs.

Schedule: the next cycle starts ``interval ± uniform(jitter_seconds)`` after the previous one *completed*,
floored at ``MIN_DELAY`` (1 s). The jitter is capped at the interval, so pauses stay centred on it (and
``--interval 0.05`` with the settings' default jitter of 120 s does not mean pauses of minutes). An
interval below the floor (only reachable with ``--interval``; the setting's minimum is 60 s) is taken as
asked — the floor becomes the interval itself — so tests can run sub-second cycles.

Stopping: after ``max_failures`` consecutive failing cycles (overall status ``down``) the loop returns 2
(0 = never stop). SIGINT/SIGTERM cancel the current cycle (its probes are cut at once, so it ends well
within its deadline), the prober closes every client (bounded, shielded) and the loop returns 0; so does
a stdout whose reader went away (EPIPE: ``watch | head -1``). ``once`` runs one cycle and returns that
report's exit code (0/1/2, as ``report --connectivity``).

Outputs follow ``output``'s rules (``-`` is stdout, devices and FIFOs written in place, files replaced
atomically). A file is replaced in a worker thread the loop waits for, even when cancelled, so no temp
file is left; an in-place write (a FIFO whose reader stalls) runs in a daemon thread that a signal may
abandon.

Logging (stderr, one line each): the first cycle's statuses, then one line per connector status
*transition* — not one per cycle. ``verbose`` adds a line per cycle; ``quiet`` keeps only errors (a file
that cannot be written, the stop after too many failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import random
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe.commands import output, signals
from ingest_probe.commands.loop import cancel_on_signal, install_daemon_executor
from ingest_probe.connectors._net import DaemonExecutor
from ingest_probe.defaults import EXIT_CRITICAL, EXIT_OK, JITTER, TIMEOUT
from ingest_probe.engine.run import preload_drivers
from ingest_probe.prober import Prober
from ingest_probe.renderers.printable import printable
from ingest_probe.results import ProbeResult, Status

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Probe
    from ingest_probe.report.model import Report
    from ingest_probe.settings.service import Settings
    from ingest_probe.settings.targets import Target

#: The shortest pause between two cycles (unless a shorter interval was asked for explicitly).
MIN_DELAY = 1.0
QUIET, NORMAL, VERBOSE = -1, 0, 1


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchOptions:
    """What one ``watch`` invocation was asked to do (the CLI fills it from flags and settings)."""

    interval: float
    jitter_seconds: float
    max_failures: int
    timeout: float = TIMEOUT
    jitter: float = JITTER
    seed: int | None = None
    once: bool = False
    output: Path | None = None
    prometheus_file: Path | None = None
    verbosity: int = NORMAL
    handle_signals: bool = True
    #: Log the traceback behind every ``internal`` result (``--debug``).
    debug: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WatchOptions:
        """Interval, jitter and max failures from the schedule settings; ``None`` overrides are ignored."""
        base: dict[str, Any] = {
            "interval": float(settings.schedule.interval_seconds),
            "jitter_seconds": float(settings.schedule.jitter_seconds),
            "max_failures": settings.schedule.max_failures,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def next_delay(interval: float, jitter_seconds: float, rng: random.Random) -> float:
    """Seconds from one cycle's completion to the next start: interval ± uniform jitter (at most the
    interval), floored at ``MIN_DELAY`` — or at the interval itself when that is shorter."""
    floor = min(MIN_DELAY, interval)
    jitter = min(jitter_seconds, interval)
    return max(floor, interval + rng.uniform(-jitter, jitter))


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def stamped(text: str) -> str:
    """A log line: UTC time, then what happened."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{now} ingest-probe watch: {text}"


def run_watch(settings: Settings, options: WatchOptions) -> int:
    """The CLI's single event-loop entry for ``watch``; returns the process exit code.

    The client libraries are imported first, before the loop starts (as ``report`` does), so the first
    cycle's phases time the network and not ~0.15 s of imports.
    """
    from ingest_probe.settings.targets import classic_targets

    async def main() -> int:
        install_daemon_executor()  # a DNS lookup stuck in the resolver must not hold the exit
        return await watch(settings, options)

    with signals.handled():
        preload_drivers(classic_targets(settings))
        return anyio.run(main)


async def watch(
    settings: Settings,
    options: WatchOptions,
    *,
    log: Callable[[str], None] = stderr_line,
    targets: Sequence[Target] | None = None,
    probes: Mapping[str, Probe] | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    rng: random.Random | None = None,
) -> int:
    """Run cycles until a signal (0), too many consecutive failures (2) or, with ``once``, one cycle.

    ``targets``: what to probe (default: the service's classic targets); ``probes``: the probe to use for a
    target instead of its connector's, by target name (tests).
    """
    loop = _Loop(settings, options, log=log, targets=targets, probes=probes, sleep=sleep,
                 rng=rng or random.Random(options.seed))
    with anyio.CancelScope() as scope:
        with cancel_on_signal(scope) if options.handle_signals else contextlib.nullcontext() as seen:
            loop.code = await loop.run()
    if seen is not None and seen.signum is not None:
        loop.info(f"stopped by {signal.Signals(seen.signum).name}; clients closed")
        return EXIT_OK
    if loop.stdout_closed:
        loop.info("stopped: stdout was closed by its reader; clients closed")
        return EXIT_OK
    assert loop.code is not None
    return loop.code


class _Loop:
    def __init__(
        self,
        settings: Settings,
        options: WatchOptions,
        *,
        log: Callable[[str], None],
        targets: Sequence[Target] | None,
        probes: Mapping[str, Probe] | None,
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.options = options
        self.log = log
        self.targets = targets
        self.probes = probes
        self.sleep = sleep
        self.rng = rng
        self.code: int | None = None
        self.stdout_closed = False
        self.cycles = 0
        self.previous: dict[str, Status] | None = None

    def _say(self, text: str) -> None:
        self.log(stamped(printable(text)))

    def info(self, text: str) -> None:
        if self.options.verbosity > QUIET:
            self._say(text)

    def error(self, text: str) -> None:
        self._say(f"error: {text}")

    async def run(self) -> int:
        opts = self.options
        failures = 0
        source = self.settings if self.targets is None else self.targets
        async with Prober(source, settings=self.settings, timeout=opts.timeout, jitter=opts.jitter, seed=opts.seed,
                          probes=self.probes) as prober:
            while True:
                report = await prober.report()
                self.cycles += 1
                await self._write(report)
                if self.stdout_closed:
                    return EXIT_OK
                self._log_statuses(report)
                if opts.debug:
                    for exc in report.internal_errors:
                        self.log("".join(traceback.format_exception(exc)).rstrip("\n"))
                failures = failures + 1 if report.status is Status.DOWN else 0
                if opts.once:
                    return report.exit_code
                if opts.max_failures and failures >= opts.max_failures:
                    self.error(f"stopping after {failures} consecutive failing cycles "
                               f"(max failures {opts.max_failures})")
                    return EXIT_CRITICAL
                delay = next_delay(opts.interval, opts.jitter_seconds, self.rng)
                if opts.verbosity >= VERBOSE:
                    self._say(f"cycle {self.cycles}: next in {delay:.2f} s")
                await self.sleep(delay)

    async def _write(self, report: Report) -> None:
        """Each requested output (see the module docstring); without any, the JSON goes to stdout."""
        from ingest_probe.renderers import get_renderer
        from ingest_probe.renderers.json import render_line

        targets: list[tuple[str, Path]] = []
        if self.options.output is not None:
            targets.append(("json", self.options.output))
        if self.options.prometheus_file is not None:
            targets.append(("prometheus", self.options.prometheus_file))
        if not targets:
            targets.append(("json", output.STDOUT))
        for fmt, path in targets:
            stdout = output.is_stdout(path)
            # On stdout one compact JSON document per line (JSON Lines), so a consumer can read cycle by cycle.
            text = render_line(report) if stdout and fmt == "json" else get_renderer(fmt)(report)
            try:
                if stdout:
                    await anyio.to_thread.run_sync(output.write_stdout, text)
                elif output.in_place(path):
                    await asyncio.wrap_future(DaemonExecutor().submit(output.write_in_place, path, text))
                else:
                    await anyio.to_thread.run_sync(output.write_atomic, path, text)
            except OSError as exc:
                if stdout and exc.errno in (errno.EPIPE, errno.EBADF):
                    self.stdout_closed = True  # nobody reads any more: stop (`watch | head -1`)
                    return
                # keep watching: a full disk now is not a reason to stop probing
                self.error(f"cannot write {'stdout' if stdout else path}: {exc.strerror or exc}")

    def _log_statuses(self, report: Report) -> None:
        results = {r.name: r for r in report.results or ()}
        current = {name: r.status for name, r in results.items()}
        overall = report.status.value if report.status is not None else "unknown"
        if self.previous is None:
            summary = ", ".join(f"{name} {status.value}" for name, status in current.items())
            self.info(f"cycle 1: {overall} ({summary})")
        else:
            for name, status in current.items():
                before = self.previous.get(name)
                if before != status:
                    shown = None if before is None else before.value
                    self.info(f"cycle {self.cycles}: {name} {shown} -> {status.value}{_why(results[name])}")
            if self.options.verbosity >= VERBOSE:
                took = None if report.run is None else report.run.duration_ms
                self._say(f"cycle {self.cycles}: {overall} in {took} ms")
        self.previous = current


def _why(result: ProbeResult) -> str:
    if result.error_kind is None:
        return ""
    return f" [{result.error_kind}] {result.error or ''}".rstrip()
