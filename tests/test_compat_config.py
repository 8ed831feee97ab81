"""Drop-in for the replaced system's configuration: its env template, dev env file and YAML preset (fixtures with
the same keys and shapes), and every key, alias and value it read, through `config`, `report`, `readiness`."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from live.net import BlackHole, free_port

from ingest_probe.commands.cli import main
from ingest_probe.config.sources import load_config
from ingest_probe.report.builder import REASON_NO_DIMENSIONS, REASON_NOT_TIER_1
from ingest_probe.settings.service import Settings, key_registry, load_settings

COMPAT = Path(__file__).parent / "fixtures" / "compat"
TEMPLATE = COMPAT / "institutional_ingest.env"
DEV_ENV = COMPAT / "dev_data_services.env"
PRESET = COMPAT / "dev_data_backbone.yaml"
SERVICE_KEYS = COMPAT / "service_keys.env"
#: The secrets of the fixtures: never in any output.
CANARIES = ("empchangeme", "emp_password", "av-canary-0d1e", "fred-canary-77aa", "news-canary-4b2c",
            "route-canary-91f3")
#: The template's names its own code never read, and the keys they are read as.
LEGACY = {"TIMESCALE_APPLICATION_NAME": "TIMESCALEDB_APP", "REDIS_TTL_SECONDS": "REDIS_CACHE_TTL_SECONDS",
          "REDIS_MAX_KEYS": "REDIS_CACHE_MAX_KEYS", "REDIS_INVALIDATE_PREFIXES": "REDIS_CACHE_INVALIDATE_PREFIXES",
          "TIMESCALE_FAILOVER_ENABLED": "TIMESCALE_FAILOVER_DRILL",
          "TIMESCALE_FAILOVER_DIMENSIONS": "TIMESCALE_FAILOVER_DRILL_DIMENSIONS",
          "TIMESCALE_FAILOVER_LABEL": "TIMESCALE_FAILOVER_DRILL_LABEL",
          "TIMESCALE_FAILOVER_RUN_FALLBACK": "TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK"}
#: Every key the replaced system read (its SystemConfig, connection settings, cache policy, topics, consumer,
#: ingest plan, schedule, drill, data API keys, alert routes) and the names its env template uses.
OLD_KEYS = (
    "RUN_MODE", "EMP_ENVIRONMENT", "EMP_TIER", "CONFIRM_LIVE", "CONNECTION_PROTOCOL", "DATA_BACKBONE_MODE",
    "EMP_KILL_SWITCH",
    "TIMESCALEDB_URL", "TIMESCALE_URL", "DATABASE_URL", "TIMESCALEDB_HOST", "TIMESCALE_HOST", "PGHOST",
    "TIMESCALEDB_DRIVER", "PGDRIVER", "TIMESCALEDB_PORT", "TIMESCALE_PORT", "PGPORT", "TIMESCALEDB_USER",
    "TIMESCALEDB_USERNAME", "TIMESCALE_USER", "TIMESCALE_USERNAME", "PGUSER", "TIMESCALEDB_PASSWORD",
    "TIMESCALE_PASSWORD", "PGPASSWORD", "TIMESCALEDB_DB", "TIMESCALEDB_DATABASE", "TIMESCALE_DATABASE",
    "PGDATABASE", "TIMESCALEDB_SSLMODE", "PGSSLMODE", "TIMESCALEDB_SSLROOTCERT", "PGSSLROOTCERT",
    "TIMESCALEDB_SSLCERT", "PGSSLCERT", "TIMESCALEDB_SSLKEY", "PGSSLKEY", "TIMESCALEDB_APP", "TIMESCALE_APP",
    "TIMESCALEDB_STATEMENT_TIMEOUT_MS", "TIMESCALEDB_CONNECT_TIMEOUT", "TIMESCALEDB_POOL_SIZE",
    "TIMESCALEDB_MAX_OVERFLOW", "TIMESCALEDB_POOL_TIMEOUT", "TIMESCALEDB_POOL_RECYCLE", "TIMESCALEDB_POOL_PRE_PING",
    "REDIS_URL", "REDIS_URI", "REDISCLOUD_URL", "REDIS_HOST", "CACHE_HOST", "REDIS_PORT", "REDIS_DB",
    "REDIS_USERNAME", "REDIS_USER", "REDIS_PASSWORD", "REDIS_PASS", "REDIS_SSL", "REDIS_CLIENT_NAME",
    "REDIS_APP_NAME", "REDIS_SOCKET_TIMEOUT", "REDIS_HEALTH_CHECK_INTERVAL", "REDIS_RETRY_ON_TIMEOUT",
    "REDIS_CACHE_STRATEGY", "REDIS_CACHE_TTL_SECONDS", "REDIS_CACHE_MAX_KEYS", "REDIS_CACHE_NAMESPACE",
    "REDIS_CACHE_INVALIDATE_PREFIXES",
    "KAFKA_BROKERS", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_URL", "KAFKA_USERNAME", "KAFKA_USER", "KAFKA_PASSWORD",
    "KAFKA_PASS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_CLIENT_ID", "KAFKA_ACKS",
    "KAFKA_LINGER_MS", "KAFKA_BATCH_SIZE", "KAFKA_ENABLE_IDEMPOTENCE", "KAFKA_COMPRESSION_TYPE",
    "KAFKA_INGEST_TOPICS", "KAFKA_INGEST_TOPIC_DAILY_BARS", "KAFKA_INGEST_TOPIC_DAILY_BARS_PARTITIONS",
    "KAFKA_INGEST_TOPIC_DAILY_BARS_REPLICATION_FACTOR", "KAFKA_INGEST_TOPIC_DAILY_BARS_CONFIG",
    "KAFKA_INGEST_DEFAULT_TOPIC", "KAFKA_INGEST_DEFAULT_TOPIC_PARTITIONS",
    "KAFKA_INGEST_DEFAULT_TOPIC_REPLICATION_FACTOR", "KAFKA_INGEST_DEFAULT_TOPIC_CONFIG",
    "KAFKA_INGEST_TOPIC_PARTITIONS", "KAFKA_INGEST_TOPIC_REPLICATION_FACTOR", "KAFKA_INGEST_TOPIC_CONFIG",
    "KAFKA_INGEST_CONSUMER_TOPICS", "KAFKA_INGEST_AUTO_CREATE_TOPICS", "KAFKA_AUTO_CREATE_TOPICS",
    "KAFKA_INGEST_HEALTH_TOPIC", "KAFKA_INGEST_METRICS_TOPIC", "KAFKA_INGEST_QUALITY_TOPIC",
    "KAFKA_READINESS_WARN_LAG_MESSAGES", "KAFKA_READINESS_FAIL_LAG_MESSAGES",
    "KAFKA_INGEST_ENABLE_STREAMING", "KAFKA_INGEST_CONSUMER_ENABLED", "KAFKA_INGEST_CONSUMER_GROUP",
    "KAFKA_INGEST_CONSUMER_OFFSET_RESET", "KAFKA_INGEST_CONSUMER_AUTO_OFFSET_RESET",
    "KAFKA_INGEST_CONSUMER_AUTO_COMMIT",
    "KAFKA_INGEST_CONSUMER_COMMIT_ON_PUBLISH", "KAFKA_INGEST_CONSUMER_COMMIT_ASYNC",
    "KAFKA_INGEST_CONSUMER_POLL_TIMEOUT", "KAFKA_INGEST_CONSUMER_IDLE_SLEEP", "KAFKA_INGEST_CONSUMER_PUBLISH_LAG",
    "KAFKA_INGEST_CONSUMER_LAG_EVENT_TYPE", "KAFKA_INGEST_CONSUMER_LAG_EVENT_SOURCE",
    "KAFKA_INGEST_CONSUMER_LAG_INTERVAL", "KAFKA_INGEST_CONSUMER_EVENT_TYPE", "KAFKA_INGEST_CONSUMER_EVENT_SOURCE",
    "KAFKA_INGEST_CONSUMER_TOPIC_EVENT_TYPES",
    "TIMESCALE_SYMBOLS", "TIMESCALE_LOOKBACK_DAYS", "TIMESCALE_ENABLE_INTRADAY", "TIMESCALE_INTRADAY_LOOKBACK_DAYS",
    "TIMESCALE_INTRADAY_INTERVAL", "TIMESCALE_ENABLE_MACRO", "TIMESCALE_MACRO_EVENTS", "TIMESCALE_MACRO_EVENTS_FILE",
    "TIMESCALE_MACRO_START", "TIMESCALE_MACRO_END", "TIMESCALE_MACRO_CALENDARS", "TIMESCALE_INGEST_SCHEDULE",
    "TIMESCALE_INGEST_INTERVAL_SECONDS", "TIMESCALE_INGEST_JITTER_SECONDS", "TIMESCALE_INGEST_MAX_FAILURES",
    "TIMESCALE_FAILOVER_DRILL", "TIMESCALE_FAILOVER_DRILL_DIMENSIONS", "TIMESCALE_FAILOVER_DRILL_LABEL",
    "TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK", "ALPHA_VANTAGE_API_KEY", "ALPHAVANTAGE_API_KEY", "FRED_API_KEY",
    "NEWS_API_KEY", "NEWSAPI_KEY", "OPERATIONS_ALERT_ROUTES", "TIMESCALE_ALERT_ROUTES",
    *LEGACY,
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI in-process: exit code, stdout, stderr; never a traceback, never a secret of the fixtures."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    for canary in CANARIES:
        assert canary not in out + err, canary
    return int(info.value.code or 0), out, err


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("ingest-probe: warning: ")]


def unknown(err: str) -> list[str]:
    """The unknown-key warnings in ``err`` (a known key must never earn one)."""
    return [line for line in err.splitlines() if "unknown key" in line or "not a valid variable name" in line]


def config_rows(out: str) -> dict[str, tuple[str, str]]:
    return {row["key"]: (row["value"], row["source"]) for row in json.loads(out)}


def manifest(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m["metadata"] for m in doc["manifest"]}


def topics(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {t["name"]: t["dimensions"] for t in manifest(doc)["kafka"]["topic_specs"]}


def ex(*items: str, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(extras=list(items), environ=environ)


# ------------------------------------------------------------------------------------------------ the keys


@pytest.mark.parametrize("name", OLD_KEYS)
def test_every_key_the_old_system_read_is_known(name):
    """Each key (and alias) the replaced system read, and each name of its env template, is a known key: set
    from a file, it earns no unknown-key warning."""
    assert key_registry().spec(name) is not None, name


def test_old_keys_from_every_source_earn_no_unknown_key_warning(capsys, tmp_path):
    """All of the old keys at once, from the process environment, an env file, the YAML file (top level,
    system_config:, extras:) and --extra: no unknown-key warning (names only: values are not validated here)."""
    half = len(OLD_KEYS) // 2
    env_file = tmp_path / "old.env"
    env_file.write_text("".join(f"{n}=1\n" for n in OLD_KEYS[:half]))
    yaml_file = tmp_path / "old.yaml"
    yaml_file.write_text("run_mode: paper\ntier: tier_1\nsystem_config:\n  environment: demo\n  extras:\n"
                         + "".join(f"    {n}: '1'\n" for n in OLD_KEYS[half:]))
    raw = load_config(keys=key_registry(), config_file=yaml_file, env_files=[env_file],
                      extras=[f"{n}=1" for n in OLD_KEYS], environ=dict.fromkeys(OLD_KEYS, "1"))
    assert raw.warnings == ()
    assert {"RUN_MODE", "EMP_TIER", "EMP_ENVIRONMENT"} <= set(raw.values)
    code, _, err = run(capsys, "config", "--no-env", "--extra", "RUN_MODE=paper", "--extra", "KAFKA_ACKS=all",
                       "--extra", "NEWS_API_KEY=news-canary-4b2c", "--extra", "KAFKA_INGEST_HEALTH_TOPIC=h")
    assert (code, err) == (0, "")


def test_service_keys_are_shown_redacted_and_never_validated(capsys, monkeypatch):
    """The service's own keys (producer/consumer tuning, auto-create, lag limits, API keys, alert routes,
    SystemConfig fields): read silently, shown by `config` with a note, secrets as ***, from a file and from
    the process environment; a value the probe would refuse elsewhere (`off`, `y`) is never an error."""
    code, out, err = run(capsys, "config", "--no-env", "--env-file", str(SERVICE_KEYS), "--format", "json")
    assert (code, err) == (0, "")
    rows = config_rows(out)
    for name in ("ALPHA_VANTAGE_API_KEY", "FRED_API_KEY", "NEWSAPI_KEY", "OPERATIONS_ALERT_ROUTES"):
        assert rows[name][0] == "***", name
    assert rows["KAFKA_ACKS"] == ("all", f"{SERVICE_KEYS}:3 (not used by ingest-probe)")
    assert rows["KAFKA_INGEST_CONSUMER_LAG_INTERVAL"][0] == "off"
    assert rows["KAFKA_READINESS_FAIL_LAG_MESSAGES"][0] == "2000"
    assert rows["EMP_KILL_SWITCH"][0] == "/tmp/emp_pg.KILL"
    # Undecodable bytes in a key the probe does not use (a value of another program's making): no error.
    monkeypatch.setattr(os, "environ", {"ALPHAVANTAGE_API_KEY": "av-canary-0d1e", "KAFKA_LINGER_MS": "20",
                                        "KAFKA_COMPRESSION_TYPE": "lz\udcff4"})
    code, out, err = run(capsys, "config", "--format", "json")
    assert (code, err) == (0, "")
    assert config_rows(out)["ALPHAVANTAGE_API_KEY"] == ("***", "env (not used by ingest-probe)")
    code, out, err = run(capsys, "report", "--no-env", "--env-file", str(SERVICE_KEYS))
    assert (code, err) == (0, "")


# -------------------------------------------------------------------------------------- the shipped files


def test_template_config_reads_every_name_with_one_note(capsys):
    """`config` on the env template: every key known; the eight names its code never read are read as the
    keys it did read, said in one warning line naming each; each row says what it is read as."""
    code, out, err = run(capsys, "config", "--no-env", "--env-file", str(TEMPLATE), "--format", "json")
    assert code == 0
    assert not unknown(err)
    [note] = warnings(err)
    assert err == note + "\n"
    for name, key in LEGACY.items():
        assert re.search(rf"{name} \({re.escape(str(TEMPLATE))}:\d+\) as {key}\b", note), name
    rows = config_rows(out)
    assert rows["TIMESCALE_APPLICATION_NAME"] == ("emp_institutional_ingest", f"{TEMPLATE}:7 (read as TIMESCALEDB_APP)")
    assert rows["TIMESCALE_FAILOVER_ENABLED"][1].endswith("(read as TIMESCALE_FAILOVER_DRILL)")
    assert {"TIMESCALEDB_APP", "TIMESCALE_FAILOVER_DRILL"}.isdisjoint(rows)  # no rows of unused defaults
    assert rows["TIMESCALE_URL"][0] == "postgresql://emp:***@localhost:5433/emp_market"
    assert rows["KAFKA_READINESS_WARN_LAG_MESSAGES"][1].endswith("(not used by ingest-probe)")


def test_template_report_shows_what_the_template_says(capsys):
    """`report` on the env template: its application name, cache policy and drill keys under their template
    names, the gate closed by the tier as the old code's (no EMP_TIER), open with EMP_TIER=tier_1."""
    code, out, err = run(capsys, "report", "--no-env", "--env-file", str(TEMPLATE))
    assert code == 0
    assert not unknown(err)
    doc = json.loads(out)
    assert (doc["should_run"], doc["reason"], doc["dimensions"]) == (False, REASON_NOT_TIER_1, ["daily", "intraday"])
    assert (doc["configuration"]["mode"], doc["configuration"]["mode_inferred"]) == ("institutional", True)
    ts, rs, ks = (manifest(doc)[k] for k in ("timescale", "redis", "kafka"))
    assert (ts["application_name"], ts["service_defaults"]) == ("emp_institutional_ingest", {})
    assert (ts["endpoint"], ts["database"], ts["user"]) == ("localhost:5433", "emp_market", "emp")
    assert rs["client_name"] == "emp_institutional_cache"
    assert rs["policy"] == {"strategy": "institutional", "ttl_seconds": 900, "max_keys": 2048, "namespace": "emp:cache",
                            "invalidate_prefixes": ["timescale:daily:", "timescale:intraday:"]}
    assert topics(doc) == {"telemetry.ingest": ["consumer", "default"]}
    assert doc["failover"] | {"target": None} == {
        "dimensions": ["daily", "intraday"], "freshness_sla_seconds": 86400, "label": "staged_timescale_outage",
        "run_fallback": True, "target": None}
    code, out, _ = run(capsys, "report", "--no-env", "--env-file", str(TEMPLATE), "--extra", "EMP_TIER=tier_1")
    assert (json.loads(out)["should_run"], json.loads(out)["reason"]) == (True, None)


