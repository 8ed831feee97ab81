"""The ``wait`` command: probe until every configured target is ready, then exit 0 or become a command.

The wait4x / wait-for-it job for container entrypoints and CI jobs that need PostgreSQL, Redis and Kafka
together. Attempts are spaced by a capped exponential backoff with jitter (``backoff``); each attempt checks
every target with one warm Prober (a target that answered keeps its connection). "Ready" is the exit
policy's (``report.policy.ready`` under ``--fail-on``, target by target). Every await is bounded: an
attempt still running when ``--timeout`` passes is cut, so the command ends within ``--timeout`` plus the
close budget.

With a COMMAND, once ready every client is closed, the event loop is gone, SIGINT/SIGTERM/SIGHUP get back
the dispositions the process started with, and ``os.execvp`` replaces the process: same pid, COMMAND's
signals and exit code. Every descriptor ingest-probe opens is close-on-exec (Python's default) and closed
before that anyway, so COMMAND inherits only what ingest-probe inherited.
"""

from __future__ import annotations

import functools
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click

from ingest_probe import errors
from ingest_probe.commands.options import (
    TIMEOUT_TYPE,
    Number,
    TargetFlags,
    config_options,
    epilog,
    examples,
    fail_on_option,
    load_targets,
    target_options,
)
from ingest_probe.defaults import (
    CLIENT_NAME,
    CONCURRENCY,
    EXIT_CRITICAL,
    EXIT_OK,
    FAIL_ON,
    TIMEOUT,
    WAIT_INTERVAL,
    WAIT_MAX_INTERVAL,
    WAIT_TIMEOUT,
)
from ingest_probe.renderers.printable import printable

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Probe
    from ingest_probe.results import ProbeResult
    from ingest_probe.settings.service import Settings
    from ingest_probe.settings.targets import Target

WAIT_EXIT_CODES = """\b
Exit codes:
  0  every configured connector ready (without COMMAND)
  2  --timeout passed with a connector not ready (one stderr line each:
     its last result)
  3  usage or configuration error, or nothing configured to wait for
  126  COMMAND is not executable; 127 COMMAND not found
  130  interrupted (SIGINT); 143 terminated (SIGTERM) -- clients closed
With COMMAND (after `--`), once ready ingest-probe becomes COMMAND (exec:
same pid), so the exit code and the signals are COMMAND's."""
WAIT_EXAMPLES = examples(
    "ingest-probe wait --env-file prod.env --timeout 60s -- ./start-ingest",
    "ingest-probe wait --env-file ci.env --timeout 2m --interval 500ms",
    "ingest-probe wait --env-file prod.env --fail-on down -- ./serve",
)


def not_ready(results: Iterable[ProbeResult], fail_on: str = FAIL_ON) -> list[ProbeResult]:
    """The configured targets that ``fail_on`` counts as not ready (``report.policy.ready``, one by one)."""
    from ingest_probe.report.policy import ready

    return [r for r in results if r.configured and not ready([r], fail_on)]

#: Each pause is drawn from [(1 - BACKOFF_JITTER) * d, d], d doubling from --interval up to the cap.
BACKOFF_JITTER = 0.25


def backoff(attempt: int, interval: float, rng: random.Random, cap: float = WAIT_MAX_INTERVAL) -> float:
    """The pause after attempt ``attempt`` (1, 2, ...): ``interval`` doubled per attempt, capped at ``cap`` (or
    at ``interval`` when that is larger), less up to ``BACKOFF_JITTER`` of it at random."""
    ceiling = max(cap, interval)
    step = min(ceiling, interval * 2.0 ** min(attempt - 1, 64))
    return step * (1.0 - BACKOFF_JITTER * rng.random())


class Waited(NamedTuple):
    """How a wait ended: ready or not, the last result of each target, attempts made, seconds taken."""

    ready: bool
    results: Mapping[str, ProbeResult]
    attempts: int
    elapsed: float


def _line(text: str) -> None:
    click.echo(f"{CLIENT_NAME} wait: {printable(text)}", err=True)


def _state(result: ProbeResult) -> tuple[str, str | None]:
    return result.status.value, result.error_kind


def _shown(result: ProbeResult) -> str:
    if result.error_kind is None:
        return result.status.value
    return f"{result.status.value} [{result.error_kind}] {result.error or ''}".rstrip()


