"""Validation: raw values become Settings (targets, topics, plan), or one precise ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest_probe.connectors.kafka.topic_specs import TopicSpec
from ingest_probe.errors import ConfigError
from ingest_probe.secret import Secret
from ingest_probe.settings.service import Settings, load_settings


def ex(*items: str, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(extras=list(items), environ=environ)


# -------------------------------------------------------------------------------------------- Timescale


def test_timescale_not_configured_without_any_input() -> None:
    """No Timescale key at all: not configured, no SQLite placeholder."""
    ts = ex().timescale
    assert (ts.configured, ts.backend, ts.host, ts.redacted_url()) == (False, None, None, None)


def test_timescale_credentials_without_host_do_not_configure_it() -> None:
    """A stray PGUSER/PGPASSWORD without a host or URL does not make a target."""
    assert not ex(environ={"PGUSER": "me", "PGPASSWORD": "pw"}).timescale.configured


def test_timescale_composed_from_parts() -> None:
    """Host, port, user, password, db and TLS keys compose a PostgreSQL target."""
    ts = ex(
        "TIMESCALEDB_HOST=db.local",
        "TIMESCALEDB_PORT=6543",
        "TIMESCALEDB_USERNAME=ingest",
        "TIMESCALEDB_PASSWORD=pw",
        "TIMESCALEDB_DATABASE=ticks",
        "TIMESCALEDB_SSLMODE=VERIFY-FULL",
        "TIMESCALEDB_SSLROOTCERT=/ca.pem",
    ).timescale
    assert (ts.configured, ts.backend, ts.url_source_key) == (True, "postgresql", None)
    assert (ts.host, ts.port, ts.user, ts.database, ts.sslmode, ts.sslrootcert) == (
        "db.local",
        6543,
        "ingest",
        "ticks",
        "verify-full",
        "/ca.pem",
    )
    assert ts.password == Secret("pw")
    assert ts.redacted_url() == "postgresql://ingest:***@db.local:6543/ticks?sslmode=verify-full"


def test_timescale_part_defaults() -> None:
    """Composed targets default to port 5432 and database postgres."""
    ts = ex(environ={"PGHOST": "h"}).timescale
    assert (ts.port, ts.database, ts.user, ts.password) == (5432, "postgres", None, None)


def test_timescale_alias_order_beats_source_order(tmp_path: Path) -> None:
    """TIMESCALEDB_HOST from YAML wins over TIMESCALE_HOST (and the PGHOST fallback) from the environment."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("TIMESCALEDB_HOST: primary\n", encoding="utf-8")
    s = load_settings(config_file=cfg, environ={"PGHOST": "stray", "TIMESCALE_HOST": "other"})
    assert s.timescale.host == "primary"
    assert any(w.startswith(f"TIMESCALE_HOST from env is ignored: TIMESCALEDB_HOST from {cfg}:1 takes precedence")
               for w in s.warnings)
    notes = {row.key: row.source for row in s.effective}
    assert notes["TIMESCALE_HOST"] == "env (shadowed by TIMESCALEDB_HOST)"
    assert notes["PGHOST"] == "env (ignored: libpq fallback; TIMESCALEDB_HOST is set)"


def test_explicit_url_wins_over_parts() -> None:
    """An explicit URL wins over composed parts; the ignored parts are warned about."""
    s = ex(
        "TIMESCALEDB_HOST=parts-host",
        "TIMESCALEDB_PORT=1111",
        "TIMESCALEDB_URL=postgresql://u@url-host:2222/db",
    )
    assert (s.timescale.host, s.timescale.port, s.timescale.url_source_key) == (
        "url-host",
        2222,
        "TIMESCALEDB_URL",
    )
    assert "TIMESCALEDB_HOST from --extra is ignored: TIMESCALEDB_URL is set" in s.warnings


def test_url_key_precedence() -> None:
    """TIMESCALEDB_URL > TIMESCALE_URL > DATABASE_URL."""
    urls = {
        "TIMESCALEDB_URL": "postgresql://a/x",
        "TIMESCALE_URL": "postgresql://b/x",
        "DATABASE_URL": "postgresql://c/x",
    }
    assert ex(environ=urls).timescale.host == "a"
    del urls["TIMESCALEDB_URL"]
    assert ex(environ=urls).timescale.url_source_key == "TIMESCALE_URL"
    del urls["TIMESCALE_URL"]
    assert ex(environ=urls).timescale.host == "c"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg"])
def test_sqlalchemy_and_short_schemes_accepted(scheme: str) -> None:
    """postgres://, postgresql:// and SQLAlchemy driver forms are all PostgreSQL."""
    ts = ex(f"TIMESCALEDB_URL={scheme}://u:p@h:5433/d").timescale
    assert (ts.backend, ts.host, ts.port, ts.user, ts.database) == ("postgresql", "h", 5433, "u", "d")


def test_url_query_parts_and_percent_decoding() -> None:
    """Query parameters are parts; user, password and database are percent-decoded."""
    ts = ex(
        "TIMESCALEDB_URL=postgresql://us%40er:p%3Aw@h/d%2F1?sslmode=require&sslrootcert=/ca"
        "&sslcert=/c&sslkey=/k&sslpassword=kp&application_name=app1"
    ).timescale
    assert (ts.user, ts.database, ts.sslmode, ts.sslrootcert, ts.sslcert, ts.sslkey) == (
        "us@er",
        "d/1",
        "require",
        "/ca",
        "/c",
        "/k",
    )
    assert (ts.password, ts.sslpassword, ts.application_name) == (Secret("p:w"), Secret("kp"), "app1")
    assert ts.redacted_url() == "postgresql://us%40er:***@h:5432/d%2F1?sslmode=require"


