"""The TimescaleDB/PostgreSQL connector (asyncpg), with its SQLite rehearsal backend: its keys, settings,
manifest row and probe (``probe.py``, loaded only when a probe is built)."""

from __future__ import annotations

from typing import Any

from ingest_probe.connectors.declared import Declared
from ingest_probe.connectors.timescale.keys import KEYS
from ingest_probe.connectors.timescale.settings import TimescaleSettings, primary


def connection_facts(ts: TimescaleSettings) -> dict[str, Any]:
    """Where a Timescale target points (also the failover standby's, in the report's ``failover`` block)."""
    return {
        "backend": ts.backend,
        "url": ts.redacted_url(),
        "endpoint": ts.endpoint,
        "database": ts.database if ts.backend == "postgresql" else None,
        "user": ts.user,
        "tls_mode": ts.sslmode,
        "url_source": ts.url_source_key,
    }


def manifest(ts: TimescaleSettings) -> dict[str, Any]:
    """The manifest row of a timescale target, from allow-listed parts only."""
    if not ts.configured:
        return {"summary": "Timescale not configured (set TIMESCALEDB_URL or TIMESCALEDB_HOST)"}
    meta: dict[str, Any] = {
        "summary": f"Timescale {ts.backend} endpoint {ts.redacted_url()}",
        **connection_facts(ts),
        "application_name": ts.application_name,
        "dimensions": list(ts.dimensions),
        "symbols": list(ts.symbols),
        "timeouts": {
            "connect_timeout_s": ts.connect_timeout,
            "statement_timeout_ms": ts.statement_timeout_ms,
        },
        "require_extension": ts.require_extension,
        "service_defaults": dict(ts.service_defaults),
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


CONNECTOR = Declared(
    kind="timescale", keys=KEYS, url_key="TIMESCALEDB_URL", from_config=primary, manifest=manifest,
    drivers=lambda ts: ("asyncpg",) if ts.backend == "postgresql" else (),  # SQLite needs no driver
    probe_class="ingest_probe.connectors.timescale.probe:TimescaleProbe",
)
