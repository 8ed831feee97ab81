"""redis-py's failures onto the error tree, as tables (most specific first), and when a connection is lost.

Beware: ``redis.exceptions.TimeoutError``/``ConnectionError`` are *not* the builtins. redis-py wraps socket
errors in its own ``ConnectionError`` (the ``OSError`` chained as ``__cause__`` or ``__context__``): those are
mapped by the socket table, as a bare ``OSError`` is. tests/test_error_tables.py pins every rule.
"""

from __future__ import annotations

import errno
import functools
import os
import ssl
from typing import TYPE_CHECKING, Protocol

from ingest_probe import errors
from ingest_probe.connectors._net import SILENT_PEER, connection_reset, in_chain, map_os_error
from ingest_probe.connectors.base import Rule, map_error, says, text

if TYPE_CHECKING:
    from ingest_probe.connectors.redis.settings import RedisSettings


class RedisProbe(Protocol):
    """What the rules read of the probe."""

    settings: RedisSettings
    endpoint: str | None
    #: The library timeout of the step that failed, in seconds.
    library_timeout: float


Redis = Rule[RedisProbe]

# OpenSSL reasons seen when a TLS client gets a plaintext answer (the port does not speak TLS).
PLAINTEXT_PEER_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST")
SSL_HINT = "set REDIS_SSL=true or use a rediss:// URL"
NO_SSL_HINT = "unset REDIS_SSL or use a redis:// URL"




def os_cause(exc: BaseException) -> OSError | None:
    """The socket-level error redis-py wrapped (it chains it as ``__cause__`` or ``__context__``)."""
    return in_chain(exc, OSError, start=exc.__cause__ or exc.__context__)


def closed(p: RedisProbe, exc: BaseException, phase: str | None) -> errors.ProbeError:
    """The server hung up: during the handshake (TLS expected? not Redis?) or during the check."""
    where = f"Redis at {p.endpoint}"
    if phase == "connect" and not p.settings.tls:
        # A TLS-only Redis resets a plaintext client before answering anything.
        return errors.TlsError(
            f"{where} closed the connection before answering the handshake: if it only accepts TLS,"
            f" {SSL_HINT} (otherwise check the port)"
        )
    if phase == "connect":
        return errors.ProtocolError(
            f"{where} closed the connection during the TLS/AUTH handshake:"
            " check the TLS settings — is this really a Redis port?"
        )
    return errors.RefusedError(
        f"{where} closed the connection during the check (restart, timeout or CLIENT KILL?):"
        " the next check reconnects"
    )


def _timeout(p: RedisProbe, exc: BaseException, phase: str | None) -> errors.ProbeError:
    head = f"no answer from Redis at {p.endpoint} within {p.library_timeout:.2f} s"
    if phase != "connect":
        # It answered the handshake (CLIENT SETNAME) on this connection: it is Redis, just not answering.
        return errors.ProbeTimeoutError(
            f"{head} during {phase or 'the check'}: server frozen, overloaded or black-holed?")
    return errors.ProbeTimeoutError(f"{head} while connecting (TCP/TLS/AUTH): {SILENT_PEER}")


def _tls_files(p: RedisProbe, exc: OSError, phase: str | None) -> errors.ProbeError:
    s = p.settings
    files = [path for path in (s.ssl_ca_certs, s.ssl_certfile, s.ssl_keyfile) if path and not os.path.isfile(path)]
    named = ", ".join(files) if files else "a configured file"
    return errors.TlsError(
        f"cannot read TLS files for Redis at {p.endpoint} ({exc.strerror}: {named}): check REDIS_SSL_CA_CERTS,"
        " REDIS_SSL_CERTFILE and REDIS_SSL_KEYFILE"
    )


def _os(p: RedisProbe, exc: OSError, phase: str | None) -> errors.ProbeError:
    where = f"Redis at {p.endpoint}"
    return map_os_error(exc, where) or errors.RefusedError(f"cannot connect to {where}: {text(p, exc)}")


#: A socket-level failure, bare or wrapped by redis-py.
SOCKET: tuple[Redis, ...] = (
    Rule("certificate_untrusted", ssl.SSLCertVerificationError, lambda p, exc, phase: errors.TlsError(
        f"TLS certificate of Redis at {p.endpoint} not trusted ({exc.verify_message}): set REDIS_SSL_CA_CERTS to"
        " the CA that signed the server certificate, and use a host name the certificate names")),
    # ssl_password="" made OpenSSL fail instead of prompting: the key is encrypted (or not a key).
    Rule("client_key_unreadable", ssl.SSLError, lambda p, exc, phase: errors.TlsError(
        f"cannot load the TLS client key {p.settings.ssl_keyfile or p.settings.ssl_certfile} (REDIS_SSL_KEYFILE) for"
        f" Redis at {p.endpoint}: is it encrypted? There is no setting for its passphrase and ingest-probe never"
        " prompts for one; use an unencrypted key"),
         when=lambda p, exc, phase: "PEM lib" in str(exc) and bool(p.settings.ssl_keyfile or p.settings.ssl_certfile)),
    Rule("plaintext_answer", ssl.SSLError, lambda p, exc, phase: errors.TlsError(
        f"Redis at {p.endpoint} answered the TLS handshake in plaintext ({exc.reason}): that port does not"
        f" speak TLS; {NO_SSL_HINT}, or use the server's TLS port"),
         when=lambda p, exc, phase: any(r in str(exc.reason or exc).upper() for r in PLAINTEXT_PEER_REASONS)),
    Rule("tls_files_unreadable", (FileNotFoundError, PermissionError, IsADirectoryError), _tls_files,
         when=lambda p, exc, phase: p.settings.tls),
    Rule("reset", OSError, closed, when=lambda p, exc, phase: isinstance(exc, ConnectionResetError | BrokenPipeError)
         or exc.errno == errno.ECONNRESET),
    Rule("socket", OSError, _os),
)


