"""Kafka probe: bootstrap one aiokafka admin client, then read cluster and topic metadata in one request."""

from __future__ import annotations

import functools
import importlib
import ipaddress
import ssl
import sys
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.connectors._log_secrets import HeldSecrets
from ingest_probe.connectors._net import (
    budget,
    connection_reset,
    library_failure,
    one_line,
    raised_inside,
    resolve,
)
from ingest_probe.connectors.kafka.errors import (
    abort_connections,
    bootstrap_error,
    captured_failures,
    load_tls_context,
    map_kafka_error,
    node_error,
)
from ingest_probe.connectors.kafka.settings import DRIVERS
from ingest_probe.defaults import CLOSE_BUDGET, KAFKA_PORT

if TYPE_CHECKING:
    from ingest_probe.connectors.kafka.settings import KafkaSettings
    from ingest_probe.results import Recorder

#: Kafka error codes read from a Metadata response (aiokafka.errors names them; kept here as data).
_UNKNOWN_TOPIC = 3
_LEADER_NOT_AVAILABLE = 5
_TOPIC_AUTHORIZATION_FAILED = 29


# ------------------------------------------------------------------------------------------ the probe


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


class KafkaProbe:
    """Checks a Kafka cluster: bootstrap (TCP, TLS, SASL as configured), cluster view, configured topics.

    One ``AIOKafkaAdminClient`` per probe, kept warm between successful checks and dropped after any
    failure. The query is a single Metadata request for the configured topics with auto-creation off, so
    a probe never creates a topic and never downloads the metadata of every topic of a large cluster.
    """

    phase_names: tuple[str, ...] = ("resolve", "connect", "query")

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        #: KAFKA_SECURITY_PROTOCOL was not set (the settings layer chose it): messages say the protocol was
        #: assumed and how to choose another one.
        self.protocol_inferred = settings.protocol_inferred
        self.endpoint = settings.endpoint
        self._admin: Any = None
        #: The SASL password, scrubbed from the client libraries' log records while a client may use it.
        self._secrets = HeldSecrets([settings.password])
        self._ssl_context: ssl.SSLContext | None = None
        #: seconds; the request timeout the current client was built with (for messages).
        self._request_timeout = 0.0

    @property
    def client(self) -> Any:
        """The warm ``AIOKafkaAdminClient`` (None when there is none); for tests and embedders."""
        return self._admin

    # --------------------------------------------------------------------------------------------- check

    async def check(self, rec: Recorder) -> None:
        self._secrets.hold()
        rec.details["reused_client"] = self._admin is not None
        try:
            response = None
            if self._admin is not None:
                try:
                    with rec.phase("query"):
                        response = await self._query()
                except errors.ProbeError as exc:
                    if not _lost_connection(exc):
                        raise
                    # The warm connection was reset or closed before any reply (a load balancer's idle
                    # timeout, a broker restart): one fresh client within the same deadline.
                    await self._drop()
                    rec.details.update(reused_client=False, reconnected=True)
            if response is None:
                if self._admin is None:
                    await _import_aiokafka()  # before the phases: they time the network, not our imports
                    with rec.phase("resolve"):
                        await self._resolve()
                    with rec.phase("connect"):
                        await self._connect()
                with rec.phase("query"):
                    response = await self._query()
            self._record(rec, response)
        except BaseException:
            # Any failure, cancellation included: the client's state is unknown, so the next check starts
            # afresh. Closing takes what is left of the deadline (cancelled: the owner's aclose() closes it);
            # the exception always propagates.
            await self._drop()
            raise

    async def aclose(self) -> None:
        """Close the admin client if there is one, within the caller's deadline; idempotent, never raises on a
        dead broker."""
        await self._drop()
        if self._admin is None:
            self._secrets.release()

    async def connect(self) -> Any:
        """Start (or reuse) the admin client as ``check`` does and return it (topic provisioning).

        Failures are the same ``ProbeError``s as ``check``'s; the client is dropped on any failure.
        """
        self._secrets.hold()
        try:
            if self._admin is None:
                await _import_aiokafka()
                await self._resolve()
                await self._connect()
        except BaseException:
            await self._drop()
            raise
        return self._admin

    async def metadata(self) -> Any:
        """One Metadata request for the configured topics, auto-creation off; failures as ``ProbeError``s.

        Below Metadata v4 (``response.API_VERSION < 4``) the response lists every topic of the cluster (see
        ``metadata_request``): pick the configured ones by name.
        """
        return await self._query()

    # ------------------------------------------------------------------------------------------- phases

    def _servers(self) -> list[tuple[str, int]]:
        try:
            return [split_bootstrap(s) for s in self.settings.bootstrap_servers]
        except ValueError as exc:
            raise errors.ProtocolError(
                f"invalid Kafka bootstrap server list {self.endpoint!r}: expected host:port entries"
            ) from exc

    async def _resolve(self) -> None:
        """Resolve the first bootstrap host that resolves; a DnsError only if none does."""
        failures: list[errors.DnsError] = []
        for host, port in self._servers():
            try:
                addresses = await resolve(host, port)
            except errors.DnsError as exc:
                failures.append(exc)
                continue
            if addresses:
                return
            failures.append(errors.DnsError(f"host {host!r} resolved to no address"))
        raise errors.DnsError(
            f"{failures[0]} (Kafka bootstrap servers tried: {self.endpoint})"
        ) from failures[0].__cause__

    async def _connect(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaConnectionError

        s = self.settings
        sasl = s.security_protocol.startswith("SASL_")
        if sasl and (s.username is None or s.password is None):
            raise errors.AuthError(
                f"{s.security_protocol} needs a SASL username and password (KAFKA_USERNAME, KAFKA_PASSWORD)"
                f" for {self.endpoint}"
            )
        ssl_context = None
        if s.security_protocol.endswith("SSL"):  # loaded once per probe, files read off the loop
            ssl_context = self._ssl_context = self._ssl_context or await load_tls_context(s)
        hosts = max(1, len(s.bootstrap_servers))
        # Each bootstrap server gets an equal share, so every one is tried before the deadline; every
        # step of one attempt (TCP+TLS, ApiVersions, SASL, Metadata) is bounded by this.
        self._request_timeout = max(0.05, budget() / hosts)
        admin = AIOKafkaAdminClient(
            bootstrap_servers=[server.strip() for server in s.bootstrap_servers],
            client_id=s.client_id,
            request_timeout_ms=int(self._request_timeout * 1000),
            retry_backoff_ms=50,
            # The client's background refresher would otherwise poll the cluster between checks.
            metadata_max_age_ms=300_000,
            security_protocol=s.security_protocol,
            ssl_context=ssl_context,
            sasl_mechanism=s.sasl_mechanism or "PLAIN",
            sasl_plain_username=s.username if sasl else None,
            sasl_plain_password=s.password.reveal() if sasl and s.password is not None else None,
        )
        self._admin = admin  # before start(): aclose() must reach a half-started client
        with captured_failures() as failures:
            try:
                await admin.start()
            except KafkaConnectionError as exc:
                error = bootstrap_error(
                    s, self.endpoint, failures, exc, self._request_timeout, inferred=self.protocol_inferred
                )
                raise error from (failures[-1][2] if failures else exc)
            except Exception as exc:
                # aiokafka's SCRAM code indexes the server's reply without checking for an error
                # attribute ("e=..."): a rejected login surfaces as KeyError('v').
                sasl_parse = isinstance(exc, KeyError | ValueError | AssertionError)
                if sasl and sasl_parse and raised_inside(exc, "aiokafka.conn"):
                    mechanism = s.sasl_mechanism or "PLAIN"
                    raise errors.AuthError(
                        f"SASL {mechanism} login as {s.username!r} rejected by {self.endpoint}:"
                        " check the username, password and mechanism"
                    ) from exc
                # Any other exception from inside aiokafka (a TypeError in its ApiVersions parsing…): the
                # peer did not answer like Kafka. From our own code: a bug, re-raised.
                mapped = self._library_failure(exc)
                if mapped is None:
                    raise
                raise mapped from exc

    async def _query(self) -> Any:
        from aiokafka.errors import KafkaError, NodeNotReadyError, RequestTimedOutError

        # Private attribute: the admin API has no Metadata call that leaves auto-creation off.
        client = self._admin._client
        node = client.get_random_node()
        if node is None and ("bootstrap", 0) in client._conns:
            node = "bootstrap"  # aiokafka keeps the bootstrap connection when no broker was listed yet
        if node is None:
            raise errors.ProtocolError(f"{self.endpoint} returned cluster metadata that lists no broker")
        broker = client.cluster.broker_metadata(node)
        if broker is not None and not usable_host_name(broker.host):
            # Checked here, never looked up: the system resolver would fail it anyway (IDNA), but aiokafka
            # lets that UnicodeError escape, and a name is not sent to DNS just to learn it is malformed.
            raise errors.DnsError(
                f"bootstrap via {self.endpoint} worked, but broker {node} advertises the host name"
                f" {broker.host!r}, which is not a valid host name: check the broker's advertised.listeners"
            )
        # describe_topics() would send allow_auto_topic_creation=True: a probe must never create a topic.
        request = metadata_request(list(self.settings.topic_names))
        limit = budget()
        with captured_failures() as failures, anyio.move_on_after(limit) as scope:
            try:
                return await client.send(node, request)
            except RequestTimedOutError as exc:
                raise errors.ProbeTimeoutError(
                    f"Kafka broker {self._broker_address(node)} did not answer the metadata request in time:"
                    " broker frozen or overloaded?"
                ) from exc
            except NodeNotReadyError as exc:
                address = self._broker_address(node)
                error = node_error(
                    self.settings, self.endpoint, address, failures, exc, self._request_timeout,
                    inferred=self.protocol_inferred,
                )
                raise error from (failures[-1][2] if failures else exc)
            except KafkaError as exc:
                raise map_kafka_error(exc, self._broker_address(node), [self.settings.password]) from exc
            except Exception as exc:
                mapped = self._library_failure(exc)
                if mapped is None:
                    raise
                raise mapped from exc
        assert scope.cancelled_caught
        raise errors.ProbeTimeoutError(
            f"Kafka broker {self._broker_address(node)} did not answer the metadata request within"
            f" {limit:.2f} s: broker frozen or overloaded?"
        )

    def _record(self, rec: Recorder, response: Any) -> None:
        md = response.to_object()
        version = getattr(response, "API_VERSION", None)
        if isinstance(version, int) and version < 4:
            rec.details["metadata_note"] = (
                f"broker speaks Metadata v{version} only (< v4, no way to turn topic auto-creation off):"
                " the probe asked for every topic and picked the configured ones, so it created none"
            )
        brokers = md.get("brokers") or []
        if not brokers:
            raise errors.ProtocolError(f"{self.endpoint} returned cluster metadata that lists no broker")
        wanted = set(self.settings.topic_names)
        present: list[str] = []
        missing: set[str] = set(wanted)
        unauthorized: list[str] = []
        other_errors: dict[str, str] = {}
        leaderless: dict[str, list[int]] = {}
        for topic in md.get("topics") or []:
            name = topic["topic"]
            if name not in wanted:
                continue  # some brokers (Tansu) answer an empty topic list with every topic
            code = topic["error_code"]
            if code == _UNKNOWN_TOPIC:
                continue
            missing.discard(name)
            if code == _TOPIC_AUTHORIZATION_FAILED:
                unauthorized.append(name)
                continue
            present.append(name)
            if code == _LEADER_NOT_AVAILABLE:
                leaderless[name] = sorted(p["partition"] for p in topic["partitions"]) or [-1]
            elif code != 0:
                other_errors[name] = _error_name(code)
            no_leader = sorted(
                p["partition"]
                for p in topic["partitions"]
                if p["leader"] < 0 or p["error_code"] == _LEADER_NOT_AVAILABLE
            )
            if no_leader and name not in leaderless:
                leaderless[name] = no_leader
        rec.details.update(
            cluster_id=md.get("cluster_id"),
            controller_id=md.get("controller_id"),
            broker_count=len(brokers),
            brokers=sorted(f"{b['host']}:{b['port']}" for b in brokers),
            topics_present=sorted(present),
            topics_missing=sorted(missing),
            partitions_without_leader=leaderless,
        )
        if unauthorized:
            rec.details["topics_unauthorized"] = sorted(unauthorized)
        if other_errors:
            rec.details["topic_errors"] = other_errors
        if missing:
            rec.degrade(
                "missing_topic",
                f"topics missing on the cluster: {', '.join(sorted(missing))} — create them"
                " (ingest-probe topics apply) or fix KAFKA_INGEST_TOPICS",
            )
        if leaderless:
            where = ", ".join(f"{t}{parts}" for t, parts in sorted(leaderless.items()))
            rec.degrade(
                "no_leader",
                f"partitions without a leader: {where} — a broker hosting them is down or a leader election"
                " is under way; check broker health",
            )
        if unauthorized:
            rec.degrade(
                "auth",
                f"not authorized to describe topics: {', '.join(sorted(unauthorized))} — grant DESCRIBE on"
                f" them to {self.settings.username or 'this client'}",
            )
        if other_errors:
            rec.degrade(
                "topic_error",
                "topic metadata errors: " + ", ".join(f"{t}: {e}" for t, e in sorted(other_errors.items())),
            )
    # ------------------------------------------------------------------------------------------ helpers

    async def _drop(self) -> None:
        """Close the client within the caller's deadline (the owner shields it), aborting what did not close.

        Cancelled before that (the deadline of a check), the client stays for the owner's ``aclose()``.
        """
        admin = self._admin
        if admin is None:
            return
        # Half the time left for a polite close (a TLS shutdown to a frozen broker never ends), then abort.
        with anyio.move_on_after(budget(share=0.5, default=CLOSE_BUDGET / 2)):
            await admin.close()
        abort_connections(admin)
        if self._admin is admin:
            self._admin = None

    def _library_failure(self, exc: BaseException) -> errors.ProtocolError | None:
        """``exc`` as a ProtocolError when aiokafka raised it from its own code (see ``library_failure``)."""
        return library_failure(
            exc, package="aiokafka", protocol="Kafka", endpoint=self.endpoint, secrets=[self.settings.password]
        )

    def _broker_address(self, node: object) -> str:
        broker = self._admin._client.cluster.broker_metadata(node) if self._admin is not None else None
        return f"{node} at {broker.host}:{broker.port}" if broker is not None else f"{node}"


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


async def _import_aiokafka() -> None:
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


def _lost_connection(exc: errors.ProbeError) -> bool:
    """Whether a request on a reused client failed because its connection is gone (no reply, no timeout)."""
    from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

    if isinstance(exc, errors.ProbeTimeoutError):
        return False
    cause = exc.__cause__
    return isinstance(cause, KafkaConnectionError | NodeNotReadyError) or connection_reset(cause)


def _error_name(code: int) -> str:
    from aiokafka.errors import for_code

    return str(for_code(code).__name__)
