"""asyncpg's failures onto the error tree, as one table (most specific first), and when a connection is lost.

Each rule gets the probe (settings, endpoint, user, whether the attempt required TLS), the exception and the
phase; ``query`` means the server already answered the startup and authentication. asyncpg's ``str()`` has
DETAIL/HINT too: it is cut to one line with the passwords blanked before any rule reads or shows it.
tests/test_error_tables.py builds each library exception and pins every rule.
"""

from __future__ import annotations

import functools
import ssl
from typing import TYPE_CHECKING, Protocol

from ingest_probe import errors
from ingest_probe.connectors._net import SILENT_PEER, connection_reset, in_chain, map_os_error
from ingest_probe.connectors.base import Rule, says, text
from ingest_probe.connectors.timescale.connect import ScramIterationsRefused, sslmode

if TYPE_CHECKING:
    from ingest_probe.connectors.timescale.settings import TimescaleSettings


class TimescaleProbe(Protocol):
    """What the rules read of the probe."""

    settings: TimescaleSettings
    endpoint: str | None
    #: Whether the connection attempt that failed required TLS (sslmode above prefer).
    tls_required: bool

    @property
    def user(self) -> str:
        """The user it logs in as."""


Pg = Rule[TimescaleProbe]



def _where(p: TimescaleProbe, what: str) -> str:
    """Where the operator fixes ``what``: the URL key it came from, or the part settings."""
    key = p.settings.url_source_key
    return f"{what} in {key}" if key else f"configured {what}"



def _querying(p: TimescaleProbe, exc: BaseException, phase: str | None) -> bool:
    return phase == "query"


def _scram(p: TimescaleProbe, exc: BaseException, phase: str | None) -> errors.ProbeError:
    refused = in_chain(exc, ScramIterationsRefused)  # asyncpg chains it in an InternalClientError
    assert refused is not None  # the rule's condition
    return errors.AuthError(
        f"{p.endpoint} asked for {refused.iterations} SCRAM iterations (PostgreSQL's default is 4096; more than"
        f" {refused.limit} is refused before hashing, it would stall the probe): a hostile server, or check"
        " scram_iterations and the role's password verifier"
    )


def _no_password(p: TimescaleProbe, exc: BaseException, phase: str | None) -> errors.ProbeError:
    return errors.AuthError(
        f"{p.endpoint} requires a password for user {p.user!r} and none is configured: set"
        " TIMESCALEDB_PASSWORD or put it in the URL (~/.pgpass is never read)"
    )


def _lost(p: TimescaleProbe, exc: BaseException, phase: str | None) -> errors.ProbeError:
    return errors.RefusedError(
        f"connection to {p.endpoint} was lost: server restarted or crashed? ({text(p, exc)})")


def _timeout(p: TimescaleProbe, exc: BaseException, phase: str | None) -> errors.ProbeError:
    if phase == "query":  # it answered the startup and authentication: PostgreSQL, just not answering now
        return errors.ProbeTimeoutError(
            f"no answer from {p.endpoint} while running the check query: server frozen, overloaded or black-holed?"
        )
    return errors.ProbeTimeoutError(f"no answer from {p.endpoint} while connecting (TCP, TLS, auth): {SILENT_PEER}")


def _untrusted(p: TimescaleProbe, exc: ssl.SSLCertVerificationError, phase: str | None) -> errors.ProbeError:
    also = " and that the host name is in the certificate" if sslmode(p.settings) == "verify-full" else ""
    return errors.TlsError(
        f"TLS certificate of {p.endpoint} not trusted ({exc.verify_message}): check sslrootcert (the CA"
        f" that signed the server certificate){also}"
    )


def _os(p: TimescaleProbe, exc: OSError, phase: str | None) -> errors.ProbeError:
    return map_os_error(exc, p.endpoint) or errors.RefusedError(
        f"connection to {p.endpoint} failed ({text(p, exc)}): is this a PostgreSQL port?")


def _before_the_protocol(p: TimescaleProbe, exc: BaseException, phase: str | None) -> bool:
    """asyncpg's own ``ConnectionError``, raised before the protocol starts (no errno)."""
    return isinstance(exc, ConnectionError) and exc.errno is None


