"""aiokafka's failures onto the error tree: the bootstrap failures it only logs, and three tables (most specific
first): its exceptions, the per-host failures it logged, and the probe's own steps (bootstrap, the request).

tests/test_error_tables.py builds each library exception and pins every rule.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol, cast

from ingest_probe import errors
from ingest_probe.connectors._net import map_os_error, one_line, raised_inside
from ingest_probe.connectors.base import Rule, map_error, text

if TYPE_CHECKING:
    from ingest_probe.connectors.kafka.settings import KafkaSettings

#: (stage, "host:port" or "node N", exception): one per-host failure aiokafka logged.
Failure = tuple[str, str, BaseException]

# ------------------------------------------------------------------------------------ bootstrap failures
#
# AIOKafkaClient.bootstrap() catches every per-host failure (refused, TLS, SASL, timeout), *logs* it on the
# "aiokafka" logger and then raises a bare KafkaConnectionError("Unable to bootstrap from [...]") with no
# cause. The reason is only in those log records, so while a probe starts its client we listen on that
# logger and keep the exceptions logged from *our* task (a ContextVar tells our records from another
# client's). While attached, the handler also keeps these expected failures off stderr (logging's
# last-resort handler); an application that configured logging still receives every record.

#: Filled while a probe of this task starts its client or sends its request.
_FAILURES: ContextVar[list[Failure] | None] = ContextVar("ingest_probe_kafka_failures", default=None)
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
def captured_failures() -> Iterator[list[Failure]]:
    """Collect the per-host failures aiokafka logs (and otherwise swallows) inside this block."""
    global _capture_users
    logger = logging.getLogger("aiokafka")
    with _capture_lock:
        if _capture_users == 0:
            logger.addHandler(_capture)
        _capture_users += 1
    sink: list[Failure] = []
    token = _FAILURES.set(sink)
    try:
        yield sink
    finally:
        _FAILURES.reset(token)
        with _capture_lock:
            _capture_users -= 1
            if _capture_users == 0:
                logger.removeHandler(_capture)


# ------------------------------------------------------------------------------------------- the peers


class KafkaProbe(Protocol):
    """What the rules read of the probe."""

    settings: KafkaSettings
    endpoint: str | None
    #: The per-host failures aiokafka logged during the step that failed.
    failures: list[Failure]
    #: The request timeout the client was built with, in seconds.
    request_timeout: float
    #: The broker the last request went to (``N at host:port``).
    broker: str


class Peer:
    """Who failed, as messages name it (``host:port``, ``node N``, ``broker N at host:port``), with the probe's
    settings (what it tried, its password to blank), its request timeout and whether the protocol was inferred."""

    __slots__ = ("request_timeout", "settings", "where")

    def __init__(self, settings: KafkaSettings, where: str, request_timeout: float = 0.0) -> None:
        self.settings, self.where, self.request_timeout = settings, where, request_timeout


def protocol_said(s: KafkaSettings) -> str:
    """Where the security protocol came from, for a message: the operator's setting, or our inference."""
    if not s.protocol_inferred:
        return f"KAFKA_SECURITY_PROTOCOL is {s.security_protocol}"
    if s.security_protocol == "SASL_SSL":
        return (
            "KAFKA_SECURITY_PROTOCOL is not set, so SASL_SSL was inferred from the SASL credentials or a"
            " sasl_ssl:// URL: set KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT for a listener without TLS"
        )
    return f"KAFKA_SECURITY_PROTOCOL is not set, so {s.security_protocol} was inferred"


# --------------------------------------------------------------------------------- aiokafka's exceptions


@functools.cache
def kafka_table() -> tuple[Rule[Peer], ...]:
    """aiokafka's exceptions (of a request, or logged for one host); anything else it raised is an error reply."""
    from aiokafka import errors as kerr

    return (
        Rule("sasl_mechanism_unsupported", kerr.UnsupportedSaslMechanismError, lambda peer, exc, stage:
             errors.AuthError(f"{peer.where} does not offer the configured SASL mechanism: is SASL enabled on this"
                              " listener, and which mechanisms does it allow? (check KAFKA_SECURITY_PROTOCOL and"
                              " KAFKA_SASL_MECHANISM)")),
        Rule("rejected", (kerr.AuthenticationFailedError, kerr.AuthenticationMethodNotSupported,
                          kerr.SaslAuthenticationFailed, kerr.IllegalSaslStateError,
                          kerr.ClusterAuthorizationFailedError, kerr.TopicAuthorizationFailedError),
             lambda peer, exc, stage: errors.AuthError(
                 f"{peer.where} rejected the client ({text(peer, exc)}): check SASL credentials and ACLs")),
        Rule("timeout", (kerr.KafkaTimeoutError, kerr.RequestTimedOutError), lambda peer, exc, stage:
             errors.ProbeTimeoutError(f"{peer.where} did not answer in time ({text(peer, exc)})")),
        Rule("unsupported_request", (kerr.UnsupportedVersionError, kerr.IncompatibleBrokerVersion),
             lambda peer, exc, stage: errors.ProtocolError(
                 f"{peer.where} does not support a request the probe needs ({text(peer, exc)})")),
        Rule("connection_lost", kerr.KafkaConnectionError, lambda peer, exc, stage: errors.RefusedError(
            f"lost the connection to {peer.where} ({text(peer, exc)})")),
        Rule("error_reply", BaseException, lambda peer, exc, stage: errors.ProtocolError(
            f"{peer.where} answered with an error ({text(peer, exc)})")),
    )


