"""Connection strings parsed into parts; a ``UrlError`` never quotes its input (it may hold secrets)."""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote


class UrlError(ValueError):
    """The reason a connection string is unusable. Never contains any part of the string."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Authority:
    """``user:password@host:port`` split with ``rpartition('@')`` so a raw ``@`` in a password stays in it."""

    user: str | None
    password: str | None = field(repr=False)
    host: str | None
    port: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedUrl:
    scheme: str
    authority: Authority
    path: str  # percent-decoded, without the leading "/"
    query: dict[str, str] = field(default_factory=dict, repr=False)


def unsupported(query: dict[str, str], honoured: tuple[str, ...], known: frozenset[str]) -> tuple[str, ...]:
    """Descriptions of query parameters that are dropped, for a warning; never a value.

    A parameter's *name* is shown only when it is a real parameter name of the client library (an
    allow-list): anything else may be a misplaced piece of a password, so it is described, not quoted.
    """
    out = []
    for name in query:
        if name in honoured:
            continue
        if name in known:
            out.append(f"query parameter {name!r} is not supported and is ignored")
            continue
        guess = difflib.get_close_matches(name.lower(), honoured, n=1, cutoff=0.75)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        out.append(f"an unrecognised query parameter is ignored (name not shown{hint})")
    return tuple(dict.fromkeys(out))


def split_scheme(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme:
        raise UrlError("expected a URL of the form scheme://...")
    return scheme.lower(), rest


_SCHEME = re.compile(r"[a-z][a-z0-9+._-]{0,19}")


def unsupported_scheme(scheme: str, expected: str) -> UrlError:
    """Quote the scheme only when it looks like one: ``postgresql//u:pw://h`` puts a password before ``://``."""
    shown = f" {scheme!r}" if _SCHEME.fullmatch(scheme) else " (not shown: it is not a plain scheme name)"
    return UrlError(f"unsupported scheme{shown} (expected {expected})")


_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() is true for '²' and int() takes '٣'


def parse_authority(text: str) -> Authority:
    userinfo, at, hostport = text.rpartition("@")
    user = password = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user) or None
        password = unquote(raw_password) if colon else None
    host, port = parse_hostport(hostport)
    return Authority(user=user, password=password, host=host, port=port)


_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
BAD_HOST = "not a valid host name or IP address"


def check_host(host: str) -> str:
    """``host`` if it is a plausible DNS name (underscores allowed) or an IPv4/IPv6 literal, else ``UrlError``.

    The reason never quotes the host: it may come from a mangled URL and hold part of a password.
    """
    if host.startswith("[") and host.endswith("]"):
        raise UrlError(f"{BAD_HOST}: write an IPv6 address without brackets")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UrlError(BAD_HOST) from None
        return host
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise UrlError(BAD_HOST + (" (Unix-socket paths are not supported)" if "/" in host else ""))
    if all(label.isascii() and label.isdigit() for label in labels):  # looks like IPv4: it must be one
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise UrlError(BAD_HOST) from None
    return host


