"""The error tables of asyncpg, redis-py and aiokafka, pinned rule by rule with exceptions built here (no network).

Every rule of every table is hit by at least one case (``test_every_rule_is_pinned``), and every rule that
matches a library's message text has a case on each side of the match.
"""

from __future__ import annotations

import errno
import ssl
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import errors as kerr
from asyncpg import exceptions as pgx
from redis import exceptions as rx

from ingest_probe import errors
from ingest_probe.connectors.base import map_error, rule_for
from ingest_probe.connectors.kafka import errors as kafka_errors
from ingest_probe.connectors.kafka.probe import KafkaProbe
from ingest_probe.connectors.kafka.settings import KafkaSettings
from ingest_probe.connectors.redis import errors as redis_errors
from ingest_probe.connectors.redis.settings import RedisSettings
from ingest_probe.connectors.timescale import errors as pg_errors
from ingest_probe.connectors.timescale.connect import ScramIterationsRefused
from ingest_probe.connectors.timescale.settings import TimescaleSettings
from ingest_probe.secret import Secret

PASSWORD = "hunter2-canary"


def caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


def raised_in(module: str, exc: BaseException) -> BaseException:
    """``exc`` as if raised by code of ``module`` (its innermost frame's module name)."""
    namespace: dict[str, Any] = {"__name__": module}
    exec("def boom(e):\n    raise e\n", namespace)  # noqa: S102 -- a frame of a chosen module, for the traceback
    try:
        namespace["boom"](exc)
    except BaseException as caught:  # noqa: BLE001 -- it is the exception we raised
        return caught
    raise AssertionError("unreachable")


def ssl_error(reason: str | None, message: str) -> ssl.SSLError:
    """An ``ssl.SSLError`` as OpenSSL raises it (its ``reason`` is set by the C code)."""
    exc = ssl.SSLError(1, message)
    exc.reason = reason  # type: ignore[misc]  # read-only only in the stubs
    return exc


