"""A loopback TCP proxy that counts round trips and connections, and ``round_trip_counts()`` for the bench.

A round trip is what a client waits for: each TCP connection (the handshake) is one, and so is each burst
of client bytes that the server answers (everything the client sends before the server's next bytes is one
burst, however many writes it took; bytes nobody answers, such as a Terminate before closing, are none).
Counts are deterministic (the protocol's, not the machine's), so tests may assert them.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import Any

from live.net import _dial, _Listener


class CountingProxy(_Listener):
    """Forwards TCP to ``127.0.0.1:target`` and counts ``connections`` and ``round_trips`` (see the module).

    ``target`` may be set after the proxy is listening (a broker that must advertise ``port``); ``port``:
    listen there, default a free one. ``reset()`` zeroes the counts. A reply is counted before it is
    forwarded, so when a client has its answer the count includes it.
    """

    def __init__(self, target: int = 0, *, port: int = 0) -> None:
        self.target = target
        self.connections = 0
        self._answered = 0
        self._lock = threading.Lock()
        self._pumps: list[threading.Thread] = []
        super().__init__(port)

    @property
    def round_trips(self) -> int:
        with self._lock:
            return self.connections + self._answered

    def counts(self) -> tuple[int, int]:
        """``(round_trips, connections)`` so far."""
        with self._lock:
            return self.connections + self._answered, self.connections

    def reset(self) -> None:
        with self._lock:
            self.connections = self._answered = 0

    def _serve(self, client: socket.socket) -> None:
        if (upstream := _dial(client, self.target)) is None:
            return
        with self._lock:
            self.connections += 1
        self._conns += [client, upstream]
        pump = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
        self._pumps.append(pump)
        pump.start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """One thread per connection, both directions: the order it sees bytes in is the causal order."""
        peer = {client: upstream, upstream: client}
        asked = False  # client bytes went out since the server last spoke
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ)
            sel.register(upstream, selectors.EVENT_READ)
            open_ = 2
            try:
                while open_ and not self._closed:
                    for key, _ in sel.select(timeout=0.2):
                        src: Any = key.fileobj
                        data = src.recv(65536)
                        if not data:
                            sel.unregister(src)
                            open_ -= 1
                            with contextlib.suppress(OSError):
                                peer[src].shutdown(socket.SHUT_WR)
                            continue
                        if src is client:
                            asked = True
                        elif asked:
                            asked = False
                            with self._lock:
                                self._answered += 1
                        peer[src].sendall(data)
            except OSError:
                pass
            finally:
                for s in (client, upstream):
                    with contextlib.suppress(OSError):
                        s.close()


async def count_check(probe: Any, proxy: CountingProxy, *, deadline: float = 5.0) -> tuple[Any, tuple[int, int]]:
    """One ``probe.check()`` (cold or warm, as the probe is) counted through ``proxy``: its recorder and
    ``(round_trips, connections)``. The probe stays open (warm); the caller closes it."""
    import anyio

    from ingest_probe.results import Recorder

    proxy.reset()
    rec = Recorder()
    with anyio.fail_after(deadline):
        await probe.check(rec)
    return rec, proxy.counts()


async def cold_and_warm(probe: Any, proxy: CountingProxy) -> dict[str, tuple[int, int]]:
    """``{"cold": (round_trips, connections), "warm": ...}`` of two checks on one probe (then closed); both
    must succeed, the first on a new connection, the second on the kept one."""
    try:
        cold_rec, cold = await count_check(probe, proxy)
        assert cold_rec.details["reused_connection"] is False, cold_rec.details
        warm_rec, warm = await count_check(probe, proxy)
        assert warm_rec.details["reused_connection"] is True, warm_rec.details
    finally:
        await probe.aclose()
    return {"cold": cold, "warm": warm}


#: The targets of issue 15: cold (round trips, connections) per kind, warm (round trips, connections).
TARGETS = {
    "timescale": {"cold": (6, 1), "warm": (1, 0)},
    "redis": {"cold": (2, 1), "warm": (1, 0)},
    "kafka": {"cold": (3, 1), "warm": (1, 0)},
}


def round_trip_counts(postgres: Any, redis: Any) -> dict[str, dict[str, tuple[int, int]]]:
    """For the bench: each probe's cold and warm ``(round_trips, connections)`` through a counting proxy, as
    ``{"timescale": {"cold": (6, 1), "warm": (1, 0)}, "redis": ..., "kafka": ...}`` (compare with ``TARGETS``).

    ``postgres``/``redis``: running ``PostgresServer``/``RedisServer`` (e.g. a ``LocalStack``'s); Kafka gets
    a private Tansu that advertises the proxy's port (else every connection after bootstrap bypasses it).
    Sync: runs its own event loop.
    """
    import asyncio

    from ingest_probe.connectors.kafka.probe import KafkaProbe
    from ingest_probe.connectors.kafka.settings import KafkaSettings
    from ingest_probe.connectors.redis.probe import RedisProbe
    from ingest_probe.connectors.timescale.probe import TimescaleProbe
    from ingest_probe.connectors.timescale.settings import TimescaleSettings
    from ingest_probe.secret import Secret
    from live.kafka import TansuBroker

    async def count_all(pg_proxy: CountingProxy, redis_proxy: CountingProxy, kafka_proxy: CountingProxy) -> Any:
        pg = TimescaleProbe(TimescaleSettings(
            configured=True, backend="postgresql", url_source_key=None, host="127.0.0.1", port=pg_proxy.port,
            user=postgres.user, password=Secret(postgres.password), database=postgres.database,
            application_name="ingest-probe-round-trips"))  # fmt: skip
        rd = RedisProbe(redis.settings(host="127.0.0.1", port=redis_proxy.port))
        kf = KafkaProbe(KafkaSettings(configured=True, bootstrap_servers=(f"127.0.0.1:{kafka_proxy.port}",)))
        return {
            "timescale": await cold_and_warm(pg, pg_proxy),
            "redis": await cold_and_warm(rd, redis_proxy),
            "kafka": await cold_and_warm(kf, kafka_proxy),
        }

    with CountingProxy(postgres.port) as pg_proxy, CountingProxy(redis.port) as redis_proxy, \
            CountingProxy() as kafka_proxy, TansuBroker.start(advertised_port=kafka_proxy.port) as broker:
        kafka_proxy.target = broker.port
        return asyncio.run(count_all(pg_proxy, redis_proxy, kafka_proxy))  # type: ignore[no-any-return]
