"""Timescale settings: the ``postgresql://``/``sqlite:///`` URL in parts, ``TimescaleSettings``, and reading them
from the configuration (the primary, its pool, and the failover standby from its own key prefix)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, NamedTuple, cast
from urllib.parse import quote, unquote

from ingest_probe.config.reader import Reader, bad, parse_number
from ingest_probe.config.sources import RawValue
from ingest_probe.config.urls import (
    UrlError,
    check_host,
    parse_hostport,
    parse_url,
    split_scheme,
    unsupported,
    unsupported_scheme,
)
from ingest_probe.defaults import CLIENT_NAME, CONNECT_TIMEOUT, POSTGRES_DATABASE, POSTGRES_PORT
from ingest_probe.secret import Secret

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: A cap that keeps an absurd connect timeout out of the event loop's clock arithmetic.
MAX_CONNECT_TIMEOUT = 3600
STATEMENT_TIMEOUT_MS = 10000
PRIMARY = ("TIMESCALEDB", "TIMESCALEDB_URL")
STANDBY = ("TIMESCALEDB_FAILOVER", "TIMESCALEDB_FAILOVER_URL")


# ---------------------------------------------------------------------------------------------- the URL

PG_QUERY_PARTS = ("host", "port", "user", "password", "dbname", "sslmode", "sslrootcert", "sslcert",
                  "sslkey", "sslpassword", "application_name", "connect_timeout")
#: libpq / asyncpg / SQLAlchemy parameter names that ingest-probe does not use (shown by name when dropped).
PG_KNOWN_UNSUPPORTED = frozenset({
    "hostaddr", "passfile", "require_auth", "channel_binding", "client_encoding", "options",
    "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
    "tcp_user_timeout", "replication", "gssencmode", "requiressl", "sslnegotiation", "sslcompression",
    "sslkeylogfile", "sslcertmode", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "krbsrvname", "gsslib", "gssdelegation", "service", "target_session_attrs",
    "load_balance_hosts", "database", "ssl", "server_settings", "command_timeout", "statement_cache_size",
    "prepared_statement_cache_size", "async_fallback",
})


class PgUrl(NamedTuple):
    """A PostgreSQL or SQLite URL in parts (a named tuple: cheap on the start-up path); ``repr`` hides secrets."""

    backend: Literal["postgresql", "sqlite"]
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = None
    params: Mapping[str, str] = MappingProxyType({})
    sqlite_path: str | None = None
    #: What was dropped from the query string (``unsupported()``), for a warning.
    dropped: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"PgUrl(backend={self.backend!r}, host={self.host!r}, port={self.port!r}, ...)"


def parse_pg_url(url: str) -> PgUrl:
    """PostgreSQL (``postgres://``, ``postgresql+driver://``) or ``sqlite:///path`` into parts."""
    scheme, rest = split_scheme(url)
    base = scheme.partition("+")[0]
    if base == "sqlite":
        path = rest.partition("?")[0]
        if not path.startswith("/") or len(path) < 2:
            raise UrlError("a sqlite URL needs a file path: sqlite:///relative or sqlite:////absolute")
        if unquote(path[1:]) == ":memory:":
            raise UrlError("an in-memory SQLite database is empty and gone when the probe ends: a rehearsal "
                           "needs a file (sqlite:///relative or sqlite:////absolute)")
        return PgUrl(backend="sqlite", sqlite_path=unquote(path[1:]))
    if base not in ("postgresql", "postgres", "timescaledb"):
        raise unsupported_scheme(scheme, "postgresql://, postgres:// or sqlite:///")
    parsed = parse_url(url)
    query = {k: v for k, v in parsed.query.items() if k in PG_QUERY_PARTS}
    auth = parsed.authority
    port = auth.port
    if "port" in query:
        _, port = parse_hostport(f"x:{query.pop('port')}")
    query_host = query.pop("host", None)
    return PgUrl(
        backend="postgresql",
        host=(check_host(query_host) if query_host else None) or auth.host,
        port=port,
        database=query.pop("dbname", None) or parsed.path or None,
        user=query.pop("user", None) or auth.user,
        password=query.pop("password", None) if "password" in query else auth.password,
        params=query, dropped=unsupported(parsed.query, PG_QUERY_PARTS, PG_KNOWN_UNSUPPORTED, parsed.after_secret),
    )


def shown_url(value: str) -> str:
    """A ``TIMESCALEDB_URL`` value rebuilt from its allowed parts (``UrlError`` when it does not parse)."""
    p = parse_pg_url(value)
    return cast(str, TimescaleSettings(
        configured=True, backend=p.backend, url_source_key=None, host=p.host or "localhost",
        port=p.port or POSTGRES_PORT, database=p.database or POSTGRES_DATABASE, user=p.user,
        password=Secret("") if p.password else None, sslmode=p.params.get("sslmode"), sqlite_path=p.sqlite_path,
    ).redacted_url())


# ------------------------------------------------------------------------------------------ the settings


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSettings:
    size: int | None
    max_overflow: int | None
    timeout: float | None
    recycle: int | None
    pre_ping: bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimescaleSettings:
    """A PostgreSQL/TimescaleDB target, or a SQLite rehearsal file, or nothing configured.

    Stored as parts, never as a raw URL: every rendering is built from an allow-list, and a secret can only
    be reached through ``Secret.reveal()``.
    """

    configured: bool
    backend: Literal["postgresql", "sqlite"] | None
    url_source_key: str | None  # e.g. "TIMESCALEDB_URL", or None when composed from parts
    host: str | None = None
    port: int = POSTGRES_PORT
    database: str = POSTGRES_DATABASE
    user: str | None = None
    password: Secret | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    sslpassword: Secret | None = None
    sqlite_path: str | None = None
    application_name: str = CLIENT_NAME
    connect_timeout: float = CONNECT_TIMEOUT
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS
    require_extension: bool = False
    pool: PoolSettings | None = None
    #: The service's ingest plan this database receives (dimensions, symbols), for the manifest; empty for a
    #: database configured on its own (a standby, a URL target).
    dimensions: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    #: Manifest fields whose key is unset, with the value the ingest service uses instead (its own default;
    #: the probe's connection keeps ``ingest-probe``): ``{"application_name": "emp-timescale-ingest"}``.
    service_defaults: Mapping[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str | None:
        """``host:port`` (or the SQLite path) for reports; never carries credentials."""
        if self.backend == "sqlite":
            return self.sqlite_path
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(s for s in (self.password, self.sslpassword) if s is not None)

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


# ------------------------------------------------------------------------------ from the configuration

_IDENTITY = ("HOST", "PORT", "USER", "PASSWORD", "DB")
_TLS = ("SSLMODE", "SSLROOTCERT", "SSLCERT", "SSLKEY", "SSLPASSWORD")
_POOL = ("TIMESCALEDB_POOL_SIZE", "TIMESCALEDB_MAX_OVERFLOW", "TIMESCALEDB_POOL_TIMEOUT",
         "TIMESCALEDB_POOL_RECYCLE", "TIMESCALEDB_POOL_PRE_PING")


def primary(r: Reader) -> TimescaleSettings:
    """The ingest database (``TIMESCALEDB_URL`` or ``TIMESCALEDB_HOST``/...) with its pool settings."""
    found = target(r, *PRIMARY)
    if found is None:
        return TimescaleSettings(configured=False, backend=None, url_source_key=None)
    app = r.service_default("TIMESCALEDB_APP")
    if app is not None and "TIMESCALEDB_APP" not in r.supplied:  # not set, not in the URL either
        found = replace(found, service_defaults={"application_name": app})
    if found.backend != "postgresql":
        r.ignore(_POOL, "pool settings apply to PostgreSQL only", warn=False)
        return found
    pool = PoolSettings(size=r.integer(_POOL[0]), max_overflow=r.integer(_POOL[1]), timeout=r.number(_POOL[2]),
                        recycle=r.integer(_POOL[3]), pre_ping=r.boolean(_POOL[4]))
    return replace(found, pool=pool)


def standby(r: Reader) -> TimescaleSettings | None:
    """The failover standby (``TIMESCALEDB_FAILOVER_URL`` or ``TIMESCALEDB_FAILOVER_HOST``/...), if set."""
    return target(r, *STANDBY)


def target(r: Reader, prefix: str, url_key: str) -> TimescaleSettings | None:
    """A target from ``url_key`` (which wins) or composed from ``{prefix}_HOST`` ...; ``None`` if neither."""
    app = r.text("TIMESCALEDB_APP") or CLIENT_NAME
    timeouts = {
        "connect_timeout": r.number("TIMESCALEDB_CONNECT_TIMEOUT") or CONNECT_TIMEOUT,
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
        url_params: Mapping[str, str] = {}
        host = cast(str, r.text(keys["HOST"]))
        port = r.integer(keys["PORT"]) or POSTGRES_PORT
        database = r.text(keys["DB"]) or POSTGRES_DATABASE
        user, password = r.text(keys["USER"]), r.secret(keys["PASSWORD"])
        source_key = None
    else:
        try:
            url = parse_pg_url(url_raw.value)
        except UrlError as exc:
            raise bad(url_raw, str(exc)) from None
        r.ignore(tuple(keys[p] for p in _IDENTITY), f"{url_raw.key} is set")
        source_key = url_raw.key
        if url.backend == "sqlite":
            r.ignore(tuple(keys[p] for p in _TLS), f"{url_raw.key} is a sqlite URL", warn=False)
            for part in ("PORT", "DB"):
                r.notes.setdefault(keys[part], f"unused: {url_raw.key} is a sqlite URL")
            return TimescaleSettings(
                configured=True, backend="sqlite", url_source_key=source_key,
                sqlite_path=url.sqlite_path, application_name=app,
                connect_timeout=timeouts["connect_timeout"],
                statement_timeout_ms=int(timeouts["statement_timeout_ms"]),
                require_extension=require_extension,
            )
        url_params = url.params
        sslmode = url_params.get("sslmode")
        if sslmode is not None and sslmode.lower() not in SSLMODES:
            raise bad(url_raw, f"sslmode in the URL must be one of {', '.join(SSLMODES)}")
        host, port = url.host or "localhost", url.port or POSTGRES_PORT
        database, user = url.database or POSTGRES_DATABASE, url.user
        password = Secret(url.password) if url.password else None
        r.warnings += [f"{url_raw.key} from {url_raw.origin.location}: {text}" for text in url.dropped]
        _url_settings(r, url_raw, prefix, timeouts, url.params)
        if prefix == PRIMARY[0]:
            for part, value in (("PORT", url.port), ("DB", url.database)):
                if value is not None:
                    r.supply(keys[part], value, url_raw)
        app = url.params.get("application_name") or app
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
                  params: Mapping[str, str]) -> None:
    """``application_name`` and ``connect_timeout`` in the URL win over TIMESCALEDB_APP/_CONNECT_TIMEOUT."""
    if "connect_timeout" in params:
        seconds = parse_number(params["connect_timeout"], maximum=MAX_CONNECT_TIMEOUT)
        if isinstance(seconds, str):
            raise bad(url_raw, f"connect_timeout in the URL: {seconds} (seconds)")
        timeouts["connect_timeout"] = seconds
    if prefix != PRIMARY[0]:  # the standby shares these keys; only the primary's URL is shown for them
        return
    for param, key in (("application_name", "TIMESCALEDB_APP"), ("connect_timeout", "TIMESCALEDB_CONNECT_TIMEOUT")):
        if params.get(param):
            r.ignore((key,), f"{param} in {url_raw.key} is used")
            r.supply(key, params[param], url_raw)