@functools.cache
def table() -> tuple[Pg, ...]:
    """asyncpg / socket / TLS failures, most specific first."""
    from asyncpg import exceptions as pgx

    return (
        Rule("scram_iterations", Exception, _scram,
             when=lambda p, exc, phase: in_chain(exc, ScramIterationsRefused) is not None),
        Rule("password_missing", pgx.InvalidPasswordError, _no_password,
             when=lambda p, exc, phase: p.settings.password is None),
        Rule("password_rejected", pgx.InvalidPasswordError, lambda p, exc, phase: errors.AuthError(
            f"{p.endpoint} rejected the password for user {p.user!r}: check the {_where(p, 'user/password')}"
            f" ({text(p, exc)})")),
        # pg_hba.conf only has hostssl lines for us. PostgreSQL reports it as an authorization failure, but
        # the fix is on our side: turn TLS on. So we call it what it is: TLS required.
        Rule("tls_required_by_hba", pgx.InvalidAuthorizationSpecificationError, lambda p, exc, phase: errors.TlsError(
            f"{p.endpoint} requires TLS for user {p.user!r} (pg_hba.conf has no entry without encryption):"
            " set sslmode=require or verify-full"), when=says("no encryption")),
        Rule("tls_refused_by_hba", pgx.InvalidAuthorizationSpecificationError, lambda p, exc, phase: errors.TlsError(
            f"{p.endpoint} refuses TLS connections for user {p.user!r} (pg_hba.conf has no hostssl entry):"
            " set sslmode=prefer or disable, or ask the DBA"), when=says("SSL encryption")),
        Rule("client_not_allowed", pgx.InvalidAuthorizationSpecificationError, lambda p, exc, phase: errors.AuthError(
            f"{p.endpoint} does not allow this client (pg_hba.conf): ask the DBA ({text(p, exc)})"),
             when=says("pg_hba.conf")),
        Rule("user_refused", pgx.InvalidAuthorizationSpecificationError, lambda p, exc, phase: errors.AuthError(
            f"{p.endpoint} refused user {p.user!r}: check the {_where(p, 'user')} ({text(p, exc)})")),
        Rule("database_missing", pgx.InvalidCatalogNameError, lambda p, exc, phase: errors.NotFoundError(
            f"database {p.settings.database!r} does not exist on {p.endpoint}: check the"
            f" {_where(p, 'database name')}")),
        Rule("starting", pgx.CannotConnectNowError, lambda p, exc, phase: errors.StartingError(
            f"{p.endpoint} is not accepting connections yet ({text(p, exc)}): retry shortly")),
        Rule("no_free_slots", pgx.TooManyConnectionsError, lambda p, exc, phase: errors.RefusedError(
            f"{p.endpoint} has no free connection slots: {text(p, exc)}")),
        Rule("connection_gone", pgx.ConnectionDoesNotExistError, _lost),
        Rule("sqlstate", pgx.PostgresError, lambda p, exc, phase: errors.QueryError(
            f"{p.endpoint} failed the {'check query' if phase == 'query' else 'connection'} with SQLSTATE"
            f" {getattr(exc, 'sqlstate', None)}: {text(p, exc)}")),
        Rule("settings_rejected", pgx.ClientConfigurationError, lambda p, exc, phase: errors.DriverError(
            f"asyncpg rejected the connection settings for {p.endpoint}: {text(p, exc)}")),
        Rule("closed_while_querying", pgx.InterfaceError, _lost, when=_querying),  # "connection is closed"...
        Rule("not_postgres", pgx.InternalClientError, lambda p, exc, phase: errors.ProtocolError(  # its ProtocolError
            f"{p.endpoint} sent something that is not PostgreSQL protocol: {text(p, exc)}")),
        Rule("timeout", TimeoutError, _timeout),
        Rule("tls_not_offered", ConnectionError, lambda p, exc, phase: errors.TlsError(
            f"{p.endpoint} does not offer TLS but sslmode={sslmode(p.settings)} requires it:"
            " turn ssl on at the server or lower sslmode (or is this not a PostgreSQL port?)"),
             when=lambda p, exc, phase: _before_the_protocol(p, exc, phase) and p.tls_required
             and "rejected SSL upgrade" in text(p, exc)),
        Rule("tls_negotiation_broken", ConnectionError, lambda p, exc, phase: errors.ProtocolError(
            f"{p.endpoint} broke off the TLS negotiation ({text(p, exc)}): is this really a PostgreSQL port?"),
             when=lambda p, exc, phase: _before_the_protocol(p, exc, phase) and says("SSL", "TLS")(p, exc, phase)),
        Rule("certificate_untrusted", ssl.SSLCertVerificationError, _untrusted),
        Rule("socket", OSError, _os),
    )


def lost(exc: BaseException) -> bool:
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