@pytest.mark.parametrize("argv", [["--env-file", str(DEV_ENV)], ["--config", str(PRESET)]],
                         ids=["dev-env-file", "yaml-preset"])
def test_dev_files_report_health_metrics_quality_topics(capsys, argv):
    """The dev env file and the YAML preset: mode institutional (set, not inferred), their client names, and the
    service's health/metrics/quality topics in the one topic list (checked and provisioned like the others),
    each under its own dimension; RUN_MODE and EMP_ENVIRONMENT (environment: in YAML) known."""
    code, out, err = run(capsys, "report", "--no-env", *argv)
    assert code == 0
    assert not unknown(err)
    doc = json.loads(out)
    assert (doc["configuration"]["mode"], doc["configuration"]["mode_inferred"]) == ("institutional", False)
    assert topics(doc) == {"telemetry.ingest": ["consumer", "default"], "telemetry.ingest.health": ["health"],
                           "telemetry.ingest.metrics": ["metrics"], "telemetry.ingest.quality": ["quality"]}
    ks = manifest(doc)["kafka"]
    assert (ks["client_id"], ks["topic_count"]) == ("emp-dev-runtime", 4)
    assert manifest(doc)["timescale"]["timeouts"]["statement_timeout_ms"] == 15000
    code, out, err = run(capsys, "config", "--no-env", *argv, "--format", "json")
    rows = config_rows(out)
    assert (rows["RUN_MODE"][0], rows["EMP_ENVIRONMENT"][0]) == ("paper", "demo")
    assert not unknown(err)


