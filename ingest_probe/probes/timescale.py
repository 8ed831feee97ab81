"""The TimescaleDB/PostgreSQL probe (asyncpg), and the SQLite rehearsal backend it stands in for."""

from __future__ import annotations

import functools
import os
import ssl
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.probes._common import (
    CLOSE_BUDGET,
    bounded_close,
    budget,
    library_failure,
    map_os_error,
    one_line,
    resolve,
)
from ingest_probe.settings import TimescaleSettings

if TYPE_CHECKING:
    from ingest_probe.results import Recorder

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

#: One round trip for everything the report wants; ``1 AS ok`` is the ``SELECT 1`` of the spec.
_CHECK_SQL = """
SELECT 1 AS ok,
       pg_catalog.current_setting('server_version') AS server_version,
       pg_catalog.pg_is_in_recovery() AS in_recovery,
       (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'timescaledb') AS timescaledb,
       (SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'timescaledb')
           AS timescaledb_available,
       pg_catalog.current_setting('application_name') AS application_name,
       (SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()) AS tls
"""


class TimescaleProbe:
    """Connects with asyncpg and runs one query; keeps that one connection warm for the next ``check()``.

    ``backend == "sqlite"`` turns it into the rehearsal check: ``SELECT 1`` on a read-only SQLite file.
    """

    name = "timescale"
    phase_names: tuple[str, ...] = ("resolve", "connect", "query")

    def __init__(self, settings: TimescaleSettings) -> None:
        self.settings = settings
        self.configured = settings.configured
        self.endpoint = settings.endpoint
        self._conn: Any = None  # asyncpg.Connection once a check succeeded (warm) or is connecting
        self._lock = anyio.Lock()  # concurrent check() calls on one probe share one connection

    # ------------------------------------------------------------------------------------------ public

    async def check(self, rec: Recorder) -> None:
        async with self._lock:
            if self.settings.backend == "sqlite":
                await self._check_sqlite(rec)
                return
            await self._check_postgres(rec)

    async def aclose(self) -> None:
        """Close the warm connection politely (bounded, shielded), then abort it if that did not finish."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        from asyncpg.exceptions import InterfaceError, PostgresError

        async def polite() -> None:
            # close() aborts the transport itself before re-raising, so a failure here needs no more work.
            try:
                await conn.close(timeout=CLOSE_BUDGET * 0.9)
            except (OSError, PostgresError, InterfaceError):
                pass

        if not conn.is_closed():
            await bounded_close(polite)
        if not conn.is_closed():
            conn.terminate()

    # -------------------------------------------------------------------------------------- postgresql

    async def _check_postgres(self, rec: Recorder) -> None:
        s = self.settings
        if s.host is None:
            raise errors.NotFoundError(
                "no TimescaleDB host configured: set TIMESCALEDB_URL or TIMESCALEDB_HOST"
            )
        try:
            import asyncpg
        except ImportError as exc:
            raise errors.DriverError("asyncpg is not installed: pip install asyncpg") from exc
        if s.user is None:  # the one connection fact the manifest does not show
            rec.details["user_from_os"] = self._user()

        conn = self._conn
        if conn is not None and conn.is_closed():  # the server closed it while idle (restart, idle timeout)
            self._drop()
            conn = None
        if conn is not None:
            rec.details["reused_connection"] = True
            try:
                await self._query(rec, conn)
                return
            except errors.RefusedError:
                # The warm connection died under us (server restarted): one fresh attempt, then report that.
                self._drop()
            except BaseException:
                self._drop()
                raise
        rec.details["reused_connection"] = False
        try:
            await self._connect(rec, asyncpg)
            await self._query(rec, self._conn)
        except BaseException:
            self._drop()  # failed or cancelled: abort now, the next check reconnects
            raise

    def _sslmode(self) -> str:
        mode = (self.settings.sslmode or "prefer").strip().lower()
        if mode not in SSLMODES:
            raise errors.TlsError(f"unknown sslmode {mode!r}: use one of {', '.join(SSLMODES)}")
        return mode

    async def _connect(self, rec: Recorder, asyncpg: Any) -> None:
        """Connect with every setting passed explicitly, so the process environment decides nothing.

        asyncpg falls back to the environment for whatever is None: PGUSER/``getpass``, PGPASSWORD, then
        PGPASSFILE or ~/.pgpass, PGSSLMODE, PGSSLROOTCERT/PGSSLCERT/PGSSLKEY/PGSSLCRL and ~/.postgresql/*
        for any *string* sslmode, PGSSLNEGOTIATION, PGTARGETSESSIONATTRS, PGKRBSRVNAME, PGGSSLIB, and a
        service file for a DSN. So: no DSN; the user is given (see ``_user``); the password is always a
        string — ``""`` when none is configured: asyncpg reads PGPASSWORD and the passfile only when it is
        None, and sends a password only when the server asks for one (which then fails as ``auth``); TLS
        is always ``False`` or an ``SSLContext`` built from the settings, never a mode string. asyncpg
        treats a context as sslmode=require, so the ``allow``/``prefer`` fallback is done here, as libpq
        does it.
        """
        s = self.settings
        assert s.host is not None
        if not s.host.startswith("/"):  # a unix socket directory needs no name resolution
            with rec.phase("resolve"):
                await resolve(s.host, s.port)
        mode = self._sslmode()
        attempts: list[ssl.SSLContext | bool] = [False]
        if mode != "disable":
            context = await anyio.to_thread.run_sync(self._ssl_context, mode)  # reads cert files: off-loop
            # prefer: TLS first, then plaintext; allow: the other way round; stricter modes: TLS only.
            fallback: dict[str, list[ssl.SSLContext | bool]] = {"allow": [False, context], "prefer": [context, False]}
            attempts = fallback.get(mode, [context])
        with rec.phase("connect"):
            first: BaseException | None = None
            for number, ssl_arg in enumerate(attempts, start=1):
                try:
                    self._conn = await self._connect_once(asyncpg, ssl_arg)
                    return
                except BaseException as exc:
                    if number < len(attempts) and self._falls_back(exc, tls=bool(ssl_arg)):
                        first = exc
                        continue
                    if _upgrade_refused(first) and isinstance(exc, TimeoutError):
                        # Answered the SSLRequest with something other than 'S' (a PostgreSQL says 'N'), then
                        # not the plaintext startup: a slow server, or a service that is not PostgreSQL at all.
                        raise errors.ProbeTimeoutError(
                            f"no answer from {self.endpoint} to the plaintext startup after it refused TLS:"
                            " server overloaded or frozen — or is this not a PostgreSQL port?"
                        ) from exc
                    failure = first if first is not None and _hides(first, exc) else exc
                    mapped = self._map(failure, tls_required=bool(ssl_arg) and mode not in ("allow", "prefer"))
                    if mapped is None:
                        raise
                    raise mapped from failure

    async def _connect_once(self, asyncpg: Any, ssl_arg: ssl.SSLContext | bool) -> Any:
        s = self.settings
        return await asyncpg.connect(
            None,
            host=s.host,
            port=s.port,
            user=self._user(),
            password=s.password.reveal() if s.password is not None else "",
            database=s.database,
            ssl=ssl_arg,
            direct_tls=False,
            target_session_attrs="any",
            timeout=budget(),
            command_timeout=budget(),
            # No named prepared statements: a probe gains nothing from caching and this keeps it
            # working through pgbouncer in transaction mode.
            statement_cache_size=0,
            server_settings={
                "application_name": s.application_name,
                "statement_timeout": str(int(s.statement_timeout_ms)),
            },
            **_gss_kwargs(),
        )

    def _falls_back(self, exc: BaseException, *, tls: bool) -> bool:
        """Whether an ``allow``/``prefer`` attempt failed so that the other transport is worth a try.

        As asyncpg and libpq do it: the server refused the TLS upgrade (prefer), or pg_hba.conf rejected
        this transport before authentication succeeded (``28000``/``28P01``, e.g. hostssl-only lines).
        """
        from asyncpg import exceptions as pgx

        if isinstance(exc, pgx.InvalidAuthorizationSpecificationError):
            return True
        return tls and _upgrade_refused(exc)

    def _user(self) -> str:
        """The configured user; without one, the OS account name, as libpq does (never PGUSER or $USER)."""
        return self.settings.user or os_user()

    def _ssl_context(self, mode: str) -> ssl.SSLContext:
        """The client context for any sslmode but disable, built only from the settings (no env, no ~).

        libpq semantics: ``allow``/``prefer`` never verify the server; ``require`` verifies the chain only
        when a root cert is given; ``verify-ca`` checks the chain, ``verify-full`` also the host name.
        Without ``sslrootcert`` (or with ``system``) the system trust store is used. A configured client
        certificate is offered in every mode.
        """
        s = self.settings
        files = (("sslrootcert", s.sslrootcert), ("sslcert", s.sslcert), ("sslkey", s.sslkey))
        for key, path in files:
            if path and path != "system" and not os.path.exists(path):
                raise errors.TlsError(f"{key} file {path} does not exist: check the {key} setting")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            if mode in ("allow", "prefer") or (mode == "require" and not s.sslrootcert):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx.check_hostname = mode == "verify-full"
                ctx.verify_mode = ssl.CERT_REQUIRED
                if s.sslrootcert and s.sslrootcert != "system":
                    ctx.load_verify_locations(cafile=s.sslrootcert)
                else:
                    ctx.load_default_certs()
            if s.sslcert:
                password = s.sslpassword.reveal() if s.sslpassword is not None else None
                ctx.load_cert_chain(s.sslcert, keyfile=s.sslkey, password=password)
        except (ssl.SSLError, OSError) as exc:
            detail = one_line(exc, secrets=[s.sslpassword])
            raise errors.TlsError(
                f"cannot load TLS files ({detail}): check sslrootcert/sslcert/sslkey"
            ) from exc
        return ctx

    async def _query(self, rec: Recorder, conn: Any) -> None:
        s = self.settings
        with rec.phase("query"):
            try:
                row = await conn.fetchrow(_CHECK_SQL, timeout=budget())
            except BaseException as exc:
                mapped = self._map(exc, tls_required=False, querying=True)
                if mapped is None:
                    raise
                raise mapped from exc
        rec.details.update(
            server_version=row["server_version"],
            in_recovery=row["in_recovery"],
            timescaledb=row["timescaledb"],
            application_name=row["application_name"],
            tls=bool(row["tls"]),
        )
        if row["timescaledb"] is None:
            if row["timescaledb_available"] is not None:
                note = (
                    f"timescaledb {row['timescaledb_available']} is available on the server but not created"
                    f" in database {s.database!r}: run CREATE EXTENSION timescaledb"
                )
            else:
                note = "timescaledb extension is not installed on this server (plain PostgreSQL)"
            rec.details["timescaledb_note"] = note
            if s.require_extension:
                raise errors.QueryError(
                    f"{self.endpoint}: {note} (TIMESCALEDB_REQUIRE_EXTENSION=true requires it)"
                )

    def _where(self, what: str) -> str:
        """Where the operator fixes ``what``: the URL key it came from, or the part settings."""
        source = self.settings.url_source_key
        return f"{what} in {source}" if source else f"configured {what}"

    def _drop(self) -> None:
        """Forget the connection after a failure: abort it now (no polite close to a server in trouble)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    def _map(
        self, exc: BaseException, *, tls_required: bool, querying: bool = False
    ) -> errors.ProbeError | None:
        """asyncpg / socket / TLS failures onto the error tree, most specific first; None: not ours."""
        from asyncpg import exceptions as pgx

        s = self.settings
        ep = self.endpoint
        user, db = self._user(), s.database
        text = one_line(exc, secrets=[s.password, s.sslpassword])  # asyncpg's str() has DETAIL/HINT too

        if isinstance(exc, errors.ProbeError):
            return exc
        if isinstance(exc, pgx.InvalidPasswordError) and s.password is None:
            return errors.AuthError(
                f"{ep} requires a password for user {user!r} and none is configured: set"
                " TIMESCALEDB_PASSWORD or put it in the URL (~/.pgpass is never read)"
            )
        if isinstance(exc, pgx.InvalidPasswordError):
            fix = self._where("user/password")
            return errors.AuthError(f"{ep} rejected the password for user {user!r}: check the {fix} ({text})")
        if isinstance(exc, pgx.InvalidAuthorizationSpecificationError):
            if "no encryption" in text:
                # pg_hba.conf only has hostssl lines for us. PostgreSQL reports it as an authorization
                # failure, but the fix is on our side: turn TLS on. So we call it what it is: TLS required.
                return errors.TlsError(
                    f"{ep} requires TLS for user {user!r} (pg_hba.conf has no entry without encryption):"
                    " set sslmode=require or verify-full"
                )
            if "SSL encryption" in text:
                return errors.TlsError(
                    f"{ep} refuses TLS connections for user {user!r} (pg_hba.conf has no hostssl entry):"
                    " set sslmode=prefer or disable, or ask the DBA"
                )
            if "pg_hba.conf" in text:
                return errors.AuthError(
                    f"{ep} does not allow this client (pg_hba.conf): ask the DBA ({text})"
                )
            return errors.AuthError(f"{ep} refused user {user!r}: check the {self._where('user')} ({text})")
        if isinstance(exc, pgx.InvalidCatalogNameError):
            return errors.NotFoundError(
                f"database {db!r} does not exist on {ep}: check the {self._where('database name')}"
            )
        if isinstance(exc, pgx.CannotConnectNowError):
            return errors.StartingError(f"{ep} is not accepting connections yet ({text}): retry shortly")
        if isinstance(exc, pgx.TooManyConnectionsError):
            return errors.RefusedError(f"{ep} has no free connection slots: {text}")
        lost = errors.RefusedError(f"connection to {ep} was lost: server restarted or crashed? ({text})")
        if isinstance(exc, pgx.ConnectionDoesNotExistError):
            return lost
        if isinstance(exc, pgx.PostgresError):
            sqlstate = getattr(exc, "sqlstate", None)
            step = "check query" if querying else "connection"
            return errors.QueryError(f"{ep} failed the {step} with SQLSTATE {sqlstate}: {text}")
        if isinstance(exc, pgx.ClientConfigurationError):
            return errors.DriverError(f"asyncpg rejected the connection settings for {ep}: {text}")
        if isinstance(exc, pgx.InterfaceError) and querying:  # "connection is closed" and the like
            return lost
        if isinstance(exc, pgx.InternalClientError):  # asyncpg's ProtocolError and friends
            return errors.ProtocolError(f"{ep} sent something that is not PostgreSQL protocol: {text}")
        if isinstance(exc, TimeoutError):
            step = "running the check query" if querying else "connecting (TCP, TLS, auth)"
            return errors.ProbeTimeoutError(
                f"no answer from {ep} while {step}: server frozen, overloaded or black-holed?"
            )
        if isinstance(exc, ConnectionError) and exc.errno is None:  # asyncpg's own, before the protocol
            if "rejected SSL upgrade" in text and tls_required:
                return errors.TlsError(
                    f"{ep} does not offer TLS but sslmode={self._sslmode()} requires it:"
                    " turn ssl on at the server or lower sslmode (or is this not a PostgreSQL port?)"
                )
            if "SSL" in text or "TLS" in text:
                return errors.ProtocolError(
                    f"{ep} broke off the TLS negotiation ({text}): is this a PostgreSQL port?"
                )
        if isinstance(exc, ssl.SSLCertVerificationError):
            also = " and that the host name is in the certificate" if self._sslmode() == "verify-full" else ""
            return errors.TlsError(
                f"TLS certificate of {ep} not trusted ({exc.verify_message}): check sslrootcert (the CA"
                f" that signed the server certificate){also}"
            )
        if isinstance(exc, OSError):
            mapped = map_os_error(exc, ep)
            if mapped is not None:
                return mapped
            return errors.RefusedError(f"connection to {ep} failed ({text}): is this a PostgreSQL port?")
        # Anything else asyncpg raised from its own code (a TypeError in its parser, an InterfaceError about
        # an unknown auth method…) means the peer is not speaking PostgreSQL; from our code, it is a bug.
        return library_failure(
            exc, package="asyncpg", protocol="PostgreSQL", endpoint=ep, secrets=[s.password, s.sslpassword]
        )

    # ------------------------------------------------------------------------------------------ sqlite

    async def _check_sqlite(self, rec: Recorder) -> None:
        path = self.settings.sqlite_path
        if not path:
            raise errors.NotFoundError("no SQLite rehearsal path configured")
        rec.current_phase = "query"
        # abandon_on_cancel: a stuck file system must not hold the run past its deadline; the worker
        # finishes (and closes its handle) on its own.
        open_ms, query_ms, version = await anyio.to_thread.run_sync(
            _sqlite_select_one, path, budget(), abandon_on_cancel=True
        )
        rec.current_phase = None
        rec.phases["connect"] = open_ms
        rec.phases["query"] = query_ms
        rec.details.update(sqlite_version=version, read_only=True)  # the path is in the manifest's url
        rec.degrade(
            "rehearsal",
            f"SQLite rehearsal backend, not TimescaleDB: {path} answered SELECT 1;"
            " point TIMESCALEDB_URL at PostgreSQL/TimescaleDB for production",
        )


def os_user() -> str:
    """The name of the account this process runs as (libpq's default user), never read from the environment.

    ``getpass.getuser()`` (asyncpg's fallback) trusts LOGNAME/USER/LNAME/USERNAME first. Where there is no
    ``pwd`` module (Windows) it is the only portable answer, so it is used there.
    """
    try:
        import pwd
    except ImportError:  # pragma: no cover - not POSIX
        import getpass

        return getpass.getuser()
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no passwd entry (some containers): libpq fails too, so name the uid
        return str(os.getuid())


def _upgrade_refused(exc: BaseException | None) -> bool:
    """asyncpg's "rejected SSL upgrade": the peer answered the SSLRequest with anything but ``S``."""
    return isinstance(exc, ConnectionError) and exc.errno is None and "rejected SSL upgrade" in str(exc)


def _hides(first: BaseException, second: BaseException) -> bool:
    """After a fallback, whether the first attempt's error is the one to report.

    It is when the first transport got as far as authentication (a wrong password, a missing client
    certificate) and the second was merely turned away (pg_hba.conf has no entry for it, or the server hung
    up): that rejection says nothing the operator can act on. asyncpg applies the same rule to passwords.
    """
    from asyncpg import exceptions as pgx

    turned_away = isinstance(second, pgx.ConnectionDoesNotExistError) or (
        isinstance(second, pgx.InvalidAuthorizationSpecificationError)
        and not isinstance(second, pgx.InvalidPasswordError)
        and "pg_hba.conf" in str(second)
    )
    return turned_away and isinstance(first, pgx.InvalidAuthorizationSpecificationError)


@functools.cache
def _gss_kwargs() -> dict[str, str]:
    """GSSAPI settings asyncpg would otherwise read from PGKRBSRVNAME/PGGSSLIB (libpq's defaults)."""
    import inspect

    import asyncpg

    params = inspect.signature(asyncpg.connect).parameters
    if "krbsrvname" not in params:  # asyncpg without GSSAPI support reads neither variable
        return {}
    return {"krbsrvname": "postgres", "gsslib": "sspi" if sys.platform == "win32" else "gssapi"}


def _sqlite_select_one(path: str, timeout: float) -> tuple[float, float, str]:
    """Worker thread: open ``path`` read-only (never creates it), ``SELECT 1``; returns timings in ms."""
    import sqlite3

    if not os.path.exists(path):
        raise errors.NotFoundError(
            f"SQLite rehearsal file {path} does not exist (not created by the probe): check the path in"
            " TIMESCALEDB_URL"
        )
    started = time.monotonic()
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise errors.QueryError(f"cannot open SQLite file {path} read-only: {one_line(exc)}") from exc
    try:
        opened = time.monotonic()
        try:
            conn.execute("SELECT 1").fetchone()
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: is it SQLite?
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise errors.ProtocolError(f"{path} is not an SQLite database: {one_line(exc)}") from exc
            raise errors.QueryError(f"SELECT 1 on SQLite file {path} failed: {one_line(exc)}") from exc
        done = time.monotonic()
    finally:
        conn.close()
    return (opened - started) * 1000.0, (done - opened) * 1000.0, sqlite3.sqlite_version