def cert_error(message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = message
    return exc


# ------------------------------------------------------------------------------------------------ asyncpg


def pg(password: str | None = PASSWORD, tls_required: bool = False, sslmode: str | None = None) -> Any:
    settings = TimescaleSettings(configured=True, backend="postgresql", url_source_key="TIMESCALEDB_URL",
                                 host="db.test", port=5432, database="market", user="probe",
                                 password=Secret(password) if password else None, sslmode=sslmode)
    return SimpleNamespace(settings=settings, endpoint=settings.endpoint, user="probe", tls_required=tls_required)


def scram() -> BaseException:
    return caused(pgx.InternalClientError("failed to authenticate"), ScramIterationsRefused(20_000_000, 1_000_000))


PG_CASES = [
    ("scram_iterations", scram(), pg(), "connect", errors.AuthError, "asked for 20000000 SCRAM iterations"),
    ("password_missing", pgx.InvalidPasswordError("password authentication failed"), pg(password=None), "connect",
     errors.AuthError, "requires a password for user 'probe' and none is configured"),
    ("password_rejected", pgx.InvalidPasswordError(f"password authentication failed ({PASSWORD})"), pg(), "connect",
     errors.AuthError, "rejected the password for user 'probe': check the user/password in TIMESCALEDB_URL"),
    ("tls_required_by_hba", pgx.InvalidAuthorizationSpecificationError(
        'no pg_hba.conf entry for host "1.2.3.4", user "probe", database "market", no encryption'), pg(), "connect",
     errors.TlsError, "requires TLS for user 'probe'"),
    ("tls_refused_by_hba", pgx.InvalidAuthorizationSpecificationError(
        'no pg_hba.conf entry for host "1.2.3.4", user "probe", database "market", SSL encryption'), pg(), "connect",
     errors.TlsError, "refuses TLS connections"),
    ("client_not_allowed", pgx.InvalidAuthorizationSpecificationError(
        'pg_hba.conf rejects connection for host "1.2.3.4"'), pg(), "connect", errors.AuthError,
     "does not allow this client (pg_hba.conf)"),
    ("user_refused", pgx.InvalidAuthorizationSpecificationError('role "probe" does not exist'), pg(), "connect",
     errors.AuthError, "refused user 'probe': check the user in TIMESCALEDB_URL"),
    ("database_missing", pgx.InvalidCatalogNameError('database "market" does not exist'), pg(), "connect",
     errors.NotFoundError, "database 'market' does not exist on db.test:5432"),
    ("starting", pgx.CannotConnectNowError("the database system is starting up"), pg(), "connect",
     errors.StartingError, "is not accepting connections yet"),
    ("no_free_slots", pgx.TooManyConnectionsError("sorry, too many clients already"), pg(), "connect",
     errors.RefusedError, "has no free connection slots"),
    ("connection_gone", pgx.ConnectionDoesNotExistError("connection was closed in the middle of operation"), pg(),
     "query", errors.RefusedError, "was lost: server restarted or crashed?"),
    ("sqlstate", pgx.UndefinedFunctionError("function f() does not exist"), pg(), "query", errors.QueryError,
     "failed the check query with SQLSTATE 42883"),
    ("sqlstate", pgx.UndefinedFunctionError("function f() does not exist"), pg(), "connect", errors.QueryError,
     "failed the connection with SQLSTATE 42883"),
    ("settings_rejected", pgx.ClientConfigurationError("bad ssl"), pg(), "connect", errors.DriverError,
     "asyncpg rejected the connection settings"),
    ("closed_while_querying", pgx.InterfaceError("connection is closed"), pg(), "query", errors.RefusedError,
     "was lost"),
    ("not_postgres", pgx.InternalClientError("cannot switch to state 11"), pg(), "connect", errors.ProtocolError,
     "sent something that is not PostgreSQL protocol"),
    ("timeout", TimeoutError(), pg(), "query", errors.ProbeTimeoutError, "while running the check query"),
    ("timeout", TimeoutError(), pg(), "connect", errors.ProbeTimeoutError, "while connecting (TCP, TLS, auth)"),
    ("tls_not_offered", ConnectionError('PostgreSQL server at "db.test:5432" rejected SSL upgrade'),
     pg(tls_required=True, sslmode="require"), "connect", errors.TlsError,
     "does not offer TLS but sslmode=require requires it"),
    ("tls_negotiation_broken", ConnectionError('PostgreSQL server at "db.test:5432" rejected SSL upgrade'),
     pg(tls_required=False), "connect", errors.ProtocolError, "broke off the TLS negotiation"),
    ("tls_negotiation_broken", ConnectionError("unexpected TLS alert"), pg(), "connect", errors.ProtocolError,
     "broke off the TLS negotiation"),
    ("certificate_untrusted", cert_error("self-signed certificate"), pg(sslmode="verify-full"), "connect",
     errors.TlsError, "not trusted (self-signed certificate): check sslrootcert (the CA that signed the server"
     " certificate) and that the host name is in the certificate"),
    ("socket", ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), pg(), "connect",
     errors.RefusedError, "connection refused by db.test:5432"),
    ("socket", OSError(errno.ECONNRESET, "reset"), pg(), "connect", errors.RefusedError, "was reset"),
    ("socket", OSError("no errno"), pg(), "connect", errors.RefusedError, "is this a PostgreSQL port?"),
]


def test_asyncpg_table_leaves_a_client_error_while_connecting_to_the_library_check():
    """An InterfaceError while connecting is no known failure (the library-junk check or a bug decides)."""
    assert rule_for(pg_errors.table(), pg(), pgx.InterfaceError("unknown auth method"), "connect") is None


@pytest.mark.parametrize(("exc", "lost"), [
    (pgx.InterfaceError("connection is closed"), True),
    (pgx.InternalClientError("cannot switch to state 11"), True),
    (pgx.ConnectionDoesNotExistError("closed in the middle"), True),
    (pgx.AdminShutdownError("terminating connection due to administrator command"), True),
    (ConnectionResetError(errno.ECONNRESET, "reset"), True),
    (BrokenPipeError(errno.EPIPE, "broken pipe"), True),
    (TimeoutError(), False),
    (pgx.UndefinedFunctionError("no such function"), False),
])
def test_asyncpg_lost_connection(exc, lost):
    """Only a connection gone under a reused client (no answer, no timeout) earns the one reconnect."""
    assert pg_errors.lost(exc) is lost


# ------------------------------------------------------------------------------------------------ redis-py


def rd(*, tls: bool = False, keyfile: str | None = None, username: str | None = None) -> Any:
    settings = RedisSettings(configured=True, host="cache.test", port=6379, db=3, username=username,
                             password=Secret(PASSWORD), tls=tls, ssl_keyfile=keyfile)
    return SimpleNamespace(settings=settings, endpoint=settings.endpoint, library_timeout=1.5)


