"""The one event-loop entry of a command: SIGTERM cancels it like SIGINT, and no stuck thread holds the exit."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ingest_probe import errors

if TYPE_CHECKING:
    from anyio import CancelScope

T = TypeVar("T")


class DaemonExecutor(ThreadPoolExecutor):  # asyncio accepts only ThreadPoolExecutor as its default
    """Runs each call in its own daemon thread and never waits for one at shutdown.

    The loop's default executor serves ``getaddrinfo`` for every client library. A lookup stuck in the
    system resolver cannot be cancelled; with the stock executor, closing the loop (and the interpreter's
    exit) would wait for it, holding the process far past ``--timeout``. Daemon threads are abandoned.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- handed to the awaiting coroutine, which re-raises it
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=work, name="ingest-probe-io", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to wait for: the threads are daemons and finish (or are abandoned) on their own."""


def install_daemon_executor() -> None:
    """Make the running loop's default executor a ``DaemonExecutor`` (only for loops we own)."""
    asyncio.get_running_loop().set_default_executor(DaemonExecutor())


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(fn)`` for a command: SIGTERM (cron timeouts, Kubernetes) cancels ``fn`` so every client
    still closes, then raises ``errors.Terminated`` (exit 143); SIGINT does the same via KeyboardInterrupt."""
    import anyio

    async def main() -> T:
        install_daemon_executor()
        box: list[T] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_sigterm, tg.cancel_scope)
            box.append(await fn())
            tg.cancel_scope.cancel()
        if not box:  # SIGTERM cancelled fn; its own cleanup (bounded, shielded closes) has run
            raise errors.Terminated("terminated by SIGTERM; every connection was closed")
        return box[0]

    return anyio.run(main)


async def _cancel_on_sigterm(scope: CancelScope) -> None:
    import anyio

    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return
