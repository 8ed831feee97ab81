"""What the commands do for a person at a terminal: the default format, width and colour of the report (its
``View``), and the progress lines on stderr while probes run.

* ``--format`` defaults to ``text`` when the report goes to a terminal (stdout is a TTY and no ``--output``
  file), else to ``json``: scripts, pipes and cron keep getting JSON. An explicit ``--format`` always wins.
* Colour only in the text format on a terminal, never with ``NO_COLOR`` (any non-empty value), ``--no-color``
  or ``TERM=dumb``.
* Width: ``COLUMNS`` if set, else the terminal's, else 80.
* When stderr is a terminal: ``probing N targets (timeout T)…`` at once, then each target's line as soon as
  its result is known (the engine's ``on_result``), instead of all of them when the slowest ends.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from ingest_probe import errors
from ingest_probe.defaults import CERT_WARN_DAYS, FAIL_ON
from ingest_probe.renderers.printable import printable
from ingest_probe.results import ProbeResult, Status

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_WIDTH = 80


@dataclass(frozen=True, slots=True, kw_only=True)
class View:
    """How a report is shown: its format and that format's options (see ``renderers.OPTIONS``)."""

    fmt: str
    width: int = DEFAULT_WIDTH
    color: bool = False
    fail_on: str = FAIL_ON
    sections: tuple[str, ...] | None = None
    cert_warn_days: float = CERT_WARN_DAYS

    def options(self) -> dict[str, Any]:
        return {"width": self.width, "color": self.color, "fail_on": self.fail_on, "sections": self.sections,
                "cert_warn_days": self.cert_warn_days}


def view(fmt: str | None, output: Path | None, *, no_color: bool = False, fail_on: str = FAIL_ON,
         sections: Sequence[str] | None = None, cert_warn_days: float = CERT_WARN_DAYS) -> View:
    """The view of a report bound for ``output`` (None or ``-``: stdout), from the flags and the terminal."""
    from ingest_probe.commands.output import is_stdout

    to_stdout = output is None or is_stdout(output)
    tty = to_stdout and isatty(sys.stdout)
    fmt = fmt or ("text" if tty else "json")
    if sections is not None and fmt != "markdown":
        raise errors.UsageError(f"--sections applies to --format markdown, not {fmt}")
    color = fmt == "text" and tty and not no_color and not os.environ.get("NO_COLOR") \
        and os.environ.get("TERM") != "dumb"
    width = terminal_width(sys.stdout) if to_stdout else DEFAULT_WIDTH
    return View(fmt=fmt, width=width, color=color, fail_on=fail_on,
                sections=None if sections is None else tuple(sections), cert_warn_days=cert_warn_days)


def isatty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed
        return False


def terminal_width(stream: IO[str] | None) -> int:
    """``COLUMNS`` when set (as ``shutil.get_terminal_size`` reads it), else the terminal's width, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isascii() and columns.isdigit() and 0 < int(columns) < 10_000:
        return int(columns)
    if isatty(stream):
        assert stream is not None
        try:
            return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
        except (OSError, ValueError):
            pass
    return DEFAULT_WIDTH


def seconds_text(seconds: float) -> str:
    """A duration as the flags take it: ``500ms``, ``2s``, ``1.5s``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def result_line(r: ProbeResult) -> str:
    """A target's line on stderr: ``redis down [refused]: connection refused …`` or ``timescale ok (12 ms)``."""
    if r.status is Status.OK:
        from ingest_probe.renderers.text import latency

        return f"{r.name} ok ({latency(r.latency_ms)})"
    return f"{r.name} {r.status.value} [{r.error_kind}]: {r.error}"


@dataclass(slots=True)
class Progress:
    """Progress on stderr while a run probes, when stderr is a terminal (``enabled``)."""

    enabled: bool = field(default_factory=lambda: isatty(sys.stderr))
    #: Whether each target's line was printed (so the end of the run does not repeat them).
    announced: bool = False

    def start(self, targets: int, timeout: float) -> None:
        """``probing N targets (timeout T)…``, at once."""
        if self.enabled and targets:
            plural = "" if targets == 1 else "s"
            click.echo(f"ingest-probe: probing {targets} target{plural} (timeout {seconds_text(timeout)})…",
                       err=True)

    def __call__(self, result: ProbeResult) -> None:
        """The engine's ``on_result``: a target's line as soon as its result is known."""
        if not self.enabled:
            return
        self.announced = True
        if result.status is not Status.SKIPPED:
            click.echo(f"ingest-probe: {printable(result_line(result))}", err=True)

    def hint(self, line: str) -> None:
        """A hint for the person at the terminal (never in a cron log)."""
        if self.enabled:
            click.echo(f"ingest-probe: {line}", err=True)