def wrapped(cause: OSError) -> BaseException:
    return caused(rx.ConnectionError("Error while reading from socket"), cause)


REDIS_CASES = [
    ("loading", rx.BusyLoadingError("Redis is loading the dataset in memory"), rd(), "query", errors.StartingError,
     "loading its dataset"),
    ("password_missing", rx.AuthenticationError("auth", status_code="NOAUTH"), rd(), "connect", errors.AuthError,
     "requires a password and none is configured (NOAUTH)"),
    ("password_missing", rx.AuthenticationError("Authentication required."), rd(), "connect", errors.AuthError,
     "requires a password and none is configured (NOAUTH)"),
    ("password_not_expected", rx.AuthenticationError("AUTH <password> called without any password configured"),
     rd(), "connect", errors.AuthError, "has no password set but one was sent"),
    ("password_not_expected", rx.AuthenticationError("ERR AUTH ... no password is set"), rd(), "connect",
     errors.AuthError, "has no password set but one was sent"),
    ("credentials_rejected", rx.AuthenticationError(f"invalid username-password pair ({PASSWORD})"),
     rd(username="app"), "connect", errors.AuthError, "rejected the credentials of user 'app'"),
    ("acl_denied", rx.NoPermissionError("this user has no permissions to run the 'info' command"), rd(), "query",
     errors.AuthError, "ACL user 'default' may not run a command"),
    ("tls_handshake_timeout", rx.TimeoutError("Timeout connecting to server"), rd(tls=True), "connect",
     errors.ProbeTimeoutError, "to the TLS handshake: if that port is plaintext"),
    ("timeout", rx.TimeoutError("Timeout connecting to server"), rd(), "connect", errors.ProbeTimeoutError,
     "within 1.50 s while connecting (TCP/TLS/AUTH)"),
    ("timeout", rx.TimeoutError("Timeout reading from socket"), rd(tls=True), "connect", errors.ProbeTimeoutError,
     "while connecting"),
    ("timeout", rx.TimeoutError("Timeout reading from socket"), rd(), "query", errors.ProbeTimeoutError,
     "during query: server frozen"),
    ("max_clients", rx.ConnectionError("max number of clients reached"), rd(), "connect", errors.RefusedError,
     "max number of clients reached"),
    ("socket_wrapped", wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "refused")), rd(), "connect",
     errors.RefusedError, "connection refused by Redis at cache.test:6379"),
    ("closed_by_server", rx.ConnectionError("Connection closed by server."), rd(), "connect", errors.TlsError,
     "if it only accepts TLS"),
    ("closed_by_server", rx.ConnectionError("Connection closed by server."), rd(tls=True), "connect",
     errors.ProtocolError, "during the TLS/AUTH handshake"),
    ("closed_by_server", rx.ConnectionError("Connection closed by server."), rd(), "query", errors.RefusedError,
     "during the check (restart, timeout or CLIENT KILL?)"),
    ("connection", rx.ConnectionError("Error 1 connecting"), rd(), "connect", errors.ProtocolError,
     "Redis at cache.test:6379: Error 1 connecting"),
    ("not_redis", rx.InvalidResponse("Protocol Error: H"), rd(), "connect", errors.ProtocolError,
     "does not answer like Redis (Protocol Error: H): is this really a Redis port? (a TLS-only port?"),
    ("not_redis", rx.InvalidResponse("Protocol Error: H"), rd(tls=True), "connect", errors.ProtocolError,
     "is this really a Redis port?"),
    ("no_such_database", rx.ResponseError("DB index is out of range"), rd(), "connect", errors.QueryError,
     "has no database 3"),
    ("error_reply", rx.ResponseError("ERR unknown command"), rd(), "query", errors.QueryError,
     "answered the query with an error: ERR unknown command"),
    ("redis", rx.DataError("bad data"), rd(), "query", errors.ProtocolError, "Redis at cache.test:6379: bad data"),
    ("certificate_untrusted", cert_error("unable to get local issuer certificate"), rd(tls=True), "connect",
     errors.TlsError, "set REDIS_SSL_CA_CERTS"),
    ("client_key_unreadable", ssl_error(None, "[SSL] PEM lib (_ssl.c:3900)"), rd(tls=True, keyfile="/k.pem"),
     "connect", errors.TlsError, "cannot load the TLS client key /k.pem"),
    ("plaintext_answer", ssl_error("WRONG_VERSION_NUMBER", "wrong version number"), rd(tls=True),
     "connect", errors.TlsError, "answered the TLS handshake in plaintext"),
    ("plaintext_answer", ssl_error(None, "[SSL: RECORD_LAYER_FAILURE] record layer failure"), rd(tls=True),
     "connect", errors.TlsError, "does not speak TLS"),
    ("tls_files_unreadable", FileNotFoundError(errno.ENOENT, "No such file"), rd(tls=True, keyfile="/nope.pem"),
     "connect", errors.TlsError, "cannot read TLS files for Redis at cache.test:6379 (No such file: /nope.pem)"),
    ("reset", ConnectionResetError(errno.ECONNRESET, "reset"), rd(), "query", errors.RefusedError,
     "closed the connection during the check"),
    ("reset", OSError(errno.ECONNRESET, "reset"), rd(), "connect", errors.TlsError, "if it only accepts TLS"),
    ("socket", ssl_error("PEM_LIB", "[SSL] PEM lib (_ssl.c:3900)"), rd(tls=True), "connect", errors.TlsError,
     "TLS handshake with Redis at cache.test:6379 failed"),
    ("socket", FileNotFoundError(errno.ENOENT, "No such file"), rd(), "connect", errors.RefusedError,
     "cannot connect to Redis at cache.test:6379"),
    ("socket", OSError("no errno"), rd(), "connect", errors.RefusedError, "cannot connect to Redis at"),
]


