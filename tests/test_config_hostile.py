"""Hostile configuration input: nothing echoed, one line naming key and source, exit 3, sane ranges, k8s env."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fakes import load_config

from ingest_probe.commands.cli import main
from ingest_probe.config.urls import UrlError
from ingest_probe.connectors.kafka.settings import parse_servers
from ingest_probe.errors import ConfigError
from ingest_probe.secret import Secret
from ingest_probe.settings.service import load_settings

S = "S3cret"  # a planted secret; no piece of it ("3cre") may appear in any message


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def clean(message: str) -> None:
    assert S not in message, message
    assert "3cre" not in message, message
    assert "\n" not in message, message
    assert "\r" not in message, message


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


# ------------------------------------------------------------------------------------ 3. nothing echoed


@pytest.mark.parametrize("line", [
    f"TIMESCALEDB_URL: postgresql://u:{S}@db/x",
    f"TIMESCALEDB_URL: postgresql://u:{S}@db/x?sslmode=require",
    f"REDIS_PASSWORD {S}=x",
    f"REDIS_PASSWORD:{S}=",
    f"{S} REDIS_PASSWORD=x",
    f"export REDIS_PASSWORD {S}",
    f'"REDIS_PASSWORD"={S}',
    f"REDIS-PASSWORD{S}=x",
    f"\ufeffREDIS_PASSWORD{S}=x",
])
def test_malformed_env_file_line_names_file_and_line_never_its_text(tmp_path: Path, line: str) -> None:
    """A line with a malformed key (YAML's ':', a space, a quote) is an error at file:line that quotes nothing."""
    path = write(tmp_path / "prod.env", f"REDIS_HOST=r\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(env_files=[path])
    message = str(info.value)
    clean(message)
    assert message.startswith(f"{path}:2: "), message


def test_yaml_style_env_line_says_what_to_write(tmp_path: Path) -> None:
    """`KEY: value` in an env file names the (known) key and says KEY=VALUE is needed."""
    path = write(tmp_path / "prod.env", f"TIMESCALEDB_URL: postgresql://u:{S}@db/x\n")
    with pytest.raises(ConfigError, match=r"KEY=VALUE.*an env file needs TIMESCALEDB_URL=") as info:
        load_config(env_files=[path])
    clean(str(info.value))


@pytest.mark.parametrize("text", [
    f"REDIS_PASSWORD: *{S}\n",
    f"REDIS_PASSWORD: &{S} x\nKAFKA_PASSWORD: &{S} y\n",
    f'REDIS_PASSWORD: "\\q{S}"\n',
    f"REDIS_PASSWORD: !e!{S} x\n",
    f"REDIS_PASSWORD: {S}: x\n",
    f"REDIS_PASSWORD: [{S}\n",
    f"REDIS_PASSWORD: {S}\n- x\n",
    f"REDIS_PASSWORD: '\x01{S}'\n",
    f"REDIS_PASSWORD: `{S}\n",
    f"REDIS_PASSWORD: |{S}\n  x\n",
    f"%TAG !{S}! tag:x,2000:\n--- {{a: 1}}\n--- {{b: 2}}\n",
    f'REDIS_PASSWORD: "{S}\\x0"\n',
    f"REDIS_PASSWORD: !<{S}%zz> x\n",
    f"--- !{S} x\n",  # not a mapping: its custom tag is not quoted either
])
def test_yaml_errors_never_echo_file_content(tmp_path: Path, text: str) -> None:
    """A YAML syntax error (alias, anchor, escape, tag, control character ...) is file:line and a fixed text."""
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(config_file=path)
    message = str(info.value)
    clean(message)
    assert message.startswith(f"{path}"), message


@pytest.mark.parametrize(("password", "message", "expected"), [
    ("ab", "invalid username-password pair or user is disabled.",
     "invalid username-password pair or user is disabled."),
    ("a", "AUTH failed for alice: wrong password 'a'", "AUTH failed for alice: wrong password '***'"),
    ("dis", "user is disabled (password dis)", "user is disabled (password ***)"),
    ("xy7", r"SaslAuthenticateRequest(sasl_auth_bytes=b'user\x00user\x00xy7')",
     r"SaslAuthenticateRequest(sasl_auth_bytes=b'user\x00user\x00***')"),
    ("pw", "connect to redis://u:pw@host:6379/0 failed", "connect to redis://u:***@host:6379/0 failed"),
    ("pw", "bad DSN password=pw host=h", "bad DSN password=*** host=h"),
    ("zz", "dsn contains password=other, pwd=zz!", "dsn contains password=***, pwd=***"),
    ("p\\q", "password \"p\\q\" (repr 'p\\\\q')", "password \"***\" (repr '***')"),
    ("p@1", "{\"user\": \"u\\u0000p@1\"} dsn=postgres://db?x=p%401", "{\"user\": \"u\\u0000***\"} dsn=postgres://db?x=***"),
])
def test_driver_message_redaction_is_by_position_not_substring(password: str, message: str, expected: str) -> None:
    """A short password is masked only as a whole token (or where a URL/key=value puts a secret), never
    inside another word ("dis***led")."""
    from ingest_probe.connectors._net import one_line

    assert one_line(message, secrets=[Secret(password)]) == expected


def test_comma_in_a_kafka_url_password_stays_in_the_password() -> None:
    """`sasl_plaintext://kuser:12,34@host:9092`: one server, the whole password, nothing of it shown anywhere."""
    s = load_settings(extras=[f"KAFKA_BROKERS=sasl_plaintext://kuser:{S}1,{S}2@host:9092,h2"])
    assert s.kafka.bootstrap_servers == ("host:9092", "h2:9092")
    assert (s.kafka.username, s.kafka.password) == ("kuser", Secret(f"{S}1,{S}2"))
    assert s.kafka.security_protocol == "SASL_PLAINTEXT"
    clean(repr(s) + " ".join(" ".join(row) for row in s.effective))
    assert parse_servers("kafka://u:a,b,c@h1,kafka://u:a,b,c@h2:9093").servers == ("h1:9092", "h2:9093")
    assert parse_servers("u%2C:p%2Cq@h").password == "p,q"


@pytest.mark.parametrize("value", [
    f"h0:9092,u:{S}@h1",  # without a scheme a ',' before '@' cannot be told from a server list
    f"u:{S},x@h1",
    f"sasl_ssl://u:{S}@h0,x@h1",  # two '@' with a ',' between: refused, not guessed
])
def test_ambiguous_credentials_in_a_bootstrap_list_are_refused(value: str) -> None:
    """Where a ',' may belong to a password or separate servers, the value is refused without quoting it."""
    with pytest.raises(UrlError) as info:
        parse_servers(value)
    clean(str(info.value))
    assert "%2C" in str(info.value)


@pytest.mark.parametrize("value", [f"postgresql//u:{S}://h/d", f"rediss:/{S}://h", f"{S}x:y://h/d"])
def test_an_unsupported_scheme_is_quoted_only_when_it_looks_like_one(value: str) -> None:
    """A mangled scheme (a missing ':', part of a password before '://') is described, not quoted."""
    with pytest.raises(ConfigError) as info:
        load_settings(extras=[f"TIMESCALEDB_URL={value}"])
    clean(str(info.value))


def test_unknown_key_that_is_not_a_variable_name_is_not_echoed(tmp_path: Path) -> None:
    """`--extra "REDIS_PASSWORD S3cret=x"` or such a YAML key: the warning names the place, not the text."""
    with pytest.raises(ConfigError) as info:
        load_config(extras=[f"REDIS_PASSWORD {S}=x"])
    clean(str(info.value))
    raw = load_config(config_file=write(tmp_path / "c.yaml", f"REDIS_PASSWORD {S}: x\n"),
                      environ={f"REDIS_PASSWORD {S}": "x"})
    assert raw.warnings
    for warning in raw.warnings:
        clean(warning)


# ---------------------------------------------------------------------------------------- 5. bad input

def laughs(levels: int) -> str:
    """``l0`` holds 9 scalars, each further level 9 aliases of the one before: 9**(levels+1) when expanded."""
    text = "l0: &l0 [x, x, x, x, x, x, x, x, x]\n"
    return text + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, levels + 1))


