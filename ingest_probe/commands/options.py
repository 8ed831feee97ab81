"""What the commands share: flag types and option groups, loading settings, writing a report, problem lines."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ingest_probe import errors
from ingest_probe.defaults import JITTER, TIMEOUT
from ingest_probe.renderers.printable import printable
from ingest_probe.results import Status

if TYPE_CHECKING:
    from ingest_probe.report.model import Report
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
TIMEOUT_TYPE = Number(0, 3600, low_open=True)
JITTER_TYPE = Number(0, 1, high_open=True, name="fraction")


def options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several click options as one decorator, in the order given."""
    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


config_options = options(
    click.option("--config", "config_file", type=click.Path(path_type=Path), metavar="PATH",
                 help="YAML file: top-level keys, system_config: and extras: mappings."),
    click.option("--no-env", is_flag=True, help="Do not read the process environment."),
    click.option("--env-file", "env_files", multiple=True, type=click.Path(path_type=Path),
                 metavar="PATH", help="dotenv file(s) over the environment; repeatable, later wins."),
    click.option("--extra", "extras", multiple=True, metavar="KEY=VALUE",
                 help="Override any key (highest precedence); repeatable."),
)


def timeout_option(help: str = "Per-probe deadline ceiling in seconds.") -> Callable[[F], F]:
    return click.option("--timeout", type=TIMEOUT_TYPE, default=TIMEOUT, show_default=True, help=help)


jitter_option = click.option("--jitter", type=JITTER_TYPE, default=JITTER, show_default=True,
                             help="Each deadline is drawn from [T*(1-J), T].")
probe_options = options(
    click.option("--connectivity", is_flag=True, help="Probe every configured connector concurrently."),
    timeout_option(),
    jitter_option,
    click.option("--seed", type=int, default=None, help="Seed the deadline jitter (reproducible runs)."),
)


RESULTS_HELP = ("Ingest results JSON, as the ingest service writes them: {dimension: result}, a list of results"
                " or one result, each {dimension, rows_written, symbols, start_ts, end_ts,"
                " ingest_duration_seconds, freshness_seconds, source}.")
#: `readiness` and `drill`: the required drill dimensions.
dimensions_option = click.option(
    "--dimensions", multiple=True, metavar="DIM",
    help="Required drill dimensions; repeatable or comma-separated [default: TIMESCALE_FAILOVER_DRILL_DIMENSIONS].")


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
    """Check an output path before anything is probed (``output.check``: a directory, a block device, a
    symlink loop or a directory we cannot create files in is a usage error)."""
    from ingest_probe.commands import output

    if value is None:
        return None
    problem = output.check(value)
    if problem is not None:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return value


OUTPUT_HELP = ("Write the report here instead of stdout (`-` is stdout). A file (or a symlink's target) is"
               " replaced atomically; a device, FIFO or socket is written in place.")


def output_option(help: str = OUTPUT_HELP) -> Callable[[F], F]:
    return click.option("--output", type=click.Path(path_type=Path, allow_dash=True), metavar="PATH",
                        callback=writable_path, help=help)


def format_option(*formats: str) -> Callable[[F], F]:
    return click.option("--format", "fmt", type=click.Choice(formats), default=formats[0], show_default=True)


def require_stdout(*outputs: Path | None) -> None:
    """A report bound for stdout needs one: `report >&-` is exit 3 before anything is probed."""
    from ingest_probe.commands.output import STDOUT

    if sys.stdout is None and (all(o is None for o in outputs) or STDOUT in outputs):
        raise errors.UsageError("cannot write report: stdout is closed")


def debugging() -> bool:
    """Whether ``--debug`` was given (``cli.main`` takes it off the command line into the context's ``obj``)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and isinstance(ctx.obj, dict) and bool(ctx.obj.get("debug"))


def debug(message: str) -> None:
    """With --debug, a line on stderr saying what the run is doing (where a signal or a hang caught it)."""
    if debugging():
        click.echo(f"ingest-probe: debug: {message}", err=True)


def emit(text: str, output_path: Path | None) -> None:
    """The report on stdout, or into ``output_path`` by ``output``'s rules; a failure is exit 3 naming it."""
    from ingest_probe.commands import output

    path = output_path or output.STDOUT
    where = "stdout" if output.is_stdout(path) else str(path)
    debug(f"writing report to {where}")
    try:
        output.write_output(path, text)
    except OSError as exc:
        raise errors.IngestProbeError(f"cannot write report to {where}: {exc.strerror or exc}") from exc


def finish(built: Report, fmt: str, output_path: Path | None) -> NoReturn:
    """Render and write the report, say on stderr (one line each) what is not ok, exit with its code.

    stdout carries only the report; with ``--output`` a failed cron run still leaves a trace in its log.
    """
    from ingest_probe.renderers import get_renderer

    emit(get_renderer(fmt)(built), output_path)
    for line in problems(built):  # a server's text: its control characters shown, never obeyed
        click.echo(f"ingest-probe: {printable(line)}", err=True)
    if debugging():
        import traceback

        for exc in built.internal_errors:
            traceback.print_exception(exc)
    sys.exit(built.exit_code)


def problems(report: Report) -> list[str]:
    """One line per target, topic or drill outcome that makes the exit code non-zero."""
    lines = []
    if report.status is Status.UNKNOWN:
        lines.append("nothing to probe: no connector is configured (TIMESCALEDB_URL, REDIS_URL, KAFKA_BROKERS, ...)")
    for r in report.results or ():
        if r.status not in (Status.OK, Status.SKIPPED):
            lines.append(f"{r.name} {r.status.value} [{r.error_kind}]: {r.error}")
    topics = report.topics
    if topics is not None:
        if topics.error:
            lines.append(f"kafka topics [{topics.error_kind}]: {topics.error}")
        lines += [f"kafka topic {name} failed: {message}" for name, message in sorted(topics.failed.items())]
        if topics.drifting:
            lines.append(f"kafka topics drifting: {', '.join(sorted(topics.drifting))}")
    drill = report.drill
    if drill is not None and drill.status.value in ("warn", "fail"):
        lines.append(f"failover drill {drill.status.value}: {drill.reason}")
    return lines
