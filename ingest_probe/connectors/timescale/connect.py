"""How the Timescale probe reaches PostgreSQL: sslmode → SSL contexts, asyncpg's allow/prefer fallback, the
SCRAM iteration cap, no socket left by a failed attempt, GSSAPI defaults."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import ssl
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ingest_probe import errors
from ingest_probe.connectors._net import (
    in_daemon_thread,
    one_line,
    pem_is_encrypted,
)
from ingest_probe.connectors.timescale.settings import SSLMODES

if TYPE_CHECKING:
    from ingest_probe.connectors.timescale.settings import TimescaleSettings

#: An ``ssl=`` argument for ``asyncpg.connect``: ``False`` (plaintext) or a context (TLS).
SslArg = ssl.SSLContext | bool


def sslmode(s: TimescaleSettings) -> str:
    """The configured sslmode (libpq's default ``prefer``); an unknown one is a ``TlsError``."""
    mode = (s.sslmode or "prefer").strip().lower()
    if mode not in SSLMODES:
        raise errors.TlsError(f"unknown sslmode {mode!r}: use one of {', '.join(SSLMODES)}")
    return mode


async def ssl_arg(s: TimescaleSettings) -> SslArg:
    """The ``ssl=`` argument for the sslmode: ``False`` for disable, else our context (built off the loop).

    Never a mode string: asyncpg would read PGSSL* variables and ~/.postgresql for it. asyncpg takes any
    context for sslmode=require; ``probe_connection`` gives it the real mode, so that ``allow`` and ``prefer``
    fall back as libpq does (``prefer`` on the same connection when the server answers the SSLRequest 'N').
    """
    mode = sslmode(s)
    if mode == "disable":
        return False
    return await in_daemon_thread(ssl_context, s, mode)  # reads cert files: off-loop, never joined at exit


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


# ---------------------------------------------------------------------------- sockets of failed attempts
#
# Over TLS, asyncpg ends a failed connection attempt (a refused login, a lost handshake) with ``close()`` on
# the TLS transport: a polite TLS shutdown that waits for the server's close_notify, which nobody awaits,
# and the socket stays open until the server answers or asyncio's 30 s shutdown timeout. A check returned
# long before that, and an event loop closed meanwhile leaves the socket to the garbage collector (the
# "unclosed transport" ResourceWarning). asyncpg gives no handle on those sockets, so the seam is the
# protocol every TLS attempt starts with (``connect_utils.TLSUpgradeProto``, looked up as a module global
# at call time): for connections this probe opens (a ContextVar, as for SCRAM) it records the raw
# transport, and ``probe_connection`` aborts each one the returned connection does not use.

_ATTEMPTS: ContextVar[list[Any] | None] = ContextVar("ingest_probe_pg_attempts", default=None)


@functools.cache
def _recording_upgrade_protocol() -> type[Any]:
    from asyncpg import connect_utils

    class RecordingTLSUpgradeProto(connect_utils.TLSUpgradeProto):  # type: ignore[misc]  # untyped base
        def connection_made(self, transport: Any) -> None:
            attempts = _ATTEMPTS.get()
            if attempts is not None:
                attempts.append(transport)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            # Cancelled between the TCP connect and create_connection's return (SIGTERM, the deadline), asyncpg
            # never awaits ``on_data``: retrieved here, or asyncio logs "Future exception was never retrieved"
            # (on a CLI run's stderr). Whoever still awaits it gets the exception all the same.
            if self.on_data.done() and not self.on_data.cancelled():
                self.on_data.exception()

    return RecordingTLSUpgradeProto


# ---------------------------------------------------------------------------------------- the sslmode
#
# asyncpg takes an SSLContext as sslmode=require and only derives allow/prefer from a mode *string*, for which
# it reads PGSSL* variables and ~/.postgresql. Its own allow/prefer fallback is what libpq does and costs
# one connection for prefer (a server that declines TLS answers the SSLRequest 'N' and the startup follows on
# the same socket), so the mode is set on the parameters it parsed (``_parse_connect_arguments``, a module
# global looked up at call time), for connections this probe opens only (a ContextVar).

_SSLMODE: ContextVar[str | None] = ContextVar("ingest_probe_pg_sslmode", default=None)


@functools.cache
def _parse_with_sslmode() -> Any:
    from asyncpg import connect_utils

    parse = connect_utils._parse_connect_arguments

    def parse_with_sslmode(**kwargs: Any) -> Any:
        addrs, params, config = parse(**kwargs)
        mode = _SSLMODE.get()
        if mode is not None and params.ssl:
            params = params._replace(sslmode=connect_utils.SSLMode.parse(mode))
        return addrs, params, config

    return parse_with_sslmode


@contextlib.contextmanager
def probe_connection(mode: str) -> Iterator[list[Any]]:
    """Around ``asyncpg.connect`` for the probe: the sslmode is ``mode`` (see above), absurd SCRAM iteration
    counts are refused, and every TLS attempt's socket is aborted on the way out unless it carries the
    connection that was returned (append that connection to the yielded list)."""
    from asyncpg import connect_utils

    recording, parse = _recording_upgrade_protocol(), _parse_with_sslmode()
    if connect_utils.TLSUpgradeProto is not recording:
        connect_utils.TLSUpgradeProto = recording
    if connect_utils._parse_connect_arguments is not parse:
        connect_utils._parse_connect_arguments = parse
    attempts: list[Any] = []
    kept: list[Any] = []
    tokens = _ATTEMPTS.set(attempts), _SSLMODE.set(mode)
    try:
        with scram_capped():
            yield kept
    finally:
        _ATTEMPTS.reset(tokens[0])
        _SSLMODE.reset(tokens[1])
        in_use = {id(conn._transport.get_extra_info("socket")) for conn in kept if conn._transport is not None}
        for transport in attempts:
            if id(transport.get_extra_info("socket")) not in in_use:
                transport.abort()


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


def hides(first: BaseException, second: BaseException) -> bool:
    """After asyncpg's allow/prefer fallback (it raises the second error from the first), whether the first
    attempt's error is the one to report.

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