def test_url_tls_keys_fill_in_what_the_url_leaves_out() -> None:
    """TIMESCALEDB_SSLMODE applies when the URL has no sslmode; the URL's own sslmode wins."""
    assert (
        ex("TIMESCALEDB_URL=postgresql://h/d", "TIMESCALEDB_SSLMODE=require").timescale.sslmode == "require"
    )
    ts = ex("TIMESCALEDB_URL=postgresql://h/d?sslmode=disable", "TIMESCALEDB_SSLMODE=require").timescale
    assert ts.sslmode == "disable"


def test_sqlite_url_is_a_rehearsal_backend() -> None:
    """sqlite:///path → backend sqlite, no pool, endpoint is the path."""
    ts = ex("TIMESCALEDB_URL=sqlite:///data/rehearsal.db", "TIMESCALEDB_POOL_SIZE=5").timescale
    assert (ts.backend, ts.sqlite_path, ts.pool, ts.endpoint) == (
        "sqlite",
        "data/rehearsal.db",
        None,
        "data/rehearsal.db",
    )
    assert ts.redacted_url() == "sqlite:///data/rehearsal.db"
    assert ex("TIMESCALEDB_URL=sqlite:////abs/r.db").timescale.redacted_url() == "sqlite:////abs/r.db"


def test_pool_settings_for_postgresql() -> None:
    """Pool keys are parsed for PostgreSQL targets."""
    pool = ex(
        "TIMESCALEDB_HOST=h",
        "TIMESCALEDB_POOL_SIZE=5",
        "TIMESCALEDB_MAX_OVERFLOW=-1",
        "TIMESCALEDB_POOL_TIMEOUT=2.5",
        "TIMESCALEDB_POOL_RECYCLE=300",
        "TIMESCALEDB_POOL_PRE_PING=yes",
    ).timescale.pool
    assert pool is not None
    assert (pool.size, pool.max_overflow, pool.timeout, pool.recycle, pool.pre_ping) == (
        5,
        -1,
        2.5,
        300,
        True,
    )


def test_timescale_timeouts_and_extension_flag() -> None:
    """App name, timeouts and TIMESCALEDB_REQUIRE_EXTENSION reach the target."""
    ts = ex(
        "TIMESCALEDB_HOST=h",
        "TIMESCALEDB_APP=probe",
        "TIMESCALEDB_CONNECT_TIMEOUT=1.5",
        "TIMESCALEDB_STATEMENT_TIMEOUT_MS=500",
        "TIMESCALEDB_REQUIRE_EXTENSION=on",
    ).timescale
    assert (ts.application_name, ts.connect_timeout, ts.statement_timeout_ms, ts.require_extension) == (
        "probe",
        1.5,
        500,
        True,
    )


def test_failover_target_from_url_parts_or_none() -> None:
    """The standby comes from TIMESCALEDB_FAILOVER_URL or _HOST/...; None when not configured."""
    assert ex().failover.target is None
    by_url = ex("TIMESCALEDB_FAILOVER_URL=postgresql://u:p@standby:5434/db").failover.target
    assert by_url is not None
    assert (by_url.host, by_url.port, by_url.url_source_key) == (
        "standby",
        5434,
        "TIMESCALEDB_FAILOVER_URL",
    )
    by_parts = ex(
        "TIMESCALEDB_FAILOVER_HOST=sb",
        "TIMESCALEDB_FAILOVER_USER=r",
        "TIMESCALEDB_FAILOVER_PASSWORD=pw",
        "TIMESCALEDB_FAILOVER_SSLMODE=require",
        "PGHOST=primary",
    ).failover.target
    assert by_parts is not None
    assert (by_parts.host, by_parts.port, by_parts.database, by_parts.user, by_parts.sslmode) == (
        "sb",
        5432,
        "postgres",
        "r",
        "require",
    )


def test_failover_drill_settings() -> None:
    """Drill flags, dimensions, label, fallback and freshness SLA, with defaults."""
    fo = ex().failover
    assert (fo.enabled, fo.dimensions, fo.label, fo.run_fallback, fo.freshness_sla_seconds) == (
        False,
        ("daily_bars",),
        "required_timescale_failover",
        True,
        86400,
    )
    fo = ex(
        "TIMESCALE_FAILOVER_DRILL=1",
        "TIMESCALE_FAILOVER_DRILL_DIMENSIONS=daily_bars, intraday",
        "TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK=off",
        "TIMESCALE_FRESHNESS_SLA_SECONDS=60",
    ).failover
    assert (fo.enabled, fo.dimensions, fo.run_fallback, fo.freshness_sla_seconds) == (
        True,
        ("daily_bars", "intraday"),
        False,
        60,
    )


def test_freshness_limits_per_dimension() -> None:
    """Per-dimension freshness limits: the old defaults, TIMESCALE_FRESHNESS_SLA_SECONDS over all of them when
    set, a TIMESCALE_FRESHNESS_SLA_<DIM>_SECONDS key over that; no unknown-key warning for the new keys."""
    assert dict(ex().failover.freshness_sla_by_dimension) == {"daily": 86400, "intraday": 900, "macro": 604800}
    fo = ex("TIMESCALE_FRESHNESS_SLA_SECONDS=60").failover
    assert (fo.freshness_sla_seconds, dict(fo.freshness_sla_by_dimension)) == (
        60, {"daily": 60, "intraday": 60, "macro": 60})
    settings = ex("TIMESCALE_FRESHNESS_SLA_SECONDS=60", "TIMESCALE_FRESHNESS_SLA_INTRADAY_SECONDS=0",
                  "TIMESCALE_FRESHNESS_SLA_MACRO_SECONDS=3600")
    assert dict(settings.failover.freshness_sla_by_dimension) == {"daily": 60, "intraday": 0, "macro": 3600}
    assert settings.warnings == ()
    shown = {key: (value, source) for key, value, source in settings.effective}  # `ingest-probe config`
    assert shown["TIMESCALE_FRESHNESS_SLA_DAILY_SECONDS"] == ("60", "TIMESCALE_FRESHNESS_SLA_SECONDS (--extra)")
    assert shown["TIMESCALE_FRESHNESS_SLA_MACRO_SECONDS"] == ("3600", "--extra")


