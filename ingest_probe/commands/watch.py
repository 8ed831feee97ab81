"""The ``watch`` command: flags in, one long-lived loop (``watch_loop``) until stopped, its exit code out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ingest_probe import errors
from ingest_probe.commands.options import (
    Number,
    TargetFlags,
    config_options,
    debugging,
    epilog,
    examples,
    jitter_option,
    load_targets,
    output_option,
    require_stdout,
    target_options,
    timeout_option,
    writable_path,
    write_failed_run,
)
from ingest_probe.commands.signals import Interrupted
from ingest_probe.defaults import EXIT_OK

if TYPE_CHECKING:
    from ingest_probe.commands.watch_loop import Loaded

WATCH_EXIT_CODES = """\b
Exit codes:
  0  stopped by SIGINT/SIGTERM (clients closed), or stdout's reader went
     away (`watch | head -1`)
  0/1/2  with --once: the cycle's report exit code (as `report`)
  2  stopped after --max-failures consecutive failing cycles (never without
     it, unless --ingest-schedule takes TIMESCALE_INGEST_MAX_FAILURES)
  3  usage or configuration error at start (the --prometheus-file then says
     ingest_probe_run_success 0), or with --once an internal error
SIGHUP reloads the configuration between cycles (a bad one is refused and
the running one stays)."""
WATCH_EXAMPLES = examples(
    "ingest-probe watch --env-file prod.env --prometheus-file /var/lib/probe.prom",
    "ingest-probe watch --env-file prod.env --ingest-schedule --max-failures 0",
    "ingest-probe watch --env-file prod.env --interval 1m --once",
)


@click.command(epilog=epilog(WATCH_EXIT_CODES, WATCH_EXAMPLES),
               short_help="Probe every connector every minute, with warm clients.")
@config_options
@target_options
@click.option("--interval", type=Number(0, 31 * 86400, low_open=True), default=None, metavar="SECONDS",
              help="Pause from a cycle's end to the next start [default: 60; with --ingest-schedule:"
                   " TIMESCALE_INGEST_INTERVAL_SECONDS].")
@click.option("--jitter-seconds", type=Number(0, 86400), default=None, metavar="SECONDS",
              help="Uniform ± jitter on the interval, floor 1 s [default: 0; with --ingest-schedule:"
                   " TIMESCALE_INGEST_JITTER_SECONDS].")
@click.option("--max-failures", type=click.IntRange(0, 2**31 - 1), default=None, metavar="N",
              help="Exit 2 after N consecutive cycles with a connector down; 0 never [default: 0; with"
                   " --ingest-schedule: TIMESCALE_INGEST_MAX_FAILURES].")
@click.option("--ingest-schedule", is_flag=True,
              help="Follow the ingest schedule: interval, jitter and max failures from the TIMESCALE_INGEST_*"
                   " keys (the flags above still win).")
@timeout_option()
@jitter_option
@click.option("--seed", type=int, default=None, help="Seed the deadline and schedule jitter.")
@click.option("--once", is_flag=True, help="Run a single cycle and exit with its report's exit code.")
@output_option(help="Write each cycle's JSON report here (as --output of `report`).")
@click.option("--prometheus-file", type=click.Path(path_type=Path, allow_dash=True), metavar="PATH",
              callback=writable_path,
              help="Write each cycle's Prometheus textfile here (node_exporter textfile; as --output).")
@click.option("--quiet", "-q", is_flag=True, help="Log nothing but errors.")
@click.option("--verbose", "-v", is_flag=True, help="Log every cycle, not only status transitions.")
def watch(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
          targets: TargetFlags, interval: float | None, jitter_seconds: float | None, max_failures: int | None,
          ingest_schedule: bool,
          timeout: float, jitter: float, seed: int | None, once: bool, output: Path | None,
          prometheus_file: Path | None, quiet: bool, verbose: bool) -> None:
    """Probe every configured connector every minute with warm clients, until stopped.

    Without --output/--prometheus-file each cycle's JSON report goes to stdout. Status transitions are
    logged on stderr, one line each. A monitor: it never stops because a connector is down (unless
    --max-failures says so); SIGHUP reloads the configuration.
    """
    from ingest_probe.commands.watch_loop import NORMAL, QUIET, VERBOSE, WatchOptions, run_watch, stamped

    if quiet and verbose:
        raise errors.UsageError("--quiet and --verbose contradict each other")
    require_stdout(output, prometheus_file)

    def configure() -> Loaded:
        """The configuration from the flags' sources (and the targets files); SIGHUP runs this again."""
        return load_targets(config_file, no_env, env_files, extras, targets)

    try:
        try:
            settings, probed = configure()
        except (errors.ConfigError, OSError):
            write_failed_run(prometheus_file, targets)  # the textfile says so, instead of an old cycle's `up 1`
            raise
        opts = WatchOptions(
            interval=interval, jitter_seconds=jitter_seconds, max_failures=max_failures,
            ingest_schedule=ingest_schedule, timeout=timeout, jitter=jitter, seed=seed,
            concurrency=targets.concurrency, once=once, output=output,
            prometheus_file=prometheus_file, verbosity=QUIET if quiet else VERBOSE if verbose else NORMAL,
            debug=debugging(),
        )
        code = run_watch(settings, opts, targets=probed, reload=configure)
    except Interrupted as exc:  # before the first cycle (loading drivers): stopped all the same, exit 0
        if exc.forced:
            raise
        if not quiet:
            click.echo(stamped(f"stopped by {exc.name}; clients closed"), err=True)
        code = EXIT_OK
    sys.exit(code)
