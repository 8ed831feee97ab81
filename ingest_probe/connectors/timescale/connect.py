"""How the Timescale probe reaches PostgreSQL: sslmode → SSL contexts, allow/prefer fallback, the SCRAM
iteration cap, asyncpg error table."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ingest_probe import errors
from ingest_probe.connectors._net import (
    SILENT_PEER,
    in_daemon_thread,
    library_failure,
    map_os_error,
    one_line,
    pem_is_encrypted,
)
from ingest_probe.connectors.timescale.settings import SSLMODES

if TYPE_CHECKING:
    from ingest_probe.connectors.timescale.settings import TimescaleSettings

#: An ``ssl=`` argument for ``asyncpg.connect``: ``False`` (plaintext) or a context (TLS, sslmode=require).
SslArg = ssl.SSLContext | bool


def sslmode(s: TimescaleSettings) -> str:
    """The configured sslmode (libpq's default ``prefer``); an unknown one is a ``TlsError``."""
    mode = (s.sslmode or "prefer").strip().lower()
    if mode not in SSLMODES:
        raise errors.TlsError(f"unknown sslmode {mode!r}: use one of {', '.join(SSLMODES)}")
    return mode


async def transports(s: TimescaleSettings) -> list[SslArg]:
    """The ``ssl=`` arguments to try, in libpq's order for the sslmode; builds the context off the loop.

    asyncpg treats an SSL context as sslmode=require, so the ``allow``/``prefer`` fallback is done here.
    """
    mode = sslmode(s)
    if mode == "disable":
        return [False]
    context = await in_daemon_thread(ssl_context, s, mode)  # reads cert files: off-loop, never joined at exit
    # prefer: TLS first, then plaintext; allow: the other way round; stricter modes: TLS only.
    fallback: dict[str, list[SslArg]] = {"allow": [False, context], "prefer": [context, False]}
    return fallback.get(mode, [context])


async def connect(
    s: TimescaleSettings, attempts: list[SslArg], connect_once: Callable[[SslArg], Awaitable[Any]], *, user: str
) -> Any:
    """``connect_once`` over ``attempts`` until one connects; the failure worth reporting, mapped."""
    mode = sslmode(s)
    first: BaseException | None = None
    for number, ssl_arg in enumerate(attempts, start=1):
        try:
            return await connect_once(ssl_arg)
        except BaseException as exc:
            if number < len(attempts) and _falls_back(exc, tls=bool(ssl_arg)):
                first = exc
                continue
            if _upgrade_refused(first) and isinstance(exc, TimeoutError):
                # Answered the SSLRequest with something other than 'S' (a PostgreSQL says 'N'), then
                # not the plaintext startup: a slow server, or a service that is not PostgreSQL at all.
                raise errors.ProbeTimeoutError(
                    f"no answer from {s.endpoint} to the plaintext startup after it refused TLS:"
                    " server overloaded or frozen — or is this really a PostgreSQL port? (a different service may"
                    " listen on that port)"
                ) from exc
            failure = first if first is not None and _hides(first, exc) else exc
            mapped = map_pg_error(failure, s, user=user, tls_required=bool(ssl_arg) and mode not in ("allow", "prefer"))
            if mapped is None:
                raise
            raise mapped from failure
    raise AssertionError("unreachable: the last attempt returns or raises")


# --------------------------------------------------------------------------------------------- SCRAM
#
# SCRAM-SHA-256 makes the client run PBKDF2 with as many iterations as the *server* asks for. asyncpg does it
# in its protocol's data_received(), on the event loop: a server asking for 20,000,000 froze the loop for
# seconds (no deadline, no SIGTERM), 2,000,000,000 for half an hour. No asyncpg API bounds it, and the work
# cannot move off the loop from outside, so absurd counts are refused before any hashing.
#
# The seam: asyncpg computes the salted password with ``hashlib.pbkdf2_hmac(...)``, looking ``hashlib`` up in
# its compiled protocol module's globals at call time (asyncpg/protocol/scram.pyx,
# ``_generate_salted_password``). That global is replaced, once, by a proxy whose ``pbkdf2_hmac`` refuses more
# than ``MAX_SCRAM_ITERATIONS`` — only for connections this probe opens (a ContextVar, set around our connect,
# is copied into the transport's callbacks): an embedding application's own asyncpg connections are untouched.
# asyncpg turns the exception into ``InternalClientError`` with it as ``__cause__``. tests/test_hostile_peers.py
# pins all of it against a real PostgreSQL and a hostile peer.

#: The most SCRAM iterations a server may ask for (PostgreSQL's default is 4096; OWASP suggests 600,000):
#: at ~0.25 µs each, about a quarter of a second of the event loop.
MAX_SCRAM_ITERATIONS = 1_000_000
_SCRAM_LIMIT: ContextVar[int | None] = ContextVar("ingest_probe_scram_limit", default=None)


class ScramIterationsRefused(Exception):
    """The server asked for more PBKDF2 iterations than ``MAX_SCRAM_ITERATIONS``; nothing was computed."""

    def __init__(self, iterations: int, limit: int) -> None:
        super().__init__(f"server asked for {iterations} SCRAM iterations (limit {limit})")
        self.iterations = iterations
        self.limit = limit


class _CappedHashlib:
    """``hashlib`` for asyncpg's protocol module, with ``pbkdf2_hmac`` capped for our connections."""

    def __getattr__(self, name: str) -> Any:
        return getattr(hashlib, name)

    @staticmethod
    def pbkdf2_hmac(hash_name: str, password: bytes, salt: bytes, iterations: int, dklen: int | None = None) -> bytes:
        limit = _SCRAM_LIMIT.get()
        if limit is not None and iterations > limit:
            raise ScramIterationsRefused(iterations, limit)
        return hashlib.pbkdf2_hmac(hash_name, password, salt, iterations, dklen)


@contextlib.contextmanager
def scram_capped() -> Iterator[None]:
    """Around ``asyncpg.connect``: the connection it opens refuses absurd SCRAM iteration counts."""
    from asyncpg.protocol import protocol

    if not isinstance(protocol.hashlib, _CappedHashlib):
        protocol.hashlib = _CappedHashlib()
    token = _SCRAM_LIMIT.set(MAX_SCRAM_ITERATIONS)
    try:
        yield
    finally:
        _SCRAM_LIMIT.reset(token)


def _scram_refused(exc: BaseException) -> ScramIterationsRefused | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ScramIterationsRefused):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def ssl_context(s: TimescaleSettings, mode: str) -> ssl.SSLContext:
    """The client context for any sslmode but disable, built only from the settings (no env, no ~).

    libpq semantics: ``allow``/``prefer`` never verify the server; ``require`` verifies the chain only
    when a root cert is given; ``verify-ca`` checks the chain, ``verify-full`` also the host name.
    Without ``sslrootcert`` (or with ``system``) the system trust store is used. A configured client
    certificate is offered in every mode.
    """
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
            # Never None: OpenSSL would then ask for an encrypted key's pass phrase on the terminal.
            password = s.sslpassword.reveal() if s.sslpassword is not None else ""
            ctx.load_cert_chain(s.sslcert, keyfile=s.sslkey, password=password)
    except (ssl.SSLError, OSError) as exc:
        keyfile = s.sslkey or s.sslcert
        if isinstance(exc, ssl.SSLError) and pem_is_encrypted(keyfile):
            fix = ("the configured sslpassword does not decrypt it" if s.sslpassword is not None
                   else "no sslpassword is configured (ingest-probe never prompts for it)")
            raise errors.TlsError(f"the TLS client key {keyfile} (sslkey) is encrypted and {fix}: set sslpassword"
                                  " or use an unencrypted key") from exc
        detail = one_line(exc, secrets=[s.sslpassword])
        raise errors.TlsError(f"cannot load TLS files ({detail}): check sslrootcert/sslcert/sslkey") from exc
    return ctx