# ------------------------------------------------------------------------------------------------ Redis


def test_redis_url_parts() -> None:
    """rediss:// implies TLS; port, db, user and password come from the URL."""
    rs = ex("REDIS_URL=rediss://user:pw@cache.example.com:6380/1").redis
    assert (rs.configured, rs.host, rs.port, rs.db, rs.username, rs.tls) == (
        True,
        "cache.example.com",
        6380,
        1,
        "user",
        True,
    )
    assert rs.password == Secret("pw")
    assert rs.redacted_url() == "rediss://user:***@cache.example.com:6380/1"


def test_redis_url_query_password_and_user_only() -> None:
    """?password= is honoured; a user-only URL keeps the user and has no password."""
    assert ex("REDIS_URL=redis://h?password=pw").redis.password == Secret("pw")
    rs = ex("REDIS_URI=redis://user@h").redis
    assert (rs.username, rs.password, rs.port, rs.db) == ("user", None, 6379, 0)
    assert rs.redacted_url() == "redis://user@h:6379/0"


def test_redis_explicit_keys_win_over_url_parts() -> None:
    """REDIS_HOST/PORT/DB/USERNAME/PASSWORD/SSL override the matching URL parts."""
    rs = ex(
        "REDIS_URL=rediss://u:urlpw@urlhost:6380/1",
        "REDIS_HOST=keyhost",
        "REDIS_PORT=7000",
        "REDIS_DB=0",
        "REDIS_USER=keyuser",
        "REDIS_PASS=keypw",
        "REDIS_SSL=false",
    ).redis
    assert (rs.host, rs.port, rs.db, rs.username, rs.tls) == ("keyhost", 7000, 0, "keyuser", False)
    assert rs.password == Secret("keypw")


def test_redis_from_host_and_policy() -> None:
    """CACHE_HOST configures Redis; cache-policy keys build a policy."""
    rs = ex(
        "CACHE_HOST=c",
        "REDIS_CACHE_TTL_SECONDS=30",
        "REDIS_CACHE_INVALIDATE_PREFIXES=a, b",
        "REDIS_SOCKET_TIMEOUT=0.5",
    ).redis
    assert (rs.host, rs.port, rs.tls, rs.socket_timeout) == ("c", 6379, False, 0.5)
    assert rs.policy is not None
    assert (rs.policy.ttl_seconds, rs.policy.invalidate_prefixes) == (
        30,
        ("a", "b"),
    )
    assert ex("REDIS_HOST=c").redis.policy is None
    assert not ex().redis.configured


# ------------------------------------------------------------------------------------------------ Kafka


def test_kafka_bootstrap_precedence_and_url_forms() -> None:
    """KAFKA_BROKERS > KAFKA_BOOTSTRAP_SERVERS > KAFKA_URL; schemes stripped; default port 9092."""
    env = {"KAFKA_BROKERS": "a:1", "KAFKA_BOOTSTRAP_SERVERS": "b:2", "KAFKA_URL": "kafka://c"}
    assert ex(environ=env).kafka.bootstrap_servers == ("a:1",)
    del env["KAFKA_BROKERS"]
    assert ex(environ=env).kafka.bootstrap_source_key == "KAFKA_BOOTSTRAP_SERVERS"
    del env["KAFKA_BOOTSTRAP_SERVERS"]
    ks = ex(environ=env).kafka
    assert (ks.bootstrap_servers, ks.bootstrap_source_key, ks.security_protocol) == (
        ("c:9092",),
        "KAFKA_URL",
        "PLAINTEXT",
    )


def test_kafka_url_credentials_and_inferred_sasl() -> None:
    """Credentials inside KAFKA_URL are used (no explicit ones) and imply SASL_SSL with PLAIN."""
    ks = ex("KAFKA_URL=kafka://u:pw@b1:9093,b2:9094").kafka
    assert (ks.bootstrap_servers, ks.username, ks.security_protocol, ks.sasl_mechanism) == (
        ("b1:9093", "b2:9094"),
        "u",
        "SASL_SSL",
        "PLAIN",
    )
    assert ks.password == Secret("pw")
    explicit = ex(
        "KAFKA_URL=kafka://u:pw@b1",
        "KAFKA_USER=x",
        "KAFKA_PASS=y",
        "KAFKA_SECURITY_PROTOCOL=sasl_plaintext",
        "KAFKA_SASL_MECHANISM=scram-sha-512",
    ).kafka
    assert (explicit.username, explicit.password, explicit.security_protocol, explicit.sasl_mechanism) == (
        "x",
        Secret("y"),
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
    )


def test_kafka_topics_one_sorted_list() -> None:
    """All topic sources merge into one sorted list; a shared topic is one spec with several dimensions."""
    ks = ex(
        "KAFKA_BROKERS=b",
        "KAFKA_INGEST_TOPICS=daily:bars, intraday=ticks, macro:bars",
        "KAFKA_INGEST_TOPIC_INTRADAY=trades",
        "KAFKA_INGEST_DEFAULT_TOPIC=fallback",
        "KAFKA_INGEST_CONSUMER_TOPICS=events,bars",
    ).kafka
    assert ks.topic_names == ("bars", "events", "fallback", "trades")
    assert ks.topics[0] == TopicSpec(name="bars", dimensions=("consumer", "daily", "macro"))
    assert ks.consumer_topics == ("events", "bars")