@pytest.mark.parametrize(("exc", "lost"), [
    (rx.ConnectionError("Connection closed by server."), True),
    (wrapped(ConnectionResetError(errno.ECONNRESET, "reset")), True),
    (wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "refused")), False),
    (rx.ConnectionError("Error 111 connecting"), False),
    (rx.AuthenticationError("Connection closed by server."), False),  # an answer, though a ConnectionError
    (rx.BusyLoadingError("loading"), False),
    (BrokenPipeError(errno.EPIPE, "broken pipe"), True),
    (rx.TimeoutError("Timeout reading from socket"), False),
])
def test_redis_lost_connection(exc, lost):
    """A reset or a server's hang-up is a lost connection; refusals, timeouts and answers are not."""
    assert redis_errors.lost(exc) is lost


# ------------------------------------------------------------------------------------------------ aiokafka


def kafka_settings(protocol: str = "PLAINTEXT", inferred: bool = False) -> KafkaSettings:
    return KafkaSettings(configured=True, bootstrap_servers=("k1.test:9092", "k2.test:9092"),
                         security_protocol=protocol,  # type: ignore[arg-type]
                         protocol_inferred=inferred, sasl_mechanism="PLAIN" if protocol.startswith("SASL") else None,
                         username="app" if protocol.startswith("SASL") else None,
                         password=Secret(PASSWORD) if protocol.startswith("SASL") else None)


def peer(protocol: str = "PLAINTEXT", inferred: bool = False) -> kafka_errors.Peer:
    return kafka_errors.Peer(kafka_settings(protocol, inferred), "k1.test:9092", request_timeout=2.0)


KAFKA_CASES = [
    ("sasl_mechanism_unsupported", kerr.UnsupportedSaslMechanismError(), errors.AuthError,
     "does not offer the configured SASL mechanism"),
    *[("rejected", cls(f"bad login {PASSWORD}"), errors.AuthError, "rejected the client")
      for cls in (kerr.AuthenticationFailedError, kerr.AuthenticationMethodNotSupported, kerr.SaslAuthenticationFailed,
                  kerr.IllegalSaslStateError, kerr.ClusterAuthorizationFailedError,
                  kerr.TopicAuthorizationFailedError)],
    ("timeout", kerr.KafkaTimeoutError(), errors.ProbeTimeoutError, "did not answer in time"),
    ("timeout", kerr.RequestTimedOutError(), errors.ProbeTimeoutError, "did not answer in time"),
    ("unsupported_request", kerr.UnsupportedVersionError(), errors.ProtocolError, "does not support a request"),
    ("unsupported_request", kerr.IncompatibleBrokerVersion(), errors.ProtocolError, "does not support a request"),
    ("connection_lost", kerr.KafkaConnectionError("Connection at k1.test:9092 closed"), errors.RefusedError,
     "lost the connection to k1.test:9092"),
    ("error_reply", kerr.NotControllerError(), errors.ProtocolError, "answered with an error"),
]