BOMBS = {
    "sequence": laughs(9) + "KAFKA_INGEST_TOPIC_CONFIG: {a: *l9}\n",
    "merge": "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9}\n"
             + "".join(f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}\n" for i in range(1, 10))
             + "system_config: {<<: *m9}\n",
    "echo": laughs(4) + "KAFKA_INGEST_TOPIC_CONFIG: {a: *l4}\n",  # small enough to expand: a huge error
    "recursive": "a: &a [*a]\nKAFKA_INGEST_TOPIC_CONFIG: {x: *a}\n",
    "deep": "KAFKA_INGEST_TOPIC_CONFIG: " + "[" * 600 + "]" * 600 + "\n",  # refused while scanning
    "deep-block": "a:\n" + "- " * 2000 + "x\n",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_yaml_alias_bombs_and_deep_nesting_are_refused_at_once(tmp_path: Path, name: str) -> None:
    """Billion laughs (sequences, merge keys), a recursive alias or deep nesting: a short error, not 40 s."""
    path = write(tmp_path / "bomb.yaml", BOMBS[name])
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=path)
    message = str(info.value)
    assert message.startswith(f"{path}"), message
    assert len(message) < 300, len(message)
    if name == "deep":  # cut by the scanner guard: PyYAML alone takes ~2 s for 5,000 '[' (quadratic)
        assert "more than 50 levels" in message, message


