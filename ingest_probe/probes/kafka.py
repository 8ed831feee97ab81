"""Kafka probe: bootstrap one aiokafka admin client, then read cluster and topic metadata in one request."""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import ssl
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe import errors
from ingest_probe.probes._common import (
    CLOSE_BUDGET,
    bounded_close,
    budget,
    library_failure,
    map_os_error,
    one_line,
    resolve,
)

if TYPE_CHECKING:
    from ingest_probe.results import Recorder
    from ingest_probe.settings import KafkaSettings

DEFAULT_PORT = 9092
#: Kafka error codes read from a Metadata response (aiokafka.errors names them; kept here as data).
_UNKNOWN_TOPIC = 3
_LEADER_NOT_AVAILABLE = 5
_TOPIC_AUTHORIZATION_FAILED = 29

# ------------------------------------------------------------------------------------ bootstrap failures
#
# AIOKafkaClient.bootstrap() catches every per-host failure (refused, TLS, SASL, timeout), *logs* it on the
# "aiokafka" logger and then raises a bare KafkaConnectionError("Unable to bootstrap from [...]") with no
# cause. The reason is only in those log records, so while a probe starts its client we listen on that
# logger and keep the exceptions logged from *our* task (a ContextVar tells our records from another
# client's). While attached, the handler also keeps these expected failures off stderr (logging's
# last-resort handler); an application that configured logging still receives every record.

#: (stage, "host:port" or "node N", exception), filled while a probe of this task starts its client.
_FAILURES: ContextVar[list[tuple[str, str, BaseException]] | None] = ContextVar(
    "ingest_probe_kafka_failures", default=None
)
_STAGES = {
    'Unable connect to "%s:%s": %s': "connect",
    'Unable to request metadata from "%s:%s": %s': "metadata",
    "Unable connect to node with id %s: %s": "node",
}


class _FailureCapture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink = _FAILURES.get()
        stage = _STAGES.get(str(record.msg))
        args = record.args if isinstance(record.args, tuple) else ()
        if sink is None or stage is None or not args or not isinstance(args[-1], BaseException):
            return
        where = f"node {args[0]}" if stage == "node" else f"{args[0]}:{args[1]}"
        sink.append((stage, where, args[-1]))


_capture = _FailureCapture()
_capture_lock = threading.Lock()
_capture_users = 0


@contextlib.contextmanager
def _captured_failures() -> Iterator[list[tuple[str, str, BaseException]]]:
    """Collect the per-host failures aiokafka logs (and otherwise swallows) inside this block."""
    global _capture_users
    logger = logging.getLogger("aiokafka")
    with _capture_lock:
        if _capture_users == 0:
            logger.addHandler(_capture)
        _capture_users += 1
    sink: list[tuple[str, str, BaseException]] = []
    token = _FAILURES.set(sink)
    try:
        yield sink
    finally:
        _FAILURES.reset(token)
        with _capture_lock:
            _capture_users -= 1
            if _capture_users == 0:
                logger.removeHandler(_capture)


# ------------------------------------------------------------------------------------------ the probe