@pytest.mark.parametrize(("rule", "exc", "kind", "needle"), KAFKA_CASES)
def test_aiokafka_table(rule, exc, kind, needle):
    """Each of aiokafka's exceptions picks its rule; the password of a SASL login never shows."""
    assert rule_for(kafka_errors.kafka_table(), peer("SASL_PLAINTEXT"), exc, None) == rule
    mapped = kafka_errors.kafka_error(peer("SASL_PLAINTEXT"), exc)
    assert type(mapped) is kind, mapped
    assert needle in str(mapped)
    assert PASSWORD not in str(mapped)


LOGGED_CASES = [
    ("timeout", TimeoutError(), peer("SSL", inferred=True), "connect", errors.ProbeTimeoutError,
     "did not answer the connection handshake within 2.00 s: does this listener speak TLS"
     " [...] (KAFKA_SECURITY_PROTOCOL is not set, so SSL was inferred)"),
    ("timeout", TimeoutError(), peer("SASL_SSL", inferred=True), "connect", errors.ProbeTimeoutError,
     "SASL_SSL was inferred from the SASL credentials"),
    ("timeout", TimeoutError(), peer("SSL"), "metadata", errors.ProbeTimeoutError,
     "did not answer the metadata request within 2.00 s: broker frozen or overloaded"),
    ("socket", ConnectionRefusedError(errno.ECONNREFUSED, "refused"), peer(), "connect", errors.RefusedError,
     "connection refused by k1.test:9092"),
    ("socket", caused(kerr.KafkaConnectionError("connect failed"), cert_error("self-signed certificate")),
     peer("SSL"), "connect", errors.TlsError, "not trusted (self-signed certificate): check the CA file / hostname"
     " (KAFKA_SSL_CAFILE is unset: system CAs)"),
    ("sasl_required", kerr.KafkaConnectionError("Connection at k1.test:9092 closed"), peer(), "metadata",
     errors.AuthError, "the broker probably requires SASL authentication"),
    ("sasl_handshake_closed", kerr.KafkaConnectionError("Connection at k1.test:9092 closed"), peer("SASL_SSL"),
     "connect", errors.AuthError, "during the PLAIN SASL handshake"),
    ("handshake_closed", kerr.KafkaConnectionError("Connection at k1.test:9092 closed"), peer(), "connect",
     errors.ProtocolError, "is this really a Kafka port"),
    ("kafka", kerr.KafkaConnectionError("Unable to connect"), peer(), "connect", errors.RefusedError,
     "lost the connection to k1.test:9092"),
    ("kafka", kerr.UnsupportedSaslMechanismError(), peer(), "connect", errors.AuthError, "SASL mechanism"),
    ("other", ValueError("junk"), peer(), "connect", errors.ProtocolError, "k1.test:9092: junk"),
]


@pytest.mark.parametrize(("rule", "exc", "host", "stage", "kind", "needle"), LOGGED_CASES)
def test_logged_failure_table(rule, exc, host, stage, kind, needle):
    """Each failure aiokafka logged for one host picks its rule, worded for the stage it happened in."""
    assert rule_for(kafka_errors.logged_table(), host, exc, stage) == rule
    mapped = kafka_errors.logged(host, stage, exc)
    assert type(mapped) is kind, mapped
    for part in needle.split(" [...] "):
        assert part in str(mapped)


def kafka_probe(protocol: str = "PLAINTEXT", failures: list[Any] | None = None) -> KafkaProbe:
    probe = KafkaProbe(kafka_settings(protocol))
    probe.failures = failures or []
    probe.request_timeout = 2.0
    probe.broker = "1 at k1.test:9092"
    return probe


