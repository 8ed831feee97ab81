"""Round trips and connections of each probe, counted by a loopback proxy in front of the real servers.

A count is the protocol's, not the machine's: deterministic, so asserted exactly (issue 15's targets).
Cold: TCP connect + everything up to the answer; warm: the next ``check()`` on the kept connection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fakes import pg_settings
from live.counting import TARGETS, CountingProxy, cold_and_warm, round_trip_counts
from live.kafka import ENV_BOOTSTRAP, NEEDS_OWNED, TansuBroker, require_tansu
from live.postgres import PostgresServer
from live.redis import AUTH_PASSWORD, RedisServer

from ingest_probe.connectors.kafka.probe import KafkaProbe
from ingest_probe.connectors.kafka.settings import KafkaSettings
from ingest_probe.connectors.kafka.topic_specs import TopicSpec
from ingest_probe.connectors.redis.probe import RedisProbe
from ingest_probe.connectors.timescale.probe import TimescaleProbe
from ingest_probe.secret import Secret

pytestmark = pytest.mark.live


@pytest.fixture
def proxy() -> Iterator[CountingProxy]:
    with CountingProxy() as p:
        yield p


async def test_postgresql_prefer_is_six_round_trips_on_one_connection(
    pg_server: PostgresServer, proxy: CountingProxy
) -> None:
    """sslmode=prefer against a server without TLS: TCP, SSLRequest ('N', then plaintext on the same
    connection), startup + SCRAM (3), the facts query (1) = 6 on 1 connection; warm: the query alone."""
    proxy.target = pg_server.port
    probe = TimescaleProbe(pg_settings(pg_server, host="127.0.0.1", port=proxy.port, sslmode="prefer"))
    assert await cold_and_warm(probe, proxy) == TARGETS["timescale"] == {"cold": (6, 1), "warm": (1, 0)}


async def test_redis_is_two_round_trips(redis_auth_server: RedisServer, proxy: CountingProxy) -> None:
    """A Redis with a password: TCP, then AUTH + CLIENT SETNAME + PING + INFO in one write = 2 round trips
    on 1 connection; warm: PING + INFO, 1."""
    proxy.target = redis_auth_server.port
    settings = redis_auth_server.settings(host="127.0.0.1", port=proxy.port, password=Secret(AUTH_PASSWORD))
    assert await cold_and_warm(RedisProbe(settings), proxy) == TARGETS["redis"] == {"cold": (2, 1), "warm": (1, 0)}


@pytest.fixture
def broker_behind_proxy() -> Iterator[tuple[TansuBroker, CountingProxy]]:
    """A private Tansu that advertises the proxy's port, so every connection (bootstrap or not) is counted."""
    if os.environ.get(ENV_BOOTSTRAP):
        pytest.skip(NEEDS_OWNED)
    require_tansu()
    with CountingProxy() as proxy, TansuBroker.start(advertised_port=proxy.port) as broker:
        proxy.target = broker.port
        yield broker, proxy


async def test_kafka_is_three_round_trips_on_one_connection(
    broker_behind_proxy: tuple[TansuBroker, CountingProxy],
) -> None:
    """TCP, ApiVersions, one Metadata request (cluster id, controller, brokers, topics, leaders) = 3 on 1
    connection; warm: the Metadata request alone."""
    _, proxy = broker_behind_proxy
    probe = KafkaProbe(KafkaSettings(configured=True, bootstrap_servers=(f"127.0.0.1:{proxy.port}",),
                                     topics=(TopicSpec(name="absent", dimensions=("daily",)),)))
    assert await cold_and_warm(probe, proxy) == TARGETS["kafka"] == {"cold": (3, 1), "warm": (1, 0)}


def test_round_trip_counts_for_the_bench(pg_server: PostgresServer, redis_server: RedisServer) -> None:
    """What the bench prints is what these tests assert (a Redis without a password: no AUTH, same count)."""
    if os.environ.get(ENV_BOOTSTRAP):
        pytest.skip(NEEDS_OWNED)
    require_tansu()
    assert round_trip_counts(pg_server, redis_server) == TARGETS
