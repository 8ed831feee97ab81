"""Reading raw configuration: precedence, origins, YAML shapes, dotenv parsing, --extra and warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import load_config

from ingest_probe.config.sources import RawConfig, Source
from ingest_probe.errors import ConfigError
from ingest_probe.secret import Secret
from ingest_probe.settings.service import key_registry, load_settings

KEY = "TIMESCALE_LOOKBACK_DAYS"  # default 60


KEYS = key_registry()


def write(path: Path, *lines: str) -> Path:
    """Write ``lines`` to ``path``, each ended by a newline."""
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "yaml": write(tmp_path / "c.yaml", f"{KEY}: 10"),
        "env1": write(tmp_path / "a.env", f"{KEY}=30"),
        "env2": write(tmp_path / "b.env", "# comment", f"{KEY}=40"),
    }


def value(raw: RawConfig, key: str = KEY) -> tuple[str, Source, str]:
    rv = raw.values[key]
    return rv.value, rv.origin.source, rv.origin.location


# ------------------------------------------------------------------------------------------ precedence


def test_default_when_nothing_is_given() -> None:
    """With no sources a key with a default has it, recorded as the default."""
    assert value(load_config()) == ("60", Source.DEFAULT, "default")


def test_yaml_beats_default(files: dict[str, Path]) -> None:
    """A YAML value overrides the built-in default and records file:line."""
    raw = load_config(config_file=files["yaml"])
    assert value(raw) == ("10", Source.YAML, f"{files['yaml']}:1")


def test_env_beats_yaml(files: dict[str, Path]) -> None:
    """The process environment overrides YAML."""
    raw = load_config(config_file=files["yaml"], environ={KEY: "20"})
    assert value(raw) == ("20", Source.ENV, "env")


def test_env_file_beats_env(files: dict[str, Path]) -> None:
    """An --env-file overrides the process environment, with file:line as location."""
    raw = load_config(config_file=files["yaml"], environ={KEY: "20"}, env_files=[files["env1"]])
    assert value(raw) == ("30", Source.ENV_FILE, f"{files['env1']}:1")


def test_later_env_file_beats_earlier(files: dict[str, Path]) -> None:
    """Of several --env-file, the later one wins."""
    raw = load_config(env_files=[files["env1"], files["env2"]])
    assert value(raw) == ("40", Source.ENV_FILE, f"{files['env2']}:2")


def test_extra_beats_everything(files: dict[str, Path]) -> None:
    """--extra overrides every other source."""
    raw = load_config(
        config_file=files["yaml"], environ={KEY: "20"}, env_files=[files["env1"]], extras=[f"{KEY}=50"]
    )
    assert value(raw) == ("50", Source.EXTRA, "--extra")


def test_extra_can_set_mode_and_tier() -> None:
    """--extra sets DATA_BACKBONE_MODE and EMP_TIER like any other key."""
    s = load_settings(extras=["DATA_BACKBONE_MODE=institutional", "EMP_TIER=tier_1"])
    assert (s.plan.mode, s.plan.tier, s.plan.mode_inferred) == ("institutional", "tier_1", False)
    assert s.origins["EMP_TIER"].source is Source.EXTRA


def test_yaml_nested_sections_beat_top_level(tmp_path: Path) -> None:
    """system_config beats top-level keys, extras beats system_config, system_config.extras beats both."""
    path = write(
        tmp_path / "c.yaml",
        "TIMESCALE_LOOKBACK_DAYS: 1",
        "TIMESCALE_INTRADAY_LOOKBACK_DAYS: 1",
        "EMP_TIER: tier_0",
        "TIMESCALE_INGEST_MAX_FAILURES: 1",
        "system_config:",
        "  TIMESCALE_LOOKBACK_DAYS: 2",
        "  TIMESCALE_INTRADAY_LOOKBACK_DAYS: 2",
        "  TIMESCALE_INGEST_MAX_FAILURES: 2",
        "  extras:",
        "    TIMESCALE_INGEST_MAX_FAILURES: 4",
        "extras:",
        "  TIMESCALE_INTRADAY_LOOKBACK_DAYS: 3",
        "  TIMESCALE_INGEST_MAX_FAILURES: 3",
    )
    raw = load_config(config_file=path)
    assert value(raw, "EMP_TIER") == ("tier_0", Source.YAML, f"{path}:3")
    assert value(raw, "TIMESCALE_LOOKBACK_DAYS") == ("2", Source.YAML, f"{path}:6 (system_config)")
    assert value(raw, "TIMESCALE_INTRADAY_LOOKBACK_DAYS") == ("3", Source.YAML, f"{path}:12 (extras)")
    assert value(raw, "TIMESCALE_INGEST_MAX_FAILURES") == (
        "4",
        Source.YAML,
        f"{path}:10 (system_config.extras)",
    )


def test_no_env_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """environ=None (--no-env) reads nothing from os.environ: not a known key set there, not a close miss
    that would warn. The same environment passed as ``environ`` is read (so this can fail)."""
    monkeypatch.setenv(KEY, "7")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/2")
    monkeypatch.setenv("REDIS_URLL", "x")  # a close miss of REDIS_URL: warned about when read
    read = load_config(environ=os.environ)
    assert value(read) == ("7", Source.ENV, "env")
    assert "REDIS_URLL" in " ".join(read.warnings)
    raw = load_config(environ=None)
    assert value(raw) == ("60", Source.DEFAULT, "default")
    assert "REDIS_URL" not in raw.values
    assert all(v.origin.source is not Source.ENV for v in raw.values.values())
    assert raw.warnings == ()


def test_unrelated_environment_variables_change_nothing() -> None:
    """HOME, DATABASE_PASSWORD and friends are never read: the result equals an empty environment."""
    stray = {
        "HOME": "/root",
        "DATABASE_PASSWORD": "x",
        "DATABASE_PASSWORD_X": "y",
        "PATH": "/bin",
        "POSTGRES_HOST": "db",
        "CACHE_PORT": "1",
    }
    assert load_config(environ=stray) == load_config(environ={})
    assert load_settings(environ=stray) == load_settings(environ={})


def test_known_alias_from_environment_is_read() -> None:
    """PGHOST is a documented key: read from the environment, with origin env."""
    s = load_settings(environ={"PGHOST": "db.internal"})
    assert s.timescale.host == "db.internal"
    assert s.origins["PGHOST"].source is Source.ENV


def test_pattern_topic_keys_are_read_from_environment() -> None:
    """KAFKA_INGEST_TOPIC_<DIM>[_PARTITIONS...] are known keys, read from the env without warnings."""
    raw = load_config(
        environ={"KAFKA_INGEST_TOPIC_DAILY_BARS": "bars", "KAFKA_INGEST_TOPIC_DAILY_BARS_PARTITIONS": "3"}
    )
    assert raw.values["KAFKA_INGEST_TOPIC_DAILY_BARS_PARTITIONS"].value == "3"
    assert raw.warnings == ()


# ------------------------------------------------------------------------------------------------ dotenv


def test_dotenv_syntax(tmp_path: Path) -> None:
    """Comments, blanks, export, matching quotes stripped, inline comment if unquoted, no expansion."""
    path = write(
        tmp_path / "x.env",
        "# a comment",
        "",
        "export REDIS_HOST=cache.local",
        "REDIS_CLIENT_NAME='single quoted # kept'",
        'KAFKA_CLIENT_ID="double quoted"  # trailing comment',
        "TIMESCALEDB_APP=$HOME/${USER}",
        "REDIS_PORT=6380  # port",
        "TIMESCALE_SYMBOLS=",
    )
    raw = load_config(env_files=[path])
    got = {k: v.value for k, v in raw.values.items() if v.origin.source is Source.ENV_FILE}
    assert got == {
        "REDIS_HOST": "cache.local",
        "REDIS_CLIENT_NAME": "single quoted # kept",
        "KAFKA_CLIENT_ID": "double quoted",
        "TIMESCALEDB_APP": "$HOME/${USER}",
        "REDIS_PORT": "6380",
        "TIMESCALE_SYMBOLS": "",
    }
    assert raw.values["REDIS_PORT"].origin.location == f"{path}:7"


def test_dotenv_line_without_equals_is_an_error(tmp_path: Path) -> None:
    """A line without '=' is a ConfigError naming file:line."""
    path = write(tmp_path / "bad.env", "REDIS_HOST=x", "JUSTAWORD")
    with pytest.raises(ConfigError, match=rf"^{path}:2: expected KEY=VALUE"):
        load_config(env_files=[path])


def test_dotenv_unterminated_quote_is_an_error(tmp_path: Path) -> None:
    """An unterminated quote is an error naming file:line and key, never a silently odd value."""
    path = write(tmp_path / "bad.env", 'REDIS_PASSWORD="abc')
    with pytest.raises(ConfigError, match=rf"^{path}:1: the value of REDIS_PASSWORD has an unterminated"):
        load_config(env_files=[path])


def test_missing_env_file_is_an_error(tmp_path: Path) -> None:
    """A missing --env-file is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="env file .*nope.env: file not found"):
        load_config(env_files=[tmp_path / "nope.env"])