def _falls_back(exc: BaseException, *, tls: bool) -> bool:
    """Whether an ``allow``/``prefer`` attempt failed so that the other transport is worth a try.

    As asyncpg and libpq do it: the server refused the TLS upgrade (prefer), or pg_hba.conf rejected
    this transport before authentication succeeded (``28000``/``28P01``, e.g. hostssl-only lines).
    """
    from asyncpg import exceptions as pgx

    if isinstance(exc, pgx.InvalidAuthorizationSpecificationError):
        return True
    return tls and _upgrade_refused(exc)


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
def gss_kwargs() -> dict[str, str]:
    """GSSAPI settings asyncpg would otherwise read from PGKRBSRVNAME/PGGSSLIB (libpq's defaults)."""
    import inspect

    import asyncpg

    params = inspect.signature(asyncpg.connect).parameters
    if "krbsrvname" not in params:  # asyncpg without GSSAPI support reads neither variable
        return {}
    return {"krbsrvname": "postgres", "gsslib": "sspi" if sys.platform == "win32" else "gssapi"}


def _where(s: TimescaleSettings, what: str) -> str:
    """Where the operator fixes ``what``: the URL key it came from, or the part settings."""
    return f"{what} in {s.url_source_key}" if s.url_source_key else f"configured {what}"


