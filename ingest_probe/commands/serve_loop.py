"""The ``serve`` loop: uvicorn run programmatically inside our event loop, our signals, reload on SIGHUP.

Start-up, before the loop: settings (nothing configured is exit 3), the listening socket (bound here, so a
taken address is one line and exit 3, and ``--listen 127.0.0.1:0`` logs the port it got), the client
libraries and uvicorn's protocol modules. Then one loop: the Prober (warm clients), the app's lifespan (the
background checks) and ``uvicorn.Server.serve`` on that socket, with uvicorn's own signal capture switched
off so ``commands.signals`` keeps SIGINT/SIGTERM: the first one sets ``should_exit`` (uvicorn stops
accepting, closes idle keep-alive connections and gives in-flight requests ``grace`` seconds), then the
background checks stop and every client closes; exit 0. A second signal cuts that short (130/143).

SIGHUP re-reads the configuration (same flags, same files) in a worker thread and, if it loads, swaps the
Prober's targets (``Prober.update``, as ``watch`` does): the warm clients of unchanged targets are kept, those
of removed or changed ones closed; a configuration that does not load is one log line and the old one stays.

uvicorn's limits bound every request: a head still arriving past ``SERVE_MAX_REQUEST_HEAD`` bytes drops the
connection (the app answers 431 to one that arrived whole), ``SERVE_MAX_CONNECTIONS`` connections and
requests at once (then 503), idle keep-alive connections closed after ``SERVE_KEEP_ALIVE`` s; no request body
is read (only GET and HEAD are served).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import uvicorn

from ingest_probe import errors
from ingest_probe.asgi import HealthApp, create_app
from ingest_probe.commands import signals
from ingest_probe.commands.loop import call_on_signal, install_daemon_executor
from ingest_probe.defaults import (
    CONCURRENCY,
    EXIT_OK,
    JITTER,
    SERVE_KEEP_ALIVE,
    SERVE_MAX_CONNECTIONS,
    SERVE_MAX_REQUEST_HEAD,
    TIMEOUT,
)
from ingest_probe.engine.run import preload_drivers
from ingest_probe.prober import Prober
from ingest_probe.renderers.printable import printable
from ingest_probe.settings.service import Settings
from ingest_probe.settings.targets import Target, classic_targets

#: What ``load`` returns: the settings and the targets to serve (SIGHUP runs it again).
Loaded = tuple[Settings, Sequence[Target]]

#: Connections the kernel queues before the server accepts them (uvicorn's default).
BACKLOG = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    """What one ``serve`` invocation was asked to do (the CLI fills it from flags)."""

    host: str = "127.0.0.1"
    port: int = 9464
    interval: float = 15.0
    max_age: float | None = None
    fail_on: str = "down"
    timeout: float = TIMEOUT
    jitter: float = JITTER
    seed: int | None = None
    concurrency: int = CONCURRENCY
    grace: float = 5.0
    access_log: bool = True


def stamped(text: str) -> str:
    """A log line: UTC time, then what happened (control characters shown, never obeyed)."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"{now} ingest-probe serve: {printable(text)}"


def log(line: str) -> None:
    print(stamped(line), file=sys.stderr, flush=True)


def targets_of(settings: Settings, targets: Sequence[Target] | None = None) -> tuple[Target, ...]:
    """What to serve: ``targets`` (default: the service's classic ones); nothing configured is a configuration
    error (exit 3)."""
    targets = classic_targets(settings) if targets is None else tuple(targets)
    if not any(t.configured for t in targets):
        raise errors.ConfigError("nothing to probe: no connector is configured (TIMESCALEDB_URL, REDIS_URL,"
                                 " KAFKA_BROKERS, ...)")
    return targets


def bind(host: str, port: int) -> socket.socket:
    """The listening socket; an address in use is a one-line error, exit 3. Connections queue in its backlog
    from here on, so the server is reachable from the moment it says it listens."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise errors.ConfigError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server without its signal capture: ``commands.signals`` owns SIGINT/SIGTERM for the whole
    command (uvicorn would swap the handlers and re-raise the signal after its shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run_serve(load: Callable[[], Loaded], options: ServeOptions) -> int:
    """The CLI's single event-loop entry for ``serve``; returns the exit code."""
    with _ignored(signal.SIGHUP):  # a reload asked for while starting: the configuration is being read now
        settings, given = load()
        targets = targets_of(settings, given)
        preload_drivers(targets)  # before the loop: ~0.2 s of imports would stall it
        sock = bind(options.host, options.port)
        with contextlib.closing(sock), signals.handled():
            return anyio.run(_serve, load, settings, targets, sock, options)


