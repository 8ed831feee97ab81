"""The process: ``python -m ingest_probe`` and the ``ingest-probe`` script run the CLI (``commands.cli.main``)
with a quick start and a quick exit. In-process callers (tests, an embedding program) call ``main``, which
does neither."""

from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import NoReturn

#: Commands that loop until stopped: their start-up is not worth pausing the garbage collector for.
LOOPS = ("serve", "watch")


def run() -> NoReturn:
    """Start: the collector is paused before the CLI's modules load (``commands.loop.run`` resumes it, the
    import-time heap frozen, when the event loop starts), which saves its passes over objects that all live
    to the end (~7 ms of a 50 ms ``--help``). Exit: see ``_leave``."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command not in LOOPS:
        gc.disable()
    from ingest_probe.commands.cli import main

    try:
        main()
    except SystemExit as exc:
        _leave(exc.code)
    _leave(0)


def _leave(code: str | int | None) -> NoReturn:
    """Leave without the interpreter's teardown when nothing depends on it.

    Most of a short run's teardown is the final garbage collection over every loaded module's objects (about
    70 ms of a ``report --connectivity``); every client is closed and every report written and flushed by
    then. ``gc.freeze()`` takes those objects out of that collection. Then, unless a non-daemon thread still
    runs (the interpreter would join it), the exit handlers run and the process ends at once after a flush.
    A flush that fails takes the interpreter's own exit, which reports it as it always did. A run checked for
    leaks (``-X dev``, ``-W ...``: unclosed transports are found by that collection) keeps the whole teardown,
    as must a wrapper that reports after the module returns (``python -W default -m cProfile -m ingest_probe``).
    """
    if sys.flags.dev_mode or sys.warnoptions:  # a leak check: it needs the whole teardown
        sys.exit(code)
    gc.freeze()
    if not isinstance(code, int) or _threads_running():
        sys.exit(code)
    try:
        _flush()
        atexit._run_exitfuncs()  # what the interpreter would run next; what they print is flushed below
        _flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # closed when the process started (`>&-`)
            stream.flush()


def _threads_running() -> bool:
    threading = sys.modules.get("threading")
    if threading is None:
        return False
    return any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())


if __name__ == "__main__":
    run()
