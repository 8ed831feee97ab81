"""The one event-loop entry of a command: SIGINT/SIGTERM cancel it, and no stuck thread holds the exit."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from ingest_probe.commands import signals as _signals
from ingest_probe.connectors._net import DaemonExecutor

if TYPE_CHECKING:
    from anyio import CancelScope

T = TypeVar("T")


def install_daemon_executor() -> None:
    """Make the running loop's default executor a ``DaemonExecutor`` (only for loops we own: every command's),
    and quiet the client libraries' loggers, which only log from inside a loop."""
    asyncio.get_running_loop().set_default_executor(DaemonExecutor())
    _quiet_library_loggers()


def _quiet_library_loggers() -> None:
    """Client libraries log connection trouble themselves; the report already says it, once, in our words.

    Without a handler Python prints their WARNINGs on stderr (``logging.lastResort``), e.g. aiokafka's
    background metadata refresher. A ``NullHandler`` ends that; an embedding application keeps its own
    logging configuration, since only the CLI's loops call this (here, not at start: ``--help`` and a
    manifest-only run never import ``logging``).
    """
    for name in ("aiokafka", "asyncpg", "redis"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(fn)`` for a command: SIGINT/SIGTERM (Ctrl-C, cron timeouts, Kubernetes) cancel ``fn`` so
    every client still closes, then raise ``_signals.Interrupted`` (exit 130/143)."""
    import anyio

    if not gc.isenabled():  # paused for start-up by the process (``ingest_probe.__main__``); every module is loaded
        gc.freeze()  # the import-time heap lives to the end: no collection needs to walk it again
        gc.enable()  # a long run (``wait``, many targets) collects its garbage as usual

    async def main() -> T:
        install_daemon_executor()
        with anyio.CancelScope() as scope, cancel_on_signal(scope) as seen:
            result = await fn()
        if seen.signum is not None:  # fn was cancelled (or had just finished); its bounded cleanup has run
            raise _signals.Interrupted(seen.signum)
        return result

    with _signals.handled():
        return anyio.run(main)


def cancel_on_signal(scope: CancelScope) -> contextlib.AbstractContextManager[_signals.Cancelling]:
    """In the running asyncio loop: the first SIGINT/SIGTERM cancels ``scope`` (see ``_signals``)."""
    return call_on_signal(scope.cancel)


@contextlib.contextmanager
def call_on_signal(callback: Callable[[], object]) -> Iterator[_signals.Cancelling]:
    """In the running asyncio loop: the first SIGINT/SIGTERM calls ``callback`` in the loop (``serve``: a
    graceful stop); a second one raises ``Interrupted(forced=True)`` (see ``_signals``)."""
    loop = asyncio.get_running_loop()
    with _wakeup(loop), _signals.cancelling(lambda: loop.call_soon_threadsafe(callback)) as seen:
        yield seen


@contextlib.contextmanager
def _wakeup(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Wake the loop's selector when a signal lands on another thread than the main one, so the handler
    runs at once and not at the loop's next timer (what ``loop.add_signal_handler`` does too)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    loop.add_reader(reader.fileno(), _drain, reader)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(4096):
            pass