def test_yaml_preset_honours_tier_and_refuses_nested_sections(capsys, tmp_path):
    """YAML `tier:` (the old SystemConfig field; under system_config: it wins over the top level) is EMP_TIER;
    `environment:`/`kill_switch_path:` are EMP_ENVIRONMENT/EMP_KILL_SWITCH; a nested `redis: {url: ...}` is an
    error naming the key to write instead, never silently ignored."""
    preset = PRESET.read_text()
    with_tier = tmp_path / "tier.yaml"
    with_tier.write_text("tier: tier_2\n" + preset.replace("  run_mode: paper\n", "  run_mode: paper\n  tier: tier-1\n"
                                                             "  kill_switch_path: /run/emp.KILL\n"))
    code, out, err = run(capsys, "report", "--no-env", "--config", str(with_tier))
    doc = json.loads(out)
    assert (code, doc["configuration"]["tier"], doc["reason"]) == (0, "tier_1", REASON_NO_DIMENSIONS)
    assert not unknown(err)
    _, out, _ = run(capsys, "config", "--no-env", "--config", str(with_tier), "--format", "json")
    rows = config_rows(out)
    assert rows["EMP_TIER"] == ("tier-1", f"{with_tier}:6 (system_config)")
    assert rows["EMP_KILL_SWITCH"][0] == "/run/emp.KILL"
    for text, meant in (("redis:\n  url: redis://127.0.0.1:6379/0\n", "REDIS_URL: ..."),
                        ("system_config:\n  kafka:\n    brokers: 127.0.0.1:9092\n    client_id: x\n",
                         "KAFKA_BROKERS: ..., KAFKA_CLIENT_ID: ..."),
                        ("timescaledb:\n  host: db\n", "TIMESCALEDB_HOST: ...")):
        nested = tmp_path / "nested.yaml"
        nested.write_text(text)
        code, out, err = run(capsys, "report", "--no-env", "--config", str(nested))
        assert (code, out) == (3, "")
        assert err.count("\n") == 1, err
        assert f"holds a mapping, which is not read: write its keys in full ({meant})" in err


