"""Redis settings: the ``redis[s]://`` URL in parts, ``RedisSettings``, and reading them from the configuration
(URL parts, each overridden by its part key from the same or a higher source)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, cast
from urllib.parse import quote

from ingest_probe.config.reader import Reader, bad, parse_bool, parse_host, parse_int
from ingest_probe.config.sources import RawValue
from ingest_probe.config.urls import DIGITS, UrlError, parse_url, unsupported, unsupported_scheme
from ingest_probe.defaults import REDIS_PORT
from ingest_probe.secret import Secret

# ---------------------------------------------------------------------------------------------- the URL

REDIS_QUERY_PARTS = ("db", "password", "username")
#: redis-py ``from_url`` parameter names that ingest-probe does not read from a URL.
REDIS_KNOWN_UNSUPPORTED = frozenset({
    "socket_timeout", "socket_connect_timeout", "socket_keepalive", "retry_on_timeout", "max_connections",
    "health_check_interval", "ssl_check_hostname", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile",
    "ssl_keyfile", "ssl_ca_path", "ssl_ca_data", "ssl_min_version", "client_name", "protocol",
    "decode_responses", "encoding", "encoding_errors", "timeout", "ssl",
})


class RedisUrl(NamedTuple):
    """A Redis URL in parts (a named tuple: cheap on the start-up path); ``repr`` hides the password."""

    tls: bool
    host: str | None
    port: int | None
    db: int | None
    username: str | None
    password: str | None
    dropped: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"RedisUrl(tls={self.tls!r}, host={self.host!r}, port={self.port!r}, db={self.db!r}, ...)"


def parse_redis_url(url: str) -> RedisUrl:
    """``redis[s]://[user[:password]@]host[:port][/db][?password=...&db=...]`` into parts."""
    parsed = parse_url(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise unsupported_scheme(parsed.scheme, "redis:// or rediss://")
    db_text = parsed.query.get("db") or parsed.path
    if db_text and not (DIGITS.fullmatch(db_text) and int(db_text) < 2**31):
        raise UrlError("the database number is not an integer in 0..2147483647")
    auth = parsed.authority
    password = parsed.query["password"] if "password" in parsed.query else auth.password
    return RedisUrl(
        tls=parsed.scheme == "rediss", host=auth.host, port=auth.port,
        db=int(db_text) if db_text else None, username=parsed.query.get("username") or auth.user,
        password=password or None,
        dropped=unsupported(parsed.query, REDIS_QUERY_PARTS, REDIS_KNOWN_UNSUPPORTED, parsed.after_secret),
    )


def shown_url(value: str) -> str:
    """A ``REDIS_URL`` value rebuilt from its allowed parts (``UrlError`` when it does not parse)."""
    t = parse_redis_url(value)
    return cast(str, RedisSettings(
        configured=True, host=t.host or "localhost", port=t.port or REDIS_PORT, db=t.db or 0, username=t.username,
        password=Secret("") if t.password else None, tls=t.tls,
    ).redacted_url())


# ------------------------------------------------------------------------------------------ the settings


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisCachePolicy:
    """The ingest service's cache policy (manifest only): a preset, with the REDIS_CACHE_* keys over it."""

    strategy: str | None
    ttl_seconds: int | None
    max_keys: int | None
    namespace: str | None
    invalidate_prefixes: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"strategy": self.strategy, "ttl_seconds": self.ttl_seconds, "max_keys": self.max_keys,
                "namespace": self.namespace, "invalidate_prefixes": list(self.invalidate_prefixes)}


#: The ingest service's REDIS_CACHE_STRATEGY presets: (TTL seconds or None, max keys, namespace).
PRESETS: dict[str, tuple[int | None, int, str]] = {
    "institutional": (900, 1024, "emp:cache"), "bootstrap": (1800, 256, "emp:bootstrap"),
    "aggressive": (120, 512, "emp:cache"), "extended": (43200, 4096, "emp:cache"), "disabled": (None, 0, "emp:cache"),
}
#: Its other names for them.
STRATEGY_SPELLINGS = {
    **dict.fromkeys(("default", "standard", "balanced", "production", "prod"), "institutional"),
    **dict.fromkeys(("fast", "short", "short_ttl"), "aggressive"),
    **dict.fromkeys(("long", "long_ttl", "12h", "12hr", "twelve_hours"), "extended"),
    **dict.fromkeys(("none", "no_cache", "off"), "disabled"),
}
#: Values of REDIS_CACHE_TTL_SECONDS / _MAX_KEYS that mean "none" (as the ingest service reads them).
NONE_WORDS = ("none", "null", "off", "disabled")


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSettings:
    configured: bool
    host: str | None = None
    port: int = REDIS_PORT
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
    #: Manifest fields whose key is unset, with the value the ingest service uses instead (its own default).
    service_defaults: Mapping[str, object] = field(default_factory=dict)

    @property
    def endpoint(self) -> str | None:
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def secrets(self) -> tuple[Secret, ...]:
        return () if self.password is None else (self.password,)

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


