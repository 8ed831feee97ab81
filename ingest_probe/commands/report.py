"""The ``report``, ``readiness`` and ``config`` commands: parse, load settings, run once, render, write, exit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ingest_probe import errors
from ingest_probe.commands.options import (
    EXIT_CODES,
    RESULTS_HELP,
    Number,
    TargetFlags,
    color_option,
    config_options,
    debug,
    dimensions_option,
    epilog,
    examples,
    finish,
    format_option,
    load,
    load_targets,
    options,
    output_option,
    probe_options,
    require_stdout,
    sections_option,
    target_options,
    write_failed_run,
)
from ingest_probe.renderers import FORMATS
from ingest_probe.renderers.printable import printable

if TYPE_CHECKING:
    import random

    from ingest_probe.settings.service import Settings
    from ingest_probe.topics.plan import ProvisioningSection

splay_option = click.option(
    "--splay", type=Number(0, 3600), default=0.0, metavar="DURATION",
    help="Before contacting anything, sleep a random 0..S (30s, 1m), so many hosts' cron runs spread out.")
report_options = options(
    click.option("--ensure-topics", is_flag=True,
                 help="Create the declared Kafka topics that are missing, before any probe (see `topics apply`);"
                      " exit 1 if drift remains, 2 if a creation failed or the broker is unreachable."),
    click.option("--topics-dry-run", is_flag=True,
                 help="With --ensure-topics: read-only plan (see `topics plan`); exit 1 if a topic would be"
                      " created."),
    click.option("--fix-drift", is_flag=True,
                 help="With --ensure-topics: also fix fixable drift (see `topics apply`)."),
    click.option("--validate-on-broker", is_flag=True,
                 help="With --topics-dry-run: also send CreateTopics validate_only (see `topics plan`)."),
    format_option(*FORMATS),
    color_option,
    sections_option,
    output_option(),
    splay_option,
)


def check_topic_flags(*, ensure_topics: bool, topics_dry_run: bool, fix_drift: bool,
                      validate_on_broker: bool) -> None:
    """Topic flags that need another flag are usage errors (exit 3), never silently ignored."""
    if topics_dry_run and not ensure_topics:
        raise errors.UsageError("--topics-dry-run needs --ensure-topics")
    if fix_drift and not ensure_topics:
        raise errors.UsageError("--fix-drift needs --ensure-topics")
    if validate_on_broker and not topics_dry_run:
        raise errors.UsageError("--validate-on-broker needs --topics-dry-run")


def provisioned(settings: Settings, *, ensure_topics: bool, topics_dry_run: bool, fix_drift: bool,
                validate_on_broker: bool, timeout: float) -> ProvisioningSection | None:
    """The provisioning section when --ensure-topics was given (run before the probes, so the Kafka probe
    sees the topics this run created), else None. Without Kafka configured: a section saying so."""
    if not ensure_topics:
        return None
    if not settings.kafka.configured:  # the rest of the report still matters: a note, not an error exit
        from ingest_probe.topics.plan import kafka_not_configured

        if not settings.kafka.topics:
            click.echo("ingest-probe: warning: --ensure-topics: Kafka is not configured (set KAFKA_BROKERS); no"
                       " topic to provision", err=True)
        return kafka_not_configured(settings.kafka.topics, dry_run=topics_dry_run, fix_drift=fix_drift,
                                    validate_on_broker=validate_on_broker)
    from ingest_probe.commands.oneshot import provision_topics

    return provision_topics(settings.kafka, dry_run=topics_dry_run, fix_drift=fix_drift,
                            validate_on_broker=validate_on_broker, timeout=timeout)


def splay(seconds: float, rng: random.Random | None = None) -> float:
    """A random pause in [0, seconds] for ``report --splay``.

    The generator is deliberately *not* the supervisor's (seeded by ``--seed``): hosts sharing a seed for
    reproducible deadlines must still spread their cron runs apart.
    """
    import random  # not on the path of --help

    return (rng or random.Random()).uniform(0.0, seconds) if seconds > 0 else 0.0


def splay_sleep(seconds: float) -> float | None:
    """``report --splay``: sleep a random 0..S s before probing (outside the event loop); what was slept."""
    if not seconds:
        return None
    slept = splay(seconds)
    debug(f"--splay: sleeping {slept:.3f} s before contacting anything")
    time.sleep(slept)
    return round(slept, 3)


REPORT_EXAMPLES = examples(
    "ingest-probe report --env-file prod.env --connectivity",
    "ingest-probe report --config ingest.yaml --connectivity -t 2s -f nagios",
    "ingest-probe report --connectivity --fail-on down -o /dev/null || exit 1",
)


@click.command(epilog=epilog(EXIT_CODES, REPORT_EXAMPLES),
               short_help="The manifest; with --connectivity, probe every connector.")
@config_options
@target_options
@probe_options
@report_options
def report(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
           targets: TargetFlags, connectivity: bool, timeout: float, jitter: float, seed: int | None, fail_on: str,
           cert_warn_days: float,
           ensure_topics: bool, topics_dry_run: bool, fix_drift: bool, validate_on_broker: bool, fmt: str | None,
           no_color: bool, sections: tuple[str, ...] | None, output: Path | None, splay: float) -> None:
    """Build the manifest report; with --connectivity, probe every configured connector.

    On a terminal the report is a line per target and a summary (--format text); piped or with --output it
    is JSON unless --format says otherwise.
    """
    from ingest_probe.commands.oneshot import run_report
    from ingest_probe.commands.terminal import Progress, view

    require_stdout(output)
    check_topic_flags(ensure_topics=ensure_topics, topics_dry_run=topics_dry_run, fix_drift=fix_drift,
                      validate_on_broker=validate_on_broker)
    if splay and not (connectivity or ensure_topics):
        raise errors.UsageError("--splay needs --connectivity or --ensure-topics (nothing else is contacted)")
    if fmt == "nagios" and not (connectivity or ensure_topics):
        raise errors.UsageError("--format nagios needs --connectivity (a monitoring check that probes nothing"
                                " would always be OK)")
    shown = view(fmt, output, no_color=no_color, fail_on=fail_on, sections=sections, cert_warn_days=cert_warn_days)
    try:
        settings, probed = load_targets(config_file, no_env, env_files, extras, targets)
    except (errors.ConfigError, OSError):
        if shown.fmt == "prometheus":
            write_failed_run(output, targets)  # the textfile says the run failed, instead of an old run's results
        raise
    splay_s = splay_sleep(splay)
    topics = provisioned(settings, ensure_topics=ensure_topics, topics_dry_run=topics_dry_run, fix_drift=fix_drift,
                         validate_on_broker=validate_on_broker, timeout=timeout)
    progress = Progress()
    hints = [] if connectivity or not progress.enabled else ["manifest only: add --connectivity to probe"]
    if connectivity:
        progress.start(sum(1 for t in probed if t.configured), timeout)
    built = run_report(settings, connectivity=connectivity, timeout=timeout, jitter=jitter, seed=seed, topics=topics,
                       splay_s=splay_s, cert_warn_days=cert_warn_days, on_result=progress, targets=probed,
                       concurrency=targets.concurrency)
    finish(built, shown, output, announced=progress.announced, hints=hints)


READINESS_EXIT_CODES = """\b
Exit codes (Nagios meaning; the worst of connectivity, topics and drill):
  0  OK: connectors ok (or skipped, or not probed) and the drill ok or not
     run
  1  WARNING: a connector degraded/starting, or drill warn (a dimension not
     healthy but no failover, or failover needed but no standby configured,
     rehearsed or probed: no --connectivity); 0 with --fail-on down
  2  CRITICAL: a connector down, or drill fail (the standby is unreachable
     or in recovery)
  3  UNKNOWN: usage or configuration error (a bad results file), nothing
     configured to probe (--connectivity), or an internal error
  130  interrupted (SIGINT); 143 terminated (SIGTERM); clients closed