# ----------------------------------------------------------------------------------- aliases and values


def test_old_aliases_configure_the_same_keys(capsys):
    """TIMESCALE_APP, REDIS_APP_NAME and KAFKA_INGEST_CONSUMER_AUTO_OFFSET_RESET, as the old code read them."""
    code, out, err = run(capsys, "report", "--no-env", "--extra", "TIMESCALEDB_HOST=db", "--extra",
                         "TIMESCALE_APP=loader", "--extra", "REDIS_HOST=cache", "--extra", "REDIS_APP_NAME=cacher",
                         "--extra", "KAFKA_BROKERS=k:9092", "--extra",
                         "KAFKA_INGEST_CONSUMER_AUTO_OFFSET_RESET=Earliest")
    assert (code, err) == (0, "")
    m = manifest(json.loads(out))
    assert m["timescale"]["application_name"] == "loader"
    assert m["redis"]["client_name"] == "cacher"
    assert m["kafka"]["consumer_offset_reset"] == "earliest"
    assert "application_name" not in m["timescale"]["service_defaults"]
    assert "client_name" not in m["redis"]["service_defaults"]
    assert "consumer_offset_reset" not in m["kafka"]["service_defaults"]


@pytest.mark.parametrize(("word", "value"), [("y", True), ("Y", True), ("n", False), ("N", False)])
def test_booleans_y_and_n(word, value):
    """y/n are booleans, as in the old code (beside true/false, 1/0, yes/no, on/off)."""
    settings = ex("TIMESCALE_SYMBOLS=EURUSD", f"TIMESCALE_ENABLE_INTRADAY={word}", f"TIMESCALE_INGEST_SCHEDULE={word}")
    assert (settings.plan.intraday_enabled, settings.schedule.enabled) == (value, value)
    assert ("intraday" in settings.plan.dimensions) is value


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (None, ("institutional", 900, 1024, "emp:cache")),
        ("institutional", ("institutional", 900, 1024, "emp:cache")),
        ("Prod", ("institutional", 900, 1024, "emp:cache")),
        ("balanced", ("institutional", 900, 1024, "emp:cache")),
        ("bootstrap", ("bootstrap", 1800, 256, "emp:bootstrap")),
        ("short_ttl", ("aggressive", 120, 512, "emp:cache")),
        ("fast", ("aggressive", 120, 512, "emp:cache")),
        ("12h", ("extended", 43200, 4096, "emp:cache")),
        ("twelve_hours", ("extended", 43200, 4096, "emp:cache")),
        ("no_cache", ("disabled", None, 0, "emp:cache")),
        ("OFF", ("disabled", None, 0, "emp:cache")),
    ],
)
def test_cache_strategy_presets(strategy, expected):
    """REDIS_CACHE_STRATEGY presets and their aliases, as the old RedisCachePolicy (manifest only)."""
    items = ["REDIS_HOST=r", "REDIS_CACHE_NAMESPACE=" if strategy is None else f"REDIS_CACHE_STRATEGY={strategy}"]
    if strategy is None:
        items[1] = "REDIS_CACHE_INVALIDATE_PREFIXES=a:,b:"  # any policy key: the default preset under it
    policy = ex(*items).redis.policy
    assert policy is not None
    assert (policy.strategy, policy.ttl_seconds, policy.max_keys, policy.namespace) == expected