# ------------------------------------------------------------------------------ from the configuration

_CONN = ("REDIS_PORT", "REDIS_DB", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_SSL")
_POLICY = ("REDIS_CACHE_STRATEGY", "REDIS_CACHE_TTL_SECONDS", "REDIS_CACHE_MAX_KEYS", "REDIS_CACHE_NAMESPACE",
           "REDIS_CACHE_INVALIDATE_PREFIXES")


def from_config(r: Reader) -> RedisSettings:
    """URL parts, each overridden by its part key (``REDIS_HOST`` ... ``REDIS_SSL``) from the same or a higher
    source; a part key from a lower source only fills in what the URL leaves out (``Reader.over_url``)."""
    url_raw = r.pick("REDIS_URL")
    if url_raw is None and r.pick("REDIS_HOST") is None:
        r.ignore(_CONN, "no REDIS_URL or REDIS_HOST is set", warn=False)
        return RedisSettings(configured=False)
    url = RedisUrl(tls=False, host=None, port=None, db=None, username=None, password=None)
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
    service_defaults: dict[str, object] = {}
    if (name := r.service_default("REDIS_CLIENT_NAME")) is not None:
        service_defaults["client_name"] = name
    policy = cache_policy(r)
    if policy is None:
        service_defaults["policy"] = preset(cast(str, r.service_default(_POLICY[0]))).to_dict()
    return RedisSettings(
        configured=True, host=parse_host(host_raw) if host_raw else url.host or "localhost",
        port=parse_int(port_raw) if port_raw else url.port or cast(int, r.integer("REDIS_PORT")),
        db=parse_int(db_raw) if db_raw else _first_int(url.db, r.integer("REDIS_DB")),
        username=user_raw.value.strip() if user_raw else url.username,
        password=Secret(password_raw.value) if password_raw else Secret(url.password) if url.password else None,
        tls=parse_bool(tls_raw) if tls_raw else url.tls,
        ssl_ca_certs=r.text("REDIS_SSL_CA_CERTS"), ssl_certfile=r.text("REDIS_SSL_CERTFILE"),
        ssl_keyfile=r.text("REDIS_SSL_KEYFILE"), client_name=r.text("REDIS_CLIENT_NAME"),
        socket_timeout=r.number("REDIS_SOCKET_TIMEOUT"), policy=policy, service_defaults=service_defaults,
    )


def preset(strategy: str) -> RedisCachePolicy:
    ttl, max_keys, namespace = PRESETS[strategy]
    return RedisCachePolicy(strategy=strategy, ttl_seconds=ttl, max_keys=max_keys, namespace=namespace,
                            invalidate_prefixes=())


def cache_policy(r: Reader) -> RedisCachePolicy | None:
    """The policy when any REDIS_CACHE_* key is set: the preset (REDIS_CACHE_STRATEGY, else the service's
    default) with the other keys over it (a TTL or max keys of ``off``/``none``/...: None), else None."""
    if not any(r.pick(name, explicit=True) for name in _POLICY):
        return None
    base = preset(r.choice(_POLICY[0]) or cast(str, r.service_default(_POLICY[0])))
    ttl_raw, max_raw = r.pick(_POLICY[1], explicit=True), r.pick(_POLICY[2], explicit=True)
    namespace = r.text(_POLICY[3], explicit=True)
    return RedisCachePolicy(
        strategy=base.strategy,
        ttl_seconds=base.ttl_seconds if ttl_raw is None else r.integer(_POLICY[1]),
        max_keys=base.max_keys if max_raw is None else r.integer(_POLICY[2]),
        namespace=base.namespace if namespace is None else namespace.removesuffix(":"),
        invalidate_prefixes=r.csv(_POLICY[4]) or base.invalidate_prefixes,
    )


def _first_int(*values: int | None) -> int:
    return next((v for v in values if v is not None), 0)