def test_merge_keys_within_the_expansion_budget_still_work(tmp_path: Path) -> None:
    """A realistic `<<: *base` stays supported, and a big file without aliases is never refused: the budget
    counts what aliases add beyond the file's own values."""
    path = write(tmp_path / "c.yaml", "base: &b {REDIS_PORT: 6380, REDIS_DB: 2}\n"
                 + "".join(f"s{i}: {{<<: *b}}\n" for i in range(200)) + "system_config: {<<: *b}\n")
    assert load_config(config_file=path).values["REDIS_PORT"].value == "6380"
    big = write(tmp_path / "big.yaml", "".join(f"KAFKA_INGEST_TOPIC_D{i}: t{i}\n" for i in range(6000)))
    assert len(load_config(config_file=big).values) > 6000


def test_every_echoed_value_is_capped(tmp_path: Path) -> None:
    """A 10 KB bad value is echoed as at most ~80 characters in every error that quotes a value."""
    long = "x" * 10_000
    for extra in (f"REDIS_PORT={long}", f"KAFKA_INGEST_TOPICS=daily:{long}!", f"KAFKA_INGEST_TOPICS={long}",
                  f'KAFKA_INGEST_TOPIC_CONFIG={{"{long}": [1]}}', f"KAFKA_INGEST_TOPIC_CONFIG={long}",
                  f"KAFKA_INGEST_TOPIC_DAILY={long}!", f"TIMESCALEDB_HOST={long}", f"REDIS_SSL={long}"):
        with pytest.raises(ConfigError) as info:
            load_settings(extras=["KAFKA_BROKERS=k", extra])
        assert len(str(info.value)) < 300, (extra[:40], len(str(info.value)))


