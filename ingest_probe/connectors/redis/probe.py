"""Redis probe: one redis.asyncio client built from settings parts, PING + INFO, errors mapped here."""

from __future__ import annotations

import errno
import functools
import os
import ssl
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.connectors._log_secrets import HeldSecrets
from ingest_probe.connectors._net import (
    SILENT_PEER,
    budget,
    connection_reset,
    library_failure,
    map_os_error,
    one_line,
    resolve,
    speaks_tls,
)
from ingest_probe.defaults import CLIENT_NAME, CLOSE_BUDGET

if TYPE_CHECKING:
    # Absolute import: this module is ``ingest_probe.connectors.redis.probe``, the library is the top-level ``redis``.
    from redis.asyncio import Redis

    from ingest_probe.connectors.redis.settings import RedisSettings
    from ingest_probe.results import Recorder

# OpenSSL reasons seen when a TLS client gets a plaintext answer (the port does not speak TLS).
_PLAINTEXT_PEER_REASONS = (
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
)
_SSL_HINT = "set REDIS_SSL=true or use a rediss:// URL"
_NO_SSL_HINT = "unset REDIS_SSL or use a redis:// URL"


class RedisProbe:
    """PING (once) and INFO against the configured Redis, over one warm connection.

    The client is built directly from the settings parts (never ``from_url``), so a URL- and a
    host-configured Redis are probed identically. It keeps one connection between checks; a failed
    or cancelled check closes it and the next check reconnects.
    """

    phase_names: tuple[str, ...] = ("resolve", "connect", "query")

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint
        self.client_name = settings.client_name or CLIENT_NAME
        self._client: Redis | None = None
        #: The password, scrubbed from the client libraries' log records while a client may use it.
        self._secrets = HeldSecrets([settings.password])
        #: The library timeout of the step in flight, for messages.
        self._timeout = 0.0
        #: Whether the server answered the check in flight (PING) yet: a lost connection is retried only before.
        self._answered = False

    async def check(self, rec: Recorder) -> None:
        s = self.settings
        if s.host is None:
            raise errors.ProbeError("no Redis host configured: set REDIS_URL or REDIS_HOST")
        self._secrets.hold()
        try:
            client = await self._warm_client()
            if client is not None:
                rec.details["reused_connection"] = True
                try:
                    await self._query(client, rec)
                    return
                except Exception as exc:
                    if self._answered or not _lost_connection(exc):
                        raise
                # Reset or closed before any reply (a load balancer's idle timeout, a server restart the
                # loop has not seen yet): one fresh connection within the same deadline.
                await self._drop()
                rec.details["reconnected"] = True
            rec.details["reused_connection"] = False
            with rec.phase("resolve"):
                await resolve(s.host, s.port)
            with rec.phase("connect"):  # TCP + TLS + AUTH + CLIENT SETNAME (+ SELECT)
                client = await self._connect()
            await self._query(client, rec)
        except errors.ProbeError:
            await self._drop()
            raise
        except Exception as exc:
            await self._drop()
            phase = rec.current_phase
            mapped = await self._wrong_service(exc, phase) or self._map_error(exc, phase) or library_failure(
                exc, package="redis", protocol="Redis", endpoint=f"Redis at {self.endpoint}",
                secrets=[s.password],
            )
            if mapped is None:
                raise  # raised in our code, not by redis-py on a bad answer: a bug, let it fail loudly
            raise mapped from exc
        except BaseException:
            # Cancelled (the supervisor's deadline) or interrupted: never reuse a half-used connection. The
            # socket closes at once; what would have to wait is left to the owner's (shielded) aclose().
            await self._drop()
            raise

    async def _query(self, client: Redis, rec: Recorder) -> None:
        """PING, then INFO; ``_answered`` tells whether the server replied to anything yet."""
        self._answered = False
        with rec.phase("query"):
            self._set_read_timeout(client)
            await client.ping()
            self._answered = True
            await self._info(client, rec)

    async def aclose(self) -> None:
        """Close the warm client, if any, within the caller's deadline: idempotent, never raises on a dead server."""
        await self._drop()
        if self._client is None:
            self._secrets.release()

    # ------------------------------------------------------------------------------------------ client

    def _library_timeout(self) -> float:
        """The budget for the next library call, never above the operator's REDIS_SOCKET_TIMEOUT."""
        timeout = budget()
        if self.settings.socket_timeout:
            timeout = min(timeout, self.settings.socket_timeout)
        self._timeout = timeout
        return timeout

    def _build(self) -> Redis:
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:
            raise errors.DriverError(
                f"the redis client library is not installed ({exc}): pip install redis"
            ) from exc
        s = self.settings
        timeout = self._library_timeout()
        return Redis(
            host=s.host or "localhost",
            port=s.port,
            db=s.db,
            username=s.username,
            password=s.password.reveal() if s.password is not None else None,
            ssl=s.tls,
            ssl_ca_certs=s.ssl_ca_certs,
            ssl_certfile=s.ssl_certfile,
            ssl_keyfile=s.ssl_keyfile,
            # An encrypted key must fail, not make OpenSSL prompt for a pass phrase on the terminal.
            ssl_password="",
            client_name=self.client_name,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            single_connection_client=True,
            # No retries (retry_on_timeout defaults to False and is deprecated): a failure is reported once.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            # RESP2 + AUTH: understood by every Redis and proxy; redis-py 8 defaults to RESP3 (HELLO).
            protocol=2,
            **_no_setinfo_kwargs(),
        )

    async def _connect(self) -> Redis:
        client = self._build()
        self._client = client  # registered before the first byte goes out, so aclose() can always reach it
        await client.initialize()  # single-connection client: connects, authenticates, names itself now
        return client

    async def _warm_client(self) -> Redis | None:
        """The client kept from the last successful check, unless its connection went away meanwhile."""
        client = self._client
        if client is None:
            return None
        conn = client.connection
        stale = conn is None or not conn.is_connected
        if conn is not None and not stale:
            from redis.exceptions import ConnectionError as RedisConnectionError

            try:
                # EOF or unsolicited bytes: the server restarted or dropped us. Sends nothing. A reset
                # connection is not seen here (redis-py only looks at EOF): check() retries that one.
                stale = await conn.can_read()
            except (OSError, RedisConnectionError):  # redis-py wraps the OSError in its own ConnectionError
                stale = True
        if stale:
            await self._drop()
            return None
        return client

    def _set_read_timeout(self, client: Redis) -> None:
        """Give the query step its own budget (a warm client's was computed for an earlier check)."""
        timeout = self._library_timeout()
        if client.connection is not None:
            client.connection.socket_timeout = timeout

    async def _info(self, client: Redis, rec: Recorder) -> None:
        from redis.exceptions import NoPermissionError

        try:
            info: dict[str, Any] = await client.info()
        except NoPermissionError as exc:
            # PING worked, so the connector is usable; an ACL without INFO only costs us the details.
            rec.details["info_unavailable"] = one_line(exc, secrets=[self.settings.password])
            return
        rec.details["redis_version"] = _str_or_none(info.get("redis_version"))
        rec.details["role"] = _str_or_none(info.get("role"))
        replicas = info.get("connected_slaves")
        rec.details["connected_slaves"] = int(replicas) if replicas is not None else None
        if info.get("role") == "slave":
            rec.details["master_link_status"] = _str_or_none(info.get("master_link_status"))

    async def _drop(self) -> None:
        """Close the client within the caller's deadline (the owner shields it); the socket goes first.

        Cancelled before that (the deadline of a check), the client stays for the owner's ``aclose()``.
        """
        client = self._client
        if client is None:
            return
        with anyio.move_on_after(budget(share=0.5, default=CLOSE_BUDGET / 2)):
            await _shutdown(client)
        if self._client is client:
            self._client = None

    # ------------------------------------------------------------------------------------------ errors

    async def _wrong_service(self, exc: Exception, phase: str | None) -> errors.ProbeError | None:
        """The peer hung up on our plaintext handshake without a byte: a TLS-only Redis, or not Redis at all?

        Both look the same from here (PostgreSQL, for one, drops a client whose first bytes are no startup
        packet), so ask the port once whether it speaks TLS. None: it does (``_closed_error`` then says to
        turn TLS on), or this is not that case.
        """
        s = self.settings
        if phase != "connect" or s.tls or s.host is None or not _lost_connection(exc):
            return None
        if await speaks_tls(s.host, s.port):
            return None
        return errors.ProtocolError(
            f"Redis at {self.endpoint} closed the connection without answering the Redis handshake, and it does"
            " not speak TLS either: is this really a Redis port, or does a different service listen on that"
            " port?"
        )

    def _map_error(self, exc: Exception, phase: str | None) -> errors.ProbeError | None:
        """The redis-py exception table, most specific first; None for anything that is not a known failure.

        Beware: ``rx.TimeoutError``/``rx.ConnectionError`` are not the builtins.
        """
        from redis import exceptions as rx

        s = self.settings
        where = f"Redis at {self.endpoint}"
        text = one_line(exc, secrets=[s.password])
        user = s.username or "default"
        if isinstance(exc, rx.BusyLoadingError):  # LOADING (a ConnectionError subclass)
            return errors.StartingError(
                f"{where} is loading its dataset into memory (LOADING): not ready yet, retry shortly"
            )
        if isinstance(exc, rx.AuthenticationError):  # WRONGPASS, NOAUTH, AUTH without a server password
            if exc.status_code == "NOAUTH" or "authentication required" in text.lower():
                return errors.AuthError(
                    f"{where} requires a password and none is configured (NOAUTH): set REDIS_PASSWORD"
                    " (and REDIS_USERNAME for an ACL user)"
                )
            if "without any password configured" in text or "no password is set" in text:
                return errors.AuthError(
                    f"{where} has no password set but one was sent: remove REDIS_PASSWORD or configure"
                    " requirepass / an ACL user on the server"
                )
            return errors.AuthError(
                f"{where} rejected the credentials of user {user!r} ({text}): check REDIS_USERNAME and"
                " REDIS_PASSWORD"
            )
        if isinstance(exc, rx.NoPermissionError):  # NOPERM: authenticated, but the ACL denies a command
            return errors.AuthError(
                f"{where}: ACL user {user!r} may not run a command the probe needs ({text})"
            )
        if isinstance(exc, rx.TimeoutError):  # not the builtin TimeoutError
            return self._timeout_error(exc, phase)
        if isinstance(exc, rx.ConnectionError):
            return self._connection_error(exc, text, phase)
        if isinstance(exc, rx.InvalidResponse):
            hint = f" (a TLS-only port? {_SSL_HINT})" if not s.tls else ""
            return errors.ProtocolError(
                f"{where} does not answer like Redis ({text}): is this really a Redis port?{hint}"
            )
        if isinstance(exc, rx.ResponseError):
            if "DB index is out of range" in text:
                return errors.QueryError(f"{where} has no database {s.db} ({text}): check REDIS_DB")
            return errors.QueryError(f"{where} answered the {phase or 'check'} with an error: {text}")
        if isinstance(exc, rx.RedisError):
            return errors.ProtocolError(f"{where}: {text}")
        if isinstance(exc, OSError):
            return self._os_error(exc, phase)
        return None

    def _timeout_error(self, exc: Exception, phase: str | None) -> errors.ProbeError:
        head = f"no answer from Redis at {self.endpoint} within {self._timeout:.2f} s"
        if phase != "connect":
            # It answered the handshake (CLIENT SETNAME) on this connection: it is Redis, just not answering.
            return errors.ProbeTimeoutError(
                f"{head} during {phase or 'the check'}: server frozen, overloaded or black-holed?"
            )
        why = SILENT_PEER
        # redis-py says "Timeout connecting" for TCP + TLS handshake, "Timeout reading" after that.
        if self.settings.tls and "connecting" in str(exc):
            return errors.ProbeTimeoutError(
                f"{head} to the TLS handshake: if that port is plaintext, {_NO_SSL_HINT}; otherwise: {why}"
            )
        return errors.ProbeTimeoutError(f"{head} while connecting (TCP/TLS/AUTH): {why}")

    def _connection_error(self, exc: Exception, text: str, phase: str | None) -> errors.ProbeError:
        where = f"Redis at {self.endpoint}"
        if "max number of clients reached" in text:
            return errors.RefusedError(f"{where} refused the connection: max number of clients reached")
        cause = _os_cause(exc)
        if cause is not None:
            return self._os_error(cause, phase)
        if "closed by server" in text:
            return self._closed_error(phase)
        return errors.ProtocolError(f"{where}: {text}")

    def _os_error(self, exc: OSError, phase: str | None) -> errors.ProbeError:
        s = self.settings
        where = f"Redis at {self.endpoint}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return errors.TlsError(
                f"TLS certificate of {where} not trusted ({exc.verify_message}): set REDIS_SSL_CA_CERTS to"
                " the CA that signed the server certificate, and use a host name the certificate names"
            )
        if isinstance(exc, ssl.SSLError) and "PEM lib" in str(exc) and (s.ssl_keyfile or s.ssl_certfile):
            # ssl_password="" made OpenSSL fail instead of prompting: the key is encrypted (or not a key).
            key = s.ssl_keyfile or s.ssl_certfile
            return errors.TlsError(
                f"cannot load the TLS client key {key} (REDIS_SSL_KEYFILE) for {where}: is it encrypted? There is"
                " no setting for its passphrase and ingest-probe never prompts for one; use an unencrypted key"
            )
        if isinstance(exc, ssl.SSLError):
            reason = str(exc.reason or exc).upper()
            if any(r in reason for r in _PLAINTEXT_PEER_REASONS):
                return errors.TlsError(
                    f"{where} answered the TLS handshake in plaintext ({exc.reason}): that port does not"
                    f" speak TLS; {_NO_SSL_HINT}, or use the server's TLS port"
                )
        if s.tls and isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            files = [
                p for p in (s.ssl_ca_certs, s.ssl_certfile, s.ssl_keyfile) if p and not os.path.isfile(p)
            ]
            named = ", ".join(files) if files else "a configured file"
            return errors.TlsError(
                f"cannot read TLS files for {where} ({exc.strerror}: {named}): check REDIS_SSL_CA_CERTS,"
                " REDIS_SSL_CERTFILE and REDIS_SSL_KEYFILE"
            )
        if isinstance(exc, ConnectionResetError | BrokenPipeError) or exc.errno == errno.ECONNRESET:
            return self._closed_error(phase)
        mapped = map_os_error(exc, f"Redis at {self.endpoint}")
        if mapped is not None:
            return mapped
        return errors.RefusedError(f"cannot connect to {where}: {one_line(exc, secrets=[s.password])}")

    def _closed_error(self, phase: str | None) -> errors.ProbeError:
        where = f"Redis at {self.endpoint}"
        if phase == "connect" and not self.settings.tls:
            # A TLS-only Redis resets a plaintext client before answering anything.
            return errors.TlsError(
                f"{where} closed the connection before answering the handshake: if it only accepts TLS,"
                f" {_SSL_HINT} (otherwise check the port)"
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


# ------------------------------------------------------------------------------------------------ helpers


async def _shutdown(client: Redis) -> None:
    """Close the socket without waiting for the peer, then the client and its pool; never raises."""
    from redis.exceptions import RedisError

    try:
        if client.connection is not None:
            # nowait: do not wait for a TLS close_notify from a server that may be frozen.
            await client.connection.disconnect(nowait=True)
    except (RedisError, OSError):
        pass
    try:
        await client.aclose()  # releases the connection and disconnects the whole pool
    except (RedisError, OSError):
        pass


def _lost_connection(exc: BaseException) -> bool:
    """A connection reset, closed or broken under us (not refused, not a timeout, not an answer)."""
    from redis import exceptions as rx

    if isinstance(exc, rx.AuthenticationError | rx.BusyLoadingError):  # answers, though ConnectionErrors
        return False
    if isinstance(exc, rx.ConnectionError):
        cause = _os_cause(exc)
        return connection_reset(cause) if cause is not None else "closed by server" in str(exc)
    return connection_reset(exc)


def _os_cause(exc: BaseException) -> OSError | None:
    """The socket-level error redis-py wrapped (it chains it as ``__cause__`` or ``__context__``)."""
    seen: set[int] = set()
    current = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


@functools.cache
def _no_setinfo_kwargs() -> dict[str, Any]:
    """Turn off CLIENT SETINFO LIB-NAME/LIB-VER on connect: two round trips a probe does not need.

    redis-py ≥ 7.1 takes ``driver_info=None`` (``lib_name``/``lib_version`` are deprecated there); older
    releases only know ``lib_name``/``lib_version``.
    """
    import inspect

    from redis.asyncio import Redis

    if "driver_info" in inspect.signature(Redis.__init__).parameters:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}