@pytest.mark.parametrize("word", ["off", "none", "null", "disabled", "OFF"])
def test_cache_ttl_and_max_keys_off(word):
    """REDIS_CACHE_TTL_SECONDS=off (none/null/disabled): no TTL; the same words for max keys; other keys over
    the preset; a namespace's trailing ':' dropped."""
    settings = ex("REDIS_HOST=r", "REDIS_CACHE_STRATEGY=extended", f"REDIS_CACHE_TTL_SECONDS={word}",
                  f"REDIS_CACHE_MAX_KEYS={word}", "REDIS_CACHE_NAMESPACE=emp:x:")
    policy = settings.redis.policy
    assert policy is not None
    assert (policy.strategy, policy.ttl_seconds, policy.max_keys, policy.namespace) == ("extended", None, None, "emp:x")
    assert settings.warnings == ()


def test_schedule_values_below_their_minimum_are_raised_with_a_warning(capsys):
    """An interval below 60 s is 60 (jitter and max failures below 0 are 0), as the old code clamped them, with
    one warning each naming the key; not an error."""
    code, out, err = run(capsys, "report", "--no-env", "--extra", "TIMESCALE_INGEST_SCHEDULE=true", "--extra",
                         "TIMESCALE_INGEST_INTERVAL_SECONDS=30", "--extra", "TIMESCALE_INGEST_JITTER_SECONDS=-5",
                         "--extra", "TIMESCALE_INGEST_MAX_FAILURES=-1")
    assert code == 0
    assert json.loads(out)["schedule"] == {"interval_seconds": 60, "jitter_seconds": 0, "max_failures": 0}
    assert warnings(err) == [
        "ingest-probe: warning: TIMESCALE_INGEST_INTERVAL_SECONDS='30' from --extra is below 60: 60 is used (as the"
        " ingest service does)",
        "ingest-probe: warning: TIMESCALE_INGEST_JITTER_SECONDS='-5' from --extra is below 0: 0 is used (as the"
        " ingest service does)",
        "ingest-probe: warning: TIMESCALE_INGEST_MAX_FAILURES='-1' from --extra is below 0: 0 is used (as the"
        " ingest service does)",
    ]


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "gssapi"])
def test_sasl_mechanism_the_probe_cannot_speak_is_the_kafka_result(capsys, mechanism):
    """KAFKA_SASL_MECHANISM=OAUTHBEARER/GSSAPI: accepted (manifest), and the Kafka result says the probe cannot
    authenticate with it (down, error_kind driver, not retryable) without contacting the broker; the other
    connectors and the exit code (2) as for any down connector, never a configuration error."""
    with BlackHole() as broker:
        argv = ["report", "--no-env", "--connectivity", "--timeout", "2", "--extra",
                f"KAFKA_BROKERS=sasl_ssl://svc:pw-canary@127.0.0.1:{broker.port}", "--extra",
                f"KAFKA_SASL_MECHANISM={mechanism}"]
        code, out, err = run(capsys, *argv)
        accepted = broker.accepted
    doc = json.loads(out)
    assert manifest(doc)["kafka"]["sasl_mechanism"] == mechanism.upper()
    kafka = {r["name"]: r for r in doc["connectivity"]}["kafka"]
    assert (code, kafka["status"], kafka["error_kind"], kafka["retryable"]) == (2, "down", "driver", False)
    assert f"with SASL mechanism {mechanism.upper()}: the probe speaks PLAIN" in kafka["error"]
    assert kafka["error"].endswith("the broker was not contacted")
    assert accepted == 0
    assert "pw-canary" not in out + err
    assert "error:" not in err


