"""SIGINT/SIGTERM for a whole command, from process start to exit: one handler, never swapped.

Outside an event loop a signal raises ``Interrupted`` in the main thread (splay sleep, driver imports,
config loading, rendering); inside one it calls the loop's ``cancel`` so every client still closes, and
a second signal while closing raises at once. Around a file replacement (``deferred``) it waits until
the temp file is renamed or removed, so no ``.NAME.XXXX.tmp`` is ever left behind.

The handler is installed once and stays: asyncio's own ``add_signal_handler`` restores ``SIG_DFL`` when
a loop ends, which left a window where SIGTERM killed the process mid-write.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from ingest_probe.defaults import EXIT_SIGNAL_BASE

SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Route SIGINT/SIGTERM to the handler for the block (restored after); nested use is a no-op.

    Only the main thread can own signals; a signal ignored when the process started (``nohup``, a
    background job's SIGINT) stays ignored.
    """
    if _state.installed or not _main_thread():
        yield
        return
    previous = {}
    for sig in SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _handle)
    _state.installed = True
    try:
        yield
    finally:
        _state.installed = False
        for sig, handler in previous.items():
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
