"""The ``drill`` command: rehearse a Timescale failover from an ingest results file, probing only the standby."""

from __future__ import annotations

from pathlib import Path

import click

from ingest_probe.commands.options import (
    RESULTS_HELP,
    config_options,
    dimensions_option,
    finish,
    format_option,
    jitter_option,
    load,
    output_option,
    require_stdout,
    timeout_option,
)
from ingest_probe.commands.report import splay_option, splay_sleep

DRILL_EXIT_CODES = """\b
Exit codes (Nagios meaning):
  0  OK: the simulated outage decides a failover and the standby is a healthy, promoted target
  1  WARNING: no standby configured, TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK false, or no required
     dimensions
  2  CRITICAL: the standby is unreachable, or reachable but in recovery (not promoted)
  3  UNKNOWN: usage or configuration error (a bad results file), or an internal error
  130  interrupted (SIGINT); 143 terminated (SIGTERM) -- clients closed either way"""


@click.command(epilog=DRILL_EXIT_CODES, short_help="Rehearse a Timescale failover: simulated outage, standby probed.")
@config_options
@click.option("--results", "--ingest-results", "results_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False), metavar="FILE", help=RESULTS_HELP)
@dimensions_option
@click.option("--scenario", metavar="LABEL", default="timescale_failover", show_default=True, help="Drill label.")
@timeout_option("Deadline of the standby probe in seconds.")
@jitter_option
@click.option("--seed", type=int, default=None, help="Seed the deadline jitter (reproducible runs).")
@format_option("json", "markdown")
@output_option()
@splay_option
def drill(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
          results_file: Path, dimensions: tuple[str, ...], scenario: str, timeout: float, jitter: float,
          seed: int | None, fmt: str, output: Path | None, splay: float) -> None:
    """Rehearse a Timescale failover, as the ingest service's run_failover_drill did: the required dimensions'
    results are replaced by empty ones (a simulated outage), the decision is taken as in `readiness`, and the
    standby (TIMESCALEDB_FAILOVER_URL) is probed: it must be reachable and writable (promoted).

    Needs no TIMESCALE_FAILOVER_DRILL (an explicit request). Required dimensions: --dimensions, else
    TIMESCALE_FAILOVER_DRILL_DIMENSIONS when set or when the drill is enabled, else every dimension of the
    results. The connectors are not probed (that is `readiness --connectivity`)."""
    from ingest_probe.commands.oneshot import run_drill
    from ingest_probe.readiness.drill import load_ingest_results

    require_stdout(output)
    settings = load(config_file, no_env, env_files, extras)
    results = load_ingest_results(results_file)  # exit 3 before anything is contacted
    splay_s = splay_sleep(splay)
    finish(run_drill(settings, ingest_results=results, dimensions=dimensions, scenario=scenario, timeout=timeout,
                     jitter=jitter, seed=seed, splay_s=splay_s), fmt, output)
