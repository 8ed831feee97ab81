"""Validation: a ``config.RawConfig`` becomes frozen ``settings.Settings``, or a one-line ``ConfigError``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal, cast

from ingest_probe.config import keys as _keys
from ingest_probe.config.keys import KEYS, spec_for
from ingest_probe.config.reader import (
    Reader,
    bad,
    fallback_warning,
    libpq_fallbacks,
    parse_bool,
    parse_choice,
    parse_host,
    parse_int,
    parse_number,
    validate_all,
)
from ingest_probe.config.sources import ConfigRow, RawConfig, RawValue, Source
from ingest_probe.config.urls import KafkaServers, RedisTarget, UrlError, parse_pg_url, parse_redis_url, parse_servers
from ingest_probe.connectors.kafka.topic_specs import build_topics
from ingest_probe.settings.service import (
    FRESHNESS_SLA_DEFAULTS,
    FailoverSettings,
    KafkaSettings,
    PlanSettings,
    PoolSettings,
    RedisCachePolicy,
    RedisSettings,
    ScheduleSettings,
    Secret,
    Settings,
    TimescaleSettings,
)

# -------------------------------------------------------------------------------------------- Timescale

_IDENTITY = ("HOST", "PORT", "USER", "PASSWORD", "DB")
_TLS = ("SSLMODE", "SSLROOTCERT", "SSLCERT", "SSLKEY", "SSLPASSWORD")


def timescale(r: Reader, prefix: str, url_key: str) -> TimescaleSettings | None:
    """A target from ``url_key`` (which wins) or composed from ``{prefix}_HOST`` ...; ``None`` if neither."""
    app = r.text("TIMESCALEDB_APP") or "ingest-probe"
    timeouts = {
        "connect_timeout": r.number("TIMESCALEDB_CONNECT_TIMEOUT") or 5.0,
        "statement_timeout_ms": int(r.integer("TIMESCALEDB_STATEMENT_TIMEOUT_MS") or 0),
    }
    require_extension = r.flag("TIMESCALEDB_REQUIRE_EXTENSION")
    keys = {part: f"{prefix}_{part}" for part in (*_IDENTITY, *_TLS)}
    url_raw = r.pick(url_key)
    if url_raw is None:
        if r.pick(keys["HOST"]) is None:
            r.ignore(tuple(keys[p] for p in ("USER", "PASSWORD", "SSLMODE", "SSLROOTCERT")),
                     f"no {url_key} or {keys['HOST']} is set", warn=False)
            return None
        url_params: dict[str, str] = {}
        host = cast(str, r.text(keys["HOST"]))
        port = r.integer(keys["PORT"]) or 5432
        database = r.text(keys["DB"]) or "postgres"
        user, password = r.text(keys["USER"]), r.secret(keys["PASSWORD"])
        source_key = None
    else:
        try:
            target = parse_pg_url(url_raw.value)
        except UrlError as exc:
            raise bad(url_raw, str(exc)) from None
        r.ignore(tuple(keys[p] for p in _IDENTITY), f"{url_raw.key} is set")
        source_key = url_raw.key
        if target.backend == "sqlite":
            r.ignore(tuple(keys[p] for p in _TLS), f"{url_raw.key} is a sqlite URL", warn=False)
            for part in ("PORT", "DB"):
                r.notes.setdefault(keys[part], f"unused: {url_raw.key} is a sqlite URL")
            return TimescaleSettings(
                configured=True, backend="sqlite", url_source_key=source_key,
                sqlite_path=target.sqlite_path, application_name=app,
                connect_timeout=timeouts["connect_timeout"],
                statement_timeout_ms=int(timeouts["statement_timeout_ms"]),
                require_extension=require_extension,
            )
        url_params = target.params
        sslmode = url_params.get("sslmode")
        if sslmode is not None and sslmode.lower() not in _keys.SSLMODES:
            raise bad(url_raw, f"sslmode in the URL must be one of {', '.join(_keys.SSLMODES)}")
        host, port = target.host or "localhost", target.port or 5432
        database, user = target.database or "postgres", target.user
        password = Secret(target.password) if target.password else None
        r.warnings += [f"{url_raw.key} from {url_raw.origin.location}: {text}" for text in target.dropped]
        _url_settings(r, url_raw, prefix, timeouts, target.params)
        if prefix == "TIMESCALEDB":
            for part, value in (("PORT", target.port), ("DB", target.database)):
                if value is not None:
                    r.supply(keys[part], value, url_raw)
        app = target.params.get("application_name") or app
    sslpassword = url_params.get("sslpassword")
    return TimescaleSettings(
        configured=True, backend="postgresql", url_source_key=source_key, host=host, port=port,
        database=database, user=user, password=password,
        sslmode=(url_params.get("sslmode") or "").lower() or r.choice(keys["SSLMODE"]),
        sslrootcert=url_params.get("sslrootcert") or r.text(keys["SSLROOTCERT"]),
        sslcert=url_params.get("sslcert") or r.text(keys["SSLCERT"]),
        sslkey=url_params.get("sslkey") or r.text(keys["SSLKEY"]),
        sslpassword=Secret(sslpassword) if sslpassword else r.secret(keys["SSLPASSWORD"]),
        application_name=app, connect_timeout=timeouts["connect_timeout"],
        statement_timeout_ms=int(timeouts["statement_timeout_ms"]), require_extension=require_extension,
    )


def _url_settings(r: Reader, url_raw: RawValue, prefix: str, timeouts: dict[str, float],
                  params: dict[str, str]) -> None:
    """``application_name`` and ``connect_timeout`` in the URL win over TIMESCALEDB_APP/_CONNECT_TIMEOUT."""
    if "connect_timeout" in params:
        seconds = parse_number(params["connect_timeout"], maximum=_keys.MAX_CONNECT_TIMEOUT)
        if isinstance(seconds, str):
            raise bad(url_raw, f"connect_timeout in the URL: {seconds} (seconds)")
        timeouts["connect_timeout"] = seconds
    if prefix != "TIMESCALEDB":  # the standby shares these keys; only the primary's URL is shown for them
        return
    for param, key in (("application_name", "TIMESCALEDB_APP"), ("connect_timeout", "TIMESCALEDB_CONNECT_TIMEOUT")):
        if params.get(param):
            r.ignore((key,), f"{param} in {url_raw.key} is used")
            r.supply(key, params[param], url_raw)


def pool(r: Reader, target: TimescaleSettings) -> PoolSettings | None:
    names = ("TIMESCALEDB_POOL_SIZE", "TIMESCALEDB_MAX_OVERFLOW", "TIMESCALEDB_POOL_TIMEOUT",
             "TIMESCALEDB_POOL_RECYCLE", "TIMESCALEDB_POOL_PRE_PING")
    if target.backend != "postgresql":
        r.ignore(names, "pool settings apply to PostgreSQL only", warn=False)
        return None
    return PoolSettings(size=r.integer(names[0]), max_overflow=r.integer(names[1]),
                        timeout=r.number(names[2]), recycle=r.integer(names[3]),
                        pre_ping=r.boolean(names[4]))


# ------------------------------------------------------------------------------------------------ Redis

_REDIS_CONN = ("REDIS_PORT", "REDIS_DB", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_SSL")
_REDIS_POLICY = ("REDIS_CACHE_STRATEGY", "REDIS_CACHE_TTL_SECONDS", "REDIS_CACHE_MAX_KEYS",
                 "REDIS_CACHE_NAMESPACE", "REDIS_CACHE_INVALIDATE_PREFIXES")


def redis(r: Reader) -> RedisSettings:
    """URL parts, each overridden by its part key (``REDIS_HOST`` ... ``REDIS_SSL``) from the same or a higher
    source; a part key from a lower source only fills in what the URL leaves out (``Reader.over_url``)."""
    url_raw = r.pick("REDIS_URL")
    if url_raw is None and r.pick("REDIS_HOST") is None:
        r.ignore(_REDIS_CONN, "no REDIS_URL or REDIS_HOST is set", warn=False)
        return RedisSettings(configured=False)
    url = RedisTarget(tls=False, host=None, port=None, db=None, username=None, password=None)
    if url_raw is not None:
        try:
            url = parse_redis_url(url_raw.value)
        except UrlError as exc:
            raise bad(url_raw, str(exc)) from None
        r.warnings += [f"{url_raw.key} from {url_raw.origin.location}: {text}" for text in url.dropped]

    def part(name: str, stated: object, what: str) -> RawValue | None:
        return r.over_url(name, url_raw, stated is not None and url_raw is not None, what)

    host_raw = part("REDIS_HOST", url.host, "host")
    port_raw, db_raw = part("REDIS_PORT", url.port, "port"), part("REDIS_DB", url.db, "database number")
    user_raw = part("REDIS_USERNAME", url.username, "user")
    password_raw = part("REDIS_PASSWORD", url.password, "password")
    tls_raw = part("REDIS_SSL", True if url_raw is not None else None, "TLS mode (by its scheme)")
    assert url_raw is not None or host_raw is not None  # checked above
    if url_raw is not None:
        for key, value, raw in (("REDIS_PORT", url.port, port_raw), ("REDIS_DB", url.db, db_raw)):
            if value is not None and raw is None:
                r.supply(key, value, url_raw)
    policy = None
    if any(r.pick(name, explicit=True) for name in _REDIS_POLICY):
        policy = RedisCachePolicy(
            strategy=r.text(_REDIS_POLICY[0]), ttl_seconds=r.integer(_REDIS_POLICY[1]),
            max_keys=r.integer(_REDIS_POLICY[2]), namespace=r.text(_REDIS_POLICY[3]),
            invalidate_prefixes=r.csv(_REDIS_POLICY[4]),
        )
    return RedisSettings(
        configured=True, host=parse_host(host_raw) if host_raw else url.host or "localhost",
        port=parse_int(port_raw) if port_raw else url.port or cast(int, r.integer("REDIS_PORT")),
        db=parse_int(db_raw) if db_raw else _first_int(url.db, r.integer("REDIS_DB")),
        username=user_raw.value.strip() if user_raw else url.username,
        password=Secret(password_raw.value) if password_raw else Secret(url.password) if url.password else None,
        tls=parse_bool(tls_raw) if tls_raw else url.tls,
        ssl_ca_certs=r.text("REDIS_SSL_CA_CERTS"), ssl_certfile=r.text("REDIS_SSL_CERTFILE"),
        ssl_keyfile=r.text("REDIS_SSL_KEYFILE"), client_name=r.text("REDIS_CLIENT_NAME"),
        socket_timeout=r.number("REDIS_SOCKET_TIMEOUT"), policy=policy,
    )


def _first_int(*values: int | None) -> int:
    return next((v for v in values if v is not None), 0)


# ------------------------------------------------------------------------------------------------ Kafka

_Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
_Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def kafka(r: Reader) -> KafkaSettings:
    """Servers from KAFKA_BROKERS; credentials and protocol from their keys or the URL form (as for Redis)."""
    servers_raw = r.pick("KAFKA_BROKERS")
    parsed = KafkaServers(servers=())
    if servers_raw is not None:
        try:
            parsed = parse_servers(servers_raw.value)
        except UrlError as exc:
            raise bad(servers_raw, str(exc)) from None
    user_raw = r.over_url("KAFKA_USERNAME", servers_raw, parsed.username is not None, "SASL user")
    password_raw = r.over_url("KAFKA_PASSWORD", servers_raw, parsed.password is not None, "SASL password")
    protocol_raw = r.over_url("KAFKA_SECURITY_PROTOCOL", servers_raw, parsed.protocol is not None,
                              "security protocol (by its scheme)")
    username = (user_raw.value.strip() or None) if user_raw else parsed.username
    secret = password_raw.value if password_raw else parsed.password
    password = Secret(secret) if secret else None
    protocol = parse_choice(protocol_raw) if protocol_raw else parsed.protocol
    if protocol is None:
        protocol = "SASL_SSL" if username and password else "PLAINTEXT"
    if bool(username) != bool(password) and servers_raw is not None:
        r.warnings.append(_half_credentials(username is not None, user_raw or password_raw or servers_raw,
                                            protocol))
    mechanism = r.choice("KAFKA_SASL_MECHANISM")
    if mechanism is None and protocol.startswith("SASL"):
        mechanism = "PLAIN"
    topics, consumer_topics = build_topics(r)
    return KafkaSettings(
        configured=bool(parsed.servers), bootstrap_servers=parsed.servers,
        bootstrap_source_key=servers_raw.key if servers_raw else None,
        security_protocol=cast(_Protocol, protocol), sasl_mechanism=cast(_Mechanism | None, mechanism),
        username=username, password=password, ssl_cafile=r.text("KAFKA_SSL_CAFILE"),
        ssl_certfile=r.text("KAFKA_SSL_CERTFILE"), ssl_keyfile=r.text("KAFKA_SSL_KEYFILE"),
        client_id=r.text("KAFKA_CLIENT_ID") or "ingest-probe", topics=topics,
        consumer_topics=consumer_topics, consumer_group=r.text("KAFKA_INGEST_CONSUMER_GROUP"),
        consumer_offset_reset=r.choice("KAFKA_INGEST_CONSUMER_OFFSET_RESET"),
        streaming_enabled=r.flag("KAFKA_INGEST_ENABLE_STREAMING"),
        consumer_enabled=r.flag("KAFKA_INGEST_CONSUMER_ENABLED"),
    )


def _half_credentials(has_user: bool, raw: RawValue, protocol: str) -> str:
    """One line naming the key that holds half a SASL login and the one that is missing (never a value)."""
    have, missing = ("user", "KAFKA_PASSWORD") if has_user else ("password", "KAFKA_USERNAME")
    effect = (f"the {protocol} login will fail" if protocol.startswith("SASL")
              else f"no SASL is used (security protocol {protocol})")
    return f"{raw.key} from {raw.origin.location} sets a Kafka {have} but no {missing} is set: {effect}"


# ------------------------------------------------------------------------------------------------ whole


def freshness_limits(r: Reader) -> dict[str, int]:
    """Per dimension: its own key, else TIMESCALE_FRESHNESS_SLA_SECONDS if set, else the old default (``config``
    shows a per-dimension key the overall one decides with that key as its source)."""
    overall_raw = r.pick("TIMESCALE_FRESHNESS_SLA_SECONDS", explicit=True)
    overall = None if overall_raw is None else r.integer(overall_raw.key)
    limits = {}
    for dim, default in FRESHNESS_SLA_DEFAULTS.items():
        key = f"TIMESCALE_FRESHNESS_SLA_{dim.upper()}_SECONDS"
        own = r.integer(key, explicit=True)
        if own is None and overall_raw is not None and overall is not None:
            r.supply(key, overall, overall_raw)
        limits[dim] = own if own is not None else overall if overall is not None else default
    return limits


def build(raw: RawConfig) -> Settings:
    target, ignored = libpq_fallbacks(raw)
    validate_all(raw, skip={v.key for v in ignored})
    r = Reader(raw, skip={v.key for v in ignored})
    if target is not None and ignored:
        r.warnings.append(fallback_warning(target, ignored))
        for value in ignored:
            r.notes[value.key] = f"ignored: libpq fallback; {target.key} is set"
    primary = timescale(r, "TIMESCALEDB", "TIMESCALEDB_URL")
    if primary is None:
        primary = TimescaleSettings(configured=False, backend=None, url_source_key=None)
    else:
        primary = _with_pool(primary, pool(r, primary))
    redis_settings, kafka_settings = redis(r), kafka(r)
    mode = r.choice("DATA_BACKBONE_MODE")
    inferred = mode is None
    if mode is None:
        mode = "institutional" if redis_settings.configured or kafka_settings.configured else "bootstrap"
    plan = PlanSettings(
        mode=cast(Literal["bootstrap", "institutional"], mode), mode_inferred=inferred,
        tier=cast(Literal["tier_0", "tier_1", "tier_2"], r.choice("EMP_TIER")),
        symbols=r.csv("TIMESCALE_SYMBOLS"), lookback_days=cast(int, r.integer("TIMESCALE_LOOKBACK_DAYS")),
        intraday_enabled=r.flag("TIMESCALE_ENABLE_INTRADAY"),
        intraday_interval=r.text("TIMESCALE_INTRADAY_INTERVAL") or "1m",
        intraday_lookback_days=cast(int, r.integer("TIMESCALE_INTRADAY_LOOKBACK_DAYS")),
        macro_enabled=r.flag("TIMESCALE_ENABLE_MACRO"),
    )
    schedule = ScheduleSettings(
        enabled=r.flag("TIMESCALE_INGEST_SCHEDULE"),
        interval_seconds=cast(int, r.integer("TIMESCALE_INGEST_INTERVAL_SECONDS")),
        jitter_seconds=cast(int, r.integer("TIMESCALE_INGEST_JITTER_SECONDS")),
        max_failures=cast(int, r.integer("TIMESCALE_INGEST_MAX_FAILURES")),
    )
    failover = FailoverSettings(
        enabled=r.flag("TIMESCALE_FAILOVER_DRILL"), dimensions=r.csv("TIMESCALE_FAILOVER_DRILL_DIMENSIONS"),
        label=r.text("TIMESCALE_FAILOVER_DRILL_LABEL") or "required_timescale_failover",
        run_fallback=bool(r.boolean("TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK")),
        freshness_sla_seconds=cast(int, r.integer("TIMESCALE_FRESHNESS_SLA_SECONDS")),
        freshness_sla_by_dimension=freshness_limits(r),
        target=timescale(r, "TIMESCALEDB_FAILOVER", "TIMESCALEDB_FAILOVER_URL"),
    )
    return Settings(
        plan=plan, schedule=schedule, failover=failover, timescale=primary, redis=redis_settings,
        kafka=kafka_settings, origins={key: value.origin for key, value in sorted(raw.values.items())},
        warnings=tuple(dict.fromkeys((*raw.warnings, *r.warnings))),
        effective=tuple(rows(raw, r.notes, r.supplied)),
    )


def _with_pool(target: TimescaleSettings, pool_settings: PoolSettings | None) -> TimescaleSettings:
    return replace(target, pool=pool_settings)


# ------------------------------------------------------------------------------------------------- rows


def rows(raw: RawConfig, notes: Mapping[str, str] | None = None,
         supplied: Mapping[str, tuple[str, str]] | None = None) -> list[ConfigRow]:
    """Every key with an effective value, registry order (pattern keys last, sorted), redacted.

    A part that a URL supplies (``REDIS_PORT`` from ``REDIS_URL``) shows the value used and the URL key
    as its source, instead of a default that is not used.
    """
    notes, supplied = notes or {}, supplied or {}
    names = [n for spec in KEYS if not spec.is_pattern for n in spec.names]
    names += sorted(k for k in raw.values if k not in set(names))
    out = []
    for name in names:
        value = raw.get(name)
        if name in supplied and (value is None or value.origin.source is Source.DEFAULT):
            out.append(ConfigRow(key=name, value=supplied[name][0], source=supplied[name][1]))
        elif value is not None:
            note = f" ({notes[name]})" if name in notes else ""
            out.append(ConfigRow(key=name, value=render(value), source=f"{value.origin.location}{note}"))
    return out


def render(raw: RawValue) -> str:
    """A value for display: URL kinds rebuilt from parts (allow-list), other secrets ``***``."""
    spec = spec_for(raw.key)
    if spec is None or not spec.secret:
        return raw.value
    if not raw.value.strip():
        return ""
    try:
        if spec.kind == "servers":
            return ",".join(parse_servers(raw.value).servers)
        if spec.name.startswith("REDIS"):
            t = parse_redis_url(raw.value)
            return cast(str, RedisSettings(
                configured=True, host=t.host or "localhost", port=t.port or 6379, db=t.db or 0,
                username=t.username, password=Secret("") if t.password else None, tls=t.tls,
            ).redacted_url())
        if spec.kind == "url":
            p = parse_pg_url(raw.value)
            return cast(str, TimescaleSettings(
                configured=True, backend=p.backend, url_source_key=raw.key, host=p.host or "localhost",
                port=p.port or 5432, database=p.database or "postgres", user=p.user,
                password=Secret("") if p.password else None, sslmode=p.params.get("sslmode"),
                sqlite_path=p.sqlite_path,
            ).redacted_url())
    except UrlError:
        pass
    return "***"