def kafka_error(peer: Peer, exc: BaseException) -> errors.ProbeError:
    """One of aiokafka's exceptions on the error tree (``kafka_table`` ends with a catch-all)."""
    return cast(errors.ProbeError, map_error(kafka_table(), peer, exc, None))


# --------------------------------------------------------------------------- what aiokafka logged per host


def _socket(peer: Peer, exc: BaseException) -> errors.ProbeError | None:
    """A socket-level failure, bare or as the cause of aiokafka's ``KafkaConnectionError``."""
    from aiokafka.errors import KafkaConnectionError

    cause = exc.__cause__ if isinstance(exc, KafkaConnectionError) else None
    for candidate in (exc, cause):
        if isinstance(candidate, OSError):
            mapped = map_os_error(candidate, peer.where)
            if isinstance(mapped, errors.TlsError):
                cafile = peer.settings.ssl_cafile or "unset: system CAs"
                return errors.TlsError(f"{mapped} (KAFKA_SSL_CAFILE is {cafile})")
            if mapped is not None:
                return mapped
    return None


def _logged_timeout(peer: Peer, exc: BaseException, stage: str | None) -> errors.ProbeError:
    s = peer.settings
    step = "the metadata request" if stage == "metadata" else "the connection handshake"
    hint = (
        f"does this listener speak TLS, or does a different service listen on that port? ({protocol_said(s)})"
        if s.security_protocol.endswith("SSL") and stage != "metadata"
        else "broker frozen or overloaded, a firewall black hole, a listener expecting TLS, or a different"
        " service listens on that port?"
    )
    return errors.ProbeTimeoutError(f"{peer.where} did not answer {step} within {peer.request_timeout:.2f} s: {hint}")


def _closed(peer: Peer, exc: BaseException, stage: str | None) -> bool:
    return "closed" in str(exc)


def _sasl(peer: Peer, exc: BaseException, stage: str | None) -> bool:
    return peer.settings.security_protocol.startswith("SASL_")


