"""The TimescaleDB/PostgreSQL probe (asyncpg) on the warm-client lifecycle, and the SQLite rehearsal in its place."""

from __future__ import annotations

import os
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
        is always ``False`` or an ``SSLContext`` built from the settings, never a mode string (see
        ``_pg_connect.transports``: the ``allow``/``prefer`` fallback is done there, as libpq does it).
        """
        s = self.settings
        assert s.host is not None
        if not s.host.startswith("/"):  # a unix socket directory needs no name resolution
            with rec.phase("resolve"):
                await resolve(s.host, s.port)
        attempts = await connect.transports(s)
        with rec.phase("connect"):
            self._client = await self._connect(attempts)
        return self._client

    async def _connect(self, attempts: list[connect.SslArg]) -> Any:
        """The attempts in order until one connects (libpq's allow/prefer fallback); else the failure worth
        reporting is raised, with ``tls_required`` set for the error table."""
        s = self.settings
        mode = connect.sslmode(s)
        first: BaseException | None = None
        for number, ssl_arg in enumerate(attempts, start=1):
            try:
                return await self._connect_once(ssl_arg)
            except BaseException as exc:
                if number < len(attempts) and connect.falls_back(exc, tls=bool(ssl_arg)):
                    first = exc
                    continue
                if connect.upgrade_refused(first) and isinstance(exc, TimeoutError):
                    # Answered the SSLRequest with something other than 'S' (a PostgreSQL says 'N'), then
                    # not the plaintext startup: a slow server, or a service that is not PostgreSQL at all.
                    raise errors.ProbeTimeoutError(
                        f"no answer from {s.endpoint} to the plaintext startup after it refused TLS:"
                        " server overloaded or frozen — or is this really a PostgreSQL port? (a different service"
                        " may listen on that port)"
                    ) from exc
                self.tls_required = bool(ssl_arg) and mode not in ("allow", "prefer")
                if first is not None and connect.hides(first, exc):
                    raise first from None
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _connect_once(self, ssl_arg: connect.SslArg) -> Any:
        """One attempt, bounded by the configured ``connect_timeout`` or the deadline's budget, whichever is less."""
        s = self.settings
        left = budget()
        try:
            return await self._asyncpg_connect(ssl_arg, min(left, s.connect_timeout))
        except TimeoutError as exc:
            if s.connect_timeout >= left:
                raise  # the deadline's budget cut it: mapped as any connect timeout
            raise errors.ProbeTimeoutError(
                f"connect to {s.endpoint} timed out after {s.connect_timeout:g} s (the configured connect_timeout:"
                f" TIMESCALEDB_CONNECT_TIMEOUT or ?connect_timeout= in the URL): {SILENT_PEER}"
            ) from exc

    async def _asyncpg_connect(self, ssl_arg: connect.SslArg, limit: float) -> Any:
        import asyncpg

        s = self.settings
        # A server's absurd SCRAM iteration count is refused, not computed; failed TLS attempts leave no socket.
        with connect.scram_capped(), connect.sockets_aborted() as kept:
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
            row = await conn.fetchrow(_CHECK_SQL, timeout=budget())
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
