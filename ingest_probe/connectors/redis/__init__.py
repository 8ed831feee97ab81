"""The Redis connector (redis-py's asyncio client): its keys, settings, manifest row and probe (``probe.py``,
loaded only when a probe is built). The package never shadows the library: imports are absolute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingest_probe.config.reader import Reader
from ingest_probe.connectors.redis.keys import KEYS
from ingest_probe.connectors.redis.settings import RedisSettings, from_config

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Probe


class RedisConnector:
    """The ``redis`` kind."""

    kind = "redis"
    keys = KEYS
    url_key = "REDIS_URL"

    def from_config(self, r: Reader) -> RedisSettings:
        return from_config(r)

    def manifest(self, rs: RedisSettings) -> dict[str, Any]:
        if not rs.configured:
            return {"summary": "Redis not configured (set REDIS_URL or REDIS_HOST)"}
        policy = rs.policy
        return {
            "summary": f"Redis endpoint {rs.redacted_url()}" + (" (tls)" if rs.tls else ""),
            "host": rs.host,
            "port": rs.port,
            "db": rs.db,
            "username": rs.username,
            "tls": rs.tls,
            "client_name": rs.client_name,
            "socket_timeout_s": rs.socket_timeout,
            "policy": None
            if policy is None
            else {
                "strategy": policy.strategy,
                "ttl_seconds": policy.ttl_seconds,
                "max_keys": policy.max_keys,
                "namespace": policy.namespace,
                "invalidate_prefixes": list(policy.invalidate_prefixes),
            },
        }

    def drivers(self, rs: RedisSettings) -> tuple[str, ...]:
        return ("redis.asyncio",) if rs.configured else ()

    def probe(self, rs: RedisSettings) -> Probe:
        from ingest_probe.connectors.redis.probe import RedisProbe

        return RedisProbe(rs)


CONNECTOR = RedisConnector()