def _wrapped(p: RedisProbe, exc: BaseException, phase: str | None) -> errors.ProbeError:
    """A socket error redis-py wrapped in its own ``ConnectionError``: mapped as the bare one (``SOCKET``)."""
    cause = os_cause(exc)
    assert cause is not None  # the rule's condition
    return map_error(SOCKET, p, cause, phase) or _os(p, cause, phase)


@functools.cache
def table() -> tuple[Redis, ...]:
    """redis-py's exceptions, most specific first; a socket error goes through ``SOCKET``."""
    from redis import exceptions as rx

    return (
        Rule("loading", rx.BusyLoadingError, lambda p, exc, phase: errors.StartingError(  # a ConnectionError
            f"Redis at {p.endpoint} is loading its dataset into memory (LOADING): not ready yet, retry shortly")),
        Rule("password_missing", rx.AuthenticationError, lambda p, exc, phase: errors.AuthError(
            f"Redis at {p.endpoint} requires a password and none is configured (NOAUTH): set REDIS_PASSWORD"
            " (and REDIS_USERNAME for an ACL user)"),
             when=lambda p, exc, phase: getattr(exc, "status_code", None) == "NOAUTH"
             or "authentication required" in text(p, exc).lower()),
        Rule("password_not_expected", rx.AuthenticationError, lambda p, exc, phase: errors.AuthError(
            f"Redis at {p.endpoint} has no password set but one was sent: remove REDIS_PASSWORD or configure"
            " requirepass / an ACL user on the server"),
             when=says("without any password configured", "no password is set")),
        Rule("credentials_rejected", rx.AuthenticationError, lambda p, exc, phase: errors.AuthError(
            f"Redis at {p.endpoint} rejected the credentials of user {p.settings.username or 'default'!r}"
            f" ({text(p, exc)}): check REDIS_USERNAME and REDIS_PASSWORD")),
        Rule("acl_denied", rx.NoPermissionError, lambda p, exc, phase: errors.AuthError(  # authenticated, but NOPERM
            f"Redis at {p.endpoint}: ACL user {p.settings.username or 'default'!r} may not run a command the probe"
            f" needs ({text(p, exc)})")),
        # redis-py says "Timeout connecting" for TCP + TLS handshake, "Timeout reading" after that.
        Rule("tls_handshake_timeout", rx.TimeoutError, lambda p, exc, phase: errors.ProbeTimeoutError(
            f"no answer from Redis at {p.endpoint} within {p.library_timeout:.2f} s to the TLS handshake: if that"
            f" port is plaintext, {NO_SSL_HINT}; otherwise: {SILENT_PEER}"),
             when=lambda p, exc, phase: phase == "connect" and p.settings.tls and "connecting" in str(exc)),
        Rule("timeout", rx.TimeoutError, _timeout),
        Rule("max_clients", rx.ConnectionError, lambda p, exc, phase: errors.RefusedError(
            f"Redis at {p.endpoint} refused the connection: max number of clients reached"),
             when=says("max number of clients reached")),
        Rule("socket_wrapped", rx.ConnectionError, _wrapped, when=lambda p, exc, phase: os_cause(exc) is not None),
        Rule("closed_by_server", rx.ConnectionError, closed, when=says("closed by server")),
        Rule("connection", rx.ConnectionError, lambda p, exc, phase: errors.ProtocolError(
            f"Redis at {p.endpoint}: {text(p, exc)}")),
        Rule("not_redis", rx.InvalidResponse, lambda p, exc, phase: errors.ProtocolError(
            f"Redis at {p.endpoint} does not answer like Redis ({text(p, exc)}): is this really a Redis port?"
            + ("" if p.settings.tls else f" (a TLS-only port? {SSL_HINT})"))),
        Rule("no_such_database", rx.ResponseError, lambda p, exc, phase: errors.QueryError(
            f"Redis at {p.endpoint} has no database {p.settings.db} ({text(p, exc)}): check REDIS_DB"),
             when=says("DB index is out of range")),
        Rule("error_reply", rx.ResponseError, lambda p, exc, phase: errors.QueryError(
            f"Redis at {p.endpoint} answered the {phase or 'check'} with an error: {text(p, exc)}")),
        Rule("redis", rx.RedisError, lambda p, exc, phase: errors.ProtocolError(
            f"Redis at {p.endpoint}: {text(p, exc)}")),
        *SOCKET,
    )


def lost(exc: BaseException) -> bool:
    """A connection reset, closed or broken under us (not refused, not a timeout, not an answer)."""
    from redis import exceptions as rx

    if isinstance(exc, rx.AuthenticationError | rx.BusyLoadingError):  # answers, though ConnectionErrors
        return False
    if isinstance(exc, rx.ConnectionError):
        cause = os_cause(exc)
        return connection_reset(cause) if cause is not None else "closed by server" in str(exc)
    return connection_reset(exc)