async def wait_until_ready(
    targets: Sequence[Target],
    *,
    settings: Settings | None = None,
    limit: float = WAIT_TIMEOUT,
    interval: float = WAIT_INTERVAL,
    probe_timeout: float,
    concurrency: int = CONCURRENCY,
    fail_on: str = FAIL_ON,
    log: Callable[[str], None] = _line,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    probes: Mapping[str, Probe] | None = None,
) -> Waited:
    """Check ``targets`` until every one is ready under ``fail_on`` or ``limit`` s (``--timeout``) have passed.

    One line per state change of a target (status and error kind; a target ready at its first check is not
    logged), and one when all are ready. ``sleep``/``clock``/``probes``: for tests.
    """
    import anyio

    from ingest_probe.prober import Prober

    rng = rng or random.Random()
    pause = sleep or anyio.sleep
    started = clock()
    until = started + limit
    last: dict[str, ProbeResult] = {}
    attempt = 0
    async with Prober(targets, settings=settings, timeout=probe_timeout, concurrency=concurrency,
                      probes=probes) as prober:
        while True:
            attempt += 1
            results: list[ProbeResult] | None = None
            with anyio.move_on_after(max(0.0, until - clock())):
                results = await prober.check()
            if results is None:  # cut by --timeout: the previous attempt's results stand
                return Waited(False, last, attempt, clock() - started)
            for result in results:
                before = last.get(result.name)
                changed = _state(result) != (None if before is None else _state(before))
                if changed and not (before is None and not not_ready([result], fail_on)):
                    was = "" if before is None else f"{before.status.value} -> "
                    log(f"{result.name} {was}{_shown(result)} (attempt {attempt}, {clock() - started:.2f} s)")
                last[result.name] = result
            if not not_ready(results, fail_on):
                took = clock() - started
                log(f"ready after {took:.2f} s ({attempt} attempt{'s' if attempt > 1 else ''})")
                return Waited(True, last, attempt, took)
            left = until - clock()
            if left <= 0:
                return Waited(False, last, attempt, clock() - started)
            await pause(min(backoff(attempt, interval, rng), left))
            if until - clock() <= 0:
                return Waited(False, last, attempt, clock() - started)


@click.command(epilog=epilog(WAIT_EXIT_CODES, WAIT_EXAMPLES),
               short_help="Wait until every connector is ready, then exit or exec a command.",
               context_settings={"allow_interspersed_args": False})
@config_options
@target_options
@click.option("--timeout", type=Number(0, 86400, low_open=True), default=WAIT_TIMEOUT,
              show_default=f"{WAIT_TIMEOUT:g}s", metavar="DURATION", help="Give up (exit 2) after this long.")
@click.option("--interval", type=Number(0, 3600, low_open=True), default=WAIT_INTERVAL,
              show_default=f"{WAIT_INTERVAL:g}s", metavar="DURATION",
              help=f"First pause between attempts; it doubles up to {WAIT_MAX_INTERVAL:g}s (or --interval if"
                   " larger), with up to 25% jitter off each pause.")
@click.option("--probe-timeout", type=TIMEOUT_TYPE, default=TIMEOUT, show_default=f"{TIMEOUT:g}s",
              metavar="DURATION", help="Per-probe deadline of each attempt (what `report --timeout` is).")
@fail_on_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND [ARGS]...]")
def wait(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
         targets: TargetFlags, timeout: float, interval: float, probe_timeout: float, fail_on: str,
         command: tuple[str, ...]) -> None:
    """Probe every configured connector until all are ready; then exit 0, or exec COMMAND.

    Use it as a container entrypoint or a CI step: `ingest-probe wait --env-file prod.env --timeout 60 --
    ./start-ingest`. One line on stderr per connector state change; nothing on stdout (it is COMMAND's).
    """
    from ingest_probe.commands.loop import run as run_loop
    from ingest_probe.engine.run import preload_drivers

    settings, probed = load_targets(config_file, no_env, env_files, extras, targets)
    if not any(t.configured for t in probed):
        raise errors.ConfigError("nothing to wait for: no connector is configured (TIMESCALEDB_URL, REDIS_URL,"
                                 " KAFKA_BROKERS, ...)")
    preload_drivers(probed)  # before the loop: imports inside it would be charged to the first deadlines
    waited = run_loop(functools.partial(wait_until_ready, probed, settings=settings, limit=timeout,
                                        interval=interval, probe_timeout=probe_timeout,
                                        concurrency=targets.concurrency, fail_on=fail_on))
    if not waited.ready:
        failing = not_ready(waited.results.values(), fail_on)
        pending = [t.name for t in probed if t.configured and t.name not in waited.results]
        for result in failing:
            _line(f"not ready after {waited.elapsed:.2f} s: {result.name} {_shown(result)}")
        for name in pending:
            _line(f"not ready after {waited.elapsed:.2f} s: {name} gave no answer yet (first check cut by --timeout)")
        sys.exit(EXIT_CRITICAL)
    if command:
        become(list(command))
    sys.exit(EXIT_OK)


def become(argv: list[str]) -> None:
    """Replace the process with ``argv`` (PATH searched); returns only to exit 126/127 when it cannot run."""
    from ingest_probe.commands import signals

    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    signals.restore()  # COMMAND starts with the dispositions ingest-probe started with
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        click.echo(f"ingest-probe: error: cannot run {printable(argv[0])}: {exc.strerror or exc}", err=True)
        sys.exit(code)
