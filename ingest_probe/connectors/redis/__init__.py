"""The Redis connector (redis-py's asyncio client): its keys, settings, manifest row and probe (``probe.py``,
loaded only when a probe is built). The package never shadows the library: imports are absolute."""

from __future__ import annotations

from typing import Any

from ingest_probe.connectors.declared import Declared
from ingest_probe.connectors.redis.keys import KEYS
from ingest_probe.connectors.redis.settings import RedisSettings, from_config


def manifest(rs: RedisSettings) -> dict[str, Any]:
    """The manifest row of a redis target, from allow-listed parts only."""
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
        "policy": None if policy is None else policy.to_dict(),
        "service_defaults": dict(rs.service_defaults),
    }


CONNECTOR = Declared(
    kind="redis", keys=KEYS, url_key="REDIS_URL", from_config=from_config, manifest=manifest,
    drivers=lambda rs: ("redis.asyncio",), probe_class="ingest_probe.connectors.redis.probe:RedisProbe",
)