def test_kafka_topic_specs_per_dimension_over_global() -> None:
    """Per-dimension _PARTITIONS/_REPLICATION_FACTOR/_CONFIG win over the global ones (defaults 1/1/{})."""
    ks = ex(
        "KAFKA_INGEST_TOPIC_DAILY=d",
        "KAFKA_INGEST_TOPIC_MACRO=m",
        "KAFKA_INGEST_DEFAULT_TOPIC=x",
        "KAFKA_INGEST_TOPIC_PARTITIONS=2",
        'KAFKA_INGEST_TOPIC_CONFIG={"retention.ms": 1000}',
        "KAFKA_INGEST_TOPIC_DAILY_PARTITIONS=6",
        "KAFKA_INGEST_TOPIC_DAILY_REPLICATION_FACTOR=3",
        'KAFKA_INGEST_TOPIC_DAILY_CONFIG={"cleanup.policy": "compact", "x.flag": true}',
        "KAFKA_INGEST_DEFAULT_TOPIC_PARTITIONS=4",
    ).kafka
    by_name = {t.name: t for t in ks.topics}
    assert (by_name["d"].partitions, by_name["d"].replication_factor, dict(by_name["d"].configs)) == (
        6,
        3,
        {"cleanup.policy": "compact", "retention.ms": "1000", "x.flag": "true"},
    )
    assert (by_name["m"].partitions, by_name["m"].replication_factor, dict(by_name["m"].configs)) == (
        2,
        1,
        {"retention.ms": "1000"},
    )
    assert by_name["x"].partitions == 4
    assert ex("KAFKA_INGEST_TOPIC_DAILY=d").kafka.topics == (TopicSpec(name="d", dimensions=("daily",)),)


def test_kafka_topic_conflicting_dimension_specs_are_an_error() -> None:
    """Two dimensions sharing a topic with different partitions is an error naming both keys."""
    with pytest.raises(
        ConfigError,
        match=r"topic 'bars': KAFKA_INGEST_TOPIC_DAILY_PARTITIONS=3 from --extra "
        r"and KAFKA_INGEST_TOPIC_MACRO_PARTITIONS=6 from --extra disagree",
    ):
        ex(
            "KAFKA_INGEST_TOPICS=daily:bars,macro:bars",
            "KAFKA_INGEST_TOPIC_DAILY_PARTITIONS=3",
            "KAFKA_INGEST_TOPIC_MACRO_PARTITIONS=6",
        )


def test_kafka_orphan_topic_spec_warns() -> None:
    """A per-dimension spec for a dimension without a topic is reported, not silently dropped."""
    s = ex("KAFKA_INGEST_TOPIC_NOPE_PARTITIONS=3")
    assert "KAFKA_INGEST_TOPIC_NOPE_PARTITIONS from --extra is ignored: dimension 'nope' has no topic" in (
        s.warnings
    )


# ------------------------------------------------------------------------------------------- plan/gating


def test_mode_inferred_from_connectors() -> None:
    """Unset mode: institutional when Redis or Kafka is configured, else bootstrap; inferred either way."""
    assert (ex().plan.mode, ex().plan.mode_inferred) == ("bootstrap", True)
    assert ex("REDIS_HOST=r").plan.mode == "institutional"
    assert ex("KAFKA_BROKERS=k").plan.mode == "institutional"
    assert ex("TIMESCALEDB_HOST=t").plan.mode == "bootstrap"
    assert ex("REDIS_HOST=r", "DATA_BACKBONE_MODE=Bootstrap").plan == ex("DATA_BACKBONE_MODE=bootstrap").plan


def test_plan_fields() -> None:
    """Tier spellings, symbols CSV (deduplicated), dimensions and lookbacks."""
    plan = ex(
        "EMP_TIER=TIER-1",
        "TIMESCALE_SYMBOLS=EURUSD, gbpusd,,eurusd",
        "TIMESCALE_ENABLE_INTRADAY=yes",
        "TIMESCALE_INTRADAY_INTERVAL=5m",
        "TIMESCALE_ENABLE_MACRO=true",
        "TIMESCALE_MACRO_EVENTS_FILE=/etc/emp/macro.json",
    ).plan
    assert (plan.tier, plan.symbols, plan.dimensions) == (
        "tier_1",
        ("EURUSD", "gbpusd"),
        ("daily", "intraday", "macro"),
    )
    assert (plan.lookback_days, plan.intraday_lookback_days, plan.intraday_interval) == (60, 2, "5m")
    assert ex().plan.tier == "tier_0"


def test_schedule_defaults_and_values() -> None:
    """Schedule defaults 3600/120/3; values are parsed."""
    assert ex().schedule.interval_seconds == 3600
    sch = ex(
        "TIMESCALE_INGEST_SCHEDULE=true",
        "TIMESCALE_INGEST_INTERVAL_SECONDS=60",
        "TIMESCALE_INGEST_JITTER_SECONDS=0",
        "TIMESCALE_INGEST_MAX_FAILURES=0",
    ).schedule
    assert (sch.enabled, sch.interval_seconds, sch.jitter_seconds, sch.max_failures) == (True, 60, 0, 0)