# -------------------------------------------------------------------------------------------------- YAML


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    """A missing --config is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="config file .*nope.yaml: file not found"):
        load_config(config_file=tmp_path / "nope.yaml")


def test_empty_yaml_is_no_configuration(tmp_path: Path) -> None:
    """An empty YAML file (safe_load → None) is an empty mapping."""
    assert load_config(config_file=write(tmp_path / "e.yaml")) == load_config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected a mapping of KEY: value at the top level, got a list"),
        ("just a string\n", "got a string"),
        ("system_config: [1, 2]\n", "key 'system_config': expected a mapping"),
        ("extras: 3\n", "key 'extras': expected a mapping"),
        ("system_config:\n  extras: x\n", "key 'system_config.extras': expected a mapping"),
        ("REDIS_PORT: {a: 1}\n", ":1: key 'REDIS_PORT': expected a single value, got a mapping"),
        ("system_config:\n  REDIS_PORT: [1, 2]\n", ":2 (system_config): key 'REDIS_PORT': expected a single"),
        ("a: [unclosed\n", "invalid YAML"),
    ],
)
def test_yaml_bad_shapes_are_errors(tmp_path: Path, text: str, message: str) -> None:
    """Non-mapping documents, sections or values are a ConfigError naming the file (and key)."""
    path = write(tmp_path / "c.yaml", *text.splitlines())
    with pytest.raises(ConfigError, match=str(path)) as info:
        load_config(config_file=path)
    assert message in str(info.value)


def test_yaml_values_lists_and_json_mappings(tmp_path: Path) -> None:
    """YAML lists become CSV, booleans true/false, mappings JSON for _CONFIG keys; lowercase keys accepted."""
    path = write(
        tmp_path / "c.yaml",
        "TIMESCALE_SYMBOLS: [EURUSD, GBPUSD]",
        "timescale_enable_macro: yes",
        "TIMESCALEDB_PORT: 6543",
        "KAFKA_INGEST_TOPIC_CONFIG: {cleanup.policy: compact, retention.ms: 1000}",
        "unrelated: {a: 1}",
        "REDIS_HOST: ~",
    )
    raw = load_config(config_file=path)
    assert raw.values["TIMESCALE_SYMBOLS"].value == "EURUSD,GBPUSD"
    assert raw.values["TIMESCALE_ENABLE_MACRO"].value == "true"
    assert raw.values["TIMESCALEDB_PORT"].value == "6543"
    assert (
        raw.values["KAFKA_INGEST_TOPIC_CONFIG"].value == '{"cleanup.policy": "compact", "retention.ms": 1000}'
    )
    assert "REDIS_HOST" not in raw.values
    assert "unrelated" not in raw.values


# ------------------------------------------------------------------------------------------------ extras


def test_extra_without_equals_is_an_error_that_does_not_echo_it() -> None:
    """--extra without '=' is a ConfigError; the argument (maybe a password) is not repeated."""
    with pytest.raises(ConfigError, match=r"^--extra #2: expected KEY=VALUE$"):
        load_config(extras=["REDIS_HOST=x", "hunter2-secret"])


def test_extra_value_may_contain_equals() -> None:
    """Only the first '=' separates key and value."""
    raw = load_config(extras=["REDIS_CLIENT_NAME=a=b"])
    assert raw.values["REDIS_CLIENT_NAME"].value == "a=b"


# ---------------------------------------------------------------------------------------------- warnings


def test_unknown_prefixed_keys_warn_with_suggestion_and_source(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """Unknown keys with our prefixes warn from every source, naming the source and the closest key."""
    yml = write(tmp_path / "w.yaml", "KAFKA_BROKER: x")
    env = write(tmp_path / "w.env", "TIMESCALEDB_PROT=1")
    raw = load_config(
        config_file=yml,
        env_files=[env],
        environ={"REDIS_PORTT": "1", "HOME": "/"},
        extras=["INGEST_PROBE_ZZZ=1", "NOT_OURS=1"],
    )
    assert raw.warnings == (
        f"unknown key KAFKA_BROKER from {yml}:1 is ignored; did you mean KAFKA_BROKERS?",
        "unknown key REDIS_PORTT from env is ignored; did you mean REDIS_PORT?",
        f"unknown key TIMESCALEDB_PROT from {env}:1 is ignored; did you mean TIMESCALEDB_PORT?",
        "unknown key INGEST_PROBE_ZZZ from --extra is ignored; no similar known key",
        "unknown key NOT_OURS from --extra is ignored; no similar known key",
    )


CONTAINER_VARIABLES = ("REDIS_VERSION", "REDIS_DOWNLOAD_URL", "REDIS_DOWNLOAD_SHA", "KAFKA_HOME",
                       "KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS", "KAFKA_LOG4J_OPTS")


def test_container_image_variables_in_the_environment_do_not_warn() -> None:
    """Variables the Redis/Kafka images set (REDIS_VERSION, KAFKA_HEAP_OPTS, ...) are no misspellings: silent."""
    raw = load_config(environ={name: "x" for name in CONTAINER_VARIABLES})
    assert raw.warnings == ()


def test_misspelt_key_in_the_environment_still_warns_with_suggestion() -> None:
    """REDIS_PASWORD in the environment is one letter off REDIS_PASSWORD: it warns and names it."""
    raw = load_config(environ={"REDIS_PASWORD": "hunter2", "KAFKA_HEAP_OPTS": "-Xmx1G"})
    assert raw.warnings == ("unknown key REDIS_PASWORD from env is ignored; did you mean REDIS_PASSWORD?",)


def test_container_variable_in_an_env_file_still_warns(tmp_path: Path) -> None:
    """An env file is written on purpose: KAFKA_HEAP_OPTS there warns, without a far-fetched suggestion."""
    env = write(tmp_path / "k.env", "KAFKA_HEAP_OPTS=-Xmx1G")
    assert load_config(env_files=[env]).warnings == (
        f"unknown key KAFKA_HEAP_OPTS from {env}:1 is ignored; no similar known key",
    )


def test_far_off_key_in_an_env_file_warns_without_suggestion(tmp_path: Path) -> None:
    """A key close to no known key warns with no "did you mean" (REDIS_VERSION is not REDIS_URI)."""
    env = write(tmp_path / "f.env", "REDIS_VERSION=7.2", "KAFKA_OPTS=-Dx=1")
    warnings = load_config(env_files=[env]).warnings
    assert warnings == (
        f"unknown key REDIS_VERSION from {env}:1 is ignored; no similar known key",
        f"unknown key KAFKA_OPTS from {env}:2 is ignored; no similar known key",
    )
    assert not any("did you mean" in w for w in warnings)


def test_closest_known_accepts_one_edit_or_a_high_ratio_only() -> None:
    """One edit (even in a short name) or ratio >= CLOSE_RATIO suggests a key; anything farther suggests none."""
    assert KEYS.closest_known("REDIS_DV") == "REDIS_DB"  # one substitution, ratio only 0.875
    assert KEYS.closest_known("KAFKA_BORKERS") == "KAFKA_BROKERS"  # adjacent swap
    assert KEYS.closest_known("KAFKA_SECURITYPROTOCOL") == "KAFKA_SECURITY_PROTOCOL"
    assert KEYS.closest_known("kafka_client_id") == "KAFKA_CLIENT_ID"
    assert KEYS.closest_known("KAFKA_BROKER_ID") is None  # Kafka images; 0.857 from KAFKA_BROKERS
    assert KEYS.closest_known("REDIS_NAME") is None  # docker links; 0.833 from REDIS_USERNAME


def test_unknown_unprefixed_keys_in_files_are_silent(tmp_path: Path) -> None:
    """Files may hold other applications' keys: no warning unless the key has one of our prefixes."""
    env = write(tmp_path / "o.env", "LOG_LEVEL=debug", "API_TOKEN=x")
    yml = write(tmp_path / "o.yaml", "name: service", "logging: {level: info}")
    assert load_config(config_file=yml, env_files=[env]).warnings == ()