def parse_hostport(text: str) -> tuple[str | None, int | None]:
    """``host``, ``host:port``, ``[::1]:port``; the port must be an integer in 1..65535."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UrlError("malformed IPv6 host")
        port_text = rest[1:] if rest else ""
    else:
        if "," in text:
            raise UrlError("several hosts in one URL are not supported")
        host, _, port_text = text.partition(":")
    port = None
    if port_text:
        if not _DIGITS.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            raise UrlError("port is not an integer in 1..65535")
        port = int(port_text)
    host = unquote(host)
    return (check_host(host) if host else None), port


_AMBIGUOUS = "ambiguous '@' in the URL: percent-encode '@' (%40), '/' (%2F) and '?' (%3F) in credentials"


def _first(text: str, chars: str) -> int:
    return min((i for i in (text.find(c) for c in chars) if i >= 0), default=len(text))


def parse_url(url: str) -> ParsedUrl:
    """Split ``scheme://userinfo@host:port/path?query``.

    The authority normally ends at the first ``/``, ``?`` or ``#``. When an ``@`` appears after that point
    the password itself holds one of those characters, so the userinfo ends at the *last* ``@`` instead
    (``rpartition``); if an ``@`` in a query value makes both readings plausible, the URL is rejected
    rather than risk rendering part of a secret as a host name.
    """
    scheme, rest = split_scheme(url)
    cut = _first(rest, "/?#")
    authority_text, tail = rest[:cut], rest[cut:]
    if "@" in tail:
        # A password holding '/', '?' or '#' cuts the authority short; an '@' in a query value does not.
        # When the short reading is valid and the '@' sits in the query, both are plausible: refuse.
        in_query = "?" in tail[: tail.find("@")]
        if in_query:
            try:
                parse_authority(authority_text)
            except UrlError:
                pass
            else:
                raise UrlError(_AMBIGUOUS)
        userinfo, _, after = rest.rpartition("@")
        if _first(userinfo.partition(":")[0], "/?#") < len(userinfo.partition(":")[0]):
            raise UrlError(_AMBIGUOUS)
        cut = _first(after, "/?#")
        authority_text, tail = f"{userinfo}@{after[:cut]}", after[cut:]
    authority = parse_authority(authority_text)
    path, _, query = tail.partition("#")[0].partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    return ParsedUrl(scheme=scheme, authority=authority, path=unquote(path[1:]), query=dict(pairs))


# ------------------------------------------------------------------------------------------- PostgreSQL

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


@dataclass(frozen=True, slots=True, kw_only=True)
class PgTarget:
    backend: Literal["postgresql", "sqlite"]
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    params: dict[str, str] = field(default_factory=dict, repr=False)
    sqlite_path: str | None = None
    #: What was dropped from the query string (``unsupported()``), for a warning.
    dropped: tuple[str, ...] = ()


def parse_pg_url(url: str) -> PgTarget:
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
        return PgTarget(backend="sqlite", sqlite_path=unquote(path[1:]))
    if base not in ("postgresql", "postgres", "timescaledb"):
        raise unsupported_scheme(scheme, "postgresql://, postgres:// or sqlite:///")
    parsed = parse_url(url)
    query = {k: v for k, v in parsed.query.items() if k in PG_QUERY_PARTS}
    auth = parsed.authority
    port = auth.port
    if "port" in query:
        _, port = parse_hostport(f"x:{query.pop('port')}")
    query_host = query.pop("host", None)
    return PgTarget(
        backend="postgresql",
        host=(check_host(query_host) if query_host else None) or auth.host,
        port=port,
        database=query.pop("dbname", None) or parsed.path or None,
        user=query.pop("user", None) or auth.user,
        password=query.pop("password", None) if "password" in query else auth.password,
        params=query, dropped=unsupported(parsed.query, PG_QUERY_PARTS, PG_KNOWN_UNSUPPORTED),
    )


# ------------------------------------------------------------------------------------------------ Redis


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisTarget:
    tls: bool
    host: str | None
    port: int | None
    db: int | None
    username: str | None
    password: str | None = field(repr=False)
    dropped: tuple[str, ...] = ()


REDIS_QUERY_PARTS = ("db", "password", "username")
#: redis-py ``from_url`` parameter names that ingest-probe does not read from a URL.
REDIS_KNOWN_UNSUPPORTED = frozenset({
    "socket_timeout", "socket_connect_timeout", "socket_keepalive", "retry_on_timeout", "max_connections",
    "health_check_interval", "ssl_check_hostname", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile",
    "ssl_keyfile", "ssl_ca_path", "ssl_ca_data", "ssl_min_version", "client_name", "protocol",
    "decode_responses", "encoding", "encoding_errors", "timeout", "ssl",
})


def parse_redis_url(url: str) -> RedisTarget:
    """``redis[s]://[user[:password]@]host[:port][/db][?password=...&db=...]`` into parts."""
    parsed = parse_url(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise unsupported_scheme(parsed.scheme, "redis:// or rediss://")
    db_text = parsed.query.get("db") or parsed.path
    if db_text and not (_DIGITS.fullmatch(db_text) and int(db_text) < 2**31):
        raise UrlError("the database number is not an integer in 0..2147483647")
    auth = parsed.authority
    password = parsed.query["password"] if "password" in parsed.query else auth.password
    return RedisTarget(
        tls=parsed.scheme == "rediss", host=auth.host, port=auth.port,
        db=int(db_text) if db_text else None, username=parsed.query.get("username") or auth.user,
        password=password or None,
        dropped=unsupported(parsed.query, REDIS_QUERY_PARTS, REDIS_KNOWN_UNSUPPORTED),
    )


# ------------------------------------------------------------------------------------------------ Kafka

_KAFKA_SCHEMES: dict[str, str | None] = {
    "kafka": None, "tcp": None, "plaintext": "PLAINTEXT", "ssl": "SSL", "kafka+ssl": "SSL",
    "sasl_plaintext": "SASL_PLAINTEXT", "sasl_ssl": "SASL_SSL",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaServers:
    servers: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    protocol: str | None = None


#: Where a URL item of a bootstrap list starts: at the beginning or after a ',' (its scheme ends at ``://``).
_ITEM_SCHEME = re.compile(r"(?:^|,)\s*([A-Za-z][A-Za-z0-9+._-]*)://")
_COMMA_AMBIGUOUS = ("ambiguous ',' in bootstrap-server credentials: percent-encode ',' in a user name or "
                    "password as %2C (and '@' as %40)")


def _segments(value: str) -> list[tuple[str | None, str]]:
    """The list cut where a ``scheme://`` item starts: (scheme or None, the text up to the next one)."""
    starts = list(_ITEM_SCHEME.finditer(value))
    out: list[tuple[str | None, str]] = []
    if not starts or starts[0].start() > 0:
        out.append((None, value[: starts[0].start() if starts else len(value)]))
    for number, match in enumerate(starts):
        end = starts[number + 1].start() if number + 1 < len(starts) else len(value)
        out.append((match.group(1).lower(), value[match.end() : end]))
    return out


def parse_servers(value: str) -> KafkaServers:
    """CSV of ``host:port`` or URL forms; schemes and credentials are stripped (credentials returned).

    Credentials are parsed before the list is split: in ``scheme://user:password@host,host2`` they run from
    ``://`` to the last ``@`` before the next ``scheme://`` item, so a ``,`` in a password stays in it
    (``sasl_plaintext://u:12,34@h:9092`` is one server, never a server ``u:12`` and a user ``34``). Where a
    ``,`` could as well separate servers (no scheme, or a ``,`` between two ``@``) the value is refused.
    """
    servers: list[str] = []
    users: set[tuple[str | None, str | None]] = set()
    protocols: set[str] = set()
    for number, (scheme, text) in enumerate(_segments(value)):
        if scheme is not None:
            if scheme not in _KAFKA_SCHEMES:
                expected = "kafka://, plaintext://, ssl://, sasl_plaintext://, sasl_ssl:// or host:port"
                if number == 0:
                    raise unsupported_scheme(scheme, expected)
                # Not quoted: after a ',' it may be the end of a password that holds "://".
                raise UrlError(f"unsupported scheme in a bootstrap server (expected {expected})")
            if _KAFKA_SCHEMES[scheme]:
                protocols.add(str(_KAFKA_SCHEMES[scheme]))
        userinfo, at, hosts = text.rpartition("@")
        if at:
            if "," in userinfo and (scheme is None or "@" in userinfo):
                raise UrlError(_COMMA_AMBIGUOUS)
            auth = parse_authority(f"{userinfo}@x")
            if auth.user is not None or auth.password is not None:
                users.add((auth.user, auth.password))
        for item in (part.strip().rstrip("/") for part in hosts.split(",")):
            if not item:
                continue
            host, port = parse_hostport(item)
            if host is None:
                raise UrlError("a bootstrap server has no host")
            servers.append(f"[{host}]:{port or 9092}" if ":" in host else f"{host}:{port or 9092}")
    if not servers:
        raise UrlError("no bootstrap server given")
    if len(users) > 1:
        raise UrlError("bootstrap servers carry different credentials")
    if len(protocols) > 1:
        raise UrlError("bootstrap servers use different schemes")
    user, password = next(iter(users)) if users else (None, None)
    return KafkaServers(servers=tuple(dict.fromkeys(servers)), username=user, password=password,
                        protocol=next(iter(protocols)) if protocols else None)