def split_bootstrap(server: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` (port 9092) → (host, port)."""
    server = server.strip()
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:] else DEFAULT_PORT
    if server.count(":") == 1:
        host, _, port = server.partition(":")
        return host, int(port) if port else DEFAULT_PORT
    return server, DEFAULT_PORT


class KafkaProbe:
    """Checks a Kafka cluster: bootstrap (TCP, TLS, SASL as configured), cluster view, configured topics.

    One ``AIOKafkaAdminClient`` per probe, kept warm between successful checks and dropped after any
    failure. The query is a single Metadata request for the configured topics with auto-creation off, so
    a probe never creates a topic and never downloads the metadata of every topic of a large cluster.
    """

    name = "kafka"
    phase_names: tuple[str, ...] = ("resolve", "connect", "query")

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.configured = settings.configured and bool(settings.bootstrap_servers)
        self.endpoint: str | None = ",".join(s.strip() for s in settings.bootstrap_servers) or None
        self._admin: Any = None
        self._ssl_context: ssl.SSLContext | None = None
        #: seconds; the request timeout the current client was built with (for messages).
        self._request_timeout = 0.0

    @property
    def client(self) -> Any:
        """The warm ``AIOKafkaAdminClient`` (None when there is none); for tests and embedders."""
        return self._admin

    # --------------------------------------------------------------------------------------------- check

    async def check(self, rec: Recorder) -> None:
        rec.details["reused_client"] = self._admin is not None
        try:
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
            # afresh. Closing is bounded and shielded; the exception always propagates.
            await self._drop()
            raise

    async def aclose(self) -> None:
        """Close the admin client if there is one; idempotent, bounded, never raises on a dead broker."""
        await self._drop()

    async def connect(self) -> Any:
        """Start (or reuse) the admin client as ``check`` does and return it (topic provisioning).

        Failures are the same ``ProbeError``s as ``check``'s; the client is dropped on any failure.
        """
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
        """One Metadata request for the configured topics, auto-creation off; failures as ``ProbeError``s."""
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
        ssl_context = await self._tls_context() if s.security_protocol.endswith("SSL") else None
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
        with _captured_failures() as failures:
            try:
                await admin.start()
            except KafkaConnectionError as exc:
                raise self._bootstrap_error(failures, exc) from (failures[-1][2] if failures else exc)
            except Exception as exc:
                # aiokafka's SCRAM code indexes the server's reply without checking for an error
                # attribute ("e=..."): a rejected login surfaces as KeyError('v').
                sasl_parse = isinstance(exc, KeyError | ValueError | AssertionError)
                if sasl and sasl_parse and _raised_in_aiokafka_sasl(exc):
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
        from aiokafka.protocol.metadata import MetadataRequest

        # Private attribute: the admin API has no Metadata call that leaves auto-creation off.
        client = self._admin._client
        node = client.get_random_node()
        if node is None and ("bootstrap", 0) in client._conns:
            node = "bootstrap"  # aiokafka keeps the bootstrap connection when no broker was listed yet
        if node is None:
            raise errors.ProtocolError(f"{self.endpoint} returned cluster metadata that lists no broker")
        # describe_topics() would send allow_auto_topic_creation=True: a probe must never create a topic.
        request = MetadataRequest(list(self.settings.topic_names), allow_auto_topic_creation=False)
        limit = budget()
        with _captured_failures() as failures, anyio.move_on_after(limit) as scope:
            try:
                return await client.send(node, request)
            except RequestTimedOutError as exc:
                raise errors.ProbeTimeoutError(
                    f"Kafka broker {self._broker_address(node)} did not answer the metadata request in time:"
                    " broker frozen or overloaded?"
                ) from exc
            except NodeNotReadyError as exc:
                raise self._node_error(node, failures, exc) from (failures[-1][2] if failures else exc)
            except KafkaError as exc:
                raise _map_kafka_error(exc, self._broker_address(node), self._secrets()) from exc
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

    async def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is not None:
            return self._ssl_context
        s = self.settings
        files = {"KAFKA_SSL_CAFILE": s.ssl_cafile, "KAFKA_SSL_CERTFILE": s.ssl_certfile,
                 "KAFKA_SSL_KEYFILE": s.ssl_keyfile}  # fmt: skip
        try:
            # Reading CA/cert/key files is blocking I/O: keep it off the event loop.
            context: ssl.SSLContext = await anyio.to_thread.run_sync(_load_tls_context, files)
        except OSError as exc:  # ssl.SSLError is an OSError too
            raise errors.TlsError(
                f"cannot load the Kafka TLS files ({one_line(exc)}): check KAFKA_SSL_CAFILE,"
                " KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
            ) from exc
        self._ssl_context = context
        return context

    async def _drop(self) -> None:
        admin, self._admin = self._admin, None
        if admin is None:
            return
        # The supervisor bounds aclose() by CLOSE_BUDGET too: leave time to abort what did not close.
        if not await bounded_close(admin.close, budget=CLOSE_BUDGET / 2):
            _abort_connections(admin)

    def _library_failure(self, exc: BaseException) -> errors.ProtocolError | None:
        """``exc`` as a ProtocolError when aiokafka raised it from its own code (see ``library_failure``)."""
        return library_failure(
            exc, package="aiokafka", protocol="Kafka", endpoint=self.endpoint, secrets=self._secrets()
        )

    def _secrets(self) -> list[Any]:
        return [self.settings.password]

    def _broker_address(self, node: object) -> str:
        broker = self._admin._client.cluster.broker_metadata(node) if self._admin is not None else None
        return f"{node} at {broker.host}:{broker.port}" if broker is not None else f"{node}"

    def _bootstrap_error(
        self, failures: list[tuple[str, str, BaseException]], exc: BaseException
    ) -> errors.ProbeError:
        tried = self.endpoint or "(none)"
        if not failures:
            return errors.RefusedError(
                f"cannot bootstrap from Kafka servers {tried} ({one_line(exc, secrets=self._secrets())})"
            )
        mapped = [self._failure(stage, where, err) for stage, where, err in failures]
        best = min(mapped, key=lambda e: _PRECEDENCE.index(type(e)) if type(e) in _PRECEDENCE else 99)
        return type(best)(f"Kafka bootstrap failed (tried {tried}): {best}")

    def _node_error(
        self, node: object, failures: list[tuple[str, str, BaseException]], exc: BaseException
    ) -> errors.ProbeError:
        address = self._broker_address(node)
        if not failures:
            return errors.RefusedError(
                f"Kafka broker {address} is not reachable ({one_line(exc)}): check advertised.listeners"
            )
        best = self._failure("node", f"broker {address}", failures[-1][2])
        return type(best)(
            f"bootstrap via {self.endpoint} worked, but the broker address it advertises failed: {best}"
            " — check the broker's advertised.listeners"
        )

    def _failure(self, stage: str, where: str, err: BaseException) -> errors.ProbeError:
        """One logged per-host failure → the error tree, worded for where it happened."""
        from aiokafka.errors import KafkaConnectionError, KafkaError

        s = self.settings
        cause = err.__cause__ if isinstance(err, KafkaConnectionError) else None
        if isinstance(err, TimeoutError):
            step = "the metadata request" if stage == "metadata" else "the connection handshake"
            hint = (
                f"does this listener speak TLS (KAFKA_SECURITY_PROTOCOL is {s.security_protocol})?"
                if s.security_protocol.endswith("SSL") and stage != "metadata"
                else "broker frozen or overloaded, a firewall black hole, or a listener expecting TLS?"
            )
            return errors.ProbeTimeoutError(
                f"{where} did not answer {step} within {self._request_timeout:.2f} s: {hint}"
            )
        for candidate in (err, cause):
            if isinstance(candidate, OSError):
                mapped = map_os_error(candidate, where)
                if isinstance(mapped, errors.TlsError):
                    cafile = s.ssl_cafile or "unset: system CAs"
                    return errors.TlsError(f"{mapped} (KAFKA_SSL_CAFILE is {cafile})")
                if mapped is not None:
                    return mapped
        if isinstance(err, KafkaConnectionError) and "closed" in str(err):
            if stage == "metadata" and not s.security_protocol.startswith("SASL_"):
                return errors.AuthError(
                    f"{where} closed the connection on the metadata request: the broker probably requires"
                    " SASL authentication (set KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM and credentials)"
                )
            if s.security_protocol.startswith("SASL_"):
                return errors.AuthError(
                    f"{where} closed the connection during the {s.sasl_mechanism or 'PLAIN'} SASL handshake:"
                    " is that mechanism enabled on the broker, and are the credentials right?"
                )
            return errors.ProtocolError(
                f"{where} closed the connection during the handshake: not a Kafka listener, or it expects"
                f" TLS/SASL (KAFKA_SECURITY_PROTOCOL is {s.security_protocol})"
            )
        if isinstance(err, KafkaError):
            return _map_kafka_error(err, where, self._secrets())
        return errors.ProtocolError(f"{where}: {one_line(err, secrets=self._secrets())}")


#: When several bootstrap servers failed differently, the most telling failure is reported.
_PRECEDENCE: tuple[type[errors.ProbeError], ...] = (
    errors.AuthError,
    errors.TlsError,
    errors.ProtocolError,
    errors.ProbeTimeoutError,
    errors.RefusedError,
    errors.DnsError,
)


def _map_kafka_error(exc: BaseException, where: str, secrets: list[Any]) -> errors.ProbeError:
    """aiokafka's exceptions → the error tree, most specific first."""
    from aiokafka import errors as kerr

    text = one_line(exc, secrets=secrets)
    if isinstance(exc, kerr.UnsupportedSaslMechanismError):
        return errors.AuthError(
            f"{where} does not offer the configured SASL mechanism: is SASL enabled on this listener, and"
            " which mechanisms does it allow? (check KAFKA_SECURITY_PROTOCOL and KAFKA_SASL_MECHANISM)"
        )
    auth_errors: tuple[type[BaseException], ...] = (
        kerr.AuthenticationFailedError,
        kerr.AuthenticationMethodNotSupported,
        kerr.SaslAuthenticationFailed,
        kerr.IllegalSaslStateError,
        kerr.ClusterAuthorizationFailedError,
        kerr.TopicAuthorizationFailedError,
    )
    if isinstance(exc, auth_errors):
        return errors.AuthError(f"{where} rejected the client ({text}): check SASL credentials and ACLs")
    if isinstance(exc, kerr.KafkaTimeoutError | kerr.RequestTimedOutError):
        return errors.ProbeTimeoutError(f"{where} did not answer in time ({text})")
    if isinstance(exc, kerr.UnsupportedVersionError | kerr.IncompatibleBrokerVersion):
        return errors.ProtocolError(f"{where} does not support a request the probe needs ({text})")
    if isinstance(exc, kerr.KafkaConnectionError):
        return errors.RefusedError(f"lost the connection to {where} ({text})")
    return errors.ProtocolError(f"{where} answered with an error ({text})")


_AIOKAFKA_MODULES = ("aiokafka.admin", "aiokafka.errors", "aiokafka.helpers", "aiokafka.protocol.metadata")


async def _import_aiokafka() -> None:
    """Import aiokafka in a worker thread: ~150 ms of imports would otherwise stall every other probe."""
    if all(name in sys.modules for name in _AIOKAFKA_MODULES):
        return

    def load() -> None:
        for name in _AIOKAFKA_MODULES:
            importlib.import_module(name)

    try:
        await anyio.to_thread.run_sync(load)
    except ImportError as exc:
        raise errors.DriverError(f"the aiokafka client library is not usable: {one_line(exc)}") from exc


def _load_tls_context(files: dict[str, str | None]) -> ssl.SSLContext:
    """Build the client SSL context (in a worker thread); a missing file is named with its key."""
    from aiokafka.helpers import create_ssl_context

    for key, path in files.items():
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, f"{key} file not found: {path}")
    context: ssl.SSLContext = create_ssl_context(
        cafile=files["KAFKA_SSL_CAFILE"],
        certfile=files["KAFKA_SSL_CERTFILE"],
        keyfile=files["KAFKA_SSL_KEYFILE"],
    )
    return context


def _error_name(code: int) -> str:
    from aiokafka.errors import for_code

    return str(for_code(code).__name__)


def _raised_in_aiokafka_sasl(exc: BaseException) -> bool:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code
        tb = tb.tb_next
    return last is not None and last.co_filename.replace("\\", "/").endswith("aiokafka/conn.py")


def _abort_connections(admin: Any) -> None:
    """Last resort when a polite close ran out of time (e.g. a TLS shutdown to a frozen peer): abort."""
    conns = getattr(getattr(admin, "_client", None), "_conns", {}) or {}
    for conn in list(conns.values()):
        transport = getattr(getattr(conn, "_protocol", None), "_transport", None)
        if transport is not None:
            transport.abort()
