"""The TimescaleDB/PostgreSQL probe (asyncpg) on the warm-client lifecycle, and the SQLite rehearsal in its place."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ingest_probe import errors
from ingest_probe.connectors._net import SILENT_PEER, budget, record_peer_certificate, resolve
from ingest_probe.connectors.base import WarmClient, map_error
from ingest_probe.connectors.timescale import connect, sqlite
from ingest_probe.connectors.timescale import errors as pg_errors
from ingest_probe.defaults import CLOSE_BUDGET

if TYPE_CHECKING:
    from ingest_probe.connectors.timescale.settings import TimescaleSettings
    from ingest_probe.results import Recorder

#: Every fact the report wants, as one JSON value. ``1 AS ok`` was the ``SELECT 1`` of the spec: a row is
#: the answer. pg_available_extensions (most of the query's server time) is read only when timescaledb is
#: not created in this database (a CASE branch not taken never runs its subquery).
_CHECK_SQL = """
SELECT pg_catalog.json_build_object(
    'server_version', pg_catalog.current_setting('server_version'),
    'in_recovery', pg_catalog.pg_is_in_recovery(),
    'timescaledb', ext.version,
    'timescaledb_available', CASE WHEN ext.version IS NULL THEN
        (SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'timescaledb') END,
    'application_name', pg_catalog.current_setting('application_name'),
    'tls', (SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()))
