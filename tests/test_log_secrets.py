"""No log record of the client libraries carries a password a probe holds, even with the root logger at DEBUG."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import jobs, pg_settings
from live.kafka import TansuBroker
from live.net import KafkaSaslPlainPeer
from live.redis import AUTH_PASSWORD

from ingest_probe.connectors._log_secrets import HeldSecrets
from ingest_probe.connectors.base import Probe
from ingest_probe.connectors.kafka.probe import KafkaProbe
from ingest_probe.connectors.kafka.settings import KafkaSettings
from ingest_probe.connectors.redis.probe import RedisProbe
from ingest_probe.connectors.timescale.probe import TimescaleProbe
from ingest_probe.engine.supervisor import TaskSupervisor
from ingest_probe.results import Status
from ingest_probe.secret import Secret


class Capture(logging.Handler):
    """Keeps every record that reaches the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def debug_logging() -> Iterator[Capture]:
    """The root logger at DEBUG with a capturing handler, as an embedding application might configure it."""
    root = logging.getLogger()
    level, capture = root.level, Capture()
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(level)


def leaks(records: list[logging.LogRecord], secret: str) -> list[str]:
    """Every record whose message, arguments or exception text shows ``secret`` (in any repr form)."""
    forms = {secret, repr(secret.encode())[2:-1]}
    found = []
    for record in records:
        text = " ".join([record.getMessage(), repr(record.args), str(record.exc_text or ""),
                         repr(record.exc_info[1]) if record.exc_info else ""])  # fmt: skip
        if any(form in text for form in forms):
            found.append(f"{record.name}: {record.getMessage()[:200]}")
    return found


def canary() -> str:
    return "canary-pw-" + uuid.uuid4().hex


# ------------------------------------------------------------------------------------------------ live


@pytest.mark.live
async def test_sasl_plain_password_never_reaches_a_log_record(debug_logging: Capture) -> None:
    """aiokafka logs SaslAuthenticateRequest(sasl_auth_bytes=b'user\\x00user\\x00PASSWORD') at DEBUG: scrubbed
    while the probe holds the password; the peer did receive it (the login really happened)."""
    password = canary()
    with KafkaSaslPlainPeer() as peer:
        settings = KafkaSettings(configured=True, bootstrap_servers=(f"127.0.0.1:{peer.port}",),
                                 security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", username="probe",
                                 password=Secret(password))  # fmt: skip
        [result] = await TaskSupervisor(timeout=3.0, jitter=0.0).run(jobs([KafkaProbe(settings)]))
    assert result.error_kind == "auth", result
    assert peer.tokens == [f"probe\x00probe\x00{password}".encode()]
    requests = [r for r in debug_logging.records if "SaslAuthenticateRequest" in r.getMessage()]
    assert requests, "aiokafka no longer logs the SASL request: this test would pass vacuously"
    assert "***" in requests[0].getMessage()
    assert leaks(debug_logging.records, password) == []


@pytest.mark.live
async def test_no_password_in_any_library_record_against_real_servers(
    debug_logging: Capture, tansu_auth_broker: TansuBroker, pg_server: Any, redis_auth_server: Any
) -> None:
    """SCRAM against the SASL Tansu, wrong passwords against PostgreSQL and Redis, and a successful Redis
    login, all at DEBUG: every library logged, no record shows a password."""
    kafka_pw, pg_pw = canary(), canary()
    probes: list[Probe] = [
        KafkaProbe(KafkaSettings(configured=True, bootstrap_servers=(tansu_auth_broker.bootstrap,),
                                 security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                                 username="probe", password=Secret(kafka_pw))),
        TimescaleProbe(pg_settings(pg_server, password=Secret(pg_pw))),
        RedisProbe(redis_auth_server.settings()),
    ]  # fmt: skip
    results = await TaskSupervisor(timeout=3.0, jitter=0.0).run(jobs(probes))
    assert [r.error_kind for r in results] == ["auth", "auth", None], results
    assert results[2].status is Status.OK
    assert {r.name.partition(".")[0] for r in debug_logging.records} >= {"aiokafka"}
    for secret in (kafka_pw, pg_pw, AUTH_PASSWORD):
        assert leaks(debug_logging.records, secret) == []


