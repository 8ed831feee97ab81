"""The Kafka probe (one aiokafka admin client on the warm-client lifecycle): bootstrap, then the cluster and the
configured topics in one Metadata request that never creates a topic."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.connectors._net import budget, connection_reset, record_peer_certificate, resolve
from ingest_probe.connectors.base import WarmClient, map_error
from ingest_probe.connectors.kafka import errors as kafka_errors
from ingest_probe.connectors.kafka.client import (
    abort_connections,
    bootstrap,
    import_aiokafka,
    load_tls_context,
    metadata_request,
    split_bootstrap,
    usable_host_name,
)
from ingest_probe.connectors.kafka.errors import Failure, captured_failures
from ingest_probe.connectors.kafka.settings import PROBE_MECHANISMS
from ingest_probe.defaults import CLOSE_BUDGET

if TYPE_CHECKING:
    from ingest_probe.connectors.kafka.settings import KafkaSettings
    from ingest_probe.results import Recorder

#: Kafka error codes read from a Metadata response (aiokafka.errors names them; kept here as data).
_UNKNOWN_TOPIC = 3
_LEADER_NOT_AVAILABLE = 5
_TOPIC_AUTHORIZATION_FAILED = 29


class KafkaProbe(WarmClient["KafkaSettings", Any]):
    """Checks a Kafka cluster: bootstrap (TCP, TLS, SASL as configured), cluster view, configured topics.

    One ``AIOKafkaAdminClient`` per probe, kept warm between successful checks and dropped after any
    failure. The query is a single Metadata request for the configured topics with auto-creation off, so
    a probe never creates a topic and never downloads the metadata of every topic of a large cluster.
    ``details.reused_client`` repeats ``reused_connection`` (its name before the lifecycle was shared).
    """

    library, protocol = "aiokafka", "Kafka"

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__(settings)
        self._ssl_context: ssl.SSLContext | None = None
        #: seconds; the request timeout the current client was built with (for messages).
        self.request_timeout = 0.0
        #: The per-host failures aiokafka logged during the step in flight (it raises without a reason).
        self.failures: list[Failure] = []
        #: The broker the last request went to (``N at host:port``), for messages.
        self.broker = ""
        #: The Metadata answer the bootstrap connection got (for the check right after ``_open``).
        self._fresh: Any = None

    @property
    def client(self) -> Any:
        """The warm ``AIOKafkaAdminClient`` (None when there is none); for tests and embedders."""
        return self._client

    async def connect(self) -> Any:
        """Start (or reuse) the admin client as ``check`` does and return it (topic provisioning).

        Failures are the same ``ProbeError``s as ``check``'s; the client is dropped on any failure.
        """
        self._secrets.hold()
        async with self.mapped(lambda: "connect"):
            try:
                if self._client is None:
                    await import_aiokafka()
                    await self._resolve()
                    await self._connect()
                    self._fresh = None  # the caller sends its own requests
            except BaseException:
                await self._drop()
                raise
        return self._client

    async def metadata(self) -> Any:
        """One Metadata request for the configured topics, auto-creation off; failures as ``ProbeError``s.

        Below Metadata v4 (``response.API_VERSION < 4``) the response lists every topic of the cluster (see
        ``metadata_request``): pick the configured ones by name.
        """
        async with self.mapped(lambda: "query"):
            return await self._request()

    # ----------------------------------------------------------------------------------- lifecycle

    def _reused(self, rec: Recorder, reused: bool) -> None:
        rec.details.update(reused_connection=reused, reused_client=reused)

    def _lost(self, exc: Exception) -> bool:
        """The request found the connection gone (closed, reset, the broker unreachable), not a timeout."""
        from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

        if isinstance(map_error(kafka_errors.table(), self, exc, "query"), errors.ProbeTimeoutError):
            return False
        cause = kafka_errors.cause(self, exc)
        return isinstance(cause, KafkaConnectionError | NodeNotReadyError) or connection_reset(cause)

    async def _discard(self, admin: Any) -> None:
        """Half the time left for a polite close (a TLS shutdown to a frozen broker never ends), then abort.

        Cancelled before that (the deadline of a check), the client stays for the owner's ``aclose()``.
        """
        with anyio.move_on_after(budget(share=0.5, default=CLOSE_BUDGET / 2)):
            await admin.close()
        abort_connections(admin)

    def _abort(self, admin: Any) -> None:
        abort_connections(admin)

    async def _map(self, exc: Exception, phase: str | None) -> errors.ProbeError | None:
        return map_error(kafka_errors.table(), self, exc, phase)

    # ---------------------------------------------------------------------------------- the phases

    async def _open(self, rec: Recorder) -> Any:
        await import_aiokafka()  # before the phases: they time the network, not our imports
        with rec.phase("resolve"):
            await self._resolve()
        with rec.phase("connect"):
            return await self._connect()

    async def _query(self, admin: Any, rec: Recorder) -> None:
        with rec.phase("query"):
            response, self._fresh = self._fresh, None
            if response is None:  # a warm check, or the broker advertises another address than bootstrap's
                response = await self._request()
        for conn in list(admin._client._conns.values()):  # private, as in abort_connections: every broker's
            record_peer_certificate(rec, getattr(conn, "_writer", None))
        self._record(rec, response)

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

    async def _connect(self) -> Any:
        from aiokafka.admin import AIOKafkaAdminClient

        s = self.settings
        sasl = s.security_protocol.startswith("SASL_")
        if sasl and s.sasl_mechanism not in (None, *PROBE_MECHANISMS):
            raise errors.DriverError(
                f"cannot authenticate to {self.endpoint} with SASL mechanism {s.sasl_mechanism}: the probe speaks"
                f" {', '.join(PROBE_MECHANISMS)} (no token provider or Kerberos ticket can be configured);"
                " the broker was not contacted"
            )
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
        self.request_timeout = max(0.05, budget() / hosts)
        admin = AIOKafkaAdminClient(
            bootstrap_servers=[server.strip() for server in s.bootstrap_servers],
            client_id=s.client_id,
            request_timeout_ms=int(self.request_timeout * 1000),
            retry_backoff_ms=50,
            # The client's background refresher would otherwise poll the cluster between checks.
            metadata_max_age_ms=300_000,
            security_protocol=s.security_protocol,
            ssl_context=ssl_context,
            sasl_mechanism=s.sasl_mechanism or "PLAIN",
            sasl_plain_username=s.username if sasl else None,
            sasl_plain_password=s.password.reveal() if sasl and s.password is not None else None,
        )
        self._client = admin  # before start(): aclose() must reach a half-started client
        self._fresh = None
        with captured_failures() as self.failures:
            # admin.start() on one connection that also carries the check's Metadata request
            self._fresh = await bootstrap(admin, metadata_request(list(s.topic_names)), self.failures)
        return admin

    async def _request(self) -> Any:
        """The Metadata request to one broker (bounded by the time left), raising what aiokafka raises."""
        assert self._client is not None  # connected (check) or connect() first (provisioning)
        # Private attribute: the admin API has no Metadata call that leaves auto-creation off.
        client = self._client._client
        node = client.get_random_node()
        if node is None and ("bootstrap", 0) in client._conns:
            node = "bootstrap"  # aiokafka keeps the bootstrap connection when no broker was listed yet
        if node is None:
            raise errors.ProtocolError(f"{self.endpoint} returned cluster metadata that lists no broker")
        broker = client.cluster.broker_metadata(node)
        self.broker = f"{node} at {broker.host}:{broker.port}" if broker is not None else f"{node}"
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
        with captured_failures() as self.failures, anyio.move_on_after(limit) as scope:
            return await client.send(node, request)
        assert scope.cancelled_caught
        raise errors.ProbeTimeoutError(
            f"Kafka broker {self.broker} did not answer the metadata request within {limit:.2f} s: broker frozen"
            " or overloaded?"
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


def _error_name(code: int) -> str:
    from aiokafka.errors import for_code

    return str(for_code(code).__name__)