@functools.cache
def logged_table() -> tuple[Rule[Peer], ...]:
    """One per-host failure aiokafka logged, worded for the stage it happened in (connect, metadata, node)."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    return (
        Rule("timeout", TimeoutError, _logged_timeout),
        Rule("socket", BaseException, lambda peer, exc, stage: cast(errors.ProbeError, _socket(peer, exc)),
             when=lambda peer, exc, stage: _socket(peer, exc) is not None),
        Rule("sasl_required", KafkaConnectionError, lambda peer, exc, stage: errors.AuthError(
            f"{peer.where} closed the connection on the metadata request: the broker probably requires"
            " SASL authentication (set KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM and credentials)"),
             when=lambda peer, exc, stage: _closed(peer, exc, stage) and stage == "metadata"
             and not _sasl(peer, exc, stage)),
        Rule("sasl_handshake_closed", KafkaConnectionError, lambda peer, exc, stage: errors.AuthError(
            f"{peer.where} closed the connection during the {peer.settings.sasl_mechanism or 'PLAIN'} SASL handshake:"
            " is that mechanism enabled on the broker, and are the credentials right?"),
             when=lambda peer, exc, stage: _closed(peer, exc, stage) and _sasl(peer, exc, stage)),
        Rule("handshake_closed", KafkaConnectionError, lambda peer, exc, stage: errors.ProtocolError(
            f"{peer.where} closed the connection during the handshake: is this really a Kafka port (a different"
            f" service may listen on it), or does it expect TLS/SASL ({protocol_said(peer.settings)})?"),
             when=_closed),
        Rule("kafka", KafkaError, lambda peer, exc, stage: kafka_error(peer, exc)),
        Rule("other", BaseException, lambda peer, exc, stage: errors.ProtocolError(
            f"{peer.where}: {text(peer, exc)}")),
    )


def logged(peer: Peer, stage: str, exc: BaseException) -> errors.ProbeError:
    """One logged failure on the error tree (``logged_table`` ends with a catch-all)."""
    return cast(errors.ProbeError, map_error(logged_table(), peer, exc, stage))


#: When several bootstrap servers failed differently, the most telling failure is reported.
_PRECEDENCE: tuple[type[errors.ProbeError], ...] = (
    errors.AuthError,
    errors.TlsError,
    errors.ProtocolError,
    errors.ProbeTimeoutError,
    errors.RefusedError,
    errors.DnsError,
)


def bootstrap_error(probe: KafkaProbe, exc: BaseException) -> errors.ProbeError:
    """A failed ``start()``: the most telling of the per-host failures logged meanwhile, naming every server."""
    s = probe.settings
    tried = probe.endpoint or "(none)"
    if not probe.failures:
        return errors.RefusedError(f"cannot bootstrap from Kafka servers {tried}"
                                   f" ({one_line(exc, secrets=s.secrets())})")
    mapped = [logged(Peer(s, where, probe.request_timeout), stage, err) for stage, where, err in probe.failures]
    best = min(mapped, key=lambda e: _PRECEDENCE.index(type(e)) if type(e) in _PRECEDENCE else 99)
    return type(best)(f"Kafka bootstrap failed (tried {tried}): {best}")


def node_error(probe: KafkaProbe, exc: BaseException) -> errors.ProbeError:
    """Bootstrap worked but the broker it advertised (``probe.broker``) could not be reached."""
    if not probe.failures:
        return errors.RefusedError(
            f"Kafka broker {probe.broker} is not reachable ({one_line(exc)}): check advertised.listeners"
        )
    best = logged(Peer(probe.settings, f"broker {probe.broker}", probe.request_timeout), "node", probe.failures[-1][2])
    return type(best)(
        f"bootstrap via {probe.endpoint} worked, but the broker address it advertises failed: {best}"
        " — check the broker's advertised.listeners"
    )


# ------------------------------------------------------------------------------------- the probe's steps


def _connecting(probe: KafkaProbe, exc: BaseException, phase: str | None) -> bool:
    return phase == "connect"


def _requesting(probe: KafkaProbe, exc: BaseException, phase: str | None) -> bool:
    return phase != "connect"


def _sasl_login(probe: KafkaProbe, exc: BaseException, phase: str | None) -> errors.ProbeError:
    s = probe.settings
    return errors.AuthError(f"SASL {s.sasl_mechanism or 'PLAIN'} login as {s.username!r} rejected by"
                            f" {probe.endpoint}: check the username, password and mechanism")


@functools.cache
def table() -> tuple[Rule[KafkaProbe], ...]:
    """The probe's steps: starting the client (bootstrap) and the Metadata request to one broker."""
    from aiokafka.errors import KafkaConnectionError, KafkaError, NodeNotReadyError, RequestTimedOutError

    return (
        Rule("bootstrap", KafkaConnectionError, lambda probe, exc, phase: bootstrap_error(probe, exc),
             when=_connecting),
        # aiokafka's SCRAM code indexes the server's reply without checking for an error attribute ("e=..."):
        # a rejected login surfaces as KeyError('v').
        Rule("sasl_login_rejected", (KeyError, ValueError, AssertionError), _sasl_login,
             when=lambda probe, exc, phase: phase == "connect" and probe.settings.security_protocol.startswith("SASL_")
             and raised_inside(exc, "aiokafka.conn")),
        Rule("request_timeout", RequestTimedOutError, lambda probe, exc, phase: errors.ProbeTimeoutError(
            f"Kafka broker {probe.broker} did not answer the metadata request in time: broker frozen or overloaded?"),
             when=_requesting),
        Rule("broker_unreachable", NodeNotReadyError, lambda probe, exc, phase: node_error(probe, exc),
             when=_requesting),
        Rule("kafka", KafkaError, lambda probe, exc, phase: kafka_error(Peer(probe.settings, probe.broker), exc),
             when=_requesting),
    )


def cause(probe: KafkaProbe, exc: BaseException) -> BaseException:
    """The failure behind ``exc``: what aiokafka logged last for a step that only says it failed, else itself."""
    from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

    if isinstance(exc, KafkaConnectionError | NodeNotReadyError) and probe.failures:
        return probe.failures[-1][2]
    return exc