def test_test_suite_variables_do_not_warn() -> None:
    """INGEST_PROBE_TEST_* variables belong to the test suite, not the configuration."""
    assert load_config(environ={"INGEST_PROBE_TEST_KAFKA": "x"}).warnings == ()


# -------------------------------------------------------------------------------------------- registry


def test_registry_names_are_unique_and_secrets_flagged() -> None:
    """Every key and alias appears once; every password-like key is secret."""
    names = [n for spec in KEYS.specs for n in spec.names]
    assert len(names) == len(set(names))
    for spec in KEYS.specs:
        if any(word in spec.name for word in ("PASSWORD", "URL", "BROKERS")):
            assert spec.secret, spec.name


def test_markdown_key_table_lists_every_key() -> None:
    """The README table is generated from the registry and names every key and alias."""
    table = KEYS.markdown_table()
    for spec in KEYS.specs:
        assert f"`{spec.name}`" in table
        for alias in spec.aliases:
            assert f"`{alias}`" in table


def test_readme_key_table_is_the_generated_one() -> None:
    """README.md holds the key table exactly as `python -m ingest_probe.settings --markdown-keys` prints it."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert KEYS.markdown_table() in readme, "regenerate: python -m ingest_probe.settings --markdown-keys"


def test_markdown_keys_command() -> None:
    """python -m ingest_probe.settings --markdown-keys prints the table."""
    out = subprocess.run(
        [sys.executable, "-m", "ingest_probe.settings", "--markdown-keys"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == KEYS.markdown_table()


def test_yaml_scalars_keep_their_source_text(tmp_path: Path) -> None:
    """YAML 1.1 conversions (octal, sexagesimal, 1_000, hex, floats, dates) never change a value."""
    path = write(
        tmp_path / "c.yaml",
        "REDIS_PASSWORD: 0123",
        "TIMESCALEDB_PASSWORD: 1:20",
        "KAFKA_INGEST_TOPIC_DAILY: 1_000",
        "TIMESCALE_SYMBOLS: [0x10, 1.10, 2024-01-01, 'quoted: yes', on]",
        "TIMESCALE_INTRADAY_INTERVAL: 2001-12-14t21:59:43.10-05:00",
        "REDIS_CLIENT_NAME: yes",
        "KAFKA_CLIENT_ID: '0x10'",
        'TIMESCALEDB_APP: "tab\\there"',
    )
    got = {k: v.value for k, v in load_config(config_file=path).values.items() if v.origin.source is Source.YAML}
    assert got == {
        "REDIS_PASSWORD": "0123",
        "TIMESCALEDB_PASSWORD": "1:20",
        "KAFKA_INGEST_TOPIC_DAILY": "1_000",
        "TIMESCALE_SYMBOLS": "0x10,1.10,2024-01-01,quoted: yes,on",
        "TIMESCALE_INTRADAY_INTERVAL": "2001-12-14t21:59:43.10-05:00",
        "REDIS_CLIENT_NAME": "yes",
        "KAFKA_CLIENT_ID": "0x10",
        "TIMESCALEDB_APP": "tab\there",
    }
    s = load_settings(config_file=path, extras=["REDIS_HOST=r", "TIMESCALEDB_HOST=t", "KAFKA_BROKERS=k"])
    assert (s.redis.password, s.timescale.password) == (Secret("0123"), Secret("1:20"))
    assert s.kafka.topic_names == ("1_000",)


def test_yaml_booleans_and_integers_keep_their_meaning(tmp_path: Path) -> None:
    """Bool keys take true/false/yes/no/on/off; int keys take decimal text; hex or 1:20 is an error, not 16/80."""
    path = write(tmp_path / "c.yaml", "TIMESCALE_ENABLE_MACRO: yes", "TIMESCALE_ENABLE_INTRADAY: Off",
                 "REDIS_SSL: TRUE", "TIMESCALE_LOOKBACK_DAYS: 010", "TIMESCALEDB_PORT: 6543")
    s = load_settings(config_file=path, extras=["REDIS_HOST=r", "TIMESCALEDB_HOST=t"])
    assert (s.plan.macro_enabled, s.plan.intraday_enabled, s.redis.tls) == (True, False, True)
    assert (s.plan.lookback_days, s.timescale.port) == (10, 6543)
    for text in ("TIMESCALEDB_PORT: 0x1538", "TIMESCALE_LOOKBACK_DAYS: 1:20"):
        with pytest.raises(ConfigError, match=rf"from {path}:1: expected an integer"):
            load_settings(config_file=write(path, text))


def test_yaml_merge_keys_and_anchors_still_work(tmp_path: Path) -> None:
    """`<<: *anchor` merges (explicit keys win) and aliases resolve, with source text kept."""
    path = write(
        tmp_path / "c.yaml",
        "base: &base {REDIS_PORT: 6380, REDIS_DB: 02}",
        "system_config:",
        "  <<: *base",
        "  REDIS_DB: 3",
        "  REDIS_CLIENT_NAME: &n 007",
        "extras: {KAFKA_CLIENT_ID: *n}",
    )
    raw = load_config(config_file=path)
    assert [raw.values[k].value for k in ("REDIS_PORT", "REDIS_DB", "KAFKA_CLIENT_ID")] == ["6380", "3", "007"]


def test_yaml_topic_config_mapping_keeps_text(tmp_path: Path) -> None:
    """A _CONFIG mapping: JSON numbers/booleans stay typed, anything else stays as written, null is refused."""
    path = write(tmp_path / "c.yaml", "KAFKA_INGEST_TOPIC_CONFIG: {retention.ms: 1000, a: 0x10, b: 1_0, "
                                      "c: true, d: 'x', e: yes}")
    raw = load_config(config_file=path)
    assert raw.values["KAFKA_INGEST_TOPIC_CONFIG"].value == (
        '{"a": "0x10", "b": "1_0", "c": true, "d": "x", "e": "yes", "retention.ms": 1000}'
    )
    with pytest.raises(ConfigError, match="config 'x' must be a string, number or boolean"):
        load_settings(config_file=write(path, "KAFKA_INGEST_TOPIC_CONFIG: {x: ~}"))


def test_markdown_key_table_states_the_precedence_rules() -> None:
    """The key table says aliases rank by name not source, and PG*/DATABASE_URL are whole-group fallbacks."""
    table = KEYS.markdown_table()
    assert "an alias never overrides across sources" in table
    assert "apply only when no `TIMESCALEDB_*`/`TIMESCALE_*` URL or host is set in any source" in table
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "PGSSLROOTCERT",
                "PGSSLCERT", "PGSSLKEY", "DATABASE_URL"):
        assert f"`{key}`" in table.split("### Timescale", 1)[1].split("### Failover standby", 1)[0]
