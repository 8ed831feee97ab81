"""Kafka failures onto the error tree: the bootstrap failures aiokafka only logs, its exception table, TLS files."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import ssl
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ingest_probe import errors
from ingest_probe.connectors._net import in_daemon_thread, map_os_error, one_line, pem_is_encrypted

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


# ------------------------------------------------------------------------------------------ the mapping

#: When several bootstrap servers failed differently, the most telling failure is reported.
_PRECEDENCE: tuple[type[errors.ProbeError], ...] = (
    errors.AuthError,
    errors.TlsError,
    errors.ProtocolError,
    errors.ProbeTimeoutError,
    errors.RefusedError,
    errors.DnsError,
)


def protocol_said(s: KafkaSettings, *, inferred: bool) -> str:
    """Where the security protocol came from, for a message: the operator's setting, or our inference."""
    if not inferred:
        return f"KAFKA_SECURITY_PROTOCOL is {s.security_protocol}"
    if s.security_protocol == "SASL_SSL":
        return (
            "KAFKA_SECURITY_PROTOCOL is not set, so SASL_SSL was inferred from the SASL credentials or a"
            " sasl_ssl:// URL: set KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT for a listener without TLS"
        )
    return f"KAFKA_SECURITY_PROTOCOL is not set, so {s.security_protocol} was inferred"


def bootstrap_error(
    s: KafkaSettings,
    endpoint: str | None,
    failures: list[Failure],
    exc: BaseException,
    request_timeout: float,
    *,
    inferred: bool = False,
) -> errors.ProbeError:
    """A failed ``start()``: the most telling of the per-host failures, naming every server tried.

    ``inferred``: the operator did not set KAFKA_SECURITY_PROTOCOL (messages then say what we assumed).
    """
    tried = endpoint or "(none)"
    if not failures:
        return errors.RefusedError(
            f"cannot bootstrap from Kafka servers {tried} ({one_line(exc, secrets=[s.password])})"
        )
    mapped = [_failure(s, stage, where, err, request_timeout, inferred=inferred) for stage, where, err in failures]
    best = min(mapped, key=lambda e: _PRECEDENCE.index(type(e)) if type(e) in _PRECEDENCE else 99)
    return type(best)(f"Kafka bootstrap failed (tried {tried}): {best}")


def node_error(
    s: KafkaSettings,
    endpoint: str | None,
    address: str,
    failures: list[Failure],
    exc: BaseException,
    request_timeout: float,
    *,
    inferred: bool = False,
) -> errors.ProbeError:
    """Bootstrap worked but the broker it advertised (``address``) could not be reached."""
    if not failures:
        return errors.RefusedError(
            f"Kafka broker {address} is not reachable ({one_line(exc)}): check advertised.listeners"
        )
    best = _failure(s, "node", f"broker {address}", failures[-1][2], request_timeout, inferred=inferred)
    return type(best)(
        f"bootstrap via {endpoint} worked, but the broker address it advertises failed: {best}"
        " — check the broker's advertised.listeners"
    )


def _failure(
    s: KafkaSettings, stage: str, where: str, err: BaseException, request_timeout: float, *, inferred: bool
) -> errors.ProbeError:
    """One logged per-host failure → the error tree, worded for where it happened."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    cause = err.__cause__ if isinstance(err, KafkaConnectionError) else None
    if isinstance(err, TimeoutError):
        step = "the metadata request" if stage == "metadata" else "the connection handshake"
        hint = (
            "does this listener speak TLS, or does a different service listen on that port?"
            f" ({protocol_said(s, inferred=inferred)})"
            if s.security_protocol.endswith("SSL") and stage != "metadata"
            else "broker frozen or overloaded, a firewall black hole, a listener expecting TLS, or a different"
            " service listens on that port?"
        )
        return errors.ProbeTimeoutError(f"{where} did not answer {step} within {request_timeout:.2f} s: {hint}")
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
            f"{where} closed the connection during the handshake: is this really a Kafka port (a different"
            f" service may listen on it), or does it expect TLS/SASL ({protocol_said(s, inferred=inferred)})?"
        )
    if isinstance(err, KafkaError):
        return map_kafka_error(err, where, [s.password])
    return errors.ProtocolError(f"{where}: {one_line(err, secrets=[s.password])}")


def map_kafka_error(exc: BaseException, where: str, secrets: list[Any]) -> errors.ProbeError:
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


# ---------------------------------------------------------------------------------------- TLS and abort


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


def abort_connections(admin: Any) -> None:
    """Last resort when a polite close ran out of time (e.g. a TLS shutdown to a frozen peer): abort."""
    conns = getattr(getattr(admin, "_client", None), "_conns", {}) or {}
    for conn in list(conns.values()):
        transport = getattr(getattr(conn, "_protocol", None), "_transport", None)
        if transport is not None:
            transport.abort()
