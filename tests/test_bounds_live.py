"""Bounds that hold against real, frozen servers: the owner's close budget is the ceiling of every close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from fakes import fake_prober, pg_settings
from live.kafka import TansuBroker, client_connections, wait_until

from ingest_probe.connectors.base import Probe
from ingest_probe.connectors.kafka.probe import KafkaProbe
from ingest_probe.connectors.kafka.settings import KafkaSettings
from ingest_probe.connectors.redis.probe import RedisProbe
from ingest_probe.connectors.timescale.probe import TimescaleProbe
from ingest_probe.results import Status

#: The owner's close budget under test, far below the probe modules' own default (1 s).
CLOSE_BUDGET = 0.2
#: Scheduling slack on a loaded 2-core machine: still well below what a probe's own constants used to cost.
SLACK = 0.6


async def _hang(*args: Any, **kwargs: Any) -> None:
    await anyio.sleep_forever()


Target = tuple[Probe, Callable[[], None], Callable[[], None], Callable[[], bool]]


@pytest.fixture
def frozen_close(
    request: pytest.FixtureRequest,
    pg_server: Any,
    redis_server_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Target]:
    """(a probe of ``request.param``'s connector, freeze its server, thaw it, "no connection of ours left").

    Frozen, PostgreSQL keeps asyncpg's polite close waiting; redis-py and aiokafka close a plaintext socket
    without waiting for the peer, so for them the library's close is made to hang as well, after closing
    the socket (what a TLS shutdown to a frozen peer, or a full socket buffer, does).
    """
    name = request.param
    if name == "timescale":
        settings = pg_settings(pg_server)
        app = settings.application_name
        try:
            yield (TimescaleProbe(settings), pg_server.freeze, pg_server.thaw,
                   lambda: pg_server.count_connections(app) == 0)
        finally:
            pg_server.thaw()
    elif name == "redis":
        from redis.asyncio import ConnectionPool

        monkeypatch.setattr(ConnectionPool, "release", _hang)  # inside Redis.aclose()
        redis = redis_server_factory()
        probe = RedisProbe(redis.settings(client_name="ip-close-budget"))
        try:
            yield probe, redis.freeze, redis.thaw, lambda: redis.client_list("ip-close-budget") == []
        finally:
            redis.thaw()
    else:
        from aiokafka.conn import AIOKafkaConnection

        close = AIOKafkaConnection.close

        def never_closed(self: AIOKafkaConnection, *args: Any, **kwargs: Any) -> Any:
            close(self, *args, **kwargs)
            return asyncio.get_running_loop().create_future()  # the close never completes

        monkeypatch.setattr(AIOKafkaConnection, "close", never_closed)
        with TansuBroker.start() as broker:
            probe = KafkaProbe(KafkaSettings(configured=True, bootstrap_servers=(broker.bootstrap,)))
            try:
                yield probe, broker.freeze, broker.thaw, lambda: client_connections(broker.port) == 0
            finally:
                broker.thaw()


@pytest.mark.live
@pytest.mark.parametrize("frozen_close", ["timescale", "redis", "kafka"], indirect=True)
async def test_close_budget_is_a_ceiling_against_a_frozen_server(
    frozen_close: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warm client, frozen server: the Prober's exit closes within its close budget, whatever the probe
    modules' own close constants say (set absurdly high here), and no connection of ours is left."""
    import ingest_probe.connectors._net as common
    import ingest_probe.connectors.kafka.probe as kafka
    import ingest_probe.connectors.timescale.probe as timescale

    for module in (common, kafka, timescale):  # a probe module that still has its own constant gets it too
        monkeypatch.setattr(module, "CLOSE_BUDGET", 3.0, raising=False)
    probe, freeze, thaw, nothing_left = frozen_close
    prober = fake_prober([probe], timeout=5.0, jitter=0.0, close_budget=CLOSE_BUDGET)
    async with prober:
        [warm] = await prober.check()
        assert warm.status is Status.OK, warm
        freeze()
        started = time.monotonic()
    elapsed = time.monotonic() - started
    thaw()
    assert elapsed < CLOSE_BUDGET + SLACK, elapsed
    assert await anyio.to_thread.run_sync(lambda: wait_until(nothing_left, timeout=10.0))
