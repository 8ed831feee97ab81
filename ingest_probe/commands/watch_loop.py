"""The ``watch`` loop: one long-lived Prober, a check per cycle, atomic outputs, reloads on SIGHUP.

Schedule (``WatchOptions.schedule``): a monitor's by default — a cycle every ``WATCH_INTERVAL`` (60 s), no
jitter, never stopping on failures; each of those from its flag when given. With ``ingest_schedule`` the
defaults come from the ``TIMESCALE_INGEST_*`` keys instead (interval, jitter, max failures; flags still win).
The next cycle starts ``interval ± uniform(jitter_seconds)`` after the previous one *completed*, floored at
``MIN_DELAY`` (1 s). The jitter is capped at the interval, so pauses stay centred on it. An interval below
the floor (only reachable with ``--interval``) is taken as asked — the floor becomes the interval itself —
so tests can run sub-second cycles.

Stopping: with ``max_failures`` N > 0, after N consecutive failing cycles (overall status ``down``, or a
cycle that could not run) the loop returns 2; with 0 (the default) it never stops on failures: a target down
for 100 cycles is reported down 100 times. SIGINT/SIGTERM cancel the current cycle (its probes are cut at
once, so it ends well within its deadline), the prober closes every client (bounded, shielded) and the loop
returns 0; so does a stdout whose reader went away (EPIPE: ``watch | head -1``). ``once`` runs one cycle and
returns that report's exit code (0/1/2, as ``report --connectivity``; 3 for an internal error).

A cycle that raises (a bug in the check machinery, not in a probe: those are results) is logged, counted
as a failure and written to the Prometheus textfile as a failed run (``ingest_probe_run_success 0``, no
per-target series); the loop goes on.

Reloading (SIGHUP, or ``request_reload``): between cycles — a pause in progress ends at once — ``reload`` (the
same function that loaded the configuration at start: env files, YAML, targets) runs again in a worker thread
and the Prober swaps to the new targets (``Prober.update``), keeping the warm clients of unchanged targets;
the next cycle starts at once. A configuration that does not load (or a bug in loading it) is refused with
one line and the previous one stays, the pause going on as planned.

Outputs follow ``output``'s rules (``-`` is stdout, devices and FIFOs written in place, files replaced
atomically). A file is replaced in a worker thread the loop waits for, even when cancelled, so no temp
file is left and a file is never half written; an in-place write (a FIFO whose reader stalls) and a write
to stdout (`watch | slow-reader`) run in a daemon thread that a signal may abandon.

Logging (stderr, one line each): the first cycle's statuses, then one line per connector status
*transition* — not one per cycle. ``verbose`` adds a line per cycle; ``quiet`` keeps only errors (a file
that cannot be written, a failed cycle or reload, the stop after too many failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import random
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import anyio

from ingest_probe import errors
from ingest_probe.commands import output, signals
from ingest_probe.commands.loop import cancel_on_signal, install_daemon_executor
from ingest_probe.connectors._net import DaemonExecutor, one_line
from ingest_probe.defaults import CONCURRENCY, EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, JITTER, TIMEOUT, WATCH_INTERVAL
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

#: What ``reload`` returns: the service's settings and the targets to probe (the same function the command
#: loaded them with at start).
Loaded = tuple["Settings", Sequence["Target"]]


class Schedule(NamedTuple):
    """When cycles run: the pause, its ± jitter and the consecutive failures that stop the loop (0: never)."""

    interval: float
    jitter_seconds: float
    max_failures: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchOptions:
    """What one ``watch`` invocation was asked to do (the CLI fills it from its flags).

    ``interval``, ``jitter_seconds`` and ``max_failures`` are the flags (None when not given); ``schedule``
    resolves them against the defaults of a monitor, or with ``ingest_schedule`` against the ingest schedule.
    """

    interval: float | None = None
    jitter_seconds: float | None = None
    max_failures: int | None = None
    ingest_schedule: bool = False
    timeout: float = TIMEOUT
    jitter: float = JITTER
    seed: int | None = None
    concurrency: int = CONCURRENCY
    once: bool = False
    output: Path | None = None
    prometheus_file: Path | None = None
    verbosity: int = NORMAL
    handle_signals: bool = True
    #: Log the traceback behind every ``internal`` result (``--debug``).
    debug: bool = False

    def schedule(self, settings: Settings) -> Schedule:
        """The flags given, else a monitor's defaults (60 s, no jitter, never stop) or, with
        ``ingest_schedule``, the ``TIMESCALE_INGEST_*`` settings (interval, jitter, max failures)."""
        if self.ingest_schedule:
            s = settings.schedule
            base = Schedule(float(s.interval_seconds), float(s.jitter_seconds), s.max_failures)
        else:
            base = Schedule(WATCH_INTERVAL, 0.0, 0)
        return Schedule(
            base.interval if self.interval is None else self.interval,
            base.jitter_seconds if self.jitter_seconds is None else self.jitter_seconds,
            base.max_failures if self.max_failures is None else self.max_failures,
        )


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


def run_watch(settings: Settings, options: WatchOptions, *, targets: Sequence[Target] | None = None,
              reload: Callable[[], Loaded] | None = None) -> int:
    """The CLI's single event-loop entry for ``watch``; returns the process exit code.

    The client libraries are imported first, before the loop starts (as ``report`` does), so the first
    cycle's phases time the network and not ~0.15 s of imports.
    """
    from ingest_probe.settings.targets import classic_targets

    async def main() -> int:
        install_daemon_executor()  # a DNS lookup stuck in the resolver must not hold the exit
        return await watch(settings, options, targets=targets, reload=reload)

    with signals.handled():
        preload_drivers(classic_targets(settings) if targets is None else targets)
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
    reload: Callable[[], Loaded] | None = None,
) -> int:
    """Run cycles until a signal (0), too many consecutive failures (2) or, with ``once``, one cycle.

    ``targets``: what to probe (default: the service's classic targets); ``probes``: the probe to use for a
    target instead of its connector's, by target name (tests); ``reload``: what SIGHUP runs to load the
    configuration again (without it, SIGHUP is logged and ignored).
    """
    loop = WatchLoop(settings, options, log=log, targets=targets, probes=probes, sleep=sleep,
                     rng=rng or random.Random(options.seed), reload=reload)
    return await loop.main()


class WatchLoop:
    """One ``watch``: its cycles, pauses, reloads and outputs (``watch()`` builds one and runs ``main``)."""

    def __init__(
        self,
        settings: Settings,
        options: WatchOptions,
        *,
        log: Callable[[str], None] = stderr_line,
        targets: Sequence[Target] | None = None,
        probes: Mapping[str, Probe] | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
        reload: Callable[[], Loaded] | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.log = log
        self.targets = targets
        self.probes = probes
        self.sleep = sleep
        self.rng = rng or random.Random(options.seed)
        self.reload = reload
        self.code: int | None = None
        self.stdout_closed = False
        self.cycles = 0
        self.previous: dict[str, Status] | None = None
        self._prober: Prober | None = None
        self._reload_pending = False
        self._pause_scope: anyio.CancelScope | None = None

    async def main(self) -> int:
        """Run until stopped; SIGINT/SIGTERM (with ``handle_signals``) are a clean stop (0), SIGHUP a reload."""
        opts = self.options
        with anyio.CancelScope() as scope:
            with cancel_on_signal(scope) if opts.handle_signals else contextlib.nullcontext() as seen:
                with self._hangups() if opts.handle_signals else contextlib.nullcontext():
                    self.code = await self.run()
        if seen is not None and seen.signum is not None:
            self.info(f"stopped by {signal.Signals(seen.signum).name}; clients closed")
            return EXIT_OK
        if self.stdout_closed:
            self.info("stopped: stdout was closed by its reader; clients closed")
            return EXIT_OK
        assert self.code is not None
        return self.code

    @contextlib.contextmanager
    def _hangups(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        with signals.on_hangup(lambda: loop.call_soon_threadsafe(self.request_reload)):
            yield

    def request_reload(self) -> None:
        """Load the configuration again before the next cycle (SIGHUP); a pause in progress ends now."""
        self._reload_pending = True
        if self._pause_scope is not None:
            self._pause_scope.cancel()

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
                          concurrency=opts.concurrency, probes=self.probes) as prober:
            self._prober = prober
            while True:
                report = await self._cycle(prober)
                if self.stdout_closed:
                    return EXIT_OK
                failed = report is None or report.status is Status.DOWN
                failures = failures + 1 if failed else 0
                if opts.once:
                    return EXIT_UNKNOWN if report is None else report.exit_code
                schedule = opts.schedule(self.settings)
                if schedule.max_failures and failures >= schedule.max_failures:
                    self.error(f"stopping after {failures} consecutive failing cycles "
                               f"(max failures {schedule.max_failures})")
                    return EXIT_CRITICAL
                delay = next_delay(schedule.interval, schedule.jitter_seconds, self.rng)
                if opts.verbosity >= VERBOSE:
                    self._say(f"cycle {self.cycles}: next in {delay:.2f} s")
                await self._pause(delay)

    async def _cycle(self, prober: Prober) -> Report | None:
        """One check, written and logged; None when the cycle itself failed (logged, written as a failed run)."""
        self.cycles += 1
        try:
            report = await prober.report()
        except Exception as exc:  # noqa: BLE001 -- not a probe's failure (those are results): a failed cycle
            self.error(f"cycle {self.cycles} could not run: internal error: {_describe(exc)}")
            if self.options.debug:
                self.log("".join(traceback.format_exception(exc)).rstrip("\n"))
            await self._write_failed_run()
            return None
        await self._write(report)
        if not self.stdout_closed:
            self._log_statuses(report)
            if self.options.debug:
                for bug in report.internal_errors:
                    self.log("".join(traceback.format_exception(bug)).rstrip("\n"))
        return report

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` s; a reload requested meanwhile (or before) ends it when the new configuration is
        taken, else the pause goes on for what is left of it."""
        until = time.monotonic() + delay
        while True:
            with anyio.CancelScope() as scope:
                self._pause_scope = scope
                try:
                    if not self._reload_pending:
                        await self.sleep(delay)
                finally:
                    self._pause_scope = None
            if not self._reload_pending or await self._reload():
                return
            delay = max(0.0, until - time.monotonic())

    async def _reload(self) -> bool:
        """Load the configuration again and swap the prober's targets; whether the new one was taken."""
        self._reload_pending = False
        if self.reload is None or self._prober is None:
            self.error("SIGHUP: no configuration to reload here; ignored")
            return False
        try:
            settings, targets = await anyio.to_thread.run_sync(self.reload)
            swap = await self._prober.update(targets, settings=settings, probes=self.probes)
        except (errors.IngestProbeError, OSError) as exc:
            why = f"{exc.strerror or exc}: {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)
            self.error(f"reload refused, keeping the previous configuration: {one_line(why)}")
            return False
        except Exception as exc:  # noqa: BLE001 -- a bug in loading must not end the monitor: refused, logged
            self.error(f"reload refused, keeping the previous configuration: internal error: {_describe(exc)}")
            return False
        self.settings, self.targets = settings, tuple(targets)
        self.info(f"reloaded the configuration: {len(self.targets)} targets, {len(swap.kept)} unchanged (clients"
                  f" kept), {len(swap.added)} new or changed, {len(set(swap.removed) - set(swap.added))} removed")
        return True

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
            # On stdout one compact JSON document per line (JSON Lines), so a consumer can read cycle by cycle.
            text = render_line(report) if output.is_stdout(path) and fmt == "json" else get_renderer(fmt)(report)
            await self._put(path, text)
            if self.stdout_closed:
                return

    async def _write_failed_run(self) -> None:
        """A cycle that could not run: the textfile says so (and drops every per-target series)."""
        from ingest_probe.renderers.prometheus import render_failed_run
        from ingest_probe.settings.targets import shared_labels

        if self.options.prometheus_file is not None:
            labels = shared_labels(t.labels for t in self.targets or ())
            await self._put(self.options.prometheus_file, render_failed_run(dt.datetime.now(dt.UTC), labels))

    async def _put(self, path: Path, text: str) -> None:
        stdout = output.is_stdout(path)
        try:
            if stdout:  # a reader that stalls blocks the writer, not a signal: abandoned like an in-place write
                await asyncio.wrap_future(DaemonExecutor().submit(output.write_stdout, text, unbuffered=True))
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
            self.info(f"cycle {self.cycles}: {overall} ({summary})")
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


def _describe(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}")


def _why(result: ProbeResult) -> str:
    if result.error_kind is None:
        return ""
    return f" [{result.error_kind}] {result.error or ''}".rstrip()