FROM (SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'timescaledb') AS version) AS ext
"""


class TimescaleProbe(WarmClient["TimescaleSettings", Any]):
    """Connects with asyncpg and runs one query; keeps that one connection warm for the next ``check()``.

    ``backend == "sqlite"`` turns it into the rehearsal check: ``SELECT 1`` on a read-only SQLite file.
    """

    library, protocol = "asyncpg", "PostgreSQL"

    def __init__(self, settings: TimescaleSettings) -> None:
        super().__init__(settings)
        #: Whether the connection attempt that failed required TLS (sslmode above prefer), for the error table.
        self.tls_required = False

    @property
    def user(self) -> str:
        """The configured user; without one, the OS account name, as libpq does (never PGUSER or $USER)."""
        return self.settings.user or os_user()

    async def check(self, rec: Recorder) -> None:
        if self.settings.backend == "sqlite":
            await sqlite.check(self.settings, rec)
            return
        if self.settings.host is None:
            raise errors.NotFoundError("no TimescaleDB host configured: set TIMESCALEDB_URL or TIMESCALEDB_HOST")
        try:
            import asyncpg  # noqa: F401  (before the phases: a missing driver is its own error)
        except ImportError as exc:
            raise errors.DriverError("asyncpg is not installed: pip install asyncpg") from exc
        if self.settings.user is None:  # the one connection fact the manifest does not show
            rec.details["user_from_os"] = self.user
        await super().check(rec)

    # ----------------------------------------------------------------------------------- lifecycle

    async def _stale(self, conn: Any) -> bool:
        return bool(conn.is_closed())  # the server closed it while idle (restart, idle timeout)

    def _lost(self, exc: Exception) -> bool:
        return pg_errors.lost(exc)

    async def _discard(self, conn: Any) -> None:
        conn.terminate()  # no polite close to a server in trouble

    async def _close(self, conn: Any) -> None:
        """asyncpg's own close timeout is a share of the caller's deadline; failed, ``_abort`` terminates."""
        from asyncpg.exceptions import InterfaceError, PostgresError

        try:
            if not conn.is_closed():
                # close() aborts the transport itself before re-raising, so a failure here needs no more work.
                await conn.close(timeout=budget(share=0.9, default=CLOSE_BUDGET))
        except (OSError, PostgresError, InterfaceError):  # TimeoutError is an OSError
            pass

    def _abort(self, conn: Any) -> None:
        if not conn.is_closed():
            conn.terminate()

    async def _map(self, exc: Exception, phase: str | None) -> errors.ProbeError | None:
        return map_error(pg_errors.table(), self, exc, phase)

    # ---------------------------------------------------------------------------------- the phases

    async def _open(self, rec: Recorder) -> Any:
        """Connect with every setting passed explicitly, so the process environment decides nothing.

        asyncpg falls back to the environment for whatever is None: PGUSER/``getpass``, PGPASSWORD, then
        PGPASSFILE or ~/.pgpass, PGSSLMODE, PGSSLROOTCERT/PGSSLCERT/PGSSLKEY/PGSSLCRL and ~/.postgresql/*
        for any *string* sslmode, PGSSLNEGOTIATION, PGTARGETSESSIONATTRS, PGKRBSRVNAME, PGGSSLIB, and a
        service file for a DSN. So: no DSN; the user is given (see ``_user``); the password is always a
        string — ``""`` when none is configured: asyncpg reads PGPASSWORD and the passfile only when it is
        None, and sends a password only when the server asks for one (which then fails as ``auth``); TLS
        is always ``False`` or an ``SSLContext`` built from the settings, never a mode string (the mode
        reaches asyncpg through ``connect.probe_connection``).
        """
        s = self.settings
        assert s.host is not None
        if not s.host.startswith("/"):  # a unix socket directory needs no name resolution
            with rec.phase("resolve"):
                await resolve(s.host, s.port)
        ssl_arg = await connect.ssl_arg(s)
        with rec.phase("connect"):
            self._client = await self._connect(ssl_arg)
        return self._client

    async def _connect(self, ssl_arg: connect.SslArg) -> Any:
        """One ``asyncpg.connect`` (it does libpq's allow/prefer fallback); a failure worth reporting is raised,
        with ``tls_required`` set for the error table. Bounded by the configured ``connect_timeout`` or the
        deadline's budget, whichever is less."""
        s = self.settings
        mode = connect.sslmode(s)
        left = budget()
        try:
            return await self._asyncpg_connect(ssl_arg, mode, min(left, s.connect_timeout))
        except TimeoutError as exc:
            if s.connect_timeout >= left:
                raise  # the deadline's budget cut it: mapped as any connect timeout
            raise errors.ProbeTimeoutError(
                f"connect to {s.endpoint} timed out after {s.connect_timeout:g} s (the configured connect_timeout:"
                f" TIMESCALEDB_CONNECT_TIMEOUT or ?connect_timeout= in the URL): {SILENT_PEER}"
            ) from exc
        except Exception as exc:
            self.tls_required = bool(ssl_arg) and mode not in ("allow", "prefer")
            first = exc.__cause__  # asyncpg's fallback raises the second attempt's error from the first's
            if first is not None and connect.hides(first, exc):
                raise first from None
            raise

    async def _asyncpg_connect(self, ssl_arg: connect.SslArg, mode: str, limit: float) -> Any:
        import asyncpg

        s = self.settings
        with connect.probe_connection(mode) as kept:
            conn = await asyncpg.connect(
                None,
                host=s.host,
                port=s.port,
                user=self.user,
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
                **connect.gss_kwargs(),
            )
            kept.append(conn)
            return conn

    async def _query(self, conn: Any, rec: Recorder) -> None:
        s = self.settings
        with rec.phase("query"):
            # COPY ... TO STDOUT is a simple-protocol query: one round trip, where a fetch (extended protocol,
            # no prepared statement) takes two. CSV quoting keeps the one JSON value intact.
            out: list[bytes] = []
            await conn.copy_from_query(_CHECK_SQL, output=_appender(out), format="csv", timeout=budget())
            row = json.loads(next(csv.reader([b"".join(out).decode()]))[0])
        record_peer_certificate(rec, conn._transport)  # private: asyncpg has no public transport accessor
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


def _appender(out: list[bytes]) -> Callable[[bytes], Awaitable[None]]:
    """A COPY output for asyncpg: the chunks, kept in memory (no executor thread, as a file would take)."""

    async def append(chunk: bytes) -> None:
        out.append(chunk)

    return append


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