def test_empty_value_means_unset() -> None:
    """KEY= (empty) from a higher source unsets a lower one and falls back to the default."""
    s = ex("REDIS_HOST=", "TIMESCALE_LOOKBACK_DAYS=", environ={"REDIS_HOST": "r"})
    assert (s.redis.configured, s.plan.lookback_days) == (False, 60)


# ---------------------------------------------------------------------------------------------- port range

#: Every place a port enters: {key: (value template, the port it yields in the settings)}.
PORT_SOURCES = {
    "TIMESCALEDB_PORT": ("TIMESCALEDB_HOST=127.0.0.1", "{}", lambda s: s.timescale.port),
    "TIMESCALEDB_URL": (None, "postgresql://u@127.0.0.1:{}/x", lambda s: s.timescale.port),
    "TIMESCALEDB_FAILOVER_PORT": ("TIMESCALEDB_FAILOVER_HOST=127.0.0.1", "{}", lambda s: s.failover.target.port),
    "TIMESCALEDB_FAILOVER_URL": (None, "postgresql://u@127.0.0.1:{}/x", lambda s: s.failover.target.port),
    "REDIS_PORT": ("REDIS_HOST=127.0.0.1", "{}", lambda s: s.redis.port),
    "REDIS_URL": (None, "redis://127.0.0.1:{}/0", lambda s: s.redis.port),
    "KAFKA_BROKERS": (None, "127.0.0.1:{}", lambda s: s.kafka.bootstrap_servers[0]),
    "KAFKA_URL": (None, "plaintext://127.0.0.1:{}", lambda s: s.kafka.bootstrap_servers[0]),
}


@pytest.mark.parametrize("key", sorted(PORT_SOURCES))
def test_port_range_is_1_to_65535_in_every_source(key: str) -> None:
    """65535 is accepted and reaches the settings; 65536 and 0 are a ConfigError naming the key (no wrap-around,
    no silent clamp), in a part key, a URL and a server list alike."""
    companion, template, port_of = PORT_SOURCES[key]
    items = [companion] if companion else []
    items.append("TIMESCALE_FAILOVER_DRILL=true")
    assert str(port_of(ex(*items, f"{key}={template.format(65535)}"))).endswith("65535")
    for bad in (65536, 0):
        with pytest.raises(ConfigError, match=rf"^{key}=.* from --extra: ") as info:
            ex(*items, f"{key}={template.format(bad)}")
        assert info.value.exit_code == 3


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("TIMESCALEDB_PORT=abc", "TIMESCALEDB_PORT='abc' from --extra: expected an integer"),
        ("PGPORT=0", "PGPORT='0' from --extra: expected an integer >= 1"),
        ("REDIS_PORT=70000", "REDIS_PORT='70000' from --extra: expected an integer <= 65535"),
        ("TIMESCALE_ENABLE_MACRO=maybe", "TIMESCALE_ENABLE_MACRO='maybe' from --extra: expected a boolean"),
        ("REDIS_SSL=2", "REDIS_SSL='2' from --extra: expected a boolean"),
        (
            "KAFKA_SECURITY_PROTOCOL=TLS",
            "KAFKA_SECURITY_PROTOCOL='TLS' from --extra: expected one of PLAINTEXT, "
            "SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        ("KAFKA_SASL_MECHANISM=KERBEROS", "KAFKA_SASL_MECHANISM='KERBEROS' from --extra: expected one of PLAIN"),
        (
            "DATA_BACKBONE_MODE=prod",
            "DATA_BACKBONE_MODE='prod' from --extra: expected one of bootstrap, institutional",
        ),
        ("EMP_TIER=tier_9", "EMP_TIER='tier_9' from --extra: expected one of tier_0, tier_1, tier_2"),
        (
            "TIMESCALE_INGEST_INTERVAL_SECONDS=59.5",
            "TIMESCALE_INGEST_INTERVAL_SECONDS='59.5' from --extra: expected an integer",
        ),
        ("TIMESCALE_INGEST_JITTER_SECONDS=86401", "expected an integer <= 86400"),
        ("REDIS_CACHE_TTL_SECONDS=forever", "REDIS_CACHE_TTL_SECONDS='forever' from --extra: expected an integer"
         " (or none/null/off/disabled)"),
        ("REDIS_CACHE_STRATEGY=cheap", "REDIS_CACHE_STRATEGY='cheap' from --extra: expected one of institutional,"
         " bootstrap, aggressive, extended, disabled"),
        ("TIMESCALE_MACRO_EVENTS={}", "TIMESCALE_MACRO_EVENTS='{}' from --extra: expected a JSON list of macro"
         " events, got dict"),
        ("TIMESCALE_LOOKBACK_DAYS=1.5", "TIMESCALE_LOOKBACK_DAYS='1.5' from --extra: expected an integer"),
        (
            "TIMESCALEDB_CONNECT_TIMEOUT=0",
            "TIMESCALEDB_CONNECT_TIMEOUT='0' from --extra: expected a number > 0",
        ),
        ("REDIS_SOCKET_TIMEOUT=nan", "expected a finite number"),
        ("TIMESCALEDB_SSLMODE=strict", "TIMESCALEDB_SSLMODE='strict' from --extra: expected one of disable"),
        ("KAFKA_INGEST_CONSUMER_OFFSET_RESET=newest", "expected one of earliest, latest, none"),
        ("KAFKA_INGEST_TOPIC_CONFIG={bad", "KAFKA_INGEST_TOPIC_CONFIG='{bad' from --extra: invalid JSON"),
        (
            "KAFKA_INGEST_TOPIC_CONFIG=[1]",
            "KAFKA_INGEST_TOPIC_CONFIG='[1]' from --extra: expected a JSON object, got list",
        ),
        ('KAFKA_INGEST_TOPIC_CONFIG={"a": {}}', "config 'a' must be a string, number or boolean"),
        (
            "KAFKA_INGEST_TOPIC_DAILY_PARTITIONS=0",
            "KAFKA_INGEST_TOPIC_DAILY_PARTITIONS='0' from --extra: expected an integer >= 1",
        ),
        (
            "KAFKA_INGEST_TOPICS=daily",
            "KAFKA_INGEST_TOPICS='daily' from --extra: entry 'daily' is not dimension:topic",
        ),
        ("KAFKA_INGEST_TOPIC_DAILY=bad topic!", "'bad topic!' is not a valid Kafka topic name"),
        ("TIMESCALEDB_URL=mysql://h/d", "TIMESCALEDB_URL=*** from --extra: unsupported scheme 'mysql'"),
        ("TIMESCALEDB_URL=postgresql://h:port/d", "TIMESCALEDB_URL=*** from --extra: port is not an integer"),
        (
            "TIMESCALEDB_URL=postgresql://h/d?sslmode=bogus",
            "TIMESCALEDB_URL=*** from --extra: sslmode in the URL",
        ),
        ("REDIS_URL=http://h", "REDIS_URL=*** from --extra: unsupported scheme 'http'"),
        ("REDIS_URL=redis://h/x", "REDIS_URL=*** from --extra: the database number"),
        ("KAFKA_BROKERS=http://b", "KAFKA_BROKERS=*** from --extra: unsupported scheme 'http'"),
        ("KAFKA_BROKERS=b:x", "KAFKA_BROKERS=*** from --extra: port is not an integer"),
    ],
)
def test_bad_input_is_a_precise_error(extra: str, message: str) -> None:
    """Bad values raise ConfigError naming key, origin and value (*** for secret-bearing keys)."""
    with pytest.raises(ConfigError) as info:
        ex(extra)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_value_location_is_file_and_line(tmp_path: Path) -> None:
    """The error names the env file and line the bad value came from."""
    env = tmp_path / "prod.env"
    env.write_text("# x\n\nTIMESCALEDB_PORT=abc\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^TIMESCALEDB_PORT='abc' from {env}:3: expected an integer$"):
        load_settings(env_files=[env])


