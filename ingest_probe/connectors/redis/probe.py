"""The Redis probe (redis.asyncio, one client built from the settings parts): PING + INFO, on the warm-client
lifecycle, pipelined: a cold check is the TCP connect and one write (AUTH, CLIENT SETNAME, SELECT, PING,
INFO server, INFO replication), a warm one a single write."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.connectors._net import budget, one_line, record_peer_certificate, resolve, speaks_tls
from ingest_probe.connectors.base import WarmClient, map_error
from ingest_probe.connectors.redis import errors as redis_errors
from ingest_probe.defaults import CLIENT_NAME, CLOSE_BUDGET

if TYPE_CHECKING:
    # Absolute import: the library is the top-level ``redis``, never ``ingest_probe.connectors.redis``.
    from redis.asyncio import Redis

    from ingest_probe.connectors.redis.settings import RedisSettings
    from ingest_probe.results import Recorder


class RedisProbe(WarmClient["RedisSettings", "Redis"]):
    """PING (once) and INFO against the configured Redis, over one warm connection.

    The client is built directly from the settings parts (never ``from_url``), so a URL- and a
    host-configured Redis are probed identically.
    """

    library, protocol = "redis", "Redis"

    def __init__(self, settings: RedisSettings) -> None:
        super().__init__(settings)
        self.client_name = settings.client_name or CLIENT_NAME
        #: The library timeout of the step in flight, for messages.
        self.library_timeout = 0.0
        #: Whether the server answered the check in flight (PING) yet: a lost connection is retried only before.
        self._answered = False
        #: Whether the check's commands already went out with the handshake (a fresh connection).
        self._check_sent = False

    async def check(self, rec: Recorder) -> None:
        if self.settings.host is None:
            raise errors.ProbeError("no Redis host configured: set REDIS_URL or REDIS_HOST")
        await super().check(rec)

    def _where(self) -> str:
        return f"Redis at {self.endpoint}"

    # ----------------------------------------------------------------------------------- lifecycle

    async def _stale(self, client: Redis) -> bool:
        """The connection went away while idle (EOF or unsolicited bytes: a restart, a kill). Sends nothing;
        a reset connection is not seen here (redis-py only looks at EOF): ``_lost`` retries that one."""
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
        return stale

    def _lost(self, exc: Exception) -> bool:
        return not self._answered and redis_errors.lost(exc)

    async def _discard(self, client: Redis) -> None:
        """Close within half the time left (the owner shields ``aclose``); the socket goes first."""
        with anyio.move_on_after(budget(share=0.5, default=CLOSE_BUDGET / 2)):
            await _shutdown(client)

    def _abort(self, client: Redis) -> None:
        conn = client.connection
        writer = getattr(conn, "_writer", None)  # private: redis-py has no synchronous abort
        if writer is not None:
            writer.transport.abort()

    async def _map(self, exc: Exception, phase: str | None) -> errors.ProbeError | None:
        return await self._wrong_service(exc, phase) or map_error(redis_errors.table(), self, exc, phase)

    async def _wrong_service(self, exc: Exception, phase: str | None) -> errors.ProbeError | None:
        """The peer hung up on our plaintext handshake without a byte: a TLS-only Redis, or not Redis at all?

        Both look the same from here (PostgreSQL, for one, drops a client whose first bytes are no startup
        packet), so ask the port once whether it speaks TLS. None: it does (``_closed_error`` then says to
        turn TLS on), or this is not that case.
        """
        s = self.settings
        if phase != "connect" or s.tls or s.host is None or not redis_errors.lost(exc):
            return None
        if await speaks_tls(s.host, s.port):
            return None
        return errors.ProtocolError(
            f"Redis at {self.endpoint} closed the connection without answering the Redis handshake, and it does"
            " not speak TLS either: is this really a Redis port, or does a different service listen on that"
            " port?"
        )

    # ---------------------------------------------------------------------------------- the phases

    async def _open(self, rec: Recorder) -> Redis:
        s = self.settings
        assert s.host is not None  # checked in check()
        with rec.phase("resolve"):
            await resolve(s.host, s.port)
        with rec.phase("connect"):  # TCP + TLS, then AUTH + CLIENT SETNAME (+ SELECT) and the check in one write
            client = self._client = self._build()  # before the first byte goes out, so aclose() can reach it
            await client.initialize()  # single-connection client: connects now (it has no handshake of its own)
            conn = client.connection
            assert conn is not None  # initialize() set it
            handshake = self._handshake()
            await conn.send_packed_command(conn.pack_commands([*handshake, *_CHECK]), check_health=False)
            self._check_sent = True
            for command in handshake:
                reply = _text(await conn.read_response())  # an error reply raises, as in redis-py's own handshake
                if reply != "OK":
                    from redis.exceptions import ConnectionError as RedisConnectionError

                    name = "CLIENT SETNAME" if command[0] == "CLIENT" else command[0]  # never the password
                    raise RedisConnectionError(f"unexpected reply to {name}: {reply[:100]!r}")
        return client

    def _handshake(self) -> list[tuple[str, ...]]:
        """What redis-py's own connect sends (with RESP2), for the settings: AUTH, CLIENT SETNAME, SELECT."""
        s = self.settings
        commands: list[tuple[str, ...]] = []
        if s.password is not None:
            password = s.password.reveal()
            commands.append(("AUTH", s.username, password) if s.username else ("AUTH", password))
        commands.append(("CLIENT", "SETNAME", self.client_name))
        if s.db:
            commands.append(("SELECT", str(s.db)))
        return commands

    async def _query(self, client: Redis, rec: Recorder) -> None:
        """PING, INFO server, INFO replication in one write (unless ``_open`` sent them with the handshake);
        ``_answered`` tells whether the server replied to anything yet."""
        from redis.exceptions import ConnectionError as RedisConnectionError

        self._answered = False
        with rec.phase("query"):
            timeout = self._library_timeout()  # a warm client's was computed for an earlier check
            conn = client.connection
            if conn is None or not conn.is_connected:
                # Never let redis-py reconnect by itself: its connect would skip our AUTH. Lost: a fresh one.
                raise RedisConnectionError("Connection closed by server.")
            conn.socket_timeout = timeout
            if not self._check_sent:
                await conn.send_packed_command(conn.pack_commands(_CHECK), check_health=False)
            self._check_sent = False
            await conn.read_response()  # PONG (an error reply raises)
            self._answered = True
            record_peer_certificate(rec, getattr(conn, "_writer", None))  # private, as in _abort
            await self._info(conn, rec)

    def _library_timeout(self) -> float:
        """The budget for the next library call, never above the operator's REDIS_SOCKET_TIMEOUT."""
        timeout = budget()
        if self.settings.socket_timeout:
            timeout = min(timeout, self.settings.socket_timeout)
        self.library_timeout = timeout
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
            ssl=s.tls,
            ssl_ca_certs=s.ssl_ca_certs,
            ssl_certfile=s.ssl_certfile,
            ssl_keyfile=s.ssl_keyfile,
            # An encrypted key must fail, not make OpenSSL prompt for a pass phrase on the terminal.
            ssl_password="",
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            single_connection_client=True,
            # No retries (retry_on_timeout defaults to False and is deprecated): a failure is reported once.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            # RESP2: understood by every Redis and proxy; redis-py 8 defaults to RESP3 (HELLO). No credentials,
            # name or db here: ``_open`` sends AUTH, CLIENT SETNAME and SELECT itself, pipelined with the check.
            protocol=2,
            **_no_setinfo_kwargs(),
        )

    async def _info(self, conn: Any, rec: Recorder) -> None:
        """The two INFO replies (every reply is read, so the warm connection stays in step)."""
        from redis.exceptions import NoPermissionError

        info: dict[str, str] = {}
        denied: NoPermissionError | None = None
        for _ in range(2):
            try:
                info.update(_parse_info(_text(await conn.read_response())))
            except NoPermissionError as exc:
                denied = exc
        if denied is not None:
            # PING worked, so the connector is usable; an ACL without INFO only costs us the details.
            rec.details["info_unavailable"] = one_line(denied, secrets=[self.settings.password])
            return
        rec.details["redis_version"] = info.get("redis_version")
        rec.details["role"] = info.get("role")
        replicas = info.get("connected_slaves")
        rec.details["connected_slaves"] = int(replicas) if replicas is not None else None
        if info.get("role") == "slave":
            rec.details["master_link_status"] = info.get("master_link_status")