# ------------------------------------------------------------------------------------------- topic lists


def test_topic_list_normalises_dimensions_and_reads_star_as_the_default_topic():
    """KAFKA_INGEST_TOPICS as the old code read it: `Daily-Bars` is dimension daily_bars (its per-dimension keys
    apply), `*:topic` is the default topic (with the KAFKA_INGEST_DEFAULT_TOPIC_* settings); an explicit
    KAFKA_INGEST_DEFAULT_TOPIC wins over `*`."""
    kafka = ex("KAFKA_BROKERS=k:9092", "KAFKA_INGEST_TOPICS=Daily-Bars:bars.daily, *=telemetry.any",
               "KAFKA_INGEST_TOPIC_DAILY_BARS_PARTITIONS=6", "KAFKA_INGEST_DEFAULT_TOPIC_PARTITIONS=3").kafka
    specs = {t.name: (t.dimensions, t.partitions) for t in kafka.topics}
    assert specs == {"bars.daily": (("daily_bars",), 6), "telemetry.any": (("default",), 3)}
    kafka = ex("KAFKA_BROKERS=k:9092", "KAFKA_INGEST_TOPICS=*:telemetry.any",
               "KAFKA_INGEST_DEFAULT_TOPIC=telemetry.ingest").kafka
    assert [(t.name, t.dimensions) for t in kafka.topics] == [("telemetry.ingest", ("default",))]


def test_topic_keys_from_the_process_environment_are_declared_but_not_provisioned():
    """A KAFKA_INGEST_TOPIC_<DIM> of the process environment is a declared topic (manifest, probe) that
    --ensure-topics will not create (`env_only`); from an env file, YAML or --extra it is created as before; one
    whose value is no topic name is a stray variable: ignored with a warning."""
    environ = {"KAFKA_BROKERS": "k:9092", "KAFKA_INGEST_TOPIC_DAILY": "bars.daily",
               "KAFKA_INGEST_TOPIC_LINK": "tcp://10.0.0.11:9092"}
    settings = ex(environ=environ)
    assert [(t.name, t.env_only) for t in settings.kafka.topics] == [("bars.daily", ("KAFKA_INGEST_TOPIC_DAILY",))]
    assert settings.warnings == ("KAFKA_INGEST_TOPIC_LINK from env is ignored: its value is not a Kafka topic name"
                                 " (a variable of something else? declare topics in an env file, the YAML file or"
                                 " --extra)",)
    explicit = ex("KAFKA_INGEST_TOPIC_DAILY=bars.daily", environ=environ)
    assert [(t.name, t.env_only) for t in explicit.kafka.topics] == [("bars.daily", ())]
    both = ex("KAFKA_INGEST_TOPICS=intraday:bars.daily", environ=environ)  # declared by --extra too
    assert [(t.name, t.dimensions, t.env_only) for t in both.kafka.topics] == [
        ("bars.daily", ("daily", "intraday"), ())]


# ------------------------------------------------------------------------------------------ the ingest gate