def test_bad_secret_value_is_masked(tmp_path: Path) -> None:
    """A bad value of a secret key is shown as *** (here: an unterminated-quote-free but bad URL)."""
    with pytest.raises(ConfigError) as info:
        ex("KAFKA_URL=kafka://u:pw@b1,kafka://v:pw2@b2")
    assert str(info.value) == "KAFKA_URL=*** from --extra: bootstrap servers carry different credentials"


def test_bad_yaml_value_names_file_line_and_section(tmp_path: Path) -> None:
    """A bad YAML value names the file, line and section."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("system_config:\n  REDIS_PORT: nope\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^REDIS_PORT='nope' from {cfg}:2 \(system_config\): expected an"):
        load_settings(config_file=cfg)


def test_shadowed_alias_is_not_validated() -> None:
    """A stray unusable DATABASE_URL is ignored when TIMESCALEDB_URL is set, but an error when it is used."""
    s = ex("TIMESCALEDB_URL=postgresql://h/d", environ={"DATABASE_URL": "mysql://x/y"})
    assert s.timescale.host == "h"
    with pytest.raises(ConfigError, match=r"^DATABASE_URL=\*\*\* from env: unsupported scheme 'mysql'"):
        ex(environ={"DATABASE_URL": "mysql://x/y"})


def test_at_sign_in_query_value_is_refused_not_guessed() -> None:
    """An '@' in a query value could hide a password: the URL is refused with a hint to percent-encode."""
    with pytest.raises(ConfigError, match="ambiguous '@' in the URL: percent-encode"):
        ex("TIMESCALEDB_URL=postgresql://h:5432/d?application_name=a@b")
    assert ex("TIMESCALEDB_URL=postgresql://h/d?application_name=a%40b").timescale.application_name == "a@b"


def test_import_layering_and_lazy_yaml() -> None:
    """config imports nothing above it; loading settings without --config never imports yaml."""
    import subprocess
    import sys

    code = ("import sys; import ingest_probe.config.sources as c; "
            "assert 'ingest_probe.settings.service' not in sys.modules; "
            "from ingest_probe.settings.service import load_settings; load_settings(environ={'REDIS_HOST': 'r'}); "
            "bad = {'yaml', 'asyncpg', 'redis', 'aiokafka'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------- reviewer defects (1-7)


@pytest.mark.parametrize(
    ("extra", "fix"),
    [
        ("KAFKA_INGEST_TOPIC_PARTITONS=3", "KAFKA_INGEST_TOPIC_PARTITIONS"),
        ("KAFKA_INGEST_TOPIC_PARTITION=3", "KAFKA_INGEST_TOPIC_PARTITIONS"),
        ("KAFKA_INGEST_TOPIC_REPLICATIONFACTOR=2", "KAFKA_INGEST_TOPIC_REPLICATION_FACTOR"),
        ("KAFKA_INGEST_TOPIC_CONFIGS={}", "KAFKA_INGEST_TOPIC_CONFIG"),
        ("KAFKA_INGEST_TOPIC_DAILY_REPLICATION=2", "KAFKA_INGEST_TOPIC_DAILY_REPLICATION_FACTOR"),
        ("KAFKA_INGEST_TOPIC_DAILY_PARTITONS=3", "KAFKA_INGEST_TOPIC_DAILY_PARTITIONS"),
        ("KAFKA_INGEST_TOPIC_DAILY_BARS_REPLICAS=3", "KAFKA_INGEST_TOPIC_DAILY_BARS_REPLICATION_FACTOR"),
        ("KAFKA_INGEST_TOPIC_DAILY_CONFG={}", "KAFKA_INGEST_TOPIC_DAILY_CONFIG"),
        ("KAFKA_INGEST_TOPIC_DAILY_PARTITON_CONFIG={}", "KAFKA_INGEST_TOPIC_DAILY_PARTITIONS"),
    ],
)
def test_misspelt_topic_setting_is_an_error_not_a_topic(extra: str, fix: str) -> None:
    """A near-miss of _PARTITIONS/_REPLICATION_FACTOR/_CONFIG is a ConfigError naming key, origin and fix."""
    key = extra.partition("=")[0]
    with pytest.raises(ConfigError) as info:
        ex("KAFKA_BROKERS=b", "KAFKA_INGEST_TOPIC_DAILY=bars", extra)
    message = str(info.value)
    assert message.startswith(f"{key}=")
    assert " from --extra: " in message
    assert f"did you mean {fix}?" in message


def test_misspelt_topic_setting_names_file_and_line(tmp_path: Path) -> None:
    """The typo error names the env file and line it came from."""
    env = tmp_path / "k.env"
    env.write_text("KAFKA_BROKERS=b\nKAFKA_INGEST_TOPIC_PARTITONS=3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^KAFKA_INGEST_TOPIC_PARTITONS='3' from {env}:2: "):
        load_settings(env_files=[env])


def test_dimension_names_that_merely_resemble_setting_words_are_topics() -> None:
    """options, positions, daily_bars, transactions are dimensions, not typos (no false positives)."""
    ks = ex(
        "KAFKA_INGEST_TOPIC_OPTIONS=opts",
        "KAFKA_INGEST_TOPIC_POSITIONS=pos",
        "KAFKA_INGEST_TOPIC_TRANSACTIONS=tx",
        "KAFKA_INGEST_TOPIC_DAILY_BARS=bars",
        "KAFKA_INGEST_TOPIC_DAILY_BARS_PARTITIONS=3",
    ).kafka
    assert ks.topic_names == ("bars", "opts", "pos", "tx")


def test_every_listed_topic_name_is_checked_even_when_overridden() -> None:
    """An illegal name in KAFKA_INGEST_TOPICS is an error even if KAFKA_INGEST_TOPIC_<DIM> replaces it."""
    with pytest.raises(ConfigError, match=r"^KAFKA_INGEST_TOPICS='daily:b@d' from --extra: 'b@d' is not a valid"):
        ex("KAFKA_INGEST_TOPICS=daily:b@d", "KAFKA_INGEST_TOPIC_DAILY=ok")
    for bad_name in (".", "..", "x" * 250, "a b"):
        with pytest.raises(ConfigError, match="is not a valid Kafka topic name"):
            ex(f"KAFKA_INGEST_DEFAULT_TOPIC={bad_name}")


def test_stray_libpq_variables_do_not_retarget_a_timescale_host(tmp_path: Path) -> None:
    """YAML TIMESCALEDB_HOST + shell PGPORT/PGUSER/DATABASE_URL: the PG group is ignored, one warning."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("TIMESCALEDB_HOST: prod-db.internal\n", encoding="utf-8")
    s = load_settings(config_file=cfg, environ={"PGPORT": "1", "PGUSER": "stray-user",
                                                "DATABASE_URL": "postgresql://other-host/x", "PGSSLMODE": "disable"})
    ts = s.timescale
    assert (ts.host, ts.port, ts.user, ts.sslmode, ts.url_source_key) == ("prod-db.internal", 5432, None, None, None)
    libpq = [w for w in s.warnings if "PGPORT" in w or "DATABASE_URL" in w]
    assert libpq == [
        "libpq fallbacks DATABASE_URL, PGPORT, PGSSLMODE, PGUSER from env are ignored: TIMESCALEDB_HOST from "
        f"{cfg}:1 sets the Timescale target (PG* and DATABASE_URL apply only when no TIMESCALEDB_*/TIMESCALE_* "
        "URL or host is set in any source)"
    ]
    assert not any(v in w for w in s.warnings for v in ("stray-user", "other-host", "disable"))
    notes = {row.key: row.source for row in s.effective}
    assert notes["PGPORT"] == "env (ignored: libpq fallback; TIMESCALEDB_HOST is set)"