# Values every key of the kind refuses (key -> values); each is tried from every source below.
NASTY: dict[str, tuple[str, ...]] = {
    "REDIS_PORT": ("²", "٣", "１", "65536", "0", "-1", "1e3", "0x10", "9" * 40, "nan", "1 2"),
    "REDIS_DB": ("²", "٣", "-1", "9" * 40),
    "TIMESCALE_LOOKBACK_DAYS": ("٣", "0", "9" * 40),
    "KAFKA_INGEST_TOPIC_PARTITIONS": ("2147483647", "10001", "0", "²"),
    "KAFKA_INGEST_TOPIC_REPLICATION_FACTOR": ("32768", "0"),
    "KAFKA_INGEST_TOPIC_DAILY_PARTITIONS": ("²", "99999"),
    "TIMESCALE_INGEST_INTERVAL_SECONDS": ("59.5", "9" * 20),  # below 60 is raised to 60 (a warning)
    "TIMESCALEDB_CONNECT_TIMEOUT": ("nan", "inf", "-inf", "1e300", "1e309", "٣", "1_0", "0", "-1", "0x1p3"),
    "REDIS_SOCKET_TIMEOUT": ("NaN", "Infinity", "1e99"),
    "REDIS_SSL": ("²", "maybe", "tru"),
    "KAFKA_SECURITY_PROTOCOL": ("ＳＳＬ", "tls"),
    "TIMESCALEDB_URL": ("postgresql://u:p@h:²/d", "postgresql://h:٣/d", "postgresql://h/d?port=²",
                        "postgresql://h/d?connect_timeout=nan", "postgresql://h/d?connect_timeout=1e300",
                        "postgresql://h/d?connect_timeout=٣", "sqlite:///:memory:", "postgresql://[::1/d",
                        "postgresql://h:65536/d"),
    "REDIS_URL": ("redis://h/²", "redis://h:²", "redis://h/٣", "redis://h/" + "9" * 40, "redis://h/?db=²",
                  "redis://h:0"),
    "KAFKA_BROKERS": ("h:²", "h:٣", "h:65536", "kafka://h:²", "h:0"),
    "REDIS_HOST": ("²", "a b"),
    "KAFKA_INGEST_TOPIC_CONFIG": ("[" * 100_000, '{"a": NaN}', "[1]"),
    "KAFKA_INGEST_TOPICS": ("daily:a b", "daily:" + "a" * 300),
    "REDIS_CLIENT_NAME": ("a\x1b[2Jb", "\x7f", "a\u2028b"),
    "REDIS_PASSWORD": (),  # a secret: only the characters no value may hold, and never echoed
}
#: Characters no value may hold, whatever its kind: tried on every key above.
EVERYWHERE = ("1\x002", "\x1b[31m", "\udcff1", "1\ufeff")
KEY_OF = {"REDIS_PORT": "REDIS_HOST=r", "REDIS_DB": "REDIS_HOST=r", "REDIS_SSL": "REDIS_HOST=r",
          "REDIS_SOCKET_TIMEOUT": "REDIS_HOST=r", "REDIS_CLIENT_NAME": "REDIS_HOST=r", "REDIS_PASSWORD": "REDIS_HOST=r"}
SECRET_KEYS = ("REDIS_PASSWORD", "TIMESCALEDB_URL", "REDIS_URL", "KAFKA_BROKERS")
CASES = [(key, value) for key, values in NASTY.items() for value in (*values, *EVERYWHERE)]


