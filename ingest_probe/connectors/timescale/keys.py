"""The Timescale keys: the ingest database (``TIMESCALEDB_*``), its libpq fallbacks and the failover standby."""

from __future__ import annotations

from ingest_probe.config.keys import Fallback, KeySet, KeySpec, Kind, key, service_key
from ingest_probe.connectors.timescale.settings import (
    MAX_CONNECT_TIMEOUT,
    SSLMODES,
    STATEMENT_TIMEOUT_MS,
    shown_url,
)
from ingest_probe.defaults import CLIENT_NAME, CONNECT_TIMEOUT, POSTGRES_DATABASE, POSTGRES_PORT

_T, _FT = "Timescale", "Failover standby"
_TS = "Timescale: ingest service settings (not used by ingest-probe)"

_PARTS: tuple[tuple[str, Kind, str | None, str, tuple[str, ...]], ...] = (
    ("HOST", "host", None, "host name or address", ()),
    ("PORT", "int", str(POSTGRES_PORT), f"port (default {POSTGRES_PORT}; a Kubernetes service link `tcp://…` in "
             "the environment is ignored with a warning)", ()),
    ("USER", "str", None, "user name", ("USERNAME",)),
    ("PASSWORD", "str", None, "password", ()),
    ("DB", "str", POSTGRES_DATABASE, f"database name (default {POSTGRES_DATABASE})", ("DATABASE",)),
    ("SSLMODE", "choice", None, "libpq sslmode", ()),
    ("SSLROOTCERT", "str", None, "CA bundle used to verify the server", ()),
    ("SSLCERT", "str", None, "client certificate", ()),
    ("SSLKEY", "str", None, "client private key", ()),
    ("SSLPASSWORD", "str", None, "passphrase of the client key", ()),
)
_PG_ENV = {"HOST": "PGHOST", "PORT": "PGPORT", "USER": "PGUSER", "PASSWORD": "PGPASSWORD",
           "DB": "PGDATABASE", "SSLMODE": "PGSSLMODE", "SSLROOTCERT": "PGSSLROOTCERT",
           "SSLCERT": "PGSSLCERT", "SSLKEY": "PGSSLKEY"}

#: The generic libpq group and ``DATABASE_URL``: used only as a whole, and only when none of the Timescale
#: target keys is set in any source (a stray ``PGPORT`` must not re-target a configured host).
LIBPQ = Fallback(
    names=("DATABASE_URL", *sorted(_PG_ENV.values())),
    unless=("TIMESCALEDB_URL", "TIMESCALE_URL", "TIMESCALEDB_HOST", "TIMESCALE_HOST"),
    what="libpq fallback", sets="the Timescale target",
    rule="PG* and DATABASE_URL apply only when no TIMESCALEDB_*/TIMESCALE_* URL or host is set in any source",
)


def _parts(section: str, prefixes: tuple[str, ...], pg_aliases: bool) -> list[KeySpec]:
    specs = []
    for part, kind, default, text, suffix_aliases in _PARTS:
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


KEYS = KeySet(
    prefixes=("TIMESCALE",),
    fallbacks=(LIBPQ,),
    notes={_T: "The generic libpq variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, "
               "`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`) and `DATABASE_URL` are fallbacks used only "
               "as a whole: they apply only when no `TIMESCALEDB_*`/`TIMESCALE_*` URL or host is set in any "
               "source (`TIMESCALEDB_URL`, `TIMESCALE_URL`, `TIMESCALEDB_HOST`, `TIMESCALE_HOST`). When such a "
               "target is set they are all ignored, with one warning naming them; ignored values are not "
               "validated."},
    specs=(
        key("TIMESCALEDB_URL", "url", None, "PostgreSQL/TimescaleDB URL (SQLAlchemy forms accepted) or "
            "`sqlite:///path` for a rehearsal (a file: `sqlite:///:memory:` is refused); wins over the parts below "
            "whatever their sources. Query: `sslmode`, `sslrootcert`, "
            "`sslcert`, `sslkey`, `sslpassword`, `password`, `user`, `host`, `port`, `dbname`, `application_name`, "
            "`connect_timeout` are used, any other parameter is warned about and ignored; `DATABASE_URL` is a "
            "libpq fallback (see above)", section=_T, secret=True, aliases=("TIMESCALE_URL", "DATABASE_URL"),
            shown=shown_url),
        *_parts(_T, ("TIMESCALEDB", "TIMESCALE"), pg_aliases=True),
        key("TIMESCALEDB_APP", "str", CLIENT_NAME, f"application_name of the service and of the probe's connection "
            f"(unset: the probe's is `{CLIENT_NAME}`; the manifest's `service_defaults` has the service's)",
            section=_T, aliases=("TIMESCALE_APP",), legacy=("TIMESCALE_APPLICATION_NAME",),
            service_default="emp-timescale-ingest"),
        key("TIMESCALEDB_CONNECT_TIMEOUT", "float", f"{CONNECT_TIMEOUT:g}", "seconds each connection attempt (TCP, "
            "TLS, authentication) may take, capped by the probe deadline", section=_T, minimum=0,
            maximum=MAX_CONNECT_TIMEOUT),
        key("TIMESCALEDB_STATEMENT_TIMEOUT_MS", "int", str(STATEMENT_TIMEOUT_MS), "statement timeout in ms",
            section=_T, minimum=0),
        key("TIMESCALEDB_REQUIRE_EXTENSION", "bool", "false", "a missing timescaledb extension is `down`",
            section=_T),
        key("TIMESCALEDB_POOL_SIZE", "int", None, "pool size (PostgreSQL only)", section=_T, minimum=0),
        key("TIMESCALEDB_MAX_OVERFLOW", "int", None, "pool overflow (-1 = unlimited)", section=_T, minimum=-1),
        key("TIMESCALEDB_POOL_TIMEOUT", "float", None, "pool checkout timeout in seconds", section=_T, minimum=0),
        key("TIMESCALEDB_POOL_RECYCLE", "int", None, "pool recycle in seconds (-1 = never)", section=_T,
            minimum=-1),
        key("TIMESCALEDB_POOL_PRE_PING", "bool", None, "pool pre-ping", section=_T),
        key("TIMESCALEDB_FAILOVER_URL", "url", None, "standby database URL; wins over the parts below",
            section=_FT, secret=True, shown=shown_url),
        *_parts(_FT, ("TIMESCALEDB_FAILOVER",), pg_aliases=False),
        service_key("TIMESCALEDB_DRIVER", "SQLAlchemy driver of the service's URL (`postgresql+<driver>`); the probe"
                    " always speaks asyncpg", section=_TS, aliases=("PGDRIVER",)),
    ),
)
