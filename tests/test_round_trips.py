"""Round trips and connections of each probe, counted by a loopback proxy in front of the real servers.

A count is the protocol's, not the machine's: deterministic, so asserted exactly (issue 15's targets).
Cold: TCP connect + everything up to the answer; warm: the next ``check()`` on the kept connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fakes import pg_settings
from live.counting import CountingProxy, count_check
from live.postgres import PostgresServer
from live.redis import AUTH_PASSWORD, RedisServer

from ingest_probe.connectors.redis.probe import RedisProbe
from ingest_probe.connectors.timescale.probe import TimescaleProbe
from ingest_probe.secret import Secret

pytestmark = pytest.mark.live


@pytest.fixture
def proxy() -> Iterator[CountingProxy]:
    with CountingProxy() as p:
        yield p


async def counted(probe: Any, proxy: CountingProxy) -> tuple[tuple[int, int], tuple[int, int]]:
    """(cold, warm) counts of two checks on one probe; both must be ok."""
    try:
        cold_rec, cold = await count_check(probe, proxy)
        assert cold_rec.details["reused_connection"] is False
        warm_rec, warm = await count_check(probe, proxy)
        assert warm_rec.details["reused_connection"] is True
    finally:
        await probe.aclose()
    return cold, warm


async def test_postgresql_prefer_is_six_round_trips_on_one_connection(
    pg_server: PostgresServer, proxy: CountingProxy
) -> None:
    """sslmode=prefer against a server without TLS: TCP, SSLRequest ('N', then plaintext on the same
    connection), startup + SCRAM (3), the facts query (1) = 6 on 1 connection; warm: the query alone."""
    proxy.target = pg_server.port
    probe = TimescaleProbe(pg_settings(pg_server, host="127.0.0.1", port=proxy.port, sslmode="prefer"))
    cold, warm = await counted(probe, proxy)
    assert (cold, warm) == ((6, 1), (1, 0))


async def test_redis_is_two_round_trips(redis_auth_server: RedisServer, proxy: CountingProxy) -> None:
    """A Redis with a password: TCP, then AUTH + CLIENT SETNAME + PING + INFO in one write = 2 round trips
    on 1 connection; warm: PING + INFO, 1."""
    proxy.target = redis_auth_server.port
    settings = redis_auth_server.settings(host="127.0.0.1", port=proxy.port, password=Secret(AUTH_PASSWORD))
    cold, warm = await counted(RedisProbe(settings), proxy)
    assert (cold, warm) == ((2, 1), (1, 0))