# ------------------------------------------------------------------------------------------------ helpers


async def _shutdown(client: Redis) -> None:
    """Close the socket without waiting for the peer, then the client and its pool; never raises."""
    from redis.exceptions import RedisError

    conn = client.connection
    writer = getattr(conn, "_writer", None)  # private, as in _abort: disconnect() forgets it
    try:
        if conn is not None:
            # nowait: do not wait for a TLS close_notify from a server that may be frozen.
            await conn.disconnect(nowait=True)
    except (RedisError, OSError):
        pass
    finally:
        if writer is not None:
            # disconnect() started a polite TLS shutdown that nobody waits for: the socket would stay open
            # until the server answers (or 30 s), and outlive an event loop closed meanwhile.
            writer.transport.abort()
    try:
        await client.aclose()  # releases the connection and disconnects the whole pool
    except (RedisError, OSError):
        pass


#: The check: PING, and only the INFO sections read (``INFO server replication`` needs Redis 7: two commands).
_CHECK = (("PING",), ("INFO", "server"), ("INFO", "replication"))


def _text(reply: object) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _parse_info(text: str) -> dict[str, str]:
    """``key:value`` lines of an INFO reply (``# Section`` headers and blank lines skipped)."""
    pairs = (line.partition(":") for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, sep, value in pairs if sep}


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