def map_pg_error(
    exc: BaseException, s: TimescaleSettings, *, user: str, tls_required: bool, querying: bool = False
) -> errors.ProbeError | None:
    """asyncpg / socket / TLS failures onto the error tree, most specific first; None: not ours."""
    from asyncpg import exceptions as pgx

    ep, db = s.endpoint, s.database
    text = one_line(exc, secrets=[s.password, s.sslpassword])  # asyncpg's str() has DETAIL/HINT too

    refused = _scram_refused(exc)
    if refused is not None:
        return errors.AuthError(
            f"{ep} asked for {refused.iterations} SCRAM iterations (PostgreSQL's default is 4096; more than"
            f" {refused.limit} is refused before hashing, it would stall the probe): a hostile server, or check"
            " scram_iterations and the role's password verifier"
        )

    if isinstance(exc, pgx.InvalidPasswordError) and s.password is None:
        return errors.AuthError(
            f"{ep} requires a password for user {user!r} and none is configured: set"
            " TIMESCALEDB_PASSWORD or put it in the URL (~/.pgpass is never read)"
        )
    if isinstance(exc, pgx.InvalidPasswordError):
        fix = _where(s, "user/password")
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
            return errors.AuthError(f"{ep} does not allow this client (pg_hba.conf): ask the DBA ({text})")
        return errors.AuthError(f"{ep} refused user {user!r}: check the {_where(s, 'user')} ({text})")
    if isinstance(exc, pgx.InvalidCatalogNameError):
        return errors.NotFoundError(f"database {db!r} does not exist on {ep}: check the {_where(s, 'database name')}")
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
        if querying:  # it answered the startup and authentication: PostgreSQL, just not answering now
            return errors.ProbeTimeoutError(
                f"no answer from {ep} while running the check query: server frozen, overloaded or black-holed?"
            )
        return errors.ProbeTimeoutError(f"no answer from {ep} while connecting (TCP, TLS, auth): {SILENT_PEER}")
    if isinstance(exc, ConnectionError) and exc.errno is None:  # asyncpg's own, before the protocol
        if "rejected SSL upgrade" in text and tls_required:
            return errors.TlsError(
                f"{ep} does not offer TLS but sslmode={sslmode(s)} requires it:"
                " turn ssl on at the server or lower sslmode (or is this not a PostgreSQL port?)"
            )
        if "SSL" in text or "TLS" in text:
            return errors.ProtocolError(f"{ep} broke off the TLS negotiation ({text}): is this a PostgreSQL port?")
    if isinstance(exc, ssl.SSLCertVerificationError):
        also = " and that the host name is in the certificate" if sslmode(s) == "verify-full" else ""
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
    # an unknown auth method…) means the peer is not speaking PostgreSQL; from our code, it is a bug. A
    # ProbeError is never "ours to map" either (library_failure returns None): the caller re-raises it.
    return library_failure(
        exc, package="asyncpg", protocol="PostgreSQL", endpoint=ep, secrets=[s.password, s.sslpassword]
    )