With --ensure-topics, topic outcomes count as in `report` (drift 1, a
failure or an unreachable broker 2)."""
READINESS_EXAMPLES = examples(
    "ingest-probe readiness --env-file prod.env --connectivity -f markdown",
    "ingest-probe readiness --env-file prod.env --results results.json -o ev.md",
)


@click.command(epilog=epilog(READINESS_EXIT_CODES, READINESS_EXAMPLES),
               short_help="Evidence for a promotion: report + failover drill.")
@config_options
@target_options
@probe_options
@click.option("--ingest-results", "--results", "ingest_results", type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE", help=f"{RESULTS_HELP} Judged by the drill when TIMESCALE_FAILOVER_DRILL is true;"
                                   " without it the drill is not run.")
@dimensions_option
@click.option("--scenario", metavar="LABEL", help="Drill label [default: TIMESCALE_FAILOVER_DRILL_LABEL].")
@report_options
def readiness(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
              targets: TargetFlags, connectivity: bool, timeout: float, jitter: float, seed: int | None, fail_on: str,
              cert_warn_days: float, ingest_results: Path | None, dimensions: tuple[str, ...], scenario: str | None,
              ensure_topics: bool, topics_dry_run: bool, fix_drift: bool, validate_on_broker: bool, fmt: str | None,
              no_color: bool, sections: tuple[str, ...] | None, output: Path | None, splay: float) -> None:
    """Readiness evidence: the manifest, the connectors with --connectivity (as `report`), topics with
    --ensure-topics, and a Timescale failover drill judging --ingest-results (alias --results) as written; with
    --connectivity the standby is probed when the drill decides a failover (without it, no server is
    contacted). `drill` rehearses a failover instead."""
    from ingest_probe.commands.oneshot import run_readiness
    from ingest_probe.commands.terminal import Progress, view
    from ingest_probe.readiness.drill import load_ingest_results, not_enabled

    require_stdout(output)
    check_topic_flags(ensure_topics=ensure_topics, topics_dry_run=topics_dry_run, fix_drift=fix_drift,
                      validate_on_broker=validate_on_broker)
    if splay and not (connectivity or ensure_topics):
        raise errors.UsageError("--splay needs --connectivity or --ensure-topics (nothing else is contacted)")
    shown = view(fmt, output, no_color=no_color, fail_on=fail_on, sections=sections, cert_warn_days=cert_warn_days)
    settings, probed = load_targets(config_file, no_env, env_files, extras, targets)
    # Inputs first: a bad results file is exit 3 before any topic is created or any server contacted.
    results = load_ingest_results(ingest_results) if ingest_results is not None else None
    if results is not None and not settings.failover.enabled:
        click.echo(printable(f"ingest-probe: warning: {not_enabled(settings)}: {ingest_results} was checked but not"
                             " judged; set TIMESCALE_FAILOVER_DRILL=true, or run `ingest-probe drill --results FILE`"),
                   err=True)
    splay_s = splay_sleep(splay)
    topics = provisioned(settings, ensure_topics=ensure_topics, topics_dry_run=topics_dry_run, fix_drift=fix_drift,
                         validate_on_broker=validate_on_broker, timeout=timeout)
    progress = Progress()
    if connectivity:
        progress.start(sum(1 for t in probed if t.configured), timeout)
    built = run_readiness(settings, ingest_results=results, dimensions=dimensions, scenario=scenario,
                          connectivity=connectivity, timeout=timeout, jitter=jitter, seed=seed, topics=topics,
                          splay_s=splay_s, cert_warn_days=cert_warn_days, on_result=progress, targets=probed,
                          concurrency=targets.concurrency)
    finish(built, shown, output, announced=progress.announced and connectivity)


CONFIG_EXAMPLES = examples(
    "ingest-probe config --env-file prod.env",
    "ingest-probe config --env-file prod.env --changed",
    "ingest-probe config --config ingest.yaml -f json",
)


@click.command(epilog=CONFIG_EXAMPLES, short_help="The effective configuration, redacted, with sources.")
@config_options
@format_option("text", "json", default="text")
@click.option("--changed", is_flag=True, help="Only the keys some source sets (not the built-in defaults).")
def config(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
           fmt: str, changed: bool) -> None:
    """Print the effective configuration, redacted, with each value's source."""
    import json

    require_stdout()
    settings = load(config_file, no_env, env_files, extras)
    rows = [row for row in settings.effective if not (changed and row.source.split(" (")[0] == "default")]
    if fmt == "json":
        click.echo(json.dumps([{"key": k, "value": v, "source": s} for k, v, s in rows], indent=2))
        return
    width = max((len(k) for k, _, _ in rows), default=0)
    for key, value, source in rows:
        click.echo(printable(f"{key:<{width}}  {value}  [{source}]"))
