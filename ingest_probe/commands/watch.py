"""The ``watch`` command: flags in, one long-lived loop (``watch_loop``) until stopped, its exit code out."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ingest_probe import errors
from ingest_probe.commands.options import (
    Number,
    config_options,
    debugging,
    epilog,
    examples,
    jitter_option,
    load,
    output_option,
    require_stdout,
    timeout_option,
    writable_path,
)
from ingest_probe.commands.signals import Interrupted
from ingest_probe.defaults import EXIT_OK

WATCH_EXIT_CODES = """\b
Exit codes:
  0  stopped by SIGINT/SIGTERM (clients closed), or stdout's reader went
     away (`watch | head -1`)
  0/1/2  with --once: the cycle's report exit code (as `report`)
  2  stopped after TIMESCALE_INGEST_MAX_FAILURES consecutive cycles with a
     connector down
  3  usage or configuration error, or an internal error"""
WATCH_EXAMPLES = examples(
    "ingest-probe watch --env-file prod.env --prometheus-file /var/lib/probe.prom",
    "ingest-probe watch --env-file prod.env --interval 1m --once",
)


@click.command(epilog=epilog(WATCH_EXIT_CODES, WATCH_EXAMPLES),
               short_help="Probe on the ingest schedule with warm clients.")
@config_options
@click.option("--interval", type=Number(0, 31 * 86400, low_open=True), default=None, metavar="SECONDS",
              help="Pause from a cycle's end to the next start [default: TIMESCALE_INGEST_INTERVAL_SECONDS].")
@click.option("--jitter-seconds", type=Number(0, 86400), default=None, metavar="SECONDS",
              help="Uniform ± jitter on the interval, floor 1 s [default: TIMESCALE_INGEST_JITTER_SECONDS].")
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
          interval: float | None, jitter_seconds: float | None, timeout: float, jitter: float,
          seed: int | None, once: bool, output: Path | None, prometheus_file: Path | None, quiet: bool,
          verbose: bool) -> None:
    """Probe every configured connector on the ingest schedule with warm clients, until stopped.

    Without --output/--prometheus-file each cycle's JSON report goes to stdout. Status transitions are
    logged on stderr, one line each.
    """
    from ingest_probe.commands.watch_loop import NORMAL, QUIET, VERBOSE, WatchOptions, run_watch, stamped

    if quiet and verbose:
        raise errors.UsageError("--quiet and --verbose contradict each other")
    require_stdout(output, prometheus_file)
    try:
        settings = load(config_file, no_env, env_files, extras)
        opts = WatchOptions.from_settings(
            settings, interval=interval, jitter_seconds=jitter_seconds, timeout=timeout, jitter=jitter,
            seed=seed, once=once, output=output, prometheus_file=prometheus_file,
            verbosity=QUIET if quiet else VERBOSE if verbose else NORMAL, debug=debugging(),
        )
        code = run_watch(settings, opts)
    except Interrupted as exc:  # before the first cycle (loading drivers): stopped all the same, exit 0
        if exc.forced:
            raise
        if not quiet:
            click.echo(stamped(f"stopped by {exc.name}; clients closed"), err=True)
        code = EXIT_OK
    sys.exit(code)