def _config_args(tmp_path: Path, source: str, key: str, value: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    if source == "extra":
        return ["--no-env", "--extra", f"{key}={value}"]
    if source == "env":
        monkeypatch.setattr(os, "environ", {key: value})
        return []
    if source == "env-file":
        return ["--no-env", "--env-file", str(write(tmp_path / "x.env", f"A_B=1\n{key}={value}\n"))]
    return ["--no-env", "--config", str(write(tmp_path / "x.yaml", f"a: 1\n{key}: {json.dumps(value)}\n"))]


@pytest.mark.parametrize("source", ["extra", "env", "env-file", "yaml"])
def test_nasty_values_from_every_source_are_one_line_naming_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """Every refused value of every key kind, from every source: exit 3, one stderr line naming the key."""
    failures = []
    for key, value in CASES:
        if source == "env" and "\x00" in value:
            continue  # a process environment cannot hold NUL
        if source == "env-file" and value.startswith("["):
            value = json.dumps(value)  # dotenv: a quoted value
        args = _config_args(tmp_path, source, key, value, monkeypatch)
        code, out, err = run(capsys, "config", *args, "--extra", KEY_OF.get(key, "A_B=1"))
        lines = err.splitlines()
        ok = (code == 3 and len(lines) == 1 and lines[0].startswith("ingest-probe: error: ")
              and key in lines[0] and "internal error" not in err and "Traceback" not in err and out == ""
              and (key not in SECRET_KEYS or f"{key}='" not in lines[0]))  # a secret's value: never quoted
        if not ok:
            failures.append((key, value[:20], code, err[:200]))
    assert not failures, failures


def test_a_control_character_in_a_yaml_file_names_file_line_and_key(tmp_path: Path) -> None:
    """A raw control character (which YAML forbids) is file:line plus the key on that line, not a ReaderError."""
    for text in ("a: 1\nREDIS_PORT: 1\x012\n", "a: 1\nREDIS_PORT: \udcff\n"):
        path = write(tmp_path / "c.yaml", text)
        with pytest.raises(ConfigError, match=rf"^{path}:2: ") as info:
            load_config(config_file=path)
        clean(str(info.value))
        assert "REDIS_PORT" in str(info.value)


@pytest.mark.parametrize(("flag", "value"), [
    ("--timeout", "1e300"), ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "0"), ("--timeout", "٣"),
    ("--jitter", "nan"), ("--splay", "nan"), ("--splay", "1e9"),
])
def test_report_flags_refuse_absurd_numbers(capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    """--timeout/--jitter/--splay: NaN, infinity, 1e300 are a one-line usage error (exit 3) naming the flag."""
    code, out, err = run(capsys, "report", "--no-env", "--connectivity", flag, value)
    assert (code, out) == (3, "")
    assert len(err.splitlines()) == 1, err
    assert flag in err, err
    assert "internal error" not in err, err


@pytest.mark.parametrize(("flag", "value"), [
    ("--interval", "inf"), ("--interval", "1e300"), ("--jitter-seconds", "nan"), ("--jitter-seconds", "1e300"),
    ("--timeout", "nan"),
])
def test_watch_flags_refuse_absurd_numbers(capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    """watch --interval/--jitter-seconds/--timeout: the same shared validated number type."""
    code, out, err = run(capsys, "watch", "--no-env", "--once", flag, value)
    assert (code, out) == (3, "")
    assert len(err.splitlines()) == 1, err
    assert flag in err, err
    assert "internal error" not in err, err


def test_topics_timeout_refuses_absurd_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    """topics plan --timeout 1e300 is a usage error too."""
    code, _, err = run(capsys, "topics", "plan", "--no-env", "--timeout", "1e300")
    assert code == 3
    assert "--timeout" in err


def test_every_error_message_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A file name with a newline, or a click message of several lines, still ends up as one stderr line."""
    (tmp_path / "a\nb").write_text("")
    for argv in (["config", "--no-env", "--env-file", str(tmp_path / "a\nb.env")],
                 ["config", "--no-env", "--config", str(tmp_path / "a\nb.yaml")],
                 ["report", "--no-env", "--output", str(tmp_path / "a\nb" / "r.json")],  # not a directory
                 ["repot"]):
        code, _, err = run(capsys, *argv)
        assert code == 3
        assert len(err.splitlines()) == 1, err
    assert "\n" not in str(ConfigError("a\nb"))


# ------------------------------------------------------------------------------------- 6. environment

K8S = {
    "REDIS_PORT": "tcp://127.0.0.11:6379", "REDIS_SERVICE_HOST": "127.0.0.11", "REDIS_SERVICE_PORT": "6379",
    "REDIS_PORT_6379_TCP": "tcp://127.0.0.11:6379", "REDIS_PORT_6379_TCP_ADDR": "127.0.0.11",
    "REDIS_PORT_6379_TCP_PORT": "6379", "REDIS_PORT_6379_TCP_PROTO": "tcp",
    "TIMESCALEDB_PORT": "tcp://127.0.0.12:5432", "TIMESCALEDB_SERVICE_HOST": "127.0.0.12",
    "KAFKA_PORT": "tcp://127.0.0.13:9092", "KAFKA_SERVICE_PORT_BROKER": "9092",
    "KAFKA_INGEST_TOPIC_PORT_9092_TCP_ADDR": "127.0.0.14",
}


def test_kubernetes_service_links_in_the_environment_are_ignored_with_one_warning(tmp_path: Path) -> None:
    """`REDIS_PORT=tcp://…` and the other service-link variables of a pod: one warning, the env file decides."""
    env = write(tmp_path / "prod.env", "REDIS_URL=redis://cache:6380/1\nTIMESCALEDB_HOST=db\n")
    s = load_settings(env_files=[env], environ=K8S)
    assert (s.redis.host, s.redis.port, s.timescale.port) == ("cache", 6380, 5432)
    assert s.kafka.topics == ()
    assert len(s.warnings) == 1, s.warnings
    assert "REDIS_PORT" in s.warnings[0]
    assert "TIMESCALEDB_PORT" in s.warnings[0]
    assert "Kubernetes" in s.warnings[0]
    assert "127.0.0.11" not in s.warnings[0]


@pytest.mark.parametrize("where", ["env-file", "extra"])
def test_a_service_link_port_from_an_explicit_source_stays_an_error(tmp_path: Path, where: str) -> None:
    """Written into an env file or --extra on purpose, `REDIS_PORT=tcp://…` is still a bad port."""
    kwargs: dict[str, object] = {"extras": ["REDIS_HOST=r", "REDIS_PORT=tcp://127.0.0.11:6379"]}
    if where == "env-file":
        kwargs = {"env_files": [write(tmp_path / "x.env", "REDIS_HOST=r\nREDIS_PORT=tcp://127.0.0.11:6379\n")]}
    with pytest.raises(ConfigError, match="REDIS_PORT"):
        load_settings(**kwargs)  # type: ignore[arg-type]


def test_a_lower_source_part_never_retargets_a_higher_source_redis_url(tmp_path: Path) -> None:
    """REDIS_HOST/PORT/DB/SSL left in the shell do not override REDIS_URL from --env-file; each is warned about."""
    env = write(tmp_path / "prod.env", "REDIS_URL=redis://u:pw@cache:6380/1\n")
    s = load_settings(env_files=[env], environ={"REDIS_HOST": "stray", "REDIS_PORT": "7000", "REDIS_DB": "5",
                                                "REDIS_SSL": "true", "REDIS_PASSWORD": "old"})
    assert (s.redis.host, s.redis.port, s.redis.db, s.redis.tls) == ("cache", 6380, 1, False)
    assert s.redis.password == Secret("pw")
    for key in ("REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_SSL", "REDIS_PASSWORD"):
        assert any(w.startswith(f"{key} from env is ignored") for w in s.warnings), (key, s.warnings)
    rows = {row.key: row for row in s.effective}
    assert "ignored" in rows["REDIS_HOST"].source
    assert rows["REDIS_PORT"].source == "env (ignored: REDIS_URL from a higher source sets it)"


def test_a_lower_source_part_fills_in_what_the_url_leaves_out(tmp_path: Path) -> None:
    """A password from the environment still completes a REDIS_URL without one from --env-file."""
    env = write(tmp_path / "prod.env", "REDIS_URL=redis://cache\n")
    s = load_settings(env_files=[env], environ={"REDIS_PASSWORD": "pw", "REDIS_PORT": "7000"})
    assert (s.redis.host, s.redis.port, s.redis.password) == ("cache", 7000, Secret("pw"))
    assert not s.warnings


def test_a_same_or_higher_source_part_still_overrides_the_redis_url(tmp_path: Path) -> None:
    """--extra REDIS_HOST beats REDIS_URL from the env file (higher source), as does a part in the same file."""
    env = write(tmp_path / "prod.env", "REDIS_URL=redis://cache:6380/1\nREDIS_DB=2\n")
    s = load_settings(env_files=[env], extras=["REDIS_HOST=other"])
    assert (s.redis.host, s.redis.port, s.redis.db) == ("other", 6380, 2)


def test_timescale_url_is_the_whole_target_in_both_directions(tmp_path: Path) -> None:
    """TIMESCALEDB_URL wins over TIMESCALEDB_HOST from a lower source and, with a warning, from a higher one."""
    env = write(tmp_path / "prod.env", "TIMESCALEDB_URL=postgresql://u@db:5433/x\n")
    s = load_settings(env_files=[env], environ={"TIMESCALEDB_HOST": "stray", "TIMESCALEDB_PORT": "1"})
    assert (s.timescale.host, s.timescale.port) == ("db", 5433)
    assert any(w.startswith("TIMESCALEDB_HOST from env is ignored") for w in s.warnings)
    s = load_settings(env_files=[env], extras=["TIMESCALEDB_HOST=other"])
    assert s.timescale.host == "db"
    assert any(w.startswith("TIMESCALEDB_HOST from --extra is ignored") for w in s.warnings)


def test_kafka_credentials_follow_the_same_rule_as_url_parts(tmp_path: Path) -> None:
    """KAFKA_USERNAME/PASSWORD from a lower source never override KAFKA_BROKERS URL credentials; higher ones do."""
    env = write(tmp_path / "prod.env", "KAFKA_BROKERS=sasl_ssl://svc:pw@k1:9093\n")
    s = load_settings(env_files=[env], environ={"KAFKA_USERNAME": "old", "KAFKA_PASSWORD": "old",
                                                "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    assert (s.kafka.username, s.kafka.password, s.kafka.security_protocol) == ("svc", Secret("pw"), "SASL_SSL")
    assert any(w.startswith("KAFKA_USERNAME from env is ignored") for w in s.warnings)
    s = load_settings(env_files=[env], extras=["KAFKA_USERNAME=new", "KAFKA_PASSWORD=np"])
    assert (s.kafka.username, s.kafka.password) == ("new", Secret("np"))


def test_sqlite_memory_url_is_a_config_error() -> None:
    """`sqlite:///:memory:` is not a file named ':memory:': a rehearsal needs a file, so it is refused."""
    with pytest.raises(ConfigError, match=r"TIMESCALEDB_URL=.*in-memory"):
        load_settings(extras=["TIMESCALEDB_URL=sqlite:///:memory:"])


@pytest.mark.parametrize(("extras", "named"), [
    (["KAFKA_BROKERS=k", "KAFKA_USERNAME=u"], ("KAFKA_USERNAME", "KAFKA_PASSWORD")),
    (["KAFKA_BROKERS=kafka://u@k"], ("KAFKA_BROKERS", "KAFKA_PASSWORD")),
    (["KAFKA_BROKERS=k", "KAFKA_PASSWORD=p"], ("KAFKA_PASSWORD", "KAFKA_USERNAME")),
])
def test_kafka_half_credentials_warn(extras: list[str], named: tuple[str, ...]) -> None:
    """A Kafka user without a password (or the reverse) no longer stays PLAINTEXT silently: one warning line."""
    s = load_settings(extras=extras)
    assert s.kafka.security_protocol == "PLAINTEXT"
    assert len(s.warnings) == 1, s.warnings
    assert all(name in s.warnings[0] for name in named), s.warnings
