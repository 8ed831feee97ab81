"""What the commands share: flag types and option groups, loading settings, writing a report, problem lines."""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

import click

from ingest_probe import errors
from ingest_probe.defaults import CERT_WARN_DAYS, CONCURRENCY, FAIL_ON, FAIL_ON_CHOICES, JITTER, TIMEOUT
from ingest_probe.renderers.printable import printable

if TYPE_CHECKING:
    from ingest_probe.commands.terminal import View
    from ingest_probe.report.model import Report
    from ingest_probe.settings.service import Settings
    from ingest_probe.settings.targets import Target

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes (Nagios meaning; with several checks the worst wins):
  0  OK: every probed connector ok (or skipped), topics as declared
  1  WARNING: a connector degraded or starting; topic drift, or a dry run
     would create topics (0 with --fail-on down)
  2  CRITICAL: a connector down; a topic creation failed or the broker is
     unreachable
  3  UNKNOWN: usage or configuration error, nothing configured to probe, or
     an internal error (that connector's error_kind is internal)
  130  interrupted (SIGINT); 143 terminated (SIGTERM); clients closed"""


def epilog(*parts: str) -> str:
    """An epilog of several blocks (exit codes, examples), each kept as written (click's ``\\b``)."""
    return "\n\n".join(parts)


def examples(*lines: str) -> str:
    """The closing block of a command's ``--help``: two or three example command lines."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


class Number(click.ParamType[float]):
    """A finite decimal number within bounds, for every numeric flag (--timeout, --interval, --splay ...).

    click's ``FloatRange`` takes ``nan`` (every comparison with it is false), ``inf``, ``1e300``, ``1_0`` and
    non-ASCII digits (``٣``); a deadline of 1e300 s overflows the event loop's clock arithmetic. A duration
    (``name="seconds"``, the default) may carry a unit: ``500ms``, ``2s``, ``1m``, ``1h``, ``1d``; a plain
    number is seconds. The bounds hold after the unit is applied.
    """

    _TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
    _UNIT = re.compile(r"(.*?)\s*(ms|s|m|h|d)")
    UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

    def __init__(self, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
                 name: str = "seconds") -> None:
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.duration = name == "seconds"
        self.name = "duration" if self.duration else name

    def describe(self) -> str:
        low, high = (int(x) if x == int(x) else x for x in (self.low, self.high))
        unit = " s" if self.duration else ""
        return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}{unit}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):  # a default
            return value
        text, scale = str(value).strip(), 1.0
        unit = self._UNIT.fullmatch(text) if self.duration else None
        if unit is not None:
            text, scale = unit[1], self.UNITS[unit[2]]
        number = float(text) * scale if self._TEXT.fullmatch(text) else math.nan
        low_ok = number > self.low if self.low_open else number >= self.low
        high_ok = number < self.high if self.high_open else number <= self.high
        if not (low_ok and high_ok):  # NaN fails both
            what = "duration (500ms, 2s, 1m, 1h, 1d; a plain number is seconds)" if self.duration else "decimal number"
            self.fail(f"{str(value)[:40]!r} is not a {what} in {self.describe()}", param, ctx)
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


def _service(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, Path], ...]:
    out = []
    for value in values:
        name, eq, path = value.partition("=")
        if not eq or not name.strip() or not path.strip():
            raise click.BadParameter(f"expected NAME=ENV_FILE, got {value[:60]!r}", ctx=ctx, param=param)
        out.append((name.strip(), Path(path.strip())))
    return tuple(out)


def _labels(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    from ingest_probe.settings.targets_file import parse_label

    return tuple(parse_label(value) for value in values)


class TargetFlags(NamedTuple):
    """What ``target_options`` collects: which targets a run probes, how many at once, and their labels.

    A ``NamedTuple``, not a dataclass: ``--help`` loads this module, and a frozen slotted dataclass would cost it
    the ``dataclasses`` import and ~0.5 ms of class creation (see scripts/bench, ``--help``)."""

    services: tuple[tuple[str, Path], ...] = ()
    targets_file: Path | None = None
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    concurrency: int = CONCURRENCY
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def custom(self) -> bool:
        """Whether --target/--targets replace the classic targets."""
        return bool(self.services) or self.targets_file is not None


def target_options(f: F) -> F:
    """``--target``, ``--targets``, ``--only``, ``--skip``, ``--concurrency``, ``--label``, passed to the command
    as one ``targets: TargetFlags`` argument (``load_targets`` turns it into the run's targets)."""

    @functools.wraps(f)
    def command(*args: Any, service: tuple[tuple[str, Path], ...], targets_file: Path | None, only: tuple[str, ...],
                skip: tuple[str, ...], concurrency: int, label: tuple[tuple[str, str], ...], **kwargs: Any) -> Any:
        flags = TargetFlags(services=service, targets_file=targets_file, only=only, skip=skip,
                            concurrency=concurrency, labels=label)
        return f(*args, targets=flags, **kwargs)

    return options(
        click.option("--target", "service", multiple=True, metavar="NAME=ENV_FILE", callback=_service,
                     help="Probe a service: ENV_FILE read on its own, its connectors as targets NAME/timescale,"
                          " NAME/redis, NAME/kafka (label service=NAME); repeatable. With --target/--targets the"
                          " classic configuration only gives the run's global settings."),
        click.option("--targets", "targets_file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="YAML file of targets (targets: NAME: {kind:, url: | url_env:, labels:} or"
                          " {env_file:}); see README, Many targets."),
        click.option("--only", multiple=True, metavar="SELECTOR",
                     help="Probe only the targets this name or kind picks (globs: 'prod/*'); repeatable."),
        click.option("--skip", multiple=True, metavar="SELECTOR",
                     help="Do not probe the targets this name or kind picks (globs); repeatable."),
        click.option("--concurrency", type=click.IntRange(1, 10_000), default=CONCURRENCY, show_default=True,
                     metavar="N", help="At most N probes in flight; each deadline starts when its probe gets a"
                                       " slot."),
        click.option("--label", multiple=True, metavar="KEY=VALUE", callback=_labels,
                     help="Add this label to every target (JSON, Prometheus series); repeatable; a target's"
                          " own label of that name wins."),
    )(command)  # type: ignore[return-value]


def timeout_option(help: str = "Per-probe deadline ceiling: 500ms, 2s, 1m (a plain number is seconds).",
                   ) -> Callable[[F], F]:
    return click.option("--timeout", "-t", type=TIMEOUT_TYPE, default=TIMEOUT, show_default=f"{TIMEOUT:g}s", help=help)


jitter_option = click.option("--jitter", type=JITTER_TYPE, default=JITTER, show_default=True,
                             help="Each deadline is drawn from [T*(1-J), T].")
fail_on_option = click.option(
    "--fail-on", type=click.Choice(FAIL_ON_CHOICES), default=FAIL_ON, show_default=True,
    help="What fails the run. degraded: a degraded or starting target (or topic drift, a drill warning) exits"
         " 1. down: only a target down (or a failure) does; a warning is reported and exits 0 (readiness"
         " probes, HEALTHCHECK).",
)
cert_warn_option = click.option(
    "--cert-warn-days", type=Number(0, 3650, name="days"), default=CERT_WARN_DAYS, show_default=f"{CERT_WARN_DAYS:g}",
    metavar="DAYS", help="A TLS certificate expiring within DAYS makes its target degraded (cert_expiry).",
)
probe_options = options(
    click.option("--connectivity", is_flag=True, help="Probe every configured connector concurrently."),
    timeout_option(),
    jitter_option,
    click.option("--seed", type=int, default=None, help="Seed the deadline jitter (reproducible runs)."),
    fail_on_option,
    cert_warn_option,
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


def load_targets(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
                 flags: TargetFlags) -> tuple[Settings, tuple[Target, ...]]:
    """The settings (``load``) and the run's targets (``settings.targets_file.build_targets``), warnings (no
    secrets) on stderr."""
    from ingest_probe.settings.targets_file import build_targets, label_map

    settings = load(config_file, no_env, env_files, extras)
    targets, warnings = build_targets(
        settings, services=flags.services, targets_file=flags.targets_file, labels=label_map(flags.labels),
        only=flags.only, skip=flags.skip, environ=None if no_env else os.environ, env_files=env_files)
    for warning in warnings:
        click.echo(f"ingest-probe: warning: {printable(warning)}", err=True)
    return settings, targets


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
    return click.option("--output", "-o", type=click.Path(path_type=Path, allow_dash=True), metavar="PATH",
                        callback=writable_path, help=help)


def format_option(*formats: str, default: str | None = None) -> Callable[[F], F]:
    """``--format``/``-f``; without a ``default``, text on a terminal, else json (``terminal.view``)."""
    shown = "text on a terminal, else json" if default is None else default
    return click.option("--format", "-f", "fmt", type=click.Choice(formats), default=default,
                        help=f"Output format [default: {shown}].")


color_option = click.option("--no-color", is_flag=True, help="No colour in the text format (also: NO_COLOR=1).")


def _sections(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from ingest_probe.renderers.markdown import SECTIONS  # ~30 ms of imports: only when the option is given

    chosen = tuple(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise click.BadParameter(f"{', '.join(unknown)[:60] or 'nothing'} is not a section; choose from"
                                 f" {', '.join(SECTIONS)}", ctx=ctx, param=param)
    return chosen


sections_option = click.option(
    "--sections", metavar="LIST", callback=_sections,
    help="Markdown: only these sections, comma-separated, of connectivity, details, run, topics, drill, gating,"
         " connectors, plan, schedule, failover, manifest [default: all, in that order].",
)


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


def write_failed_run(path: Path | None, flags: TargetFlags | None = None) -> None:
    """A run whose configuration did not load (exit 3) still replaces the Prometheus textfile at ``path``:
    ``ingest_probe_run_success 0`` and the time, no per-target series (an earlier run's ``up 1`` must not
    outlive it), labelled with ``--label`` (those of ``flags``). Not on stdout, which carries a report or
    nothing; a failure to write is one more line."""
    import datetime as dt

    from ingest_probe.commands import output
    from ingest_probe.renderers.prometheus import render_failed_run

    if path is None or output.is_stdout(path):
        return
    try:
        labels = dict(flags.labels) if flags is not None else {}
        output.write_output(path, render_failed_run(dt.datetime.now(dt.UTC), labels))
    except OSError as exc:
        click.echo(f"ingest-probe: warning: cannot write {printable(str(path))}: {exc.strerror or exc}", err=True)


def finish(built: Report, view: View, output_path: Path | None, *, announced: bool = False,
           hints: Sequence[str] = ()) -> NoReturn:
    """Render and write the report, say on stderr (one line each) what is not ok, exit with its code under
    ``--fail-on`` (``report.policy.exit_code``).

    stdout carries only the report; with ``--output`` a failed cron run still leaves a trace in its log.
    ``announced``: each target's line was already printed as its result came in (``terminal.Progress``).
    """
    from ingest_probe.renderers import render
    from ingest_probe.report.policy import exit_code

    emit(render(view.fmt, built, **view.options()), output_path)
    for line in [*problems(built, targets=not announced), *hints]:  # a server's text: shown, never obeyed
        click.echo(f"ingest-probe: {printable(line)}", err=True)
    if debugging():
        import traceback

        for exc in built.internal_errors:
            traceback.print_exception(exc)
    sys.exit(exit_code(built, view.fail_on))


def problems(report: Report, *, targets: bool = True) -> list[str]:
    """One line per target, topic or drill outcome that makes the exit code non-zero (``targets=False``: none
    for the targets, already shown one by one)."""
    from ingest_probe.commands.terminal import result_line
    from ingest_probe.results import Status

    lines = []
    if report.status is Status.UNKNOWN:
        lines.append("nothing to probe: no connector is configured (TIMESCALEDB_URL, REDIS_URL, KAFKA_BROKERS, ...)")
    for r in report.results or ():
        if targets and r.status not in (Status.OK, Status.SKIPPED):
            lines.append(result_line(r))
    topics = report.topics
    if topics is not None:
        if topics.error:
            lines.append(f"kafka topics [{topics.error_kind}]: {topics.error}")
        lines += [f"kafka topic {name} failed: {message}" for name, message in sorted(topics.failed.items())]
        if topics.drifting:
            lines.append(f"kafka topics drifting: {', '.join(sorted(topics.drifting))}")
        plans = topics.before if topics.dry_run else ()
        create = [p.spec.name for p in plans if p.action.value == "create"]
        if create:
            lines.append(f"kafka topics would be created: {', '.join(create)} (dry run: nothing changed;"
                         " `ingest-probe topics apply` creates them)")
        lines += [f"kafka topic {note.text}" for note in topics.notes if note.code == "env_only_topic"]
    drill = report.drill
    if drill is not None and drill.status.value in ("warn", "fail"):
        lines.append(f"failover drill {drill.status.value}: {drill.reason}")
    return lines
