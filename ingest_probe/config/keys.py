"""The registry of configuration keys: single source of truth for reading, warnings, redaction, docs."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

#: How a key's string value is interpreted. ``url``/``servers`` values may carry credentials: they are
#: rendered only after being parsed into parts and rebuilt from an allow-list.
Kind = Literal["str", "int", "float", "bool", "csv", "json", "choice", "url", "servers", "host"]

#: Keys with these prefixes are "ours": an unknown one is probably a typo and earns a warning.
OUR_PREFIXES = ("TIMESCALE", "REDIS_", "KAFKA_", "INGEST_PROBE_")
#: Variables of the test suite (issue 3) share our prefix but are not configuration; never warn about them.
IGNORED_PREFIXES = ("INGEST_PROBE_TEST_",)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    """One configuration key. ``aliases`` are alternative names, in precedence order after ``name``."""

    name: str
    kind: Kind
    default: str | None
    description: str
    section: str
    secret: bool = False
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def is_pattern(self) -> bool:
        return "<" in self.name


def _k(
    name: str, kind: Kind, default: str | None, description: str, *, section: str, secret: bool = False,
    aliases: tuple[str, ...] = (), choices: tuple[str, ...] = (), minimum: int | None = None,
    maximum: int | None = None,
) -> KeySpec:
    return KeySpec(name=name, kind=kind, default=default, description=description, section=section,
                   secret=secret, aliases=aliases, choices=choices, minimum=minimum, maximum=maximum)


_TIMESCALE_PARTS: tuple[tuple[str, Kind, str | None, str, tuple[str, ...]], ...] = (
    ("HOST", "host", None, "host name or address", ()),
    ("PORT", "int", "5432", "port (default 5432; a Kubernetes service link `tcp://…` in the environment is "
             "ignored with a warning)", ()),
    ("USER", "str", None, "user name", ("USERNAME",)),
    ("PASSWORD", "str", None, "password", ()),
    ("DB", "str", "postgres", "database name (default postgres)", ("DATABASE",)),
    ("SSLMODE", "choice", None, "libpq sslmode", ()),
    ("SSLROOTCERT", "str", None, "CA bundle used to verify the server", ()),
    ("SSLCERT", "str", None, "client certificate", ()),
    ("SSLKEY", "str", None, "client private key", ()),
    ("SSLPASSWORD", "str", None, "passphrase of the client key", ()),
)
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_PG_ENV = {"HOST": "PGHOST", "PORT": "PGPORT", "USER": "PGUSER", "PASSWORD": "PGPASSWORD",
           "DB": "PGDATABASE", "SSLMODE": "PGSSLMODE", "SSLROOTCERT": "PGSSLROOTCERT",
           "SSLCERT": "PGSSLCERT", "SSLKEY": "PGSSLKEY"}
#: The generic libpq group and ``DATABASE_URL``: fallbacks, used only as a whole, and only when none of
#: ``TIMESCALE_TARGETS`` is set in any source (a stray ``PGPORT`` must not re-target a configured host).
LIBPQ_FALLBACKS = ("DATABASE_URL", *sorted(_PG_ENV.values()))
TIMESCALE_TARGETS = ("TIMESCALEDB_URL", "TIMESCALE_URL", "TIMESCALEDB_HOST", "TIMESCALE_HOST")
FALLBACK_RULE = ("PG* and DATABASE_URL apply only when no TIMESCALEDB_*/TIMESCALE_* URL or host is set in "
                 "any source")
#: How a URL and its part keys combine (Redis; Kafka credentials and protocol), for warnings and the README.
URL_PARTS_RULE = ("a part key overrides what a URL sets only from the same or a higher source; from a lower "
                  "source it only fills in what the URL leaves out")
#: Caps that keep absurd values from reaching a broker (2**31-1 partitions aborted one).
MAX_PARTITIONS = 10_000
MAX_CONNECT_TIMEOUT = 3600
MAX_REPLICATION_FACTOR = 32


def _timescale_parts(section: str, prefixes: tuple[str, ...], pg_aliases: bool) -> list[KeySpec]:
    specs = []
    for part, kind, default, text, suffix_aliases in _TIMESCALE_PARTS:
        first, *others = prefixes
        aliases = [f"{first}_{s}" for s in suffix_aliases]
        for prefix in others:
            aliases += [f"{prefix}_{part}"] + [f"{prefix}_{s}" for s in suffix_aliases]
        fallback = ""
        if pg_aliases and part in _PG_ENV:
            aliases.append(_PG_ENV[part])
            fallback = f"; `{_PG_ENV[part]}` is a libpq fallback (see above)"
        specs.append(KeySpec(
            name=f"{first}_{part}", kind=kind, default=default if pg_aliases else None,
            description=f"{section}: {text} (used when no URL is given){fallback}", section=section,
            secret=part in ("PASSWORD", "SSLPASSWORD"), aliases=tuple(aliases),
            choices=SSLMODES if part == "SSLMODE" else (),
            minimum=1 if part == "PORT" else None, maximum=65535 if part == "PORT" else None,
        ))
    return specs


_G, _S, _F, _T, _FT, _R, _K, _KT = (
    "Gating", "Schedule", "Failover drill", "Timescale", "Failover standby", "Redis", "Kafka", "Kafka topics",
)

KEYS: tuple[KeySpec, ...] = (
    _k("DATA_BACKBONE_MODE", "choice", None, "inferred `institutional` when unset and Redis or Kafka "
       "is configured, else `bootstrap`", section=_G, choices=("bootstrap", "institutional")),
    _k("EMP_TIER", "choice", "tier_0", "gating tier (`tier-1` spelling accepted)", section=_G,
       choices=("tier_0", "tier_1", "tier_2")),
    _k("TIMESCALE_SYMBOLS", "csv", None, "symbols to ingest; enables the `daily` dimension", section=_G),
    _k("TIMESCALE_LOOKBACK_DAYS", "int", "60", "daily lookback in days", section=_G, minimum=1, maximum=36500),
    _k("TIMESCALE_ENABLE_INTRADAY", "bool", "false", "enables the `intraday` dimension", section=_G),
    _k("TIMESCALE_INTRADAY_INTERVAL", "str", "1m", "intraday bar interval", section=_G),
    _k("TIMESCALE_INTRADAY_LOOKBACK_DAYS", "int", "2", "intraday lookback in days", section=_G, minimum=1,
       maximum=36500),
    _k("TIMESCALE_ENABLE_MACRO", "bool", "false", "enables the `macro` dimension", section=_G),
    _k("TIMESCALE_INGEST_SCHEDULE", "bool", "false", "ingest runs on a schedule", section=_S),
    _k("TIMESCALE_INGEST_INTERVAL_SECONDS", "int", "3600", "schedule interval (60 s to 31 days)", section=_S,
       minimum=60, maximum=31 * 86400),
    _k("TIMESCALE_INGEST_JITTER_SECONDS", "int", "120", "schedule jitter (at most a day)", section=_S, minimum=0,
       maximum=86400),
    _k("TIMESCALE_INGEST_MAX_FAILURES", "int", "3", "consecutive failures before the schedule stops "
       "(0 = never stop)", section=_S, minimum=0),
    _k("TIMESCALE_FAILOVER_DRILL", "bool", "false", "failover drill enabled", section=_F),
    _k("TIMESCALE_FAILOVER_DRILL_DIMENSIONS", "csv", "daily_bars", "dimensions the drill requires",
       section=_F),
    _k("TIMESCALE_FAILOVER_DRILL_LABEL", "str", "required_timescale_failover", "drill scenario label",
       section=_F),
    _k("TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK", "bool", "true", "probe the standby when failover is decided",
       section=_F),
    _k("TIMESCALE_FRESHNESS_SLA_SECONDS", "int", "86400", "seconds of `freshness_seconds` after which a "
       "dimension is stale. Unset, each dimension has its own limit (the keys below; any other dimension "
       "86400); set, it is the limit of every dimension without its own key set", section=_F, minimum=0),
    _k("TIMESCALE_FRESHNESS_SLA_DAILY_SECONDS", "int", "86400", "freshness limit of `daily` (`daily_bars`)",
       section=_F, minimum=0),
    _k("TIMESCALE_FRESHNESS_SLA_INTRADAY_SECONDS", "int", "900", "freshness limit of `intraday` "
       "(`intraday_trades`)", section=_F, minimum=0),
    _k("TIMESCALE_FRESHNESS_SLA_MACRO_SECONDS", "int", "604800", "freshness limit of `macro` (`macro_events`)",
       section=_F, minimum=0),
    _k("TIMESCALEDB_URL", "url", None, "PostgreSQL/TimescaleDB URL (SQLAlchemy forms accepted) or "
       "`sqlite:///path` for a rehearsal (a file: `sqlite:///:memory:` is refused); wins over the parts below "
       "whatever their sources. Query: `sslmode`, `sslrootcert`, "
       "`sslcert`, `sslkey`, `sslpassword`, `password`, `user`, `host`, `port`, `dbname`, `application_name`, "
       "`connect_timeout` are used, any other parameter is warned about and ignored; `DATABASE_URL` is a "
       "libpq fallback (see above)", section=_T, secret=True, aliases=("TIMESCALE_URL", "DATABASE_URL")),
    *_timescale_parts(_T, ("TIMESCALEDB", "TIMESCALE"), pg_aliases=True),
    _k("TIMESCALEDB_APP", "str", "ingest-probe", "application_name", section=_T),
    _k("TIMESCALEDB_CONNECT_TIMEOUT", "float", "5", "seconds each connection attempt (TCP, TLS, authentication) "
       "may take, capped by the probe deadline", section=_T, minimum=0, maximum=MAX_CONNECT_TIMEOUT),
    _k("TIMESCALEDB_STATEMENT_TIMEOUT_MS", "int", "10000", "statement timeout in ms", section=_T, minimum=0),
    _k("TIMESCALEDB_REQUIRE_EXTENSION", "bool", "false", "a missing timescaledb extension is `down`",
       section=_T),
    _k("TIMESCALEDB_POOL_SIZE", "int", None, "pool size (PostgreSQL only)", section=_T, minimum=0),
    _k("TIMESCALEDB_MAX_OVERFLOW", "int", None, "pool overflow (-1 = unlimited)", section=_T, minimum=-1),
    _k("TIMESCALEDB_POOL_TIMEOUT", "float", None, "pool checkout timeout in seconds", section=_T, minimum=0),
    _k("TIMESCALEDB_POOL_RECYCLE", "int", None, "pool recycle in seconds (-1 = never)", section=_T,
       minimum=-1),
    _k("TIMESCALEDB_POOL_PRE_PING", "bool", None, "pool pre-ping", section=_T),
    _k("TIMESCALEDB_FAILOVER_URL", "url", None, "standby database URL; wins over the parts below",
       section=_FT, secret=True),
    *_timescale_parts(_FT, ("TIMESCALEDB_FAILOVER",), pg_aliases=False),
    _k("REDIS_URL", "url", None, "`redis://` or `rediss://` (TLS) URL; `?password=`, `?username=`, `?db=` "
       "honoured, any other query parameter is warned about and ignored", section=_R,
       secret=True, aliases=("REDIS_URI", "REDISCLOUD_URL")),
    _k("REDIS_HOST", "host", None, "host (overrides the URL's, see above)", section=_R, aliases=("CACHE_HOST",)),
    _k("REDIS_PORT", "int", "6379", "port (overrides the URL's, see above; a Kubernetes service link "
       "`tcp://…` in the environment is ignored with a warning)", section=_R, minimum=1, maximum=65535),
    _k("REDIS_DB", "int", "0", "database number (overrides the URL's, see above)", section=_R, minimum=0),
    _k("REDIS_USERNAME", "str", None, "ACL user (overrides the URL's, see above)", section=_R,
       aliases=("REDIS_USER",)),
    _k("REDIS_PASSWORD", "str", None, "password (overrides the URL's, see above)", section=_R, secret=True,
       aliases=("REDIS_PASS",)),
    _k("REDIS_SSL", "bool", None, "TLS (overrides the URL's scheme, see above; `rediss://` implies it)",
       section=_R),
    _k("REDIS_SSL_CA_CERTS", "str", None, "CA bundle", section=_R),
    _k("REDIS_SSL_CERTFILE", "str", None, "client certificate", section=_R),
    _k("REDIS_SSL_KEYFILE", "str", None, "client private key", section=_R),
    _k("REDIS_CLIENT_NAME", "str", None, "CLIENT SETNAME value", section=_R),
    _k("REDIS_SOCKET_TIMEOUT", "float", None, "socket timeout in seconds", section=_R, minimum=0, maximum=3600),
    _k("REDIS_CACHE_STRATEGY", "str", None, "cache policy: strategy (manifest only)", section=_R),
    _k("REDIS_CACHE_TTL_SECONDS", "int", None, "cache policy: TTL", section=_R, minimum=0),
    _k("REDIS_CACHE_MAX_KEYS", "int", None, "cache policy: max keys", section=_R, minimum=0),
    _k("REDIS_CACHE_NAMESPACE", "str", None, "cache policy: key namespace", section=_R),
    _k("REDIS_CACHE_INVALIDATE_PREFIXES", "csv", None, "cache policy: invalidation prefixes", section=_R),
    _k("KAFKA_BROKERS", "servers", None, "bootstrap servers, CSV of host:port. URL forms "
       "(`sasl_ssl://user:password@host:port,host2:port`): scheme and credentials are stripped and used; the "
       "credentials of a URL end at its last `@`, so a `,` before it is part of the password "
       "(`sasl_plaintext://u:12,34@h:9092` is one server). Without a scheme, or with a `,` between two `@`, "
       "that is ambiguous and refused: percent-encode `,` as `%2C` in credentials", section=_K, secret=True,
       aliases=("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_URL")),
    _k("KAFKA_SECURITY_PROTOCOL", "choice", None, "default SASL_SSL when user and password are set, "
       "else PLAINTEXT (or the scheme of a URL form; overrides it, see above)", section=_K,
       choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
    _k("KAFKA_SASL_MECHANISM", "choice", None, "default PLAIN when the protocol is SASL_*", section=_K,
       choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")),
    _k("KAFKA_USERNAME", "str", None, "SASL user (overrides URL credentials, see above); a user without a "
       "password (or the reverse) is warned about", section=_K, aliases=("KAFKA_USER",)),
    _k("KAFKA_PASSWORD", "str", None, "SASL password (overrides URL credentials, see above)", section=_K,
       secret=True, aliases=("KAFKA_PASS",)),
    _k("KAFKA_SSL_CAFILE", "str", None, "CA bundle", section=_K),
    _k("KAFKA_SSL_CERTFILE", "str", None, "client certificate", section=_K),
    _k("KAFKA_SSL_KEYFILE", "str", None, "client private key", section=_K),
    _k("KAFKA_CLIENT_ID", "str", "ingest-probe", "client id", section=_K),
    _k("KAFKA_INGEST_TOPICS", "csv", None, "CSV of `dimension:topic` or `dimension=topic`", section=_KT),
    _k("KAFKA_INGEST_TOPIC_<DIM>", "str", None, "topic of one dimension (wins over KAFKA_INGEST_TOPICS); a "
       "near-miss of `_PARTITIONS`/`_REPLICATION_FACTOR`/`_CONFIG` (e.g. `_PARTITONS`, `_REPLICATION`) is an "
       "error, not a dimension", section=_KT),
    _k("KAFKA_INGEST_DEFAULT_TOPIC", "str", None, "topic of the `default` dimension", section=_KT),
    _k("KAFKA_INGEST_CONSUMER_TOPICS", "csv", None, "topics consumed (dimension `consumer`)", section=_KT),
    _k("KAFKA_INGEST_TOPIC_PARTITIONS", "int", "1", f"partitions of every topic (at most {MAX_PARTITIONS})",
       section=_KT, minimum=1, maximum=MAX_PARTITIONS),
    _k("KAFKA_INGEST_TOPIC_REPLICATION_FACTOR", "int", "1", "replication factor of every topic (at most "
       f"{MAX_REPLICATION_FACTOR})", section=_KT, minimum=1, maximum=MAX_REPLICATION_FACTOR),
    _k("KAFKA_INGEST_TOPIC_CONFIG", "json", "{}", "topic configs of every topic (JSON object)", section=_KT),
    _k("KAFKA_INGEST_TOPIC_<DIM>_PARTITIONS", "int", None, "partitions for one dimension's topic",
       section=_KT, minimum=1, maximum=MAX_PARTITIONS),
    _k("KAFKA_INGEST_TOPIC_<DIM>_REPLICATION_FACTOR", "int", None, "replication factor for one dimension",
       section=_KT, minimum=1, maximum=MAX_REPLICATION_FACTOR),
    _k("KAFKA_INGEST_TOPIC_<DIM>_CONFIG", "json", None, "topic configs for one dimension (JSON object, "
       "merged over the global one)", section=_KT),
    _k("KAFKA_INGEST_DEFAULT_TOPIC_PARTITIONS", "int", None, "partitions of the default topic",
       section=_KT, minimum=1, maximum=MAX_PARTITIONS),
    _k("KAFKA_INGEST_DEFAULT_TOPIC_REPLICATION_FACTOR", "int", None, "replication factor of the default "
       "topic", section=_KT, minimum=1, maximum=MAX_REPLICATION_FACTOR),
    _k("KAFKA_INGEST_DEFAULT_TOPIC_CONFIG", "json", None, "topic configs of the default topic", section=_KT),
    _k("KAFKA_INGEST_CONSUMER_GROUP", "str", None, "consumer group id", section=_KT),
    _k("KAFKA_INGEST_CONSUMER_OFFSET_RESET", "choice", None, "auto.offset.reset", section=_KT,
       choices=("earliest", "latest", "none")),
    _k("KAFKA_INGEST_ENABLE_STREAMING", "bool", "false", "streaming ingest enabled", section=_KT),
    _k("KAFKA_INGEST_CONSUMER_ENABLED", "bool", "false", "consumer enabled", section=_KT),
)

_BY_NAME: dict[str, KeySpec] = {n: spec for spec in KEYS if not spec.is_pattern for n in spec.names}
_PATTERNS = {spec.name.rsplit(">", 1)[1]: spec for spec in KEYS if spec.is_pattern}
#: ``KAFKA_INGEST_TOPIC_<DIM>[_PARTITIONS|_REPLICATION_FACTOR|_CONFIG]``; exact keys are matched first.
TOPIC_KEY_RE = re.compile(
    r"KAFKA_INGEST_TOPIC_([A-Za-z0-9][A-Za-z0-9_]*?)(_PARTITIONS|_REPLICATION_FACTOR|_CONFIG)?"
)


def spec_for(key: str) -> KeySpec | None:
    """The spec of a key name, alias or pattern instance; ``None`` for an unknown key."""
    spec = _BY_NAME.get(key)
    if spec is not None:
        return spec
    match = TOPIC_KEY_RE.fullmatch(key)
    if match is None:
        return None
    return _PATTERNS[match.group(2) or ""]


_LEADING_NAME = re.compile(r"\s*(?:export\s+)?[\"']?([A-Za-z_][A-Za-z0-9_.]*)")


def known_name_at(text: str) -> str | None:
    """The known key a line of a file starts with (``REDIS_PORT: x`` → REDIS_PORT), else None.

    Only a *known* key name is ever quoted from a broken line: anything else on it may be a secret.
    """
    match = _LEADING_NAME.match(text)
    if match is None:
        return None
    for name in (match.group(1), match.group(1).upper()):
        if spec_for(name) is not None:
            return name
    return None


def topic_key_parts(key: str) -> tuple[str, str] | None:
    """``KAFKA_INGEST_TOPIC_DAILY_PARTITIONS`` → ``("daily", "_PARTITIONS")``; ``None`` if no pattern key."""
    if key in _BY_NAME:
        return None
    match = TOPIC_KEY_RE.fullmatch(key)
    return None if match is None else (match.group(1).lower(), match.group(2) or "")


#: Spellings a ``KAFKA_INGEST_TOPIC_...`` key may end in by mistake, each with the suffix meant.
_SUFFIX_WORDS = {
    "PARTITIONS": "PARTITIONS", "PARTITION": "PARTITIONS", "NUM_PARTITIONS": "PARTITIONS",
    "REPLICATION_FACTOR": "REPLICATION_FACTOR", "REPLICATION": "REPLICATION_FACTOR",
    "REPLICAS": "REPLICATION_FACTOR", "REPLICA_FACTOR": "REPLICATION_FACTOR",
    "CONFIG": "CONFIG", "CONFIGS": "CONFIG",
}
#: High enough that dimensions like OPTIONS (0.71 to PARTITIONS) or POSITIONS (0.74) are not typos.
#: (No CONFIGURATION: CONFIRMATIONS, a likely dimension, is 0.85 from it.)
_SUFFIX_CUTOFF = 0.8


def misspelt_topic_key(key: str) -> str | None:
    """The key meant by a ``KAFKA_INGEST_TOPIC_...`` key that only *looks* like a topic key, else ``None``.

    ``TOPIC_KEY_RE`` reads any ``KAFKA_INGEST_TOPIC_<X>`` as the topic of dimension ``X``; when the end of
    ``X`` (one or more ``_``-separated words, or all of it) is a near-miss of a per-topic setting,
    ``KAFKA_INGEST_TOPIC_PARTITONS=3`` would otherwise declare a topic named "3".
    """
    match = TOPIC_KEY_RE.fullmatch(key)
    if key in _BY_NAME or match is None:
        return None
    words = match.group(1).upper().split("_")
    for start in range(len(words)):
        tail = "_".join(words[start:])
        close = difflib.get_close_matches(tail, list(_SUFFIX_WORDS), n=1, cutoff=_SUFFIX_CUTOFF)
        if close:
            head = "_".join(words[:start])
            return f"KAFKA_INGEST_TOPIC_{head + '_' if head else ''}{_SUFFIX_WORDS[close[0]]}"
    return None


def is_ours(key: str) -> bool:
    upper = key.upper()
    return upper.startswith(OUR_PREFIXES) and not upper.startswith(IGNORED_PREFIXES)


#: difflib ratio from which an unknown key counts as a misspelling of a known one (besides one edit, below).
#: 0.9 is about two edits in a 20-character name. Lower lets in other software's variables that share our
#: prefixes: ``KAFKA_BROKER_ID`` (Kafka images) is 0.857 from ``KAFKA_BROKERS``, ``REDIS_NAME`` (docker
#: links) 0.833 from ``REDIS_USERNAME``, ``KAFKA_OPTS`` 0.8 from ``KAFKA_PASS``, ``TIMESCALEDB_VERSION`` 0.8
#: from ``TIMESCALEDB_USER``. A ratio alone misses one wrong letter in a short name (``REDIS_DV`` is 0.875
#: from ``REDIS_DB``), hence the one-edit rule.
CLOSE_RATIO = 0.9


def _one_edit_apart(a: str, b: str) -> bool:
    """At most one inserted, deleted or replaced character, or two adjacent ones swapped."""
    if abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) != len(b):
        short, long_ = (a, b) if len(a) < len(b) else (b, a)
        return short[i:] == long_[i + 1 :]
    return a[i + 1 :] == b[i + 1 :] or (a[i + 2 :] == b[i + 2 :] and a[i : i + 2] == b[i : i + 2][::-1])


def closest_known(key: str) -> str | None:
    """The known key name ``key`` is plausibly a misspelling of, else ``None`` (never a far-off guess).

    Close means: one edit apart (case ignored), or a difflib ratio of at least ``CLOSE_RATIO``. One-edit
    candidates come first, then the highest ratio; ties go to the earlier key in the registry.
    """
    upper = key.upper()
    best: tuple[bool, float] | None = None
    found = None
    for name in _BY_NAME:
        one_edit = _one_edit_apart(upper, name)
        matcher = difflib.SequenceMatcher(None, upper, name)
        if not one_edit and matcher.real_quick_ratio() < CLOSE_RATIO:
            continue
        ratio = matcher.ratio()
        if (one_edit or ratio >= CLOSE_RATIO) and (best is None or (one_edit, ratio) > best):
            best, found = (one_edit, ratio), name
    return found


_INTRO = (
    "Names in \"also …\" are aliases of the key, listed in precedence order: when several names of one "
    "key are set, the first listed wins whatever source each comes from — an alias never overrides across "
    "sources (a `--extra TIMESCALE_URL=…` loses to `TIMESCALEDB_URL` from the YAML file, with a warning); "
    "to override, set the first name. Precedence between sources applies to one and the same name. Type "
    "`host`: a DNS name (underscores allowed) or an IPv4/IPv6 literal, without brackets; anything else "
    "(spaces, `/`, `|`, Unix-socket paths) is an error. Type `int`: decimal ASCII digits (no `²`, `1_000` or "
    "`0x10`), within the range given, else at most 2147483647; type `float`: a finite decimal number of "
    "seconds > 0 (at most a day unless stated). No value may hold a control character, a byte-order mark "
    "or bytes that are not UTF-8."
)
_SECTION_NOTES = {
    _T: "The generic libpq variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, "
        "`PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`) and `DATABASE_URL` are fallbacks used only as a whole: "
        "they apply only when no `TIMESCALEDB_*`/`TIMESCALE_*` URL or host is set in any source "
        "(`TIMESCALEDB_URL`, `TIMESCALE_URL`, `TIMESCALEDB_HOST`, `TIMESCALE_HOST`). When such a target is "
        "set they are all ignored, with one warning naming them; ignored values are not validated.",
    _R: f"`REDIS_URL` and the part keys below combine by source: {URL_PARTS_RULE} (with a warning naming the "
        "key set aside). Example: with `REDIS_URL=redis://cache:6380/1` in `--env-file prod.env`, a "
        "`REDIS_HOST=old` left in the shell is ignored (a warning says so) while `--extra REDIS_HOST=other` "
        "wins; a `REDIS_PASSWORD` from the environment still supplies the password that URL leaves out.",
    _K: f"URL credentials and scheme in `KAFKA_BROKERS` and the keys `KAFKA_USERNAME`, `KAFKA_PASSWORD`, "
        f"`KAFKA_SECURITY_PROTOCOL` combine as for Redis: {URL_PARTS_RULE}.",
}


def markdown_table() -> str:
    """The key table for the README, one section per group, generated from ``KEYS``."""
    lines: list[str] = [_INTRO]
    section = ""
    for spec in KEYS:
        if spec.section != section:
            section = spec.section
            note = ["", _SECTION_NOTES[section]] if section in _SECTION_NOTES else []
            lines += ["", f"### {section}", *note, "", "| Key | Type | Default | Description |",
                      "|---|---|---|---|"]
        kind = "/".join(spec.choices) if spec.choices else spec.kind
        also = f" (also {', '.join(f'`{a}`' for a in spec.aliases)})" if spec.aliases else ""
        secret = " Secret." if spec.secret else ""
        default = f"`{spec.default}`" if spec.default is not None else "—"
        desc = f"{spec.description}{also}.{secret}".replace("|", "\\|")
        lines.append(f"| `{spec.name}` | {kind.replace('|', '/')} | {default} | {desc} |")
    return "\n".join(lines).strip() + "\n"
