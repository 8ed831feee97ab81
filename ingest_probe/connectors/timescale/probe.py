"""The TimescaleDB/PostgreSQL probe (asyncpg), and the SQLite rehearsal backend it stands in for."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.connectors._log_secrets import HeldSecrets
from ingest_probe.connectors._net import (
    SILENT_PEER,
    budget,
    connection_reset,
    in_daemon_thread,
    one_line,
    resolve,
)
from ingest_probe.connectors.timescale import connect as _pg_connect
from ingest_probe.defaults import CLOSE_BUDGET

if TYPE_CHECKING:
    from ingest_probe.connectors.timescale.settings import TimescaleSettings
    from ingest_probe.results import Recorder

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

    phase_names: tuple[str, ...] = ("resolve", "connect", "query")

    def __init__(self, settings: TimescaleSettings) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint
        self._conn: Any = None  # asyncpg.Connection once a check succeeded (warm) or is connecting
        #: The passwords, scrubbed from the client libraries' log records while a connection may use them.
        self._secrets = HeldSecrets([settings.password, settings.sslpassword])
        self._lock = anyio.Lock()  # concurrent check() calls on one probe share one connection

    # ------------------------------------------------------------------------------------------ public

    async def check(self, rec: Recorder) -> None:
        self._secrets.hold()
        async with self._lock:
            if self.settings.backend == "sqlite":
                await self._check_sqlite(rec)
                return
            await self._check_postgres(rec)

    async def aclose(self) -> None:
        """Close the warm connection politely within the caller's deadline (the owner shields it), else abort.

        asyncpg's own close timeout is a share of that deadline; cancelled or failed, the connection is
        terminated at once (no await), so nothing is left open.
        """
        conn = self._conn
        if conn is None:
            self._secrets.release()
            return
        from asyncpg.exceptions import InterfaceError, PostgresError

        try:
            if not conn.is_closed():
                # close() aborts the transport itself before re-raising, so a failure here needs no more work.
                await conn.close(timeout=budget(share=0.9, default=CLOSE_BUDGET))
        except (OSError, PostgresError, InterfaceError):  # TimeoutError is an OSError
            pass
        finally:
            if not conn.is_closed():
                conn.terminate()
            if self._conn is conn:
                self._conn = None
            self._secrets.release()

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
            except errors.ProbeError as exc:
                self._drop()
                if not _lost_connection(exc.__cause__):
                    raise
                # The warm connection died under us before any reply (a server restart the loop has not
                # seen yet, a middlebox's idle-timeout RST): one fresh attempt in the same deadline.
                rec.details["reconnected"] = True
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

    async def _connect(self, rec: Recorder, asyncpg: Any) -> None:
        """Connect with every setting passed explicitly, so the process environment decides nothing.

        asyncpg falls back to the environment for whatever is None: PGUSER/``getpass``, PGPASSWORD, then
        PGPASSFILE or ~/.pgpass, PGSSLMODE, PGSSLROOTCERT/PGSSLCERT/PGSSLKEY/PGSSLCRL and ~/.postgresql/*
        for any *string* sslmode, PGSSLNEGOTIATION, PGTARGETSESSIONATTRS, PGKRBSRVNAME, PGGSSLIB, and a
        service file for a DSN. So: no DSN; the user is given (see ``_user``); the password is always a
        string — ``""`` when none is configured: asyncpg reads PGPASSWORD and the passfile only when it is
        None, and sends a password only when the server asks for one (which then fails as ``auth``); TLS
        is always ``False`` or an ``SSLContext`` built from the settings, never a mode string (see
        ``_pg_connect.transports``: the ``allow``/``prefer`` fallback is done there, as libpq does it).
        """
        s = self.settings
        assert s.host is not None
        if not s.host.startswith("/"):  # a unix socket directory needs no name resolution
            with rec.phase("resolve"):
                await resolve(s.host, s.port)
        attempts = await _pg_connect.transports(s)
        with rec.phase("connect"):
            self._conn = await _pg_connect.connect(
                s, attempts, lambda ssl_arg: self._connect_once(asyncpg, ssl_arg), user=self._user()
            )

    async def _connect_once(self, asyncpg: Any, ssl_arg: _pg_connect.SslArg) -> Any:
        """One attempt, bounded by the configured ``connect_timeout`` or the deadline's budget, whichever is less."""
        s = self.settings
        left = budget()
        try:
            return await self._asyncpg_connect(asyncpg, ssl_arg, min(left, s.connect_timeout))
        except TimeoutError as exc:
            if s.connect_timeout >= left:
                raise  # the deadline's budget cut it: mapped as any connect timeout
            raise errors.ProbeTimeoutError(
                f"connect to {s.endpoint} timed out after {s.connect_timeout:g} s (the configured connect_timeout:"
                f" TIMESCALEDB_CONNECT_TIMEOUT or ?connect_timeout= in the URL): {SILENT_PEER}"
            ) from exc

    async def _asyncpg_connect(self, asyncpg: Any, ssl_arg: _pg_connect.SslArg, limit: float) -> Any:
        s = self.settings
        with _pg_connect.scram_capped():  # a server's absurd SCRAM iteration count is refused, not computed
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
                timeout=limit,
                command_timeout=budget(),
                # No named prepared statements: a probe gains nothing from caching and this keeps it
                # working through pgbouncer in transaction mode.
                statement_cache_size=0,
                server_settings={
                    "application_name": s.application_name,
                    "statement_timeout": str(int(s.statement_timeout_ms)),
                },
                **_pg_connect.gss_kwargs(),
            )

    def _user(self) -> str:
        """The configured user; without one, the OS account name, as libpq does (never PGUSER or $USER)."""
        return self.settings.user or os_user()

    async def _query(self, rec: Recorder, conn: Any) -> None:
        s = self.settings
        with rec.phase("query"):
            try:
                row = await conn.fetchrow(_CHECK_SQL, timeout=budget())
            except BaseException as exc:
                mapped = _pg_connect.map_pg_error(exc, s, user=self._user(), tls_required=False, querying=True)
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

    def _drop(self) -> None:
        """Forget the connection after a failure: abort it now (no polite close to a server in trouble)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    # ------------------------------------------------------------------------------------------ sqlite

    async def _check_sqlite(self, rec: Recorder) -> None:
        path = self.settings.sqlite_path
        if not path:
            raise errors.NotFoundError("no SQLite rehearsal path configured")
        rec.current_phase = "query"
        # A daemon thread, abandoned when the deadline cancels us: a stuck file system must hold neither
        # the run past its deadline nor the process at exit (the interpreter joins anyio's worker threads).
        # The worker finishes (and closes its handle) on its own if the call ever returns.
        key = self.settings.url_source_key or "TIMESCALEDB_URL"
        open_ms, query_ms, version = await in_daemon_thread(_sqlite_select_one, path, budget(), key)
        rec.current_phase = None
        rec.phases["connect"] = open_ms
        rec.phases["query"] = query_ms
        rec.details.update(sqlite_version=version, read_only=True)  # the path is in the manifest's url
        rec.degrade(
            "rehearsal",
            f"SQLite rehearsal backend, not TimescaleDB: {path} answered SELECT 1;"
            " point TIMESCALEDB_URL at PostgreSQL/TimescaleDB for production",
        )


def _lost_connection(exc: BaseException | None) -> bool:
    """Whether a reused connection failed because it is gone, not because the server answered or hung.

    After a restart asyncpg may still hold the old connection: the FATAL the server sent while it was idle
    leaves its protocol in a state where the next query fails with ``InternalClientError`` ("cannot switch
    to state 11") or an ``InterfaceError``; a middlebox's RST surfaces as a reset or broken pipe.
    """
    from asyncpg import exceptions as pgx

    gone = (
        pgx.InterfaceError,  # "connection is closed", "another operation is in progress"
        pgx.InternalClientError,  # "cannot switch to state 11"
        pgx.ConnectionDoesNotExistError,  # "connection was closed in the middle of operation"
        pgx.ConnectionFailureError,
        pgx.AdminShutdownError,  # the FATAL of a fast shutdown, read just now
    )
    return isinstance(exc, gone) or connection_reset(exc)


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


def _sqlite_select_one(path: str, timeout: float, key: str) -> tuple[float, float, str]:
    """Worker thread: open ``path`` read-only (never creates it), ``SELECT 1``; returns timings in ms.

    Only a regular file is opened: SQLite would block forever opening a FIFO and read a device.
    """
    import sqlite3

    absolute = os.path.abspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        hint = (
            f" ({path!r} is relative to the working directory {os.getcwd()}: absolute paths need"
            " sqlite:////abs/path)"
            if not os.path.isabs(path)
            else ""
        )
        raise errors.NotFoundError(
            f"SQLite rehearsal file {absolute} does not exist (not created by the probe): check the path in"
            f" {key}{hint}"
        ) from exc
    except OSError as exc:
        raise errors.QueryError(f"cannot stat SQLite rehearsal file {absolute}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise errors.ProtocolError(
            f"SQLite rehearsal path {absolute} is {what}, not an SQLite database file: check the path in {key}"
        )
    started = time.monotonic()
    uri = Path(absolute).as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise errors.QueryError(f"cannot open SQLite file {absolute} read-only: {one_line(exc)}") from exc
    try:
        opened = time.monotonic()
        try:
            conn.execute("SELECT 1").fetchone()
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: is it SQLite?
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise errors.ProtocolError(f"{absolute} is not an SQLite database: {one_line(exc)}") from exc
            raise errors.QueryError(f"SELECT 1 on SQLite file {absolute} failed: {one_line(exc)}") from exc
        done = time.monotonic()
    finally:
        conn.close()
    return (opened - started) * 1000.0, (done - opened) * 1000.0, sqlite3.sqlite_version
