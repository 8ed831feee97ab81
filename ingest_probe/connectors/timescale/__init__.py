"""The TimescaleDB/PostgreSQL connector (asyncpg), with its SQLite rehearsal backend: its keys, settings,
manifest row and probe (``probe.py``, loaded only when a probe is built)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingest_probe.config.reader import Reader
from ingest_probe.connectors.timescale.keys import KEYS
from ingest_probe.connectors.timescale.settings import TimescaleSettings, primary

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Probe


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


class TimescaleConnector:
    """The ``timescale`` kind."""

    kind = "timescale"
    keys = KEYS
    url_key = "TIMESCALEDB_URL"

    def from_config(self, r: Reader) -> TimescaleSettings:
        return primary(r)

    def manifest(self, ts: TimescaleSettings) -> dict[str, Any]:
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

    def drivers(self, ts: TimescaleSettings) -> tuple[str, ...]:
        return ("asyncpg",) if ts.configured and ts.backend == "postgresql" else ()

    def probe(self, ts: TimescaleSettings) -> Probe:
        from ingest_probe.connectors.timescale.probe import TimescaleProbe

        return TimescaleProbe(ts)


CONNECTOR = TimescaleConnector()
