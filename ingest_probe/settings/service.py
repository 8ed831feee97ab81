"""Validated, frozen settings: what the rest of ingest-probe is allowed to know about the configuration.

Connection targets are stored *as parts* (host, port, user, ...), never as a raw URL, so that every
rendering of them is built from an allow-list and a secret can only be reached through ``Secret.reveal()``.
``build_settings()`` turns a ``config.RawConfig`` into ``Settings``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote

# Provenance types live with the raw reader (config sits below settings); re-exported here unchanged.
from ingest_probe.config.sources import ConfigRow, Origin, RawConfig, Source, load_config

__all__ = [
    "ConfigRow", "FailoverSettings", "KafkaSettings", "Origin", "PlanSettings", "PoolSettings",
    "RedisCachePolicy", "RedisSettings", "ScheduleSettings", "Secret", "Settings", "Source",
    "TimescaleSettings", "TopicSpec", "build_settings", "load_settings",
]


class Secret:
    """A value that must never be rendered. ``str``/``repr`` show ``***``; only ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# ------------------------------------------------------------------------------------------ ingest plan


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanSettings:
    """Gating and ingest-plan inputs (DATA_BACKBONE_MODE, EMP_TIER, TIMESCALE_SYMBOLS, ...)."""

    mode: Literal["bootstrap", "institutional"]
    mode_inferred: bool
    tier: Literal["tier_0", "tier_1", "tier_2"]
    symbols: tuple[str, ...]
    lookback_days: int
    intraday_enabled: bool
    intraday_interval: str
    intraday_lookback_days: int
    macro_enabled: bool

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Ingest slices in a stable order: daily (when symbols are set), intraday, macro."""
        dims: list[str] = []
        if self.symbols:
            dims.append("daily")
        if self.intraday_enabled:
            dims.append("intraday")
        if self.macro_enabled:
            dims.append("macro")
        return tuple(dims)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSettings:
    enabled: bool
    interval_seconds: int
    jitter_seconds: int
    max_failures: int


#: The replaced system's freshness limits per ingest dimension, in seconds (any other dimension: 86400).
FRESHNESS_SLA_DEFAULTS: Mapping[str, int] = {"daily": 86400, "intraday": 900, "macro": 604800}


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverSettings:
    enabled: bool
    dimensions: tuple[str, ...]
    label: str
    run_fallback: bool
    #: TIMESCALE_FRESHNESS_SLA_SECONDS (default 86400): the limit of a dimension without one of its own.
    freshness_sla_seconds: int = 86400
    #: The limits of daily, intraday, macro: TIMESCALE_FRESHNESS_SLA_<DIM>_SECONDS, else
    #: TIMESCALE_FRESHNESS_SLA_SECONDS when set, else ``FRESHNESS_SLA_DEFAULTS``.
    freshness_sla_by_dimension: Mapping[str, int] = field(default_factory=lambda: dict(FRESHNESS_SLA_DEFAULTS))
    #: The standby database (TIMESCALEDB_FAILOVER_URL or composed from TIMESCALEDB_FAILOVER_HOST/...).
    target: TimescaleSettings | None = None


# ------------------------------------------------------------------------------------------- connectors


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSettings:
    size: int | None
    max_overflow: int | None
    timeout: float | None
    recycle: int | None
    pre_ping: bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimescaleSettings:
    """A PostgreSQL/TimescaleDB target, or a SQLite rehearsal file, or nothing configured."""

    configured: bool
    backend: Literal["postgresql", "sqlite"] | None
    url_source_key: str | None  # e.g. "TIMESCALEDB_URL", or None when composed from parts
    host: str | None = None
    port: int = 5432
    database: str = "postgres"
    user: str | None = None
    password: Secret | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    sslpassword: Secret | None = None
    sqlite_path: str | None = None
    application_name: str = "ingest-probe"
    connect_timeout: float = 5.0
    statement_timeout_ms: int = 10000
    require_extension: bool = False
    pool: PoolSettings | None = None

    @property
    def endpoint(self) -> str | None:
        """``host:port`` (or the SQLite path) for reports; never carries credentials."""
        if self.backend == "sqlite":
            return self.sqlite_path
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def redacted_url(self) -> str | None:
        """The target rebuilt from allowed parts: ``postgresql://user:***@host:port/db?sslmode=...``."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.sqlite_path}"
        if self.host is None:
            return None
        userinfo = ""
        if self.user is not None:
            userinfo = quote(self.user, safe="") + (":***" if self.password is not None else "") + "@"
        elif self.password is not None:
            userinfo = ":***@"
        query = f"?sslmode={quote(self.sslmode, safe='-')}" if self.sslmode else ""
        return f"postgresql://{userinfo}{self.endpoint}/{quote(self.database, safe='')}{query}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisCachePolicy:
    strategy: str | None
    ttl_seconds: int | None
    max_keys: int | None
    namespace: str | None
    invalidate_prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSettings:
    configured: bool
    host: str | None = None
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_name: str | None = None
    socket_timeout: float | None = None
    policy: RedisCachePolicy | None = None

    @property
    def endpoint(self) -> str | None:
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def redacted_url(self) -> str | None:
        """``redis[s]://user:***@host:port/db`` built from allowed parts."""
        if self.host is None:
            return None
        userinfo = ""
        if self.username is not None:
            userinfo = quote(self.username, safe="") + (":***" if self.password is not None else "") + "@"
        elif self.password is not None:
            userinfo = ":***@"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{userinfo}{self.endpoint}/{self.db}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicSpec:
    """One desired Kafka topic; ``dimensions``: the ingest slices (or default/consumer) using it."""

    name: str
    dimensions: tuple[str, ...]
    partitions: int = 1
    replication_factor: int = 1
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaSettings:
    configured: bool
    bootstrap_servers: tuple[str, ...] = ()
    bootstrap_source_key: str | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username: str | None = None
    password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str = "ingest-probe"
    #: The one topic list: manifest, probes and provisioning all read it. Sorted by name.
    topics: tuple[TopicSpec, ...] = ()
    consumer_topics: tuple[str, ...] = ()
    consumer_group: str | None = None
    consumer_offset_reset: str | None = None
    streaming_enabled: bool = False
    consumer_enabled: bool = False

    @property
    def topic_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics)


# ---------------------------------------------------------------------------------------------- the whole


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    plan: PlanSettings
    schedule: ScheduleSettings
    failover: FailoverSettings
    timescale: TimescaleSettings
    redis: RedisSettings
    kafka: KafkaSettings
    #: Every key that has an effective value, with where that value came from.
    origins: Mapping[str, Origin] = field(default_factory=dict)
    #: Non-fatal findings (unknown keys with our prefixes, ...), one line each, no secrets.
    warnings: tuple[str, ...] = ()
    #: ``ingest-probe config``: every effective key, redacted by construction, with its origin.
    effective: tuple[ConfigRow, ...] = ()


# ------------------------------------------------------------------------------------------- building


def build_settings(raw: RawConfig) -> Settings:
    """Validate raw values into ``Settings``; bad input: a one-line ``ConfigError`` (key, origin, value)."""
    from ingest_probe.settings.build import build  # _build imports the classes above, so it is imported on use

    return build(raw)


def load_settings(
    *,
    config_file: Path | None = None,
    env_files: Sequence[Path] = (),
    extras: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """``load_config`` then ``build_settings``; ``environ=None`` leaves the process environment unread."""
    return build_settings(
        load_config(config_file=config_file, env_files=env_files, extras=extras, environ=environ)
    )