@contextlib.contextmanager
def _ignored(signum: int) -> Iterator[None]:
    """``signum`` ignored for the block (instead of its default action: SIGHUP's ends the process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signum, previous)


def uvicorn_config(app: Any, *, grace: float) -> uvicorn.Config:
    """uvicorn's configuration for ``serve`` (the benchmark serves its baseline app with the same)."""
    config = uvicorn.Config(
        app, http="h11", ws="none", lifespan="off", interface="asgi3", log_config=None, access_log=False,
        proxy_headers=False, server_header=False, limit_concurrency=SERVE_MAX_CONNECTIONS,
        timeout_keep_alive=SERVE_KEEP_ALIVE, timeout_graceful_shutdown=grace,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=SERVE_MAX_REQUEST_HEAD, backlog=BACKLOG,
    )  # fmt: skip
    config.load()  # imports the protocol modules now, not on the first connection
    return config


async def _serve(load: Callable[[], Loaded], settings: Settings, targets: Sequence[Target], sock: socket.socket,
                 options: ServeOptions) -> int:
    install_daemon_executor()  # a DNS lookup stuck in the resolver must not hold the exit
    prober = Prober(targets, settings=settings, timeout=options.timeout, jitter=options.jitter, seed=options.seed,
                    concurrency=options.concurrency)
    app = create_app(prober, fail_on=options.fail_on, interval=options.interval, max_age=options.max_age,
                     access_log=log if options.access_log else None, log=log)
    server = _Server(uvicorn_config(app, grace=options.grace))
    hup = _Hangups()

    def stop() -> None:
        server.should_exit = True

    with _uvicorn_warnings(), call_on_signal(stop) as seen, hup.installed():
        # Leaving the prober closes every client, shielded and bounded by the close budget.
        async with prober, app.lifespan(), anyio.create_task_group() as tg:
            tg.start_soon(_reload_on_hangup, hup, load, app)
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            log(f"listening on http://{shown} ({', '.join(t.name for t in prober.targets if t.configured)};"
                f" every {options.interval:g} s, max age {app.max_age:g} s, fail on {options.fail_on})")
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()
    if seen.signum is not None:
        log(f"stopped by {signal.Signals(seen.signum).name}; clients closed")
    return EXIT_OK


class _Hangups:
    """SIGHUP, while installed: sets ``event`` in the loop (the loop's wakeup fd is ``call_on_signal``'s)."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        import asyncio

        loop = asyncio.get_running_loop()
        previous = signal.signal(signal.SIGHUP, lambda signum, frame: loop.call_soon_threadsafe(self.event.set))
        try:
            yield
        finally:
            signal.signal(signal.SIGHUP, previous)

    async def wait(self) -> None:
        await self.event.wait()
        self.event = anyio.Event()


async def _reload_on_hangup(hup: _Hangups, load: Callable[[], Loaded], app: HealthApp) -> None:
    """On each SIGHUP: the configuration re-read off the loop; if it loads, the prober's targets swapped for
    its targets (unchanged ones keep their warm clients) and checked at once."""
    prober = app.prober
    while True:
        await hup.wait()
        try:
            settings, given = await anyio.to_thread.run_sync(load)
            swap = await prober.update(targets_of(settings, given), settings=settings)
        except errors.IngestProbeError as exc:
            log(f"reload refused, the previous configuration stays: {exc}")
            continue
        app.recheck()
        configured = ", ".join(t.name for t in prober.targets if t.configured)
        log(f"reloaded: {configured} ({len(swap.kept)} unchanged, clients kept; {len(swap.added)} new or changed)")


@contextlib.contextmanager
def _uvicorn_warnings() -> Iterator[None]:
    """uvicorn's own warnings and errors (a malformed request, a cancelled request at the end of the grace
    period) as our log lines; its info lines are left out."""
    logger = logging.getLogger("uvicorn.error")

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log(f"uvicorn: {record.getMessage().strip()}")

    handler = Handler(logging.WARNING)
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved
