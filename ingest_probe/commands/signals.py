"""SIGINT/SIGTERM for a whole command, from process start to exit: one handler, never swapped.

Outside an event loop a signal raises ``Interrupted`` in the main thread (splay sleep, driver imports,
config loading, rendering); inside one it calls the loop's ``cancel`` so every client still closes, and
a second signal while closing raises at once. Around a file replacement (``deferred``) it waits until
the temp file is renamed or removed, so no ``.NAME.XXXX.tmp`` is ever left behind.

The handler is installed once and stays: asyncio's own ``add_signal_handler`` restores ``SIG_DFL`` when
a loop ends, which left a window where SIGTERM killed the process mid-write.

SIGHUP is handled by the same means: inside ``on_hangup`` (``watch``) it calls the callback given (a reload);
anywhere else it is ignored, so a ``kill -HUP`` meant for ``watch`` never kills a ``report`` run. It is a
handler, not ``SIG_IGN``: a process that ``wait`` execs starts with SIGHUP at its default again.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from ingest_probe.defaults import EXIT_SIGNAL_BASE

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The reload signal (``watch``); ignored by every other command.
HANGUP = signal.SIGHUP


class Interrupted(SystemExit):
    """SIGINT (exit 130) or SIGTERM (exit 143) ended the command.

    A ``SystemExit``: no ``except Exception`` on the way swallows it, asyncio re-raises it out of a task
    at once, and uncaught it still exits with the documented code.
    """

    def __init__(self, signum: int, *, forced: bool = False) -> None:
        super().__init__(EXIT_SIGNAL_BASE + signum)
        self.signum = signum
        self.forced = forced

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class _State:
    installed = False
    cancel: Callable[[], object] | None = None
    received: int | None = None
    deferring = False
    pending: int | None = None
    on_hangup: Callable[[], object] | None = None
    previous: dict[signal.Signals, Any] = {}


_state = _State()


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state.cancel is not None:  # an event loop runs the command: cancel it, clients close
        if _state.received is None:
            _state.received = signum
            _state.cancel()
            return
        raise Interrupted(signum, forced=True)  # a second signal while closing: stop now
    if _state.deferring:
        _state.pending = _state.pending or signum
        return
    raise Interrupted(signum)


def _hangup(signum: int, frame: FrameType | None) -> None:
    if _state.on_hangup is not None:
        _state.on_hangup()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Route SIGINT/SIGTERM (and SIGHUP, see the module docstring) to the handlers for the block (restored
    after); nested use is a no-op.

    Only the main thread can own signals; SIGINT/SIGTERM ignored when the process started (a background
    job's SIGINT) stay ignored.
    """
    if _state.installed or not _main_thread():
        yield
        return
    previous = {}
    for sig in SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _handle)
    # Also when ignored since the start (nohup): a hangup then reloads `watch`, which is harmless.
    previous[HANGUP] = signal.signal(HANGUP, _hangup)
    _state.installed, _state.previous = True, previous
    try:
        yield
    finally:
        _state.installed = False
        restore()


def restore() -> None:
    """Give SIGINT, SIGTERM and SIGHUP back the dispositions they had before ``handled`` (``wait`` does this
    right before it execs a command, so the command inherits what ingest-probe inherited: e.g. nohup's SIGHUP)."""
    previous, _state.previous = _state.previous, {}
    for sig, handler in previous.items():
        if handler is not None:  # None: installed from C, nothing Python can put back
            signal.signal(sig, handler)


class Cancelling:
    """What ``cancelling`` saw: the signal that cancelled the loop, if any."""

    signum: int | None = None


@contextlib.contextmanager
def cancelling(cancel: Callable[[], object]) -> Iterator[Cancelling]:
    """Inside an event loop: the first signal calls ``cancel`` (it runs in the signal handler, so it must
    only schedule, e.g. ``loop.call_soon_threadsafe``); a second one raises ``Interrupted(forced=True)``."""
    seen = Cancelling()
    with handled():
        if not _state.installed or not _main_thread():  # signals are not ours to handle here
            yield seen
            return
        outer = (_state.cancel, _state.received)
        _state.cancel, _state.received = cancel, None
        try:
            yield seen
        finally:
            seen.signum = _state.received
            _state.cancel, _state.received = outer


@contextlib.contextmanager
def on_hangup(callback: Callable[[], object]) -> Iterator[bool]:
    """SIGHUP calls ``callback`` for the block (in the signal handler: it must only schedule, e.g.
    ``loop.call_soon_threadsafe``); yields whether SIGHUP is ours to handle here (the main thread only)."""
    with handled():
        if not _main_thread() or signal.getsignal(HANGUP) is not _hangup:  # not ours here
            yield False
            return
        outer, _state.on_hangup = _state.on_hangup, callback
        try:
            yield True
        finally:
            _state.on_hangup = outer


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Signals wait until the block is done (a temp file renamed or removed), then raise as usual."""
    if not _main_thread() or _state.deferring:
        yield
        return
    _state.deferring = True
    try:
        yield
    finally:
        _state.deferring = False
        pending, _state.pending = _state.pending, None
        if pending is not None and _state.cancel is None:
            raise Interrupted(pending)
