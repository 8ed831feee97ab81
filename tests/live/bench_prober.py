"""Benchmark: a warm ``Prober.check()`` vs the same raw client round trips on warm connections, same process.

For ``scripts/bench`` (not a test; no timed assertions)::

    PYTHONPATH=tests .venv/bin/python -m live.bench_prober          # starts its own throwaway stack

or, from code that already has a stack: ``await measure(stack_env(pg=..., redis=..., kafka=...))``.

The baseline does what the probes' query phase does, concurrently, on connections opened beforehand:
asyncpg ``fetchrow`` of the Timescale probe's check query, redis-py ``PING`` + ``INFO``, and one aiokafka
Metadata request for the configured topics (auto-creation off). The ratio is prober median / raw median.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping
from typing import Any

import anyio


def stack_env(*, pg: Any, redis: Any, kafka: Any, name: str = "ingest-probe-bench") -> dict[str, str]:
    """Configuration (env-style keys) for the three live servers; ``name`` tags the server-side sessions."""
    redis_auth = f":{redis.password}@" if getattr(redis, "password", None) else ""
    return {
        "TIMESCALEDB_URL": pg.dsn(),
        "TIMESCALEDB_APP": name,
        "REDIS_URL": f"redis://{redis_auth}{redis.host}:{redis.port}/0",
        "REDIS_CLIENT_NAME": name,
        "KAFKA_BROKERS": kafka.bootstrap,
    }


async def measure(env: Mapping[str, str], *, iterations: int = 200, warmup: int = 10) -> dict[str, Any]:
    """Median seconds of a warm ``check()`` and of the raw round trips, interleaved; plus their ratio."""
    import asyncpg
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.metadata import MetadataRequest
    from redis.asyncio import Redis

    from ingest_probe import Prober, Status, load_settings
    from ingest_probe.connectors.timescale.probe import _CHECK_SQL

    settings = load_settings(environ=env)
    ts, rs, ks = settings.timescale, settings.redis, settings.kafka
    assert ts.password is not None
    conn = await asyncpg.connect(host=ts.host, port=ts.port, user=ts.user, password=ts.password.reveal(),
                                 database=ts.database, statement_cache_size=0, ssl=False)
    redis = Redis(host=rs.host or "127.0.0.1", port=rs.port, db=rs.db, protocol=2,
                  password=rs.password.reveal() if rs.password is not None else None,
                  single_connection_client=True)
    admin = AIOKafkaAdminClient(bootstrap_servers=list(ks.bootstrap_servers), metadata_max_age_ms=300_000)
    await admin.start()
    kafka = admin._client
    node = kafka.get_random_node()
    metadata = MetadataRequest(list(ks.topic_names), allow_auto_topic_creation=False)

    async def raw() -> None:
        async def pg() -> None:
            await conn.fetchrow(_CHECK_SQL)

        async def rd() -> None:
            await redis.ping()
            await redis.info()

        async def kf() -> None:
            await kafka.send(node, metadata)

        async with anyio.create_task_group() as tg:
            for call in (pg, rd, kf):
                tg.start_soon(call)

    raw_s: list[float] = []
    prober_s: list[float] = []
    try:
        async with Prober(settings, timeout=5.0) as prober:
            for i in range(warmup + iterations):
                started = time.perf_counter()
                await raw()
                mid = time.perf_counter()
                results = await prober.check()
                ended = time.perf_counter()
                if any(r.status is not Status.OK for r in results if r.configured):
                    raise RuntimeError(f"stack not healthy: {[r.to_dict() for r in results]}")
                if i >= warmup:
                    raw_s.append(mid - started)
                    prober_s.append(ended - mid)
    finally:
        await conn.close()
        await redis.aclose()
        await admin.close()
    raw_median, prober_median = statistics.median(raw_s), statistics.median(prober_s)
    return {
        "iterations": iterations,
        "raw_median_ms": round(raw_median * 1000, 3),
        "prober_median_ms": round(prober_median * 1000, 3),
        "raw_p90_ms": round(statistics.quantiles(raw_s, n=10)[-1] * 1000, 3),
        "prober_p90_ms": round(statistics.quantiles(prober_s, n=10)[-1] * 1000, 3),
        "ratio": round(prober_median / raw_median, 3),
        "target_ratio": 1.3,
    }


def main() -> None:
    """Start a throwaway PostgreSQL, Redis and Tansu, measure, print one JSON object, stop the stack."""
    from live.kafka import TansuBroker
    from live.postgres import PostgresServer
    from live.redis import RedisServer

    with PostgresServer.start(name="bench") as pg, RedisServer.start() as redis, TansuBroker.start() as kafka:
        print(json.dumps(anyio.run(measure, stack_env(pg=pg, redis=redis, kafka=kafka)), indent=2))


if __name__ == "__main__":
    main()