@pytest.mark.parametrize(
    ("items", "dimensions", "warned"),
    [
        (["TIMESCALE_ENABLE_INTRADAY=true"], [], "TIMESCALE_ENABLE_INTRADAY=true from --extra has no effect"),
        (["TIMESCALE_ENABLE_MACRO=true"], [], "TIMESCALE_ENABLE_MACRO=true from --extra has no effect"),
        (["TIMESCALE_ENABLE_MACRO=true", "TIMESCALE_MACRO_EVENTS=[]"], [], "TIMESCALE_ENABLE_MACRO=true"),
        (["TIMESCALE_ENABLE_MACRO=true", "TIMESCALE_MACRO_START=2026-01-01"], [], "TIMESCALE_ENABLE_MACRO=true"),
        (["TIMESCALE_ENABLE_MACRO=true", 'TIMESCALE_MACRO_EVENTS=[{"event": "cpi"}]'], ["macro"], None),
        (["TIMESCALE_ENABLE_MACRO=true", "TIMESCALE_MACRO_EVENTS_FILE=/etc/emp/macro.json"], ["macro"], None),
        (["TIMESCALE_ENABLE_MACRO=true", "TIMESCALE_MACRO_START=2026-01-01", "TIMESCALE_MACRO_END=2026-02-01"],
         ["macro"], None),
        (["TIMESCALE_SYMBOLS=EURUSD", "TIMESCALE_ENABLE_INTRADAY=true"], ["daily", "intraday"], None),
    ],
)
def test_ingest_gate_follows_the_old_slice_rules(capsys, items, dimensions, warned):
    """The old rule: intraday needs symbols, macro needs events (inline or a file) or a window; an enabled slice
    that cannot run is no dimension (the gate says "No ingest slices configured ...") and one warning says why."""
    argv = ["report", "--no-env", "--extra", "DATA_BACKBONE_MODE=institutional", "--extra", "EMP_TIER=tier_1"]
    code, out, err = run(capsys, *argv, *(a for item in items for a in ("--extra", item)))
    doc = json.loads(out)
    assert (code, doc["dimensions"]) == (0, dimensions)
    assert (doc["should_run"], doc["reason"]) == ((True, None) if dimensions else (False, REASON_NO_DIMENSIONS))
    if warned is None:
        assert err == ""
    else:
        [line] = warnings(err)
        assert warned in line


# ---------------------------------------------------------------------------- --ensure-topics without Kafka


READINESS = ["readiness", "--results", str(COMPAT / "results" / "results_minimal.json"), "--extra",
             "TIMESCALE_FAILOVER_DRILL=true", "--extra", "TIMESCALE_SYMBOLS=EURUSD,GBPUSD"]


@pytest.mark.parametrize(("command", "drill_code"), [(["report"], 0), (READINESS, 1)], ids=["report", "readiness"])
def test_ensure_topics_without_kafka_is_a_note_not_the_end(capsys, command, drill_code):
    """--ensure-topics with no Kafka configured: the whole report (manifest, drill) with a provisioning section
    that says so; no topic declared: the exit code of the rest (readiness: the drill's warn); topics declared
    but impossible to ensure: 3, with the report."""
    redis = f"REDIS_URL=redis://127.0.0.1:{free_port()}/0"
    code, out, err = run(capsys, *command, "--no-env", "--ensure-topics", "--extra", redis)
    doc = json.loads(out)
    section = doc["kafka_topic_provisioning"]
    assert (code, section["error"], section["requested"]) == (drill_code, None, [])
    assert [n["code"] for n in section["notes"]] == ["kafka_not_configured"]
    assert manifest(doc)["redis"]["port"] > 0
    assert (doc["failover_drill"] is not None) is (command is READINESS)
    assert warnings(err) == ["ingest-probe: warning: --ensure-topics: Kafka is not configured (set KAFKA_BROKERS);"
                             " no topic to provision"]
    code, out, err = run(capsys, *command, "--no-env", "--ensure-topics", "--extra", redis, "--extra",
                         "KAFKA_INGEST_TOPICS=daily:bars.daily")
    section = json.loads(out)["kafka_topic_provisioning"]
    assert (code, section["error_kind"], section["requested"]) == (3, "config", ["bars.daily"])
    assert section["plan"][0]["state"] == "unknown"
    assert "ingest-probe: kafka topics [config]: 1 Kafka topic is declared (bars.daily) but no bootstrap" in err


# ------------------------------------------------------------------------------------ the service's defaults