def test_timescale_url_also_disables_the_libpq_fallbacks() -> None:
    """A TIMESCALE_URL from the lowest source still wins over PGHOST and DATABASE_URL from --extra."""
    s = ex("PGHOST=stray", "DATABASE_URL=postgresql://stray/x", environ={"TIMESCALE_URL": "postgresql://ts/db"})
    assert (s.timescale.host, s.timescale.url_source_key) == ("ts", "TIMESCALE_URL")
    assert any(w.startswith("libpq fallbacks DATABASE_URL, PGHOST from --extra are ignored: TIMESCALE_URL")
               for w in s.warnings)


def test_libpq_fallbacks_apply_as_a_whole_without_a_timescale_target() -> None:
    """With no TIMESCALE URL or host, PGHOST/PGPORT/PGUSER/PGDATABASE or DATABASE_URL make the target."""
    ts = ex(environ={"PGHOST": "pg", "PGPORT": "6000", "PGUSER": "me", "PGDATABASE": "ticks"}).timescale
    assert (ts.host, ts.port, ts.user, ts.database) == ("pg", 6000, "me", "ticks")
    assert ex(environ={"DATABASE_URL": "postgresql://du/x"}).timescale.host == "du"
    # A TIMESCALE part that is not a target (the port) does not disable them; it wins over PGPORT.
    assert ex("TIMESCALEDB_PORT=7000", environ={"PGHOST": "pg", "PGPORT": "6000"}).timescale.port == 7000


