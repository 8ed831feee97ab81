"""A canary secret planted in every secret-bearing key and source never appears in any rendering."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest
from fakes import load_config

from ingest_probe.errors import ConfigError
from ingest_probe.secret import Secret
from ingest_probe.settings.service import Settings, load_settings

C = "CANARY-s3cr3t-7f1d"


def texts(obj: object) -> list[str]:
    """repr and str of an object and, recursively, of every field, item and value in it."""
    out = [repr(obj), str(obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            out += texts(getattr(obj, f.name))
    elif isinstance(obj, tuple | list):
        for item in obj:
            out += texts(item)
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            out += [str(key), *texts(value)]
    return out


def renderings(s: Settings) -> list[str]:
    out = texts(s) + list(s.warnings)
    targets = [s.timescale, *([s.failover.target] if s.failover.target else [])]
    out += [str(t.redacted_url()) for t in targets] + [str(t.endpoint) for t in targets]
    out += [str(s.redis.redacted_url()), str(s.redis.endpoint), ",".join(s.kafka.bootstrap_servers)]
    out += [" ".join(row) for row in s.effective]
    return out


def assert_clean(s: Settings) -> None:
    leaks = [text for text in renderings(s) if C in text or "s3cr3t" in text]
    assert not leaks, leaks[:3]


def secrets(s: Settings) -> list[Secret | None]:
    ts, fo, rs, ks = s.timescale, s.failover.target, s.redis, s.kafka
    found = [ts.password, ts.sslpassword, rs.password, ks.password]
    if fo is not None:
        found += [fo.password, fo.sslpassword]
    return found


# ----------------------------------------------------------------------------------------- issue's cases


@pytest.mark.parametrize("password", [f"{C}@x", f"{C}:x", f"{C}/x", f"a@{C}:/b@c", f"{C}?x", f"{C}#x"])
def test_password_with_reserved_characters_never_leaks(password: str) -> None:
    """A raw '@', ':', '/', '?' or '#' in a URL password is kept whole in the Secret, never rendered."""
    s = load_settings(extras=[f"TIMESCALEDB_URL=postgresql://user:{password}@db.example.com:5432/ingest"])
    assert_clean(s)
    assert s.timescale.password == Secret(password)
    assert s.timescale.redacted_url() == "postgresql://user:***@db.example.com:5432/ingest"


def test_user_only_url_renders_correctly() -> None:
    """A user-only URL renders as postgresql://user@host:5432/db (no stray ':' or '***')."""
    s = load_settings(extras=["TIMESCALEDB_URL=postgresql://user@host/db"])
    assert s.timescale.redacted_url() == "postgresql://user@host:5432/db"
    assert ("TIMESCALEDB_URL", "postgresql://user@host:5432/db", "--extra") in s.effective


def test_query_password_and_sslpassword_never_leak() -> None:
    """?password= and sslpassword= in the query are secrets, not rendered parts."""
    s = load_settings(extras=[f"TIMESCALEDB_URL=postgres://u@h/d?password={C}&sslpassword={C}2&sslmode=require"])
    assert_clean(s)
    assert (s.timescale.password, s.timescale.sslpassword) == (Secret(C), Secret(f"{C}2"))
    assert s.timescale.redacted_url() == "postgresql://u:***@h:5432/d?sslmode=require"


def test_kafka_url_credentials_never_leak() -> None:
    """Credentials inside KAFKA_URL are used but never rendered (servers, rows, repr)."""
    s = load_settings(extras=[f"KAFKA_URL=SASL_SSL://svc:{C}@b1.example.com:9093,b2.example.com"])
    assert_clean(s)
    assert s.kafka.password == Secret(C)
    assert ("KAFKA_URL", "b1.example.com:9093,b2.example.com:9092", "--extra") in s.effective


def test_redis_url_query_password_never_leaks() -> None:
    """REDIS_URL with ?password= renders without it."""
    s = load_settings(extras=[f"REDIS_URL=rediss://cache:6380/2?password={C}"])
    assert_clean(s)
    assert s.redis.redacted_url() == "rediss://:***@cache:6380/2"
    assert s.redis.password == Secret(C)


# ---------------------------------------------------------------------------- every key, every source