PROBE_CASES = [
    ("bootstrap", kerr.KafkaConnectionError("Unable to bootstrap"), kafka_probe(), "connect", errors.RefusedError,
     "cannot bootstrap from Kafka servers k1.test:9092,k2.test:9092"),
    ("bootstrap", kerr.KafkaConnectionError("Unable to bootstrap"), kafka_probe(failures=[
        ("connect", "k1.test:9092", ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
        ("connect", "k2.test:9092", TimeoutError())]), "connect", errors.ProbeTimeoutError,
     "Kafka bootstrap failed (tried k1.test:9092,k2.test:9092): k2.test:9092 did not answer"),
    ("sasl_login_rejected", raised_in("aiokafka.conn", KeyError("v")), kafka_probe("SASL_SSL"), "connect",
     errors.AuthError, "SASL PLAIN login as 'app' rejected by k1.test:9092,k2.test:9092"),
    ("request_timeout", kerr.RequestTimedOutError(), kafka_probe(), "query", errors.ProbeTimeoutError,
     "Kafka broker 1 at k1.test:9092 did not answer the metadata request in time"),
    ("broker_unreachable", kerr.NodeNotReadyError("node 1"), kafka_probe(), "query", errors.RefusedError,
     "Kafka broker 1 at k1.test:9092 is not reachable"),
    ("broker_unreachable", kerr.NodeNotReadyError("node 1"), kafka_probe(failures=[
        ("node", "node 1", ConnectionRefusedError(errno.ECONNREFUSED, "refused"))]), "query", errors.RefusedError,
     "bootstrap via k1.test:9092,k2.test:9092 worked, but the broker address it advertises failed"),
    ("kafka", kerr.KafkaConnectionError("Connection at k1.test:9092 closed"), kafka_probe(), "query",
     errors.RefusedError, "lost the connection to 1 at k1.test:9092"),
]


@pytest.mark.parametrize(("table", "rule", "exc", "probe", "phase", "kind", "needle"), [
    *[(pg_errors.table, *case) for case in PG_CASES],
    *[(redis_errors.table, *case) for case in REDIS_CASES],
    *[(kafka_errors.table, *case) for case in PROBE_CASES],
])
def test_probe_tables(table, rule, exc, probe, phase, kind, needle):
    """Each failure of a probe's library (asyncpg, redis-py, aiokafka's steps) picks its rule, in the phase it
    happened in; the error has the class and words it promises (a failed Kafka bootstrap the most telling logged
    reason, a request the broker's address), and no password."""
    assert rule_for(table(), probe, exc, phase) == rule
    mapped = map_error(table(), probe, exc, phase)
    assert type(mapped) is kind, mapped
    assert needle in str(mapped)
    assert PASSWORD not in str(mapped)


def test_kafka_steps_are_mapped_only_where_they_happen():
    """A KeyError from our own code, or a Kafka error while connecting, is no rule's (the library-junk check or a
    bug decides); a KeyError from aiokafka's SASL code without SASL configured is not a rejected login."""
    assert rule_for(kafka_errors.table(), kafka_probe("SASL_SSL"), KeyError("v"), "connect") is None
    assert rule_for(kafka_errors.table(), kafka_probe(), raised_in("aiokafka.conn", KeyError("v")), "connect") is None
    assert rule_for(kafka_errors.table(), kafka_probe(), kerr.UnsupportedVersionError(), "connect") is None


@pytest.mark.parametrize(("exc", "failures", "lost"), [
    (kerr.KafkaConnectionError("Connection at k1.test:9092 closed"), [], True),
    (kerr.NodeNotReadyError("node 1"), [], True),
    (kerr.NodeNotReadyError("node 1"), [("node", "node 1", ConnectionResetError(errno.ECONNRESET, "reset"))], True),
    (kerr.NodeNotReadyError("node 1"), [("node", "node 1", ConnectionRefusedError(errno.ECONNREFUSED, "no"))], False),
    (kerr.NodeNotReadyError("node 1"), [("node", "node 1", TimeoutError())], False),
    (kerr.RequestTimedOutError(), [], False),
    (kerr.TopicAuthorizationFailedError(), [], False),
])
def test_kafka_lost_connection(exc, failures, lost):
    """A reused client's request found the connection gone (not a timeout, not a refusal behind it)."""
    assert kafka_probe(failures=failures)._lost(exc) is lost


# ---------------------------------------------------------------------------------------------- coverage


@pytest.mark.parametrize(("table", "cases"), [
    (pg_errors.table, PG_CASES),
    (redis_errors.table, REDIS_CASES),
    (kafka_errors.kafka_table, KAFKA_CASES),
    (kafka_errors.logged_table, LOGGED_CASES),
    (kafka_errors.table, PROBE_CASES),
])
def test_every_rule_is_pinned(table, cases):
    """No rule of a table goes without a case above (a new rule needs its own)."""
    assert {rule.name for rule in table()} == {case[0] for case in cases}
