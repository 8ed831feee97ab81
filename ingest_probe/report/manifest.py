"""The redaction-safe manifest: what each connector is configured to be, built only from allowed parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingest_probe.settings.service import KafkaSettings, RedisSettings, Settings, TimescaleSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorSnapshot:
    """One connector as configured: ``supervised`` means a ``--connectivity`` run will probe it."""

    name: str
    configured: bool
    supervised: bool
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "configured": self.configured,
            "supervised": self.supervised,
            "metadata": self.metadata,
        }


def build_manifest(settings: Settings) -> tuple[ConnectorSnapshot, ...]:
    """Exactly three snapshots, in the order timescale, redis, kafka."""
    return (
        _snapshot("timescale", settings.timescale.configured, _timescale(settings)),
        _snapshot("redis", settings.redis.configured, _redis(settings.redis)),
        _snapshot("kafka", settings.kafka.configured, _kafka(settings.kafka)),
    )


def _snapshot(name: str, configured: bool, metadata: dict[str, Any]) -> ConnectorSnapshot:
    return ConnectorSnapshot(name=name, configured=configured, supervised=configured, metadata=metadata)


def timescale_target(ts: TimescaleSettings) -> dict[str, Any]:
    """Connection facts of a Timescale target (also used for the failover standby)."""
    return {
        "backend": ts.backend,
        "url": ts.redacted_url(),
        "endpoint": ts.endpoint,
        "database": ts.database if ts.backend == "postgresql" else None,
        "user": ts.user,
        "tls_mode": ts.sslmode,
        "url_source": ts.url_source_key,
    }


def _timescale(settings: Settings) -> dict[str, Any]:
    ts = settings.timescale
    if not ts.configured:
        return {"summary": "Timescale not configured (set TIMESCALEDB_URL or TIMESCALEDB_HOST)"}
    meta: dict[str, Any] = {
        "summary": f"Timescale {ts.backend} endpoint {ts.redacted_url()}",
        **timescale_target(ts),
        "application_name": ts.application_name,
        "dimensions": list(settings.plan.dimensions),
        "symbols": list(settings.plan.symbols),
        "timeouts": {
            "connect_timeout_s": ts.connect_timeout,
            "statement_timeout_ms": ts.statement_timeout_ms,
        },
        "require_extension": ts.require_extension,
    }
    if ts.backend == "postgresql" and ts.pool is not None:
        pool = {
            "size": ts.pool.size,
            "max_overflow": ts.pool.max_overflow,
            "timeout_s": ts.pool.timeout,
            "recycle_s": ts.pool.recycle,
            "pre_ping": ts.pool.pre_ping,
        }
        if any(v is not None for v in pool.values()):
            meta["pool"] = pool
    if ts.backend == "sqlite":
        meta["note"] = "SQLite rehearsal backend, not TimescaleDB"
    return meta


def _redis(rs: RedisSettings) -> dict[str, Any]:
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


def _kafka(ks: KafkaSettings) -> dict[str, Any]:
    if not ks.configured:
        return {"summary": "Kafka not configured (set KAFKA_BROKERS or KAFKA_BOOTSTRAP_SERVERS)"}
    auth = f" {ks.sasl_mechanism} as {ks.username}" if ks.sasl_mechanism and ks.username else ""
    return {
        "summary": f"Kafka {','.join(ks.bootstrap_servers)} ({ks.security_protocol}{auth})",
        "bootstrap_servers": list(ks.bootstrap_servers),
        "security_protocol": ks.security_protocol,
        "sasl_mechanism": ks.sasl_mechanism,
        "username": ks.username,
        "client_id": ks.client_id,
        "topics": list(ks.topic_names),
        "topic_count": len(ks.topics),
        "topic_specs": [
            {
                "name": t.name,
                "dimensions": list(t.dimensions),
                "partitions": t.partitions,
                "replication_factor": t.replication_factor,
                "configs": dict(sorted(t.configs.items())),
            }
            for t in ks.topics
        ],
        "consumer_group": ks.consumer_group,
        "consumer_offset_reset": ks.consumer_offset_reset,
        "consumer_topics": list(ks.consumer_topics),
        "streaming_enabled": ks.streaming_enabled,
        "consumer_enabled": ks.consumer_enabled,
    }