SECRET_VALUES = {
    "TIMESCALEDB_PASSWORD": C, "TIMESCALEDB_SSLPASSWORD": C, "TIMESCALEDB_HOST": "db",
    "TIMESCALEDB_FAILOVER_URL": f"postgresql://u:{C}@standby/db?sslpassword={C}",
    "REDIS_HOST": "cache", "REDIS_PASSWORD": C, "KAFKA_BROKERS": f"kafka://u:{C}@k:9092",
    "KAFKA_PASSWORD": C,
}
SHADOWED = {"PGPASSWORD": f"{C}-pg", "REDIS_PASS": f"{C}-alias", "DATABASE_URL": f"postgresql://x:{C}@h/d",
            "KAFKA_URL": f"kafka://v:{C}@k2"}


def _write_sources(tmp_path: Path, values: dict[str, str], source: str) -> dict[str, object]:
    if source == "yaml":
        path = tmp_path / "c.yaml"
        path.write_text("system_config:\n" + "".join(f"  {k}: '{v}'\n" for k, v in values.items()),
                        encoding="utf-8")
        return {"config_file": path}
    if source == "env-file":
        path = tmp_path / "s.env"
        path.write_text("".join(f'export {k}="{v}"\n' for k, v in values.items()), encoding="utf-8")
        return {"env_files": [path]}
    if source == "env":
        return {"environ": values}
    return {"extras": [f"{k}={v}" for k, v in values.items()]}


@pytest.mark.parametrize("source", ["yaml", "env", "env-file", "extra"])
def test_canary_in_every_secret_key_from_every_source(tmp_path: Path, source: str) -> None:
    """Every secret key (and shadowed aliases) from each source: the canary reaches only Secret objects."""
    kwargs = _write_sources(tmp_path, {**SECRET_VALUES, **SHADOWED}, source)
    s = load_settings(**kwargs)  # type: ignore[arg-type]
    assert_clean(s)
    revealed = [x.reveal() for x in secrets(s) if x is not None]
    assert len(revealed) == 6
    assert all(C in value for value in revealed)
    raw = load_config(**kwargs)  # type: ignore[arg-type]
    assert C not in repr(raw)


# ------------------------------------------------------------------------------------ errors, warnings


@pytest.mark.parametrize("extra", [
    f"TIMESCALEDB_URL=mysql://u:{C}@h/d",
    f"TIMESCALEDB_URL=postgresql://u:{C}@h:notaport/d",
    f"TIMESCALEDB_URL=postgresql://h:5432/d?password=se@{C}",
    f"TIMESCALEDB_URL=postgresql://h/d?password={C}&sslmode=bogus",
    f"TIMESCALEDB_FAILOVER_URL=postgresql://u:{C}@h:99999/d",
    f"REDIS_URL=redis://u:{C}@h/notadb",
    f"REDIS_URL=unix://u:{C}@/tmp/sock",
    f"KAFKA_URL=kafka://u:{C}@b1,kafka://v:{C}x@b2",
    f"KAFKA_BROKERS=https://u:{C}@b1",
    f"KAFKA_BOOTSTRAP_SERVERS=u:{C}@b1:port",
])
def test_error_messages_never_contain_the_secret(extra: str) -> None:
    """ConfigError for a bad secret-bearing value shows *** and no part of the secret."""
    with pytest.raises(ConfigError) as info:
        load_settings(extras=[extra])
    assert C not in str(info.value)
    assert "s3cr3t" not in str(info.value)
    assert "=***" in str(info.value)


