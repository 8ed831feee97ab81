"""The command line: the click group, and the process entry that turns every failure into one stderr line and a
documented exit code. The commands live beside it (``report``, ``drill``, ``serve``, ``topics``, ``watch``,
``wait``)."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import NoReturn

import click

from ingest_probe import errors
from ingest_probe._version import __version__
from ingest_probe.commands.options import EXIT_CODES, epilog, examples
from ingest_probe.commands.signals import Interrupted, handled
from ingest_probe.defaults import EXIT_OK, EXIT_SIGNAL_BASE, EXIT_UNKNOWN
from ingest_probe.renderers.printable import printable

#: Each command and the module that defines it, imported only when that command runs or help lists it.
COMMANDS = {
    "config": "ingest_probe.commands.report",
    "drill": "ingest_probe.commands.drill",
    "readiness": "ingest_probe.commands.report",
    "report": "ingest_probe.commands.report",
    "serve": "ingest_probe.commands.serve",
    "topics": "ingest_probe.commands.topics",
    "wait": "ingest_probe.commands.wait",
    "watch": "ingest_probe.commands.watch",
}


class _Commands(click.Group):
    """The group of commands, each loaded on use: ``report`` never imports the ``watch`` or ``topics`` modules."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = getattr(importlib.import_module(module), cmd_name)
        return command


#: The variable click's shell completion answers to (``_INGEST_PROBE_COMPLETE=bash_source ingest-probe``).
COMPLETE_VAR = "_INGEST_PROBE_COMPLETE"
EXAMPLES = examples(
    "ingest-probe report --env-file prod.env --connectivity",
    "ingest-probe topics plan --env-file prod.env",
    "eval \"$(_INGEST_PROBE_COMPLETE=bash_source ingest-probe)\"   # completion",
)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=epilog(EXIT_CODES, EXAMPLES))
@click.option("--debug", is_flag=True,
              help="Also print the traceback of an error (anywhere on the line; the exit code is unchanged).")
@click.version_option(__version__, prog_name="ingest-probe")
def cli(debug: bool) -> None:
    """Probe the TimescaleDB/PostgreSQL, Redis and Kafka connectors of a data-ingest service."""


def _leaf(exc: BaseException) -> BaseException:
    """The real error inside task-group wrappers (``ExceptionGroup`` of one), for a readable message."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


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


def main(argv: list[str] | None = None) -> None:
    """The CLI (``ingest_probe.__main__`` runs it as a process): maps every failure to one stderr line and a
    documented exit code.

    ``--debug`` may stand anywhere on the line; it adds the traceback but never changes the exit code.
    SIGINT/SIGTERM are handled from here on (``signals``): whenever they arrive, the exit is 130/143
    with one line, every client closed and no temp file left.
    """
    with handled():
        args = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in args
        args = [a for a in args if a != "--debug"]
        if not args and not os.environ.get(COMPLETE_VAR):  # a completion request comes with no arguments
            _fail("missing command: try 'ingest-probe --help'", errors.UsageError.exit_code)
        if sys.stdout is None and {"-h", "--help", "--version"} & set(args):  # `ingest-probe --help >&-`
            _fail("cannot write help: stdout is closed", errors.UsageError.exit_code)
        _run(args, debug)


def _run(args: list[str], debug: bool) -> NoReturn:
    try:
        cli.main(args=args, prog_name="ingest-probe", complete_var=COMPLETE_VAR, standalone_mode=False,
                 obj={"debug": debug})
    except Interrupted as exc:
        _fail(_stopped(exc), EXIT_SIGNAL_BASE + exc.signum)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):  # SIGINT when its handler was not ours (ignored at start)
        _fail("interrupted by SIGINT; every connection was closed", EXIT_SIGNAL_BASE + signal.SIGINT)
    except click.ClickException as exc:  # usage errors: bad flags, bad values
        _fail(exc.format_message(), errors.UsageError.exit_code)
    except errors.IngestProbeError as exc:
        _fail(str(exc), exc.exit_code, debug=debug)
    except OSError as exc:  # reading a file the config layer did not own
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), EXIT_UNKNOWN, debug=debug)
    except Exception as exc:  # noqa: BLE001 -- the process boundary: a bug becomes one line + exit 3 (--debug: traceback)
        leaf = _leaf(exc)
        hint = "" if debug else " (re-run with --debug for a traceback)"
        _fail(f"internal error: {type(leaf).__name__}: {leaf}{hint}", EXIT_UNKNOWN, debug=debug)
    sys.exit(EXIT_OK)