def test_ignored_libpq_values_are_not_validated() -> None:
    """An unusable stray PGPORT is ignored, not an error, when a TIMESCALE host is set."""
    assert ex("TIMESCALEDB_HOST=h", environ={"PGPORT": "abc"}).timescale.port == 5432
    with pytest.raises(ConfigError, match="^PGPORT='abc' from env: expected an integer"):
        ex(environ={"PGHOST": "h", "PGPORT": "abc"})


def test_config_rows_show_what_a_url_supplies() -> None:
    """Port/db (and application_name) taken from a URL are shown with the URL key as their source."""
    rows = {r.key: (r.value, r.source) for r in ex("REDIS_URL=redis://c:6380/3").effective}
    assert rows["REDIS_PORT"] == ("6380", "REDIS_URL (--extra)")
    assert rows["REDIS_DB"] == ("3", "REDIS_URL (--extra)")
    rows = {r.key: (r.value, r.source) for r in ex(
        "TIMESCALEDB_URL=postgresql://h:6543/ticks?application_name=loader").effective}
    assert rows["TIMESCALEDB_PORT"] == ("6543", "TIMESCALEDB_URL (--extra)")
    assert rows["TIMESCALEDB_DB"] == ("ticks", "TIMESCALEDB_URL (--extra)")
    assert rows["TIMESCALEDB_APP"] == ("loader", "TIMESCALEDB_URL (--extra)")
    rows = {r.key: (r.value, r.source) for r in ex("REDIS_URL=redis://c", "REDIS_PORT=7000").effective}
    assert (rows["REDIS_PORT"], rows["REDIS_DB"]) == (("7000", "--extra"), ("0", "default"))


def test_unknown_url_query_parameters_warn_by_name_only() -> None:
    """Unsupported query parameters are warned about by name (never value) and key; known ones honoured."""
    s = ex("TIMESCALEDB_URL=postgresql://h/d?target_session_attrs=read-write&sslmode=require&connect_timeout=7",
           "REDIS_URL=rediss://c/0?ssl_cert_reqs=none&password=pw")
    assert "TIMESCALEDB_URL from --extra: query parameter 'target_session_attrs' is not supported and is " \
           "ignored" in s.warnings
    assert "REDIS_URL from --extra: query parameter 'ssl_cert_reqs' is not supported and is ignored" in s.warnings
    assert not any("read-write" in w or "none" in w for w in s.warnings)
    assert (s.timescale.sslmode, s.timescale.connect_timeout, s.redis.password) == ("require", 7.0, Secret("pw"))
    with pytest.raises(ConfigError, match=r"^TIMESCALEDB_URL=\*\*\* from --extra: connect_timeout in the URL"):
        ex("TIMESCALEDB_URL=postgresql://h/d?connect_timeout=soon")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("REDIS_HOST=ca|che", "REDIS_HOST='ca|che' from --extra: not a valid host name or IP address"),
        ("CACHE_HOST=my cache", "CACHE_HOST='my cache' from --extra: not a valid host name"),
        ("TIMESCALEDB_HOST=db/x", "TIMESCALEDB_HOST='db/x' from --extra: not a valid host name"),
        ("TIMESCALEDB_FAILOVER_HOST=-standby", "TIMESCALEDB_FAILOVER_HOST='-standby' from --extra: not a valid"),
        ("REDIS_HOST=[::1]", "write an IPv6 address without brackets"),
        ("REDIS_HOST=1.2.3.999", "not a valid host name or IP address"),
        ("REDIS_URL=redis://ca|che:6379/0", "REDIS_URL=*** from --extra: not a valid host name or IP address"),
        ("TIMESCALEDB_URL=postgresql://h/d?host=/var/run/postgresql", "TIMESCALEDB_URL=*** from --extra: not a"),
        ("KAFKA_BROKERS=b|x:9092", "KAFKA_BROKERS=*** from --extra: not a valid host name or IP address"),
    ],
)
def test_implausible_hosts_are_errors(extra: str, message: str) -> None:
    """A host that is not a plausible host name or IP literal is a ConfigError naming key and origin."""
    with pytest.raises(ConfigError) as info:
        ex(extra)
    assert message in str(info.value)


def test_plausible_hosts_are_accepted() -> None:
    """Host names (underscores, trailing dot), IPv4 and IPv6 literals (with a zone) are accepted."""
    for host in ("localhost", "db_1.internal", "cache.example.com.", "10.0.0.1", "::1", "fe80::1%eth0"):
        assert ex(f"REDIS_HOST={host}").redis.host == host
    assert ex("REDIS_URL=redis://[::1]:6380").redis.endpoint == "[::1]:6380"


def test_alias_across_sources_warning_states_the_rule(tmp_path: Path) -> None:
    """--extra TIMESCALE_URL loses to YAML TIMESCALEDB_URL; the warning says names rank, not sources."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("TIMESCALEDB_URL: postgresql://yaml-host/d\n", encoding="utf-8")
    s = load_settings(config_file=cfg, extras=["TIMESCALE_URL=postgresql://extra-host/d"])
    assert s.timescale.host == "yaml-host"
    assert (
        f"TIMESCALE_URL from --extra is ignored: TIMESCALEDB_URL from {cfg}:1 takes precedence (an alias "
        "never overrides across sources: TIMESCALEDB_URL > TIMESCALE_URL > DATABASE_URL whatever their "
        "sources; set TIMESCALEDB_URL itself to override it)"
    ) in s.warnings