def test_file_errors_never_contain_the_secret(tmp_path: Path) -> None:
    """Env-file quote errors, --extra without '=', and YAML syntax errors do not quote secret content."""
    env = tmp_path / "x.env"
    env.write_text(f'REDIS_PASSWORD="{C}\n', encoding="utf-8")
    yml = tmp_path / "x.yaml"
    yml.write_text(f"REDIS_PASSWORD: {C}\n  bad: [\n", encoding="utf-8")
    for kwargs in ({"env_files": [env]}, {"extras": [f"REDIS_PASSWORD{C}"]}, {"config_file": yml}):
        with pytest.raises(ConfigError) as info:
            load_settings(**kwargs)  # type: ignore[arg-type]
        assert C not in str(info.value)
        assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(("name", "text"), [
    ("x.env", f"TIMESCALEDB_URL: postgresql://u:{C}@db/x\n"),  # YAML syntax in an env file
    ("x.env", f"TIMESCALEDB_URL: postgresql://u:{C}@db/x?sslmode=require\n"),  # ... with an '='
    ("x.env", f"REDIS_PASSWORD {C}=x\n"),  # a space in the key
    ("x.env", f"REDIS_PASSWORD=\x00{C}\n"),  # a control character in a secret's value
    ("x.yaml", f"REDIS_PASSWORD: *{C}\n"),  # an undefined alias: PyYAML quotes its name
    ("x.yaml", f"REDIS_PASSWORD: &{C} a\nKAFKA_PASSWORD: &{C} b\n"),  # a duplicate anchor
    ("x.yaml", f"REDIS_PASSWORD: {C}\x01\n"),  # a raw control character
    ("x.yaml", f'REDIS_PASSWORD: "\\q{C}"\n'),  # an unknown escape
])
def test_malformed_files_never_echo_the_secret(tmp_path: Path, name: str, text: str) -> None:
    """Every malformed env-file line and YAML syntax error names file:line, never the text around it."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    kwargs = {"config_file": path} if name.endswith(".yaml") else {"env_files": [path]}
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs, extras=["REDIS_HOST=r"])  # type: ignore[arg-type]
    assert C not in str(info.value)
    assert "s3cr3t" not in str(info.value)
    assert str(path) in str(info.value)


def test_comma_in_a_kafka_url_password_never_leaks() -> None:
    """`sasl_plaintext://kuser:<a>,<b>@host:9092`: neither half of the password becomes a host or a user."""
    s = load_settings(extras=[f"KAFKA_URL=sasl_plaintext://kuser:{C}-a,{C}-b@host:9092"])
    assert_clean(s)
    assert s.kafka.password == Secret(f"{C}-a,{C}-b")
    assert (s.kafka.username, s.kafka.bootstrap_servers) == ("kuser", ("host:9092",))


@pytest.mark.parametrize("password", ["a", "ab", "dis", C])
def test_driver_messages_lose_every_whole_occurrence_of_a_short_or_long_password(password: str) -> None:
    """1-3 character passwords are blanked where a driver quotes them, never inside other words."""
    from ingest_probe.connectors._net import one_line

    message = (f"invalid username-password pair or user is disabled; AUTH '{password}'; "
               f"SaslAuthenticateRequest(sasl_auth_bytes=b'kuser\\x00kuser\\x00{password}') {password}")
    line = one_line(message, secrets=[Secret(password)])
    assert line.startswith("invalid username-password pair or user is disabled; AUTH '***';"), line
    assert line.endswith("\\x00***') ***"), line


def test_warnings_never_contain_the_secret() -> None:
    """Unknown-key and shadowed-alias warnings name keys and locations, never values."""
    s = load_settings(extras=[f"REDIS_PASWORD={C}", f"TIMESCALEDB_PASSWORD={C}1", f"PGPASSWORD={C}2",
                              "TIMESCALEDB_HOST=h", f"TIMESCALEDB_URL=postgresql://u:{C}3@h/d"])
    assert len(s.warnings) >= 2
    assert all(C not in w and "s3cr3t" not in w for w in s.warnings)
    assert_clean(s)


def test_a_query_parameter_after_a_password_is_not_echoed() -> None:
    """A name after a secret-bearing parameter may be a piece of its value (``?password=ab&cd=ef`` with the
    '&' unescaped): the warning describes it and says to write %26, but never repeats it."""
    s = load_settings(extras=[f"TIMESCALEDB_URL=postgresql://u@h/d?password=x&{C}&sslpassword=y&{C}b=1",
                              f"REDIS_URL=redis://h/0?db=1&password=p&x{C}=2"])
    assert [w for w in s.warnings if "query parameter" in w] == [
        "TIMESCALEDB_URL from --extra: an unrecognised query parameter after 'password' is ignored (name not shown:"
        " it may be part of the password value, whose '&' must be written %26)",
        "TIMESCALEDB_URL from --extra: an unrecognised query parameter after 'sslpassword' is ignored (name not"
        " shown: it may be part of the sslpassword value, whose '&' must be written %26)",
        "REDIS_URL from --extra: an unrecognised query parameter after 'password' is ignored (name not shown: it"
        " may be part of the password value, whose '&' must be written %26)",
    ]
    assert_clean(s)


def test_an_unknown_query_parameter_is_named() -> None:
    """Names are not secrets: an unknown parameter before any secret-bearing one is named, with a suggestion."""
    s = load_settings(extras=["REDIS_URL=redis://h/0?passwrd=x&ssl_cert_reqs=none",
                              "TIMESCALEDB_URL=postgresql://u@h/d?sslmod=require&password=pw"])
    assert [w for w in s.warnings if "query parameter" in w] == [
        "TIMESCALEDB_URL from --extra: unknown query parameter 'sslmod' is ignored; did you mean 'sslmode'?",
        "REDIS_URL from --extra: unknown query parameter 'passwrd' is ignored; did you mean 'password'?",
        "REDIS_URL from --extra: query parameter 'ssl_cert_reqs' is not supported and is ignored",
    ]