# ------------------------------------------------------------------------------------------------ unit


def test_records_of_library_loggers_and_their_children_are_scrubbed_while_held(debug_logging: Capture) -> None:
    """While held: a child logger made after holding, bytes reprs, args and exception text are scrubbed; other
    loggers' records and clean arguments stay as they are. Released: the factory is restored."""
    original = logging.getLogRecordFactory()
    secret = "s3cr\u00e9t-" + uuid.uuid4().hex
    held = HeldSecrets([Secret(secret), None])
    held.hold()
    try:
        child = logging.getLogger(f"redis.asyncio.made_later_{uuid.uuid4().hex}")
        child.debug("AUTH %r", secret.encode())
        logging.getLogger("aiokafka.conn").debug("Request: %s", f"pw={secret}")
        logging.getLogger("asyncpg").debug("connecting with %(pw)s", {"pw": secret})
        error = ValueError("unrelated")
        logging.getLogger("aiokafka").error("Unable connect to %s: %s", "host:1", error)
        try:
            raise RuntimeError(f"boom {secret}")
        except RuntimeError:
            logging.getLogger("aiokafka.client").exception("failed")
        logging.getLogger("myapp").debug("app says %s", secret)
    finally:
        held.release()
    assert logging.getLogRecordFactory() is original
    library = [r for r in debug_logging.records if r.name != "myapp"]
    assert leaks(library, secret) == []
    assert all(r.exc_info is None for r in library)
    assert "***" in library[0].getMessage()
    assert library[3].args == ("host:1", error)  # clean arguments are left for handlers that read them
    assert "boom ***" in str(library[4].exc_text)
    app = next(r for r in debug_logging.records if r.name == "myapp")
    assert secret in app.getMessage()  # not a client library: not our business


def test_nothing_is_scrubbed_before_holding_or_after_release(debug_logging: Capture) -> None:
    """A probe's secret counts only between hold() and release(); holding twice, releasing twice is harmless."""
    secret = "pw-" + uuid.uuid4().hex
    held = HeldSecrets([Secret(secret)])
    logger = logging.getLogger("aiokafka.conn")
    logger.debug("before %s", secret)
    held.hold()
    held.hold()
    logger.debug("during %s", secret)
    held.release()
    held.release()
    logger.debug("after %s", secret)
    messages = [r.getMessage() for r in debug_logging.records]
    assert messages == [f"before {secret}", "during ***", f"after {secret}"]


def test_a_factory_chained_on_top_of_ours_keeps_working(debug_logging: Capture) -> None:
    """An application that chains its own record factory on top of ours while a secret is held: after the
    release ours stays in its chain, inert; holding again scrubs through the chain; no recursion."""
    original = logging.getLogRecordFactory()
    secret = "pw-" + uuid.uuid4().hex
    held = HeldSecrets([Secret(secret)])
    logger = logging.getLogger("asyncpg.connection")
    held.hold()
    ours = logging.getLogRecordFactory()

    def app_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = ours(*args, **kwargs)
        record.app = True
        return record

    logging.setLogRecordFactory(app_factory)
    try:
        held.release()
        assert logging.getLogRecordFactory() is app_factory
        logger.debug("released %s", secret)
        held.hold()
        logger.debug("held %s", secret)
        held.release()
    finally:
        logging.setLogRecordFactory(ours)  # the application unchains, restoring what it found
        held.hold()
        held.release()  # ours is on top again: uninstalled
    assert logging.getLogRecordFactory() is original
    records = [r for r in debug_logging.records if r.name == "asyncpg.connection"]
    assert [r.getMessage() for r in records] == [f"released {secret}", "held ***"]
    assert all(getattr(r, "app", False) for r in records)
