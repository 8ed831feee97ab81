"""The command line: parse, load settings, one event-loop entry, render, write, exit. Nothing else."""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ingest_probe import errors
from ingest_probe._version import __version__
from ingest_probe.commands.signals import Interrupted, handled
from ingest_probe.renderers.printable import printable

if TYPE_CHECKING:
    from ingest_probe.readiness.results_file import IngestResults
    from ingest_probe.report.builder import Report
    from ingest_probe.settings.service import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes (Nagios meaning; with several checks the worst wins):
  0  OK: report written; every probed connector ok (or skipped), topics as declared
  1  WARNING: a connector degraded or starting; topic drift remains, or a dry run would create topics
  2  CRITICAL: a connector down; a topic creation failed or the broker is unreachable
  3  UNKNOWN: usage or configuration error, nothing configured to probe, or an internal error (a
     connector's error_kind internal: the report still has every other result)
  130  interrupted (SIGINT); 143 terminated (SIGTERM) -- clients closed either way"""


class Number(click.ParamType[float]):
    """A finite decimal number within bounds, for every numeric flag (--timeout, --interval, --splay ...).

    click's ``FloatRange`` takes ``nan`` (every comparison with it is false), ``inf``, ``1e300``, ``1_0`` and
    non-ASCII digits (``٣``); a deadline of 1e300 s overflows the event loop's clock arithmetic.
    """

    _TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

    def __init__(self, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
                 name: str = "seconds") -> None:
        self.low, self.high, self.low_open, self.high_open, self.name = low, high, low_open, high_open, name

    def describe(self) -> str:
        low, high = (int(x) if x == int(x) else x for x in (self.low, self.high))
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):  # a default
            return value
        text = str(value).strip()
        number = float(text) if self._TEXT.fullmatch(text) else math.nan
        low_ok = number > self.low if self.low_open else number >= self.low
        high_ok = number < self.high if self.high_open else number <= self.high
        if not (low_ok and high_ok):  # NaN fails both
            self.fail(f"{str(value)[:40]!r} is not a decimal number in {self.describe()}", param, ctx)
        return number


#: Bounds of the numeric flags: a deadline of an hour, a watch interval of a month are already generous.
TIMEOUT = Number(0, 3600, low_open=True)
JITTER = Number(0, 1, high_open=True, name="fraction")


def config_options(f: F) -> F:
    """The configuration sources every command shares, lowest to highest precedence."""
    options = [
        click.option("--config", "config_file", type=click.Path(path_type=Path), metavar="PATH",
                     help="YAML file: top-level keys, system_config: and extras: mappings."),
        click.option("--no-env", is_flag=True, help="Do not read the process environment."),
        click.option("--env-file", "env_files", multiple=True, type=click.Path(path_type=Path),
                     metavar="PATH", help="dotenv file(s) over the environment; repeatable, later wins."),
        click.option("--extra", "extras", multiple=True, metavar="KEY=VALUE",
                     help="Override any key (highest precedence); repeatable."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def load(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...]) -> Settings:
    """Settings from the sources, warnings (no secrets) on stderr."""
    from ingest_probe.settings.service import load_settings

    settings = load_settings(
        config_file=config_file,
        env_files=env_files,
        extras=extras,
        environ=None if no_env else os.environ,
    )
    for warning in settings.warnings:
        click.echo(f"ingest-probe: warning: {printable(warning)}", err=True)
    return settings


def writable_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Check an output path before anything is probed (``_io.check``: a directory, a block device, a
    symlink loop or a directory we cannot create files in is a usage error)."""
    from ingest_probe.commands import output as _io

    if value is None:
        return None
    problem = _io.check(value)
    if problem is not None:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return value


OUTPUT_HELP = ("Write the report here instead of stdout (`-` is stdout). A file (or a symlink's target) is"
               " replaced atomically; a device, FIFO or socket is written in place.")


def output_option(help: str = OUTPUT_HELP) -> Callable[[F], F]:
    return click.option("--output", type=click.Path(path_type=Path, allow_dash=True), metavar="PATH",
                        callback=writable_path, help=help)


def require_stdout(*outputs: Path | None) -> None:
    """A report bound for stdout needs one: `report >&-` is exit 3 before anything is probed."""
    from ingest_probe.commands.output import STDOUT

    if sys.stdout is None and (all(o is None for o in outputs) or STDOUT in outputs):
        raise errors.UsageError("cannot write report: stdout is closed")


def debug(message: str) -> None:
    """With --debug, a line on stderr saying what the run is doing (where a signal or a hang caught it)."""
    if _debug:
        click.echo(f"ingest-probe: debug: {message}", err=True)


def emit(text: str, output: Path | None) -> None:
    """The report on stdout, or into ``output`` by ``_io``'s rules; a failure is exit 3 naming the target."""
    from ingest_probe.commands import output as _io

    path = output or _io.STDOUT
    where = "stdout" if _io.is_stdout(path) else str(path)
    debug(f"writing report to {where}")
    try:
        _io.write_output(path, text)
    except OSError as exc:
        raise errors.IngestProbeError(f"cannot write report to {where}: {exc.strerror or exc}") from exc


def finish(built: Report, fmt: str, output: Path | None) -> NoReturn:
    """Render and write the report, say on stderr (one line each) what is not ok, exit with its code.

    stdout carries only the report; with ``--output`` a failed cron run still leaves a trace in its log.
    """
    from ingest_probe.renderers import get_renderer

    emit(get_renderer(fmt)(built), output)
    for line in problems(built.document):  # a server's text: its control characters shown, never obeyed
        click.echo(f"ingest-probe: {printable(line)}", err=True)
    if debugging():
        import traceback

        for exc in built.internal_errors:
            traceback.print_exception(exc)
    sys.exit(built.exit_code)


def debugging() -> bool:
    """Whether ``--debug`` was given (``main`` takes it off the command line into the context's ``obj``)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and isinstance(ctx.obj, dict) and bool(ctx.obj.get("debug"))


def problems(doc: Mapping[str, Any]) -> list[str]:
    """One line per connector, topic or drill outcome that makes the exit code non-zero."""
    lines = []
    if doc.get("status") == "unknown":
        lines.append("nothing to probe: no connector is configured (TIMESCALEDB_URL, REDIS_URL, KAFKA_BROKERS, ...)")
    for r in doc.get("connectivity") or []:
        if r["status"] not in ("ok", "skipped"):
            lines.append(f"{r['name']} {r['status']} [{r['error_kind']}]: {r['error']}")
    topics = doc.get("kafka_topic_provisioning")
    if topics:
        if topics.get("error"):
            lines.append(f"kafka topics [{topics.get('error_kind')}]: {topics['error']}")
        lines += [f"kafka topic {name} failed: {message}" for name, message in sorted(topics["failed"].items())]
        if topics["drift"]:
            lines.append(f"kafka topics drifting: {', '.join(sorted(topics['drift']))}")
    drill = doc.get("failover_drill")
    if drill and drill.get("status") in ("warn", "fail"):
        lines.append(f"failover drill {drill['status']}: {drill.get('reason')}")
    return lines


def probe_options(f: F) -> F:
    options = [
        click.option("--connectivity", is_flag=True, help="Probe every configured connector concurrently."),
        click.option("--timeout", type=TIMEOUT, default=5.0, show_default=True,
                     help="Per-probe deadline ceiling in seconds."),
        click.option("--jitter", type=JITTER, default=0.1, show_default=True,
                     help="Each deadline is drawn from [T*(1-J), T]."),
        click.option("--seed", type=int, default=None, help="Seed the deadline jitter (reproducible runs)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODES)
@click.option("--debug", is_flag=True,
              help="Also print the traceback of an error (anywhere on the line; the exit code is unchanged).")
@click.version_option(__version__, prog_name="ingest-probe")
def cli(debug: bool) -> None:
    """Probe the TimescaleDB/PostgreSQL, Redis and Kafka connectors of a data-ingest service."""


def report_options(f: F) -> F:
    """Flags `report` and `readiness` share besides the config and probe options."""
    options = [
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
        click.option("--format", "fmt", type=click.Choice(["json", "markdown", "prometheus"]), default="json",
                     show_default=True),
        output_option(),
        click.option("--splay", type=Number(0, 3600), default=0.0, metavar="SECONDS",
                     help="Before contacting anything, sleep a random 0..S s, so many hosts' cron runs spread out."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def topic_sections(settings: Settings, *, ensure_topics: bool, topics_dry_run: bool, fix_drift: bool,
                   validate_on_broker: bool, timeout: float) -> dict[str, Any] | None:
    """The provisioning section when --ensure-topics was given (run before the probes, so the Kafka probe
    sees the topics this run created), else None."""
    if not ensure_topics:
        return None
    return provision_topics(settings, dry_run=topics_dry_run, fix_drift=fix_drift,
                            validate_on_broker=validate_on_broker, timeout=timeout)


def check_topic_flags(*, ensure_topics: bool, topics_dry_run: bool, fix_drift: bool,
                      validate_on_broker: bool) -> None:
    """Topic flags that need another flag are usage errors (exit 3), never silently ignored."""
    if topics_dry_run and not ensure_topics:
        raise errors.UsageError("--topics-dry-run needs --ensure-topics")
    if fix_drift and not ensure_topics:
        raise errors.UsageError("--fix-drift needs --ensure-topics")
    if validate_on_broker and not topics_dry_run:
        raise errors.UsageError("--validate-on-broker needs --topics-dry-run")


@cli.command(epilog=EXIT_CODES, short_help="The manifest; with --connectivity, probe every connector.")
@config_options
@probe_options
@report_options
def report(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
           connectivity: bool, timeout: float, jitter: float, seed: int | None, ensure_topics: bool,
           topics_dry_run: bool, fix_drift: bool, validate_on_broker: bool, fmt: str, output: Path | None,
           splay: float) -> None:
    """Build the manifest report; with --connectivity, probe every configured connector."""
    from ingest_probe.report.builder import build_report

    require_stdout(output)
    check_topic_flags(ensure_topics=ensure_topics, topics_dry_run=topics_dry_run, fix_drift=fix_drift,
                      validate_on_broker=validate_on_broker)
    if splay and not (connectivity or ensure_topics):
        raise errors.UsageError("--splay needs --connectivity or --ensure-topics (nothing else is contacted)")
    settings = load(config_file, no_env, env_files, extras)
    splay_s = _splay_sleep(splay)
    sections = topic_sections(settings, ensure_topics=ensure_topics, topics_dry_run=topics_dry_run,
                              fix_drift=fix_drift, validate_on_broker=validate_on_broker, timeout=timeout)
    results, run = None, None
    if connectivity:
        from ingest_probe.engine.run import run_probes

        results, run = run_probes(settings, timeout=timeout, jitter=jitter, seed=seed)
        run["splay_s"] = splay_s
    finish(build_report(settings, results=results, run=run, sections=sections), fmt, output)


def provision_topics(settings: Settings, *, dry_run: bool, fix_drift: bool, validate_on_broker: bool,
                     timeout: float) -> dict[str, Any]:
    """The ``kafka_topic_provisioning`` section: plan (dry run) or apply, one event-loop entry."""
    from ingest_probe.topics import plan as provisioning

    section = provisioning.run(settings.kafka, dry_run=dry_run, fix_drift=fix_drift,
                               validate_on_broker=validate_on_broker, timeout=timeout)
    return {provisioning.SECTION: section}


TOPICS_EXIT_CODES = """\b
Exit codes:
  0  every declared topic exists as declared (or was just created)
  1  drift remains, or (plan) a topic would be created
  2  a creation failed, a topic could not be read, or the broker is unreachable
  3  usage or configuration error (e.g. a _CONFIG value that is not a JSON object), or an internal error"""


def topic_options(f: F) -> F:
    options = [
        click.option("--timeout", type=TIMEOUT, default=5.0, show_default=True,
                     help="Deadline of the whole run (connect, read, create, fix, re-read) in seconds; closing is"
                          " bounded on top."),
        click.option("--format", "fmt", type=click.Choice(["json", "markdown"]), default="json",
                     show_default=True),
        output_option(),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.group(short_help="Plan or create the declared Kafka topics.")
def topics() -> None:
    """Plan or create the declared Kafka topics, with drift detection.

    Declared topics: KAFKA_INGEST_TOPICS, KAFKA_INGEST_TOPIC_<DIM>, KAFKA_INGEST_DEFAULT_TOPIC and
    KAFKA_INGEST_CONSUMER_TOPICS, each with _PARTITIONS, _REPLICATION_FACTOR and _CONFIG (defaults 1, 1,
    {}). Drift compares partitions, replication factor and the declared configs only: broker defaults never
    drift.
    """


@topics.command("plan", epilog=TOPICS_EXIT_CODES, short_help="Read-only plan: declared topics vs the broker.")
@config_options
@topic_options
@click.option("--validate-on-broker", is_flag=True,
              help="Also send CreateTopics with validate_only for the topics to create. Only for brokers"
                   " known to honour validate_only: some (Tansu 0.6) create the topic anyway; the report says"
                   " so.")
def topics_plan(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
                timeout: float, fmt: str, output: Path | None, validate_on_broker: bool) -> None:
    """Compare the declared topics with the broker, read-only; nothing is changed.

    Sends Metadata (auto-creation off) and DescribeConfigs only, unless --validate-on-broker is given.
    """
    require_stdout(output)
    _topics_report(load(config_file, no_env, env_files, extras), fmt, output, dry_run=True, fix_drift=False,
                   validate_on_broker=validate_on_broker, timeout=timeout)


@topics.command("apply", epilog=TOPICS_EXIT_CODES, short_help="Create missing topics (--fix-drift: fix drift).")
@config_options
@topic_options
@click.option("--fix-drift", is_flag=True,
              help="Also fix fixable drift: add partitions, set the declared configs (incrementally, other"
                   " overrides kept). Never decreases partitions or changes the replication factor.")
def topics_apply(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
                 timeout: float, fmt: str, output: Path | None, fix_drift: bool) -> None:
    """Create the missing topics, then re-read and report what exists. Never deletes a topic."""
    require_stdout(output)
    _topics_report(load(config_file, no_env, env_files, extras), fmt, output, dry_run=False,
                   fix_drift=fix_drift, validate_on_broker=False, timeout=timeout)


def _topics_report(settings: Settings, fmt: str, output: Path | None, **kw: Any) -> None:
    from ingest_probe.report.builder import build_report

    finish(build_report(settings, sections=provision_topics(settings, **kw)), fmt, output)


READINESS_EXIT_CODES = """\b
Exit codes (Nagios meaning; the worst of connectivity, topics and drill):
  0  OK: connectors ok (or skipped, or not probed) and the drill ok or not run
  1  WARNING: a connector degraded/starting, or drill warn (a dimension not healthy but no failover,
     or failover needed but no standby configured/rehearsed)
  2  CRITICAL: a connector down, or drill fail (the standby is unreachable or in recovery)
  3  UNKNOWN: usage or configuration error (a bad results file), nothing configured to probe
     (--connectivity), or an internal error
  130  interrupted (SIGINT); 143 terminated (SIGTERM) -- clients closed either way
With --ensure-topics, topic outcomes count as in `report` (drift 1, failure or unreachable broker 2)."""

RESULTS_HELP = ("Ingest results JSON, as the ingest service writes them: {dimension: result}, a list of results"
                " or one result, each {dimension, rows_written, symbols, start_ts, end_ts,"
                " ingest_duration_seconds, freshness_seconds, source}.")


def drill_options(f: F) -> F:
    """Flags `readiness` and `drill` share (besides the results file)."""
    options = [
        click.option("--dimensions", multiple=True, metavar="DIM",
                     help="Required drill dimensions; repeatable or comma-separated [default:"
                          " TIMESCALE_FAILOVER_DRILL_DIMENSIONS]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def load_results(path: Path | None) -> IngestResults | None:
    """The results file, validated before anything is contacted (exit 3 naming every problem)."""
    from ingest_probe.readiness.drill import load_ingest_results

    return None if path is None else load_ingest_results(path)


@cli.command(epilog=READINESS_EXIT_CODES, short_help="Evidence for a promotion: report + failover drill.")
@config_options
@probe_options
@click.option("--ingest-results", "--results", "ingest_results", type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE", help=f"{RESULTS_HELP} Judged by the drill when TIMESCALE_FAILOVER_DRILL is true;"
                                   " without it the drill is not run.")
@drill_options
@click.option("--scenario", metavar="LABEL", help="Drill label [default: TIMESCALE_FAILOVER_DRILL_LABEL].")
@report_options
def readiness(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
              connectivity: bool, timeout: float, jitter: float, seed: int | None, ingest_results: Path | None,
              dimensions: tuple[str, ...], scenario: str | None, ensure_topics: bool, topics_dry_run: bool,
              fix_drift: bool, validate_on_broker: bool, fmt: str, output: Path | None, splay: float) -> None:
    """Readiness evidence: the manifest, the connectors with --connectivity (as `report`), topics with
    --ensure-topics, and a Timescale failover drill judging --ingest-results (alias --results) as written; the
    standby is probed when the drill decides a failover. `drill` rehearses a failover instead."""
    from ingest_probe.commands.oneshot import run_readiness
    from ingest_probe.readiness.drill import not_enabled

    require_stdout(output)
    check_topic_flags(ensure_topics=ensure_topics, topics_dry_run=topics_dry_run, fix_drift=fix_drift,
                      validate_on_broker=validate_on_broker)
    if splay and not (connectivity or ensure_topics or ingest_results):
        raise errors.UsageError("--splay needs --connectivity, --ensure-topics or --ingest-results (nothing else"
                                " is contacted)")
    settings = load(config_file, no_env, env_files, extras)
    # Inputs first: a bad results file is exit 3 before any topic is created or any server contacted.
    results = load_results(ingest_results)
    if results is not None and not settings.failover.enabled:
        click.echo(printable(f"ingest-probe: warning: {not_enabled(settings)}: {ingest_results} was checked but not"
                             " judged; set TIMESCALE_FAILOVER_DRILL=true, or run `ingest-probe drill --results FILE`"),
                   err=True)
    splay_s = _splay_sleep(splay)
    sections = topic_sections(settings, ensure_topics=ensure_topics, topics_dry_run=topics_dry_run,
                              fix_drift=fix_drift, validate_on_broker=validate_on_broker, timeout=timeout)
    finish(run_readiness(settings, ingest_results=results, dimensions=dimensions, scenario=scenario,
                         connectivity=connectivity, timeout=timeout, jitter=jitter, seed=seed, sections=sections,
                         splay_s=splay_s), fmt, output)


DRILL_EXIT_CODES = """\b
Exit codes (Nagios meaning):
  0  OK: the simulated outage decides a failover and the standby is a healthy, promoted target
  1  WARNING: no standby configured, TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK false, or no required
     dimensions
  2  CRITICAL: the standby is unreachable, or reachable but in recovery (not promoted)
  3  UNKNOWN: usage or configuration error (a bad results file), or an internal error
  130  interrupted (SIGINT); 143 terminated (SIGTERM) -- clients closed either way"""


@cli.command(epilog=DRILL_EXIT_CODES, short_help="Rehearse a Timescale failover: simulated outage, standby probed.")
@config_options
@click.option("--results", "--ingest-results", "results_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False), metavar="FILE", help=RESULTS_HELP)
@drill_options
@click.option("--scenario", metavar="LABEL", default="timescale_failover", show_default=True, help="Drill label.")
@click.option("--timeout", type=TIMEOUT, default=5.0, show_default=True,
              help="Deadline of the standby probe in seconds.")
@click.option("--jitter", type=JITTER, default=0.1, show_default=True,
              help="The deadline is drawn from [T*(1-J), T].")
@click.option("--seed", type=int, default=None, help="Seed the deadline jitter (reproducible runs).")
@click.option("--format", "fmt", type=click.Choice(["json", "markdown"]), default="json", show_default=True)
@output_option()
@click.option("--splay", type=Number(0, 3600), default=0.0, metavar="SECONDS",
              help="Before contacting anything, sleep a random 0..S s, so many hosts' cron runs spread out.")
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
    splay_s = _splay_sleep(splay)
    finish(run_drill(settings, ingest_results=results, dimensions=dimensions, scenario=scenario, timeout=timeout,
                     jitter=jitter, seed=seed, splay_s=splay_s), fmt, output)


@cli.command(short_help="The effective configuration, redacted, with sources.")
@config_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def config(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
           fmt: str) -> None:
    """Print the effective configuration, redacted, with each value's source."""
    import json

    settings = load(config_file, no_env, env_files, extras)
    rows = settings.effective
    if fmt == "json":
        click.echo(json.dumps([{"key": k, "value": v, "source": s} for k, v, s in rows], indent=2))
        return
    width = max((len(k) for k, _, _ in rows), default=0)
    for key, value, source in rows:
        click.echo(printable(f"{key:<{width}}  {value}  [{source}]"))


WATCH_EXIT_CODES = """\b
Exit codes:
  0  stopped by SIGINT/SIGTERM (clients closed), or stdout's reader went away (`watch | head -1`)
  0/1/2  with --once: the cycle's report exit code (as `report --connectivity`)
  2  stopped after TIMESCALE_INGEST_MAX_FAILURES consecutive cycles with a connector down
  3  usage or configuration error, or an internal error"""


def _splay_sleep(seconds: float) -> float | None:
    """``report --splay``: sleep a random 0..S s before probing (outside the event loop); what was slept."""
    if not seconds:
        return None
    from ingest_probe.commands.watch import splay

    slept = splay(seconds)
    debug(f"--splay: sleeping {slept:.3f} s before contacting anything")
    time.sleep(slept)
    return round(slept, 3)


@cli.command(epilog=WATCH_EXIT_CODES, short_help="Probe on the ingest schedule with warm clients.")
@config_options
@click.option("--interval", type=Number(0, 31 * 86400, low_open=True), default=None, metavar="SECONDS",
              help="Pause from a cycle's end to the next start [default: TIMESCALE_INGEST_INTERVAL_SECONDS].")
@click.option("--jitter-seconds", type=Number(0, 86400), default=None, metavar="SECONDS",
              help="Uniform ± jitter on the interval, floor 1 s [default: TIMESCALE_INGEST_JITTER_SECONDS].")
@click.option("--timeout", type=TIMEOUT, default=5.0, show_default=True,
              help="Per-probe deadline ceiling in seconds.")
@click.option("--jitter", type=JITTER, default=0.1, show_default=True,
              help="Each deadline is drawn from [T*(1-J), T].")
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
    from ingest_probe.commands.watch import NORMAL, QUIET, VERBOSE, WatchOptions, run_watch, stamped

    if quiet and verbose:
        raise errors.UsageError("--quiet and --verbose contradict each other")
    require_stdout(output, prometheus_file)
    try:
        settings = load(config_file, no_env, env_files, extras)
        options = WatchOptions.from_settings(
            settings, interval=interval, jitter_seconds=jitter_seconds, timeout=timeout, jitter=jitter,
            seed=seed, once=once, output=output, prometheus_file=prometheus_file,
            verbosity=QUIET if quiet else VERBOSE if verbose else NORMAL, debug=debugging(),
        )
        code = run_watch(settings, options)
    except Interrupted as exc:  # before the first cycle (loading drivers): stopped all the same, exit 0
        if exc.forced:
            raise
        if not quiet:
            click.echo(stamped(f"stopped by {exc.name}; clients closed"), err=True)
        code = 0
    sys.exit(code)


def _leaf(exc: BaseException) -> BaseException:
    """The real error inside task-group wrappers (``ExceptionGroup`` of one), for a readable message."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _quiet_library_loggers() -> None:
    """Client libraries log connection trouble themselves; the report already says it, once, in our words.

    Without a handler Python prints their WARNINGs on stderr (``logging.lastResort``), e.g. aiokafka's
    background metadata refresher. A ``NullHandler`` ends that; an embedding application keeps its own
    logging configuration, since only the CLI calls this.
    """
    import logging

    for name in ("aiokafka", "asyncpg", "redis"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())


def _fail(message: str, code: int, *, debug: bool = False) -> NoReturn:
    if debug:
        import traceback

        traceback.print_exc()
    line = " ".join(message.split())  # one line, whatever the message (click's, a file name's newline)
    click.echo(f"ingest-probe: error: {printable(line)}", err=True)
    sys.exit(code)


def _stopped(exc: Interrupted) -> str:
    verb = "interrupted" if exc.name == "SIGINT" else "terminated"
    if exc.forced:
        return f"{verb} by a second {exc.name} while closing; closing was cut short"
    return f"{verb} by {exc.name}; every connection was closed"


#: --debug was given (``main`` strips it from the command line, so every command accepts it anywhere).
_debug = False


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: maps every failure to one stderr line and a documented exit code.

    ``--debug`` may stand anywhere on the line; it adds the traceback but never changes the exit code.
    SIGINT/SIGTERM are handled from here on (``_signals``): whenever they arrive, the exit is 130/143
    with one line, every client closed and no temp file left.
    """
    global _debug
    with handled():
        args = list(sys.argv[1:] if argv is None else argv)
        _debug = "--debug" in args
        _quiet_library_loggers()
        args = [a for a in args if a != "--debug"]
        if not args:
            _fail("missing command: try 'ingest-probe --help'", errors.UsageError.exit_code)
        _run(args, _debug)


def _run(args: list[str], debug: bool) -> NoReturn:
    try:
        cli.main(args=args, prog_name="ingest-probe", standalone_mode=False, obj={"debug": debug})
    except Interrupted as exc:
        _fail(_stopped(exc), exc.signum + 128)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):  # SIGINT when its handler was not ours (ignored at start)
        _fail("interrupted by SIGINT; every connection was closed", 130)
    except click.ClickException as exc:  # usage errors: bad flags, bad values
        _fail(exc.format_message(), errors.UsageError.exit_code)
    except errors.IngestProbeError as exc:
        _fail(str(exc), exc.exit_code, debug=debug)
    except OSError as exc:  # reading a file the config layer did not own
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), 3, debug=debug)
    except Exception as exc:  # noqa: BLE001 -- the process boundary: a bug becomes one line + exit 3 (--debug: traceback)
        leaf = _leaf(exc)
        hint = "" if debug else " (re-run with --debug for a traceback)"
        _fail(f"internal error: {type(leaf).__name__}: {leaf}{hint}", 3, debug=debug)
    sys.exit(0)