def test_manifest_shows_the_service_defaults_beside_the_probe_identity(capsys):
    """Where a key is unset, the manifest keeps what the probe uses (its own connections identify as
    ingest-probe) and adds the ingest service's value under service_defaults; a set key has none."""
    base = ["report", "--no-env", "--extra", "TIMESCALEDB_HOST=db", "--extra", "REDIS_HOST=cache", "--extra",
            "KAFKA_BROKERS=k:9092"]
    code, out, err = run(capsys, *base)
    assert (code, err) == (0, "")
    m = manifest(json.loads(out))
    assert (m["timescale"]["application_name"], m["timescale"]["service_defaults"]) == (
        "ingest-probe", {"application_name": "emp-timescale-ingest"})
    assert m["redis"]["client_name"] is None
    assert m["redis"]["service_defaults"] == {"client_name": "emp-professional-cache", "policy": {
        "strategy": "institutional", "ttl_seconds": 900, "max_keys": 1024, "namespace": "emp:cache",
        "invalidate_prefixes": []}}
    kafka = m["kafka"]
    assert (kafka["client_id"], kafka["consumer_group"], kafka["streaming_enabled"]) == ("ingest-probe", None, None)
    assert kafka["service_defaults"] == {"client_id": "emp-institutional-ingest", "consumer_group": "emp-ingest-bridge",
                                         "consumer_offset_reset": "latest", "streaming_enabled": True,
                                         "consumer_enabled": True}
    code, out, _ = run(capsys, *base, "--extra", "TIMESCALEDB_URL=postgresql://db/x?application_name=loader",
                       "--extra", "REDIS_CLIENT_NAME=c", "--extra", "REDIS_CACHE_STRATEGY=bootstrap",
                       "--extra", "KAFKA_CLIENT_ID=k", "--extra", "KAFKA_INGEST_CONSUMER_GROUP=g", "--extra",
                       "KAFKA_INGEST_CONSUMER_OFFSET_RESET=earliest", "--extra", "KAFKA_INGEST_ENABLE_STREAMING=n",
                       "--extra", "KAFKA_INGEST_CONSUMER_ENABLED=y")
    m = manifest(json.loads(out))
    assert [m[k]["service_defaults"] for k in ("timescale", "redis", "kafka")] == [{}, {}, {}]
    assert (m["kafka"]["streaming_enabled"], m["kafka"]["consumer_enabled"]) == (False, True)
    assert m["timescale"]["application_name"] == "loader"


# ------------------------------------------------------------------------------- live: the files as shipped


def live_copy(path: Path, tmp_path: Path, replace: dict[str, str]) -> Path:
    """``path`` with its endpoints and topic names replaced (every other line as shipped)."""
    text = path.read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    copy = tmp_path / path.name
    copy.write_text(text)
    return copy


@pytest.mark.live
def test_dev_env_file_against_real_servers_provisions_and_checks_every_service_topic(
        capsys, tmp_path, pg_server, redis_server, kafka_broker):
    """The dev env file pointed at real servers: `report --connectivity --ensure-topics` creates the default,
    consumer, health, metrics and quality topics and the Kafka probe finds them all; every connector ok."""
    suffix = uuid.uuid4().hex[:8]
    env = live_copy(DEV_ENV, tmp_path, {
        "postgresql+psycopg2://emp_user:emp_password@localhost:5432/emp_db": pg_server.dsn(),
        "redis://localhost:6379/0": f"redis://127.0.0.1:{redis_server.port}/0",
        "localhost:9094": kafka_broker.bootstrap, "telemetry.ingest": f"telemetry.{suffix}",
    })
    code, out, err = run(capsys, "report", "--no-env", "--env-file", str(env), "--connectivity", "--ensure-topics",
                         "--timeout", "10")
    doc = json.loads(out)
    wanted = sorted(f"telemetry.{suffix}{end}" for end in ("", ".health", ".metrics", ".quality"))
    assert (code, doc["status"]) == (0, "ok"), err
    assert sorted(doc["kafka_topic_provisioning"]["created"]) == wanted
    kafka = {r["name"]: r for r in doc["connectivity"]}["kafka"]
    assert (kafka["details"]["topics_present"], kafka["details"]["topics_missing"]) == (wanted, [])
    assert not unknown(err)


@pytest.mark.live
def test_process_environment_topic_is_probed_but_only_created_when_declared_explicitly(
        capsys, tmp_path, monkeypatch, kafka_broker):
    """A KAFKA_INGEST_TOPIC_<DIM> only in the process environment: --ensure-topics skips it (exit 1: it is
    still missing; a note and a stderr line say why); the same key from --extra creates it."""
    topic = f"stray.{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(os, "environ", {"KAFKA_BROKERS": kafka_broker.bootstrap, "KAFKA_INGEST_TOPIC_STRAY": topic})
    code, out, err = run(capsys, "report", "--ensure-topics", "--timeout", "10")
    section = json.loads(out)["kafka_topic_provisioning"]
    assert (code, section["created"], section["requested"]) == (1, [], [topic])
    assert section["plan"][0]["changes"][0]["status"] == "skipped"
    reason = ("declared only by KAFKA_INGEST_TOPIC_STRAY from the process environment: set it in an env file, the"
              " YAML file or --extra to create it")
    assert section["plan"][0]["changes"][0]["reason"] == reason
    assert [n["code"] for n in section["notes"]] == ["env_only_topic"]
    assert f"ingest-probe: kafka topic {topic}: not created: {reason}" in err
    assert topic not in kafka_broker.list_topics()
    code, out, err = run(capsys, "report", "--ensure-topics", "--timeout", "10", "--extra",
                         f"KAFKA_INGEST_TOPIC_STRAY={topic}")
    assert (code, json.loads(out)["kafka_topic_provisioning"]["created"]) == (0, [topic]), err
