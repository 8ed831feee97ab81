"""What the Kafka probe builds and sends: bootstrap addresses, the TLS context, a Metadata request that never
creates a topic, the aiokafka import off the loop, and aborting a client's connections."""

from __future__ import annotations

import errno
import functools
import importlib
import ipaddress
import os
import ssl
import sys
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.connectors._net import in_daemon_thread, one_line, pem_is_encrypted
from ingest_probe.connectors.kafka.settings import DRIVERS
from ingest_probe.defaults import KAFKA_PORT

if TYPE_CHECKING:
    from ingest_probe.connectors.kafka.settings import KafkaSettings


def split_bootstrap(server: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` (port 9092) → (host, port)."""
    server = server.strip()
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:] else KAFKA_PORT
    if server.count(":") == 1:
        host, _, port = server.partition(":")
        return host, int(port) if port else KAFKA_PORT
    return server, KAFKA_PORT


def usable_host_name(host: str) -> bool:
    """Whether ``host`` (as a broker advertises it) is an IP address or a name the resolver would accept.

    The same test as ``socket.getaddrinfo``'s own before any lookup: IDNA encoding (empty or over-long labels
    fail); nothing is resolved.
    """
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return bool(host)


def metadata_request(topics: list[str]) -> Any:
    """A Metadata request that can never create a topic, whatever version the connection negotiates.

    aiokafka's ``MetadataRequest`` sends ``allow_auto_topic_creation`` only from v4 on and silently drops
    it below; a v0–v3 request that names a missing topic makes a broker with
    ``auto.create.topics.enable=true`` create it. So below v4 this asks for *every* topic instead (v0: an
    empty array, v1–v3: a null array; naming none creates none) and the caller filters by name.
    """
    return _metadata_request_class()(topics)


@functools.cache
def _metadata_request_class() -> type[Any]:
    from aiokafka.protocol.metadata import MetadataRequest

    class NoAutoCreateMetadataRequest(MetadataRequest):  # type: ignore[misc]  # aiokafka is untyped here
        def build(self, request_struct_class: Any) -> Any:
            version = request_struct_class.API_VERSION
            if version >= 4:
                return request_struct_class(self._topics, False)
            return request_struct_class([] if version == 0 else None)  # "all topics" in each version

    return NoAutoCreateMetadataRequest


async def import_aiokafka() -> None:
    """Import aiokafka in a worker thread: ~150 ms of imports would otherwise stall every other probe."""
    if all(name in sys.modules for name in DRIVERS):
        return

    def load() -> None:
        for name in DRIVERS:
            importlib.import_module(name)

    try:
        await anyio.to_thread.run_sync(load)
    except ImportError as exc:
        raise errors.DriverError(f"the aiokafka client library is not usable: {one_line(exc)}") from exc



async def load_tls_context(s: KafkaSettings) -> ssl.SSLContext:
    """The client SSL context from KAFKA_SSL_* (files read off the loop); a failure is a ``TlsError``."""
    files = {"KAFKA_SSL_CAFILE": s.ssl_cafile, "KAFKA_SSL_CERTFILE": s.ssl_certfile,
             "KAFKA_SSL_KEYFILE": s.ssl_keyfile}  # fmt: skip
    try:
        # Reading CA/cert/key files is blocking I/O: off the event loop, in a daemon thread (a hung mount
        # must hold neither the deadline nor the process exit).
        context: ssl.SSLContext = await in_daemon_thread(_load_tls_context, files)
    except _EncryptedKeyError as exc:
        raise errors.TlsError(
            f"the Kafka TLS client key {exc} (KAFKA_SSL_KEYFILE) is encrypted: there is no setting for its"
            " passphrase and ingest-probe never prompts for one; use an unencrypted key"
        ) from exc.__cause__
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise errors.TlsError(
            f"cannot load the Kafka TLS files ({one_line(exc)}): check KAFKA_SSL_CAFILE,"
            " KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
        ) from exc
    return context


def _load_tls_context(files: dict[str, str | None]) -> ssl.SSLContext:
    """Build the client SSL context (in a worker thread); a missing file is named with its key."""
    from aiokafka.helpers import create_ssl_context

    for key, path in files.items():
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, f"{key} file not found: {path}")
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=files["KAFKA_SSL_CAFILE"],
            certfile=files["KAFKA_SSL_CERTFILE"],
            keyfile=files["KAFKA_SSL_KEYFILE"],
            # Never None: OpenSSL would then ask for an encrypted key's pass phrase on the terminal.
            password="",
        )
    except ssl.SSLError as exc:
        keyfile = files["KAFKA_SSL_KEYFILE"] or files["KAFKA_SSL_CERTFILE"]
        if pem_is_encrypted(keyfile):
            raise _EncryptedKeyError(keyfile) from exc
        raise
    return context


class _EncryptedKeyError(Exception):
    """Raised in the worker thread: the client key (its path is the message) is encrypted."""


async def bootstrap(admin: Any, request: Any, failures: list[tuple[str, str, BaseException]]) -> Any:
    """``admin.start()`` on one connection: the bootstrap connection sends ``request`` (our Metadata request)
    instead of aiokafka's own and, when it is the connection to a broker the answer lists (same host:port),
    stays open as that broker's connection; the answer is returned for the first check.

    aiokafka's ``bootstrap()`` closes its connection after a Metadata request for every topic and the check
    then opens a second one (TCP, ApiVersions, Metadata again): 6 round trips where 3 do. As aiokafka, each
    server is tried in turn; what failed for one is put in ``failures`` (what aiokafka would have logged),
    and a bootstrap that found none raises ``KafkaConnectionError``. A broker advertising another address
    still gets its own connection (the request of the check goes there): that is how a wrong
    advertised.listeners is found.
    """
    import asyncio

    from aiokafka.client import ConnectionGroup
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaConnectionError, KafkaError

    client = admin._client  # private: the admin API has no bootstrap of its own
    for host, port, _ in client.hosts:
        try:
            conn = await create_conn(
                host,
                port,
                client_id=client._client_id,
                request_timeout_ms=client._request_timeout_ms,
                ssl_context=client._ssl_context,
                security_protocol=client._security_protocol,
                on_close=client._on_connection_closed,
                max_idle_ms=client._connections_max_idle_ms,
                sasl_mechanism=client._sasl_mechanism,
                sasl_plain_username=client._sasl_plain_username,
                sasl_plain_password=client._sasl_plain_password,
            )
        except (OSError, KafkaError, TimeoutError) as err:  # what aiokafka's bootstrap catches
            failures.append(("connect", f"{host}:{port}", err))
            continue
        try:
            metadata = await conn.send(request)
        except (KafkaError, TimeoutError) as err:
            failures.append(("metadata", f"{host}:{port}", err))
            _close_now(conn)
            continue
        except BaseException:
            _close_now(conn)
            raise
        client.cluster.update_metadata(metadata)
        brokers = client.cluster.brokers()
        node = next((b.nodeId for b in brokers if (b.host.lower(), b.port) == (host.lower(), port)), None)
        if node is not None:
            client._conns[(node, ConnectionGroup.DEFAULT)] = conn
        elif not brokers:  # no broker listed yet: aiokafka keeps the bootstrap connection too
            client._conns[("bootstrap", ConnectionGroup.DEFAULT)] = conn
        else:
            _close_now(conn)
            metadata = None  # the check asks the advertised broker itself
        break
    else:
        raise KafkaConnectionError(f"Unable to bootstrap from {client.hosts}")
    if client._sync_task is None:  # aiokafka's metadata refresher (the admin API waits on it)
        client._sync_task = asyncio.create_task(client._md_synchronizer())
    admin._started = True
    return metadata


def _close_now(conn: Any) -> None:
    """Close an aiokafka connection and abort its socket: no polite TLS shutdown that nobody waits for."""
    conn.close()
    transport = getattr(conn._protocol, "_transport", None)  # private, as in abort_connections
    if transport is not None:
        transport.abort()


def abort_connections(admin: Any) -> None:
    """Last resort when a polite close ran out of time (e.g. a TLS shutdown to a frozen peer): abort."""
    conns = getattr(getattr(admin, "_client", None), "_conns", {}) or {}
    for conn in list(conns.values()):
        transport = getattr(getattr(conn, "_protocol", None), "_transport", None)
        if transport is not None:
            transport.abort()
