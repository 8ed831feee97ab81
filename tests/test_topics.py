"""Topic provisioning without a broker: recorded response shapes → plan, drift, summary, Markdown, exit codes."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
from aiokafka.errors import IncompatibleBrokerVersion, RequestTimedOutError
from aiokafka.protocol.admin import CreatePartitionsRequest
from live.net import free_port

from ingest_probe import errors
from ingest_probe.commands.cli import main
from ingest_probe.connectors.kafka.settings import KafkaSettings
from ingest_probe.connectors.kafka.topic_specs import TopicSpec
from ingest_probe.renderers.markdown import render as render_markdown
from ingest_probe.report.builder import build_report
from ingest_probe.settings.service import load_settings
from ingest_probe.topics import admin as _topics_admin
from ingest_probe.topics.incremental_alter_configs import (
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsRequest_v0,
    IncrementalAlterConfigsResponse_v0,
)
from ingest_probe.topics.plan import (
    FIXABLE,
    NOT_FIXABLE,
    Action,
    ProvisioningSection,
    compare,
    plan_topics,
    read_configs,
    read_metadata,
    undeclared_overrides,
    with_configs,
)

CANARY = "CANARY-topics-51d0"
SECTION_KEYS = {"dry_run", "requested", "existing", "created", "in_sync", "drift", "failed", "notes"}

# ------------------------------------------------------------------------------------ recorded shapes
# Metadata v5 and DescribeConfigs v2 as aiokafka 0.14 decodes them (``response.to_object()``).


def md_topic(name: str, partitions: int = 1, rf: int = 1, code: int = 0) -> dict[str, Any]:
    parts = [{"error_code": 0, "partition": i, "leader": 1, "replicas": list(range(1, rf + 1)),
              "isr": list(range(1, rf + 1)), "offline_replicas": []} for i in range(partitions)]
    return {"error_code": code, "topic": name, "is_internal": False, "partitions": parts}


def metadata(*topics: dict[str, Any]) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "brokers": [{"node_id": 1, "host": "k", "port": 9092, "rack": None}],
            "cluster_id": "c", "controller_id": 1, "topics": list(topics)}


def entry(name: str, value: str | None, source: int) -> dict[str, Any]:
    return {"config_names": name, "config_value": value, "read_only": False, "config_source": source,
            "is_sensitive": False, "config_synonyms": []}


def kafka_resource(name: str, explicit: dict[str, str]) -> dict[str, Any]:
    """Apache Kafka: every config, explicit ones with source 1 (TOPIC_CONFIG), the rest 4/5 (broker/default)."""
    defaults = {"cleanup.policy": "delete", "retention.ms": "604800000", "min.insync.replicas": "1",
                "compression.type": "producer"}
    entries = [entry(k, v, 5) for k, v in defaults.items() if k not in explicit]
    entries.append(entry("segment.bytes", "1073741824", 4))  # STATIC_BROKER_CONFIG: a broker override
    entries += [entry(k, v, 1) for k, v in explicit.items()]
    return {"error_code": 0, "error_message": None, "resource_type": 2, "resource_name": name,
            "config_entries": entries}


def tansu_resource(name: str, explicit: dict[str, str]) -> dict[str, Any]:
    """Tansu 0.6 (measured): only explicitly set configs, labelled 5 (which Kafka defines as DEFAULT_CONFIG)."""
    return {"error_code": 0, "error_message": "No error.", "resource_type": 2, "resource_name": name,
            "config_entries": [entry(k, v, 5) for k, v in explicit.items()]}


def spec(name: str = "bars", partitions: int = 1, rf: int = 1, **configs: str) -> TopicSpec:
    return TopicSpec(name=name, dimensions=("daily",), partitions=partitions, replication_factor=rf,
                     configs={k.replace("_", "."): v for k, v in configs.items()})


def state(name: str, partitions: int = 1, rf: int = 1, resource: dict[str, Any] | None = None) -> Any:
    base = read_metadata(metadata(md_topic(name, partitions, rf)), [name])[name]
    return with_configs(base, read_configs([resource or kafka_resource(name, {})])[name])


# ------------------------------------------------------------------------------------------ reading


def test_metadata_missing_present_leaderless_and_unauthorized() -> None:
    """Missing (code 3 or unlisted) → absent; leaderless counts as existing; other codes are per-topic errors."""
    md = metadata(md_topic("a", partitions=3, rf=2), md_topic("gone", code=3),
                  {"error_code": 5, "topic": "young", "is_internal": False, "partitions": []},
                  md_topic("secret", code=29))
    states = read_metadata(md, ["a", "gone", "young", "secret", "unlisted"])
    assert (states["a"].exists, states["a"].partitions, states["a"].replication_factor) == (True, 3, 2)
    assert not states["gone"].exists
    assert not states["unlisted"].exists
    assert states["young"].exists
    assert states["young"].partitions is None
    assert states["secret"].error == "metadata error TopicAuthorizationFailedError"


def test_describe_configs_marks_only_topic_level_configs_explicit() -> None:
    """Kafka shape: source 1 is explicit; defaults (5) and broker overrides (4) are not; v0 uses is_default."""
    configs = read_configs([kafka_resource("t", {"retention.ms": "1000"})])["t"]
    assert isinstance(configs, dict)
    assert {k for k, v in configs.items() if v.explicit} == {"retention.ms"}
    assert configs["segment.bytes"].explicit is False
    v0 = {"error_code": 0, "error_message": None, "resource_type": 2, "resource_name": "o", "config_entries": [
        {"config_names": "retention.ms", "config_value": "5", "read_only": False, "is_default": False,
         "is_sensitive": False}]}
    bad = {"error_code": 29, "error_message": "denied", "resource_type": 2, "resource_name": "x",
           "config_entries": []}
    out = read_configs([v0, bad])
    assert out["o"]["retention.ms"].explicit is True  # type: ignore[index,union-attr]
    assert out["x"] == "DescribeConfigs TopicAuthorizationFailedError: denied"


# ---------------------------------------------------------------------------------------- comparing


def test_no_phantom_drift_from_broker_defaults() -> None:
    """Undeclared defaults and broker overrides never drift; a declared explicit config that matches is in sync."""
    plan = compare(spec(retention_ms="1000"), state("bars", resource=kafka_resource("bars", {"retention.ms": "1000"})))
    assert (plan.action, plan.drift) == (Action.IN_SYNC, {})
    bare = compare(spec(), state("bars"))
    assert (bare.action, bare.drift, undeclared_overrides(bare)) == (Action.IN_SYNC, {}, [])


def test_undeclared_topic_override_is_noted_not_drift() -> None:
    """A config set on the topic but not declared is listed (left alone), never drift."""
    plan = compare(spec(), state("bars", resource=kafka_resource("bars", {"cleanup.policy": "compact"})))
    assert plan.action is Action.IN_SYNC
    assert undeclared_overrides(plan) == ["cleanup.policy"]


def test_tansu_labels_explicit_configs_as_default_and_still_compares() -> None:
    """Tansu returns explicit configs with source 5: the declared value is still compared (no phantom drift)."""
    same = compare(spec(retention_ms="1000"), state("bars", resource=tansu_resource("bars", {"retention.ms": "1000"})))
    assert same.action is Action.IN_SYNC
    other = compare(spec(retention_ms="2000"), state("bars", resource=tansu_resource("bars", {"retention.ms": "1000"})))
    assert other.drift == {"config:retention.ms": {"want": "2000", "have": "1000", "classification": FIXABLE}}


def test_declared_config_not_set_and_differing_from_default_is_fixable_drift() -> None:
    """A declared config whose effective value differs is fixable drift, with want and have."""
    plan = compare(spec(cleanup_policy="compact"), state("bars"))
    assert plan.action is Action.DRIFT
    assert plan.classification == FIXABLE
    assert plan.drift["config:cleanup.policy"] == {"want": "compact", "have": "delete", "classification": FIXABLE}


def test_partition_increase_fixable_decrease_and_replication_not() -> None:
    """More partitions: fixable; fewer partitions or another replication factor: not_fixable_by_apply."""
    up = compare(spec(partitions=3), state("bars", partitions=1))
    assert up.drift == {"partitions": {"want": 3, "have": 1, "classification": FIXABLE}}
    down = compare(spec(partitions=1), state("bars", partitions=3))
    assert down.classification == NOT_FIXABLE
    rf = compare(spec(partitions=3, rf=3), state("bars", partitions=1, rf=1))
    assert rf.drift["replication_factor"]["classification"] == NOT_FIXABLE
    assert rf.classification == NOT_FIXABLE
    assert rf.fixable("partitions") == {"partitions": rf.drift["partitions"]}


def test_unreadable_configs_make_a_topic_with_declared_configs_an_error() -> None:
    """Configs that cannot be read cannot be compared: error for declared configs, fine without."""
    base = read_metadata(metadata(md_topic("bars")), ["bars"])["bars"]
    unread = with_configs(base, "IncompatibleBrokerVersion: DescribeConfigsRequest ...")
    assert compare(spec(retention_ms="1"), unread).action is Action.ERROR
    assert compare(spec(), unread).action is Action.IN_SYNC


# ----------------------------------------------------------------------------------------- summary


def test_summary_has_every_key_and_dry_run_even_when_unreachable() -> None:
    """Unreachable: every topic unknown, one error, exit 2, every key present, dry_run true as asked."""
    specs = (spec("a"), spec("b"))
    unknown = plan_topics(specs, None)
    section = ProvisioningSection(dry_run=True, before=unknown, after=unknown, error="refused", error_kind="refused")
    doc = section.to_dict()
    assert SECTION_KEYS <= set(doc)
    assert doc["dry_run"] is True
    assert doc["requested"] == ["a", "b"]
    assert [p["action"] for p in doc["plan"]] == ["unknown", "unknown"]
    assert section.exit_code == 2
    assert json.loads(json.dumps(doc)) == doc


@pytest.mark.parametrize(
    ("actions", "dry_run", "failed", "code"),
    [
        ([Action.IN_SYNC], False, {}, 0),
        ([Action.CREATE], True, {}, 1),
        ([Action.DRIFT, Action.IN_SYNC], False, {}, 1),
        ([Action.IN_SYNC], False, {"a": "CreateTopics: InvalidReplicationFactorError"}, 2),
        ([Action.ERROR], False, {}, 2),
    ],
)
def test_exit_codes(actions: list[Action], dry_run: bool, failed: dict[str, str], code: int) -> None:
    """0 in sync, 1 drift or a would-create dry run, 2 a failure or an unreadable topic."""
    from ingest_probe.topics.plan import TopicPlan

    plans = tuple(TopicPlan(spec=spec(f"t{i}"), action=a) for i, a in enumerate(actions))
    assert ProvisioningSection(dry_run=dry_run, before=plans, after=plans, failed=failed).exit_code == code


def test_markdown_has_a_table_row_per_topic_and_one_line_notes() -> None:
    """The Markdown report shows the section: summary, a table with want/have per topic, notes on one line."""
    settings = load_settings(extras=["KAFKA_BROKERS=k:9092"], environ={})
    before = (compare(spec("a", partitions=3), state("a", partitions=1)), compare(spec("b"), None))
    from ingest_probe.topics.plan import Note

    section = ProvisioningSection(dry_run=True, before=before, after=before,
                                  notes=(Note("read_only", "only\nreads | nothing else"),))
    text = render_markdown(build_report(settings, topics=section))
    assert "## Kafka topic provisioning" in text
    assert "| Topic | Plan | Now | Partitions (want / have) | Replication (want / have) |" in text
    assert "| a | drift | drift | 3 / 1 | 1 / 1 |" in text
    assert "- a: drift: partitions: want 3, have 1 (fixable)" in text
    assert "| b | unknown | unknown | 1 / — | 1 / — |" in text
    assert "- read_only: only reads | nothing else" in text
    assert "- dry run: yes" in text


# ------------------------------------------------------------------------------- the run, faked broker


class Obj:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_object(self) -> dict[str, Any]:
        return self.data


class FakeBroker:
    """Kafka as the admin API sees it, answering with the recorded shapes; records every request.

    Like aiokafka, a request is prepared against the broker's API versions (Tansu 0.6: no CreatePartitions,
    no IncrementalAlterConfigs) and gives up with RequestTimedOutError after the client's request timeout.
    """

    KAFKA_VERSIONS = {37: (0, 1), 44: (0, 0)}  # CreatePartitions, IncrementalAlterConfigs

    def __init__(self, *, tansu: bool = False) -> None:
        self.topics: dict[str, dict[str, Any]] = {}
        self.tansu = tansu
        self.calls: list[str] = []
        self.requests: list[Any] = []
        self.down = False
        self.closed = 0
        self.race: set[str] = set()
        self.reject: dict[str, tuple[int, str]] = {}
        self.reject_partitions: dict[str, tuple[int, str]] = {}
        #: Calls that never get an answer (the client's request timeout ends them).
        self.hang: set[str] = set()
        #: Seconds every call takes (a slow broker).
        self.delay = 0.0
        #: (call, request timeout in s) of every call, as the client had it set.
        self.timeouts: list[tuple[str, float]] = []

    @property
    def versions(self) -> dict[int, tuple[int, int]]:
        return {} if self.tansu else self.KAFKA_VERSIONS

    def add(self, name: str, partitions: int = 1, rf: int = 1, configs: dict[str, str] | None = None) -> None:
        self.topics[name] = {"partitions": partitions, "rf": rf, "configs": dict(configs or {})}

    def resource(self, name: str) -> dict[str, Any]:
        explicit = self.topics[name]["configs"]
        return tansu_resource(name, explicit) if self.tansu else kafka_resource(name, explicit)


class FakeConn:
    def __init__(self) -> None:
        self._request_timeout = 30.0


class FakeClient:
    """The part of ``AIOKafkaClient`` the run uses: ``send``, a random node, the request timeouts."""

    def __init__(self, broker: FakeBroker) -> None:
        self.b = broker
        self._request_timeout_ms = 30_000
        self._conns = {("bootstrap", 0): FakeConn()}

    def get_random_node(self) -> int:
        return 1

    async def answer(self, call: str) -> None:
        """Record ``call``; take the broker's time; hang until the request timeout if the broker does."""
        b = self.b
        b.calls.append(call)
        b.timeouts.append((call, self._request_timeout_ms / 1000))
        await anyio.sleep(b.delay)
        if call in b.hang:
            await anyio.sleep(self._request_timeout_ms / 1000)
            raise RequestTimedOutError()

    async def send(self, node: int, request: Any) -> Obj:
        request.prepare(self.b.versions)  # IncompatibleBrokerVersion without API key 44, as aiokafka
        self.b.requests.append(request)
        await self.answer(type(request).__name__.removesuffix("Request"))
        responses = []
        for _type, name, configs in request._resources:
            for key, _op, value in configs:
                self.b.topics[name]["configs"][key] = value
            responses.append({"error_code": 0, "error_message": None, "resource_type": 2, "resource_name": name})
        return Obj({"throttle_time_ms": 0, "responses": responses})


class FakeAdmin:
    def __init__(self, broker: FakeBroker) -> None:
        self.b = broker
        self._client = FakeClient(broker)

    async def describe_configs(self, resources: list[Any]) -> list[Obj]:
        await self._client.answer("DescribeConfigs")
        return [Obj({"throttle_time_ms": 0, "resources": [self.b.resource(r.name) for r in resources]})]

    async def create_topics(self, new: list[Any], timeout_ms: int | None = None, validate_only: bool = False) -> Obj:
        self.b.requests.append(("CreateTopics", [t.name for t in new], timeout_ms))
        await self._client.answer("CreateTopics(validate_only)" if validate_only else "CreateTopics")
        results = []
        for t in new:
            if t.name in self.b.race:
                self.b.add(t.name, t.num_partitions, t.replication_factor)
                results.append({"topic": t.name, "error_code": 36, "error_message": "Topic already exists."})
            elif t.name in self.b.reject:
                code, message = self.b.reject[t.name]
                results.append({"topic": t.name, "error_code": code, "error_message": message})
            else:
                if not validate_only or self.b.tansu:  # Tansu creates even for validate_only
                    self.b.add(t.name, t.num_partitions, t.replication_factor, t.topic_configs)
                results.append({"topic": t.name, "error_code": 0, "error_message": None})
        return Obj({"throttle_time_ms": 0, "topic_errors": results})

    async def _send_to_controller(self, request: Any) -> Obj:
        wire = request.prepare(self.b.versions).to_object()  # what goes on the wire (or the Tansu error)
        self.b.requests.append(request)
        await self._client.answer(type(request).__name__.removesuffix("Request"))
        results = []
        for item in wire["topic_partitions"]:
            name, count = item["topic"], item["new_partitions"]["count"]
            code, message = self.b.reject_partitions.get(name, (0, None))
            if code == 0:
                self.b.topics[name]["partitions"] = count
            results.append({"topic": name, "error_code": code, "error_message": message})
        return Obj({"throttle_time_ms": 0, "topic_errors": results})


class FakeProbe:
    def __init__(self, broker: FakeBroker, settings: KafkaSettings) -> None:
        self.b = broker
        self.settings = settings
        self.endpoint = "fake:9092"
        self.client = FakeAdmin(broker)

    async def connect(self) -> Any:
        self.b.calls.append("connect")
        await anyio.sleep(self.b.delay)
        if self.b.down:
            raise errors.RefusedError("connection refused by fake:9092: is the server running on that port?")
        return self.client

    async def metadata(self) -> Obj:
        try:
            await self.client._client.answer("Metadata")
        except RequestTimedOutError as exc:  # as KafkaProbe maps it
            raise errors.ProbeTimeoutError("Kafka broker 1 did not answer the metadata request in time") from exc
        have = self.b.topics
        topics = [md_topic(n, have[n]["partitions"], have[n]["rf"]) if n in have else md_topic(n, code=3)
                  for n in self.settings.topic_names]
        return Obj(metadata(*topics))

    async def aclose(self) -> None:
        self.b.closed += 1


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker()
    monkeypatch.setattr(_topics_admin, "KafkaProbe", lambda settings: FakeProbe(fake, settings))
    return fake


def kafka(*specs: TopicSpec) -> KafkaSettings:
    return KafkaSettings(configured=True, bootstrap_servers=("fake:9092",), topics=tuple(specs))


async def provision(*specs: TopicSpec, dry_run: bool = False, **kw: Any) -> dict[str, Any]:
    section = await _topics_admin.provision(kafka(*specs), dry_run=dry_run, timeout=kw.pop("timeout", 2.0), **kw)
    doc = section.to_dict()
    doc["exit_code"] = section.exit_code
    return doc


def sent(broker: FakeBroker, kind: type[Any]) -> list[Any]:
    """The requests of ``kind`` the run sent."""
    return [r for r in broker.requests if isinstance(r, kind)]


def codes(doc: dict[str, Any]) -> list[str]:
    return [n["code"] for n in doc["notes"]]


def changes(doc: dict[str, Any], topic: str) -> list[tuple[str, str]]:
    return [(c["change"], c["status"]) for p in doc["plan"] if p["topic"] == topic for c in p["changes"]]


async def test_apply_creates_missing_topics_then_rereads(broker: FakeBroker) -> None:
    """Missing topics are created with partitions/replication/configs, re-read, in sync; client closed."""
    broker.add("old")
    doc = await provision(spec("new", partitions=3, retention_ms="1000"), spec("old"))
    assert (doc["created"], doc["existing"], doc["in_sync"], doc["exit_code"]) == (["new"], ["old"], ["new", "old"], 0)
    assert broker.topics["new"] == {"partitions": 3, "rf": 1, "configs": {"retention.ms": "1000"}}
    assert broker.calls.count("Metadata") == 2
    assert broker.closed == 1


async def test_already_exists_race_is_reread_not_a_failure(broker: FakeBroker) -> None:
    """TOPIC_ALREADY_EXISTS (created concurrently) → re-read and classified, not failed, not 'created'."""
    broker.race.add("raced")
    doc = await provision(spec("raced"))
    assert (doc["failed"], doc["created"], doc["existing"], doc["in_sync"]) == ({}, [], ["raced"], ["raced"])
    assert doc["exit_code"] == 0
    assert any(n["code"] == "already_exists" for n in doc["notes"])


async def test_rejected_creation_is_failed_exit_2(broker: FakeBroker) -> None:
    """A creation the broker rejects is in `failed` with the error name and message; exit 2."""
    broker.reject["bad"] = (38, "Replication factor: 3 larger than available brokers: 1.")
    doc = await provision(spec("bad", rf=3), spec("ok"))
    assert doc["failed"] == {"bad": "CreateTopics: InvalidReplicationFactorError: Replication factor: 3 larger"
                                    " than available brokers: 1."}
    assert doc["created"] == ["ok"]
    assert doc["exit_code"] == 2


async def test_fix_drift_adds_partitions_on_kafka(broker: FakeBroker) -> None:
    """Real-Kafka path: --fix-drift sends CreatePartitions with the declared total, re-reads, in sync."""
    broker.add("grow", partitions=1)
    doc = await provision(spec("grow", partitions=3), fix_drift=True)
    assert "CreatePartitions" in broker.calls
    assert broker.topics["grow"]["partitions"] == 3
    assert changes(doc, "grow") == [("add_partitions", "applied")]
    assert (doc["in_sync"], doc["drift"], doc["exit_code"]) == (["grow"], {}, 0)


async def test_fix_drift_sets_only_declared_configs_incrementally(broker: FakeBroker) -> None:
    """Config drift is fixed with IncrementalAlterConfigs SET of the declared key only; other overrides stay."""
    broker.add("cfg", configs={"retention.ms": "1000", "cleanup.policy": "compact"})
    doc = await provision(spec("cfg", retention_ms="2000"), fix_drift=True)
    [request] = sent(broker, IncrementalAlterConfigsRequest)
    assert request._resources == [(2, "cfg", [("retention.ms", 0, "2000")])]
    assert broker.topics["cfg"]["configs"] == {"retention.ms": "2000", "cleanup.policy": "compact"}
    assert doc["in_sync"] == ["cfg"]
    assert doc["exit_code"] == 0
    assert any(n["code"] == "undeclared_overrides" and "cleanup.policy" in n["text"] for n in doc["notes"])


async def test_fix_drift_not_applied_when_the_broker_lacks_create_partitions(broker: FakeBroker) -> None:
    """Tansu path: IncompatibleBrokerVersion → `not_applied` with the reason; drift remains, exit 1, no failure."""
    broker.tansu = True
    broker.add("grow", partitions=1)
    doc = await provision(spec("grow", partitions=2), fix_drift=True)
    assert changes(doc, "grow") == [("add_partitions", "not_applied")]
    [note] = [n for n in doc["notes"] if n["code"] == "not_applied"]
    assert "does not implement CreatePartitions (IncompatibleBrokerVersion: CreatePartitionsRequest" in note["text"]
    assert (doc["failed"], doc["exit_code"]) == ({}, 1)
    assert doc["drift"]["grow"]["partitions"] == {"want": 2, "have": 1, "classification": FIXABLE}


async def test_decrease_is_never_attempted(broker: FakeBroker) -> None:
    """Fewer declared partitions: not fixable, no request sent even with --fix-drift, a note says why; exit 1."""
    broker.add("big", partitions=3)
    doc = await provision(spec("big", partitions=1), fix_drift=True)
    assert "CreatePartitions" not in broker.calls
    assert changes(doc, "big") == []
    assert doc["drift"]["big"]["classification"] == NOT_FIXABLE
    assert doc["exit_code"] == 1
    assert any(n["code"] == "not_fixable" and "cannot decrease" in n["text"] for n in doc["notes"])


async def test_drift_is_left_alone_without_fix_drift(broker: FakeBroker) -> None:
    """Without --fix-drift an existing topic is never changed: fixable drift is skipped and noted."""
    broker.add("grow", partitions=1)
    doc = await provision(spec("grow", partitions=2))
    assert broker.calls == ["connect", "Metadata", "DescribeConfigs"]
    assert changes(doc, "grow") == [("add_partitions", "skipped")]
    assert any(n["code"] == "fix_drift_needed" for n in doc["notes"])
    assert doc["exit_code"] == 1


async def test_dry_run_sends_only_reads(broker: FakeBroker) -> None:
    """A dry run sends Metadata and DescribeConfigs only, even with --fix-drift; exit 1 for a would-create."""
    broker.add("grow", partitions=1)
    doc = await provision(spec("grow", partitions=2), spec("new"), dry_run=True, fix_drift=True)
    assert broker.calls == ["connect", "Metadata", "DescribeConfigs"]
    assert set(broker.topics) == {"grow"}
    assert doc["dry_run"] is True
    assert doc["created"] == []
    assert changes(doc, "new") == [("create", "planned")]
    assert changes(doc, "grow") == [("add_partitions", "planned")]
    assert doc["exit_code"] == 1


async def test_validate_on_broker_reports_a_broker_that_ignores_validate_only(broker: FakeBroker) -> None:
    """--validate-on-broker against Tansu: the topic gets created anyway, and the report says so plainly."""
    broker.tansu = True
    doc = await provision(spec("v"), dry_run=True, validate_on_broker=True)
    assert "CreateTopics(validate_only)" in broker.calls
    assert doc["dry_run"] is True
    assert doc["created"] == ["v"]
    assert [n["code"] for n in doc["notes"]] == ["validate_on_broker", "validate_only_ignored"]
    assert doc["exit_code"] == 1


async def test_validate_on_broker_rejection_is_failed(broker: FakeBroker) -> None:
    """A would-be creation the broker rejects under validate_only is failed (exit 2) and creates nothing."""
    broker.reject["bad"] = (37, "Number of partitions must be larger than 0.")
    doc = await provision(spec("bad"), dry_run=True, validate_on_broker=True)
    assert doc["failed"]["bad"].startswith("the broker would reject it: InvalidPartitionsError")
    assert doc["created"] == []
    assert doc["exit_code"] == 2


async def test_unreachable_broker_every_topic_unknown(broker: FakeBroker) -> None:
    """A refused bootstrap: every topic unknown, one error with its kind, exit 2, the client still closed."""
    broker.down = True
    doc = await provision(spec("a"), spec("b"), dry_run=True)
    assert [p["state"] for p in doc["plan"]] == ["unknown", "unknown"]
    assert (doc["error_kind"], doc["exit_code"], doc["dry_run"], broker.closed) == ("refused", 2, True, 1)
    assert [n["code"] for n in doc["notes"]] == ["broker_unreachable"]


# ----------------------------------------------------------------------- one request per kind of fix


async def test_partition_increases_go_in_one_create_partitions_request(broker: FakeBroker) -> None:
    """Every fixable partition increase rides one CreatePartitions; each topic's own result is read."""
    for name in ("a", "b", "c"):
        broker.add(name, partitions=1)
    broker.reject_partitions["b"] = (37, "Topic already has 4 partitions.")  # INVALID_PARTITIONS
    doc = await provision(spec("a", partitions=2), spec("b", partitions=3), spec("c", partitions=4), fix_drift=True)
    [request] = sent(broker, CreatePartitionsRequest)
    wire = request.prepare(FakeBroker.KAFKA_VERSIONS).to_object()
    counts = [(t["topic"], t["new_partitions"]["count"]) for t in wire["topic_partitions"]]
    assert counts == [("a", 2), ("b", 3), ("c", 4)]
    assert (wire["validate_only"], 0 < wire["timeout"] < 2000) == (False, True)
    assert [changes(doc, t) for t in "abc"] == [[("add_partitions", s)] for s in ("applied", "not_applied", "applied")]
    [entry_b] = [p for p in doc["plan"] if p["topic"] == "b"]
    assert entry_b["changes"][0]["reason"] == "InvalidPartitionsError: Topic already has 4 partitions."
    assert (doc["in_sync"], list(doc["drift"]), doc["exit_code"]) == (["a", "c"], ["b"], 1)


async def test_config_changes_go_in_one_incremental_alter_configs_request(broker: FakeBroker) -> None:
    """Every config fix rides one IncrementalAlterConfigs: one resource per topic, SET of the declared keys."""
    for name in ("a", "b", "c"):
        broker.add(name, configs={"retention.ms": "1"})
    doc = await provision(spec("a", retention_ms="2"), spec("b", retention_ms="3", cleanup_policy="compact"),
                          spec("c", retention_ms="4"), fix_drift=True)
    [request] = sent(broker, IncrementalAlterConfigsRequest)
    assert request._resources == [(2, "a", [("retention.ms", 0, "2")]),
                                  (2, "b", [("cleanup.policy", 0, "compact"), ("retention.ms", 0, "3")]),
                                  (2, "c", [("retention.ms", 0, "4")])]
    assert (doc["in_sync"], doc["exit_code"]) == (["a", "b", "c"], 0)


async def test_round_trips_do_not_grow_with_the_number_of_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 or 8 topics to create, grow and reconfigure: the same eight round trips."""

    async def calls(n: int) -> list[str]:
        fake = FakeBroker()
        monkeypatch.setattr(_topics_admin, "KafkaProbe", lambda settings: FakeProbe(fake, settings))
        for i in range(n):
            fake.add(f"old{i}", partitions=1)
        await provision(*[spec(f"old{i}", partitions=2, retention_ms="5") for i in range(n)],
                        *[spec(f"new{i}") for i in range(n)], fix_drift=True)
        return fake.calls

    assert await calls(1) == await calls(8) == [
        "connect", "Metadata", "DescribeConfigs", "CreateTopics", "CreatePartitions", "IncrementalAlterConfigs",
        "Metadata", "DescribeConfigs"]


# ------------------------------------------------------------------------------- one deadline for the run


async def test_request_timeouts_are_a_share_of_the_time_left(broker: FakeBroker) -> None:
    """Each request's aiokafka timeout (and CreateTopics' broker-side timeout) is under the time left."""
    broker.delay = 0.05
    broker.add("grow", partitions=1)
    await provision(spec("grow", partitions=2), spec("new"), fix_drift=True, timeout=2.0)
    limits = [limit for call, limit in broker.timeouts]
    assert limits == sorted(limits, reverse=True)  # shrinking with the time left
    assert all(limit <= 0.85 * 2.0 for limit in limits)
    [(_, _, create_ms)] = [r for r in broker.requests if isinstance(r, tuple)]
    assert create_ms <= 0.85 * 2000 - 0.05 * 3 * 0.85 * 1000  # connect, Metadata, DescribeConfigs took 0.15 s


async def test_the_deadline_spans_the_whole_run_not_each_step(broker: FakeBroker) -> None:
    """Steps of 0.15 s each, 0.5 s in all: cut at the re-read, not four steps of 0.5 s; the topic is
    reported created (the broker said so) but its state unknown, exit 2, the client closed."""
    broker.delay = 0.15
    started = time.monotonic()
    doc = await provision(spec("new"), timeout=0.5)
    assert time.monotonic() - started < 0.5 + 0.2
    assert (doc["error_kind"], doc["exit_code"], doc["created"], broker.closed) == ("timeout", 2, ["new"], 1)
    assert "cut during step reread" in doc["error"]
    assert codes(doc) == ["deadline_exceeded", "reread_failed", "outcome_unknown"]
    assert doc["notes"][0]["text"].startswith("step reread: the 0.5 s deadline (--timeout) ran out")
    [entry] = doc["plan"]
    assert (entry["action"], entry["state"]) == ("create", "unknown")


async def test_a_stalled_create_ends_the_run_with_its_outcome_unknown(broker: FakeBroker) -> None:
    """CreateTopics never answered: aiokafka's timeout ends the run at step create; the topics are unknown,
    neither created nor failed; no re-read is attempted; exit 2 well within the deadline."""
    broker.hang.add("CreateTopics")
    started = time.monotonic()
    doc = await provision(spec("a"), spec("b"), timeout=0.5)
    assert time.monotonic() - started < 0.5 + 0.1
    assert (doc["created"], doc["failed"], doc["error_kind"], doc["exit_code"]) == ([], {}, "timeout", 2)
    assert doc["error"].startswith("Kafka (fake:9092) did not answer CreateTopics within 0.4")
    assert broker.calls.count("Metadata") == 1
    assert codes(doc) == ["deadline_exceeded", "outcome_unknown"]
    assert doc["notes"][0]["text"].startswith("step create:")
    assert [p["state"] for p in doc["plan"]] == ["unknown", "unknown"]
    assert doc["plan"][0]["message"].startswith("not re-read (CreateTopics was sent, but no answer came: outcome"
                                                " unknown)")
    assert broker.closed == 1


async def test_a_stalled_fix_costs_one_deadline_not_one_per_topic(broker: FakeBroker) -> None:
    """Three topics to grow against a broker that stalls: one CreatePartitions, cut once; all three unknown,
    the config step never sent."""
    for name in ("a", "b", "c"):
        broker.add(name, partitions=1)
    broker.hang.add("CreatePartitions")
    started = time.monotonic()
    doc = await provision(*[spec(n, partitions=2, retention_ms="9") for n in "abc"], fix_drift=True, timeout=0.5)
    assert time.monotonic() - started < 0.5 + 0.1
    assert broker.calls.count("CreatePartitions") == 1
    assert "IncrementalAlterConfigs" not in broker.calls
    assert [p["state"] for p in doc["plan"]] == ["unknown"] * 3
    assert doc["notes"][0]["text"].startswith("step add_partitions:")
    assert (doc["error_kind"], doc["exit_code"]) == ("timeout", 2)


async def test_a_dry_run_cut_at_the_read_stays_a_dry_run(broker: FakeBroker) -> None:
    """Metadata never answered in a dry run: every topic unknown, step read named, dry_run still true, exit 2."""
    broker.hang.add("Metadata")
    doc = await provision(spec("a"), dry_run=True, timeout=0.3)
    assert (doc["dry_run"], doc["error_kind"], doc["exit_code"]) == (True, "timeout", 2)
    assert codes(doc) == ["deadline_exceeded", "broker_unreachable"]
    assert doc["notes"][0]["text"].startswith("step read:")
    assert [p["state"] for p in doc["plan"]] == ["unknown"]


def test_incremental_alter_configs_v0_wire_format() -> None:
    """The hand-built IncrementalAlterConfigs v0 request/response round-trip through aiokafka's codec."""
    request = IncrementalAlterConfigsRequest([(2, "t", [("retention.ms", 0, "5")])])
    struct = request.prepare({44: (0, 1)})
    decoded = IncrementalAlterConfigsRequest_v0.decode(struct.encode())
    assert decoded.to_object() == {"resources": [{"resource_type": 2, "resource_name": "t", "configs": [
        {"name": "retention.ms", "config_operation": 0, "value": "5"}]}], "validate_only": False}
    response = IncrementalAlterConfigsResponse_v0(0, [(0, None, 2, "t")])
    assert IncrementalAlterConfigsResponse_v0.decode(response.encode()).to_object()["responses"] == [
        {"error_code": 0, "error_message": None, "resource_type": 2, "resource_name": "t"}]
    with pytest.raises(IncompatibleBrokerVersion):
        request.prepare({})  # a broker without API key 44 → "not applied", never AlterConfigs


# ------------------------------------------------------------------------------------------------ CLI


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["report", "--no-env", "--topics-dry-run"], "--topics-dry-run needs --ensure-topics"),
        (["report", "--no-env", "--fix-drift"], "--fix-drift needs --ensure-topics"),
        (["report", "--no-env", "--ensure-topics", "--validate-on-broker"], "--validate-on-broker needs"),
        (["topics", "plan", "--no-env"], "need Kafka bootstrap servers"),  # report --ensure-topics: a note
        (["topics", "plan", "--no-env", "--extra", "KAFKA_BROKERS=k:1", "--extra", "KAFKA_INGEST_TOPICS=daily:d",
          "--extra", "KAFKA_INGEST_TOPIC_CONFIG=[1]"], "KAFKA_INGEST_TOPIC_CONFIG"),
        (["report", "--no-env", "--ensure-topics", "--extra", "KAFKA_BROKERS=k:1", "--extra",
          "KAFKA_INGEST_TOPIC_DAILY=d", "--extra", 'KAFKA_INGEST_TOPIC_DAILY_CONFIG="x"'], "_DAILY_CONFIG"),
        (["topics", "apply", "--no-env", "--validate-on-broker"], "No such option"),
    ],
)
def test_cli_usage_and_config_errors_exit_3(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    """Flag misuse, no Kafka, and a topic config JSON that is not an object: exit 3, one stderr line."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (3, "")
    assert err.startswith("ingest-probe: error: ")
    assert err.count("\n") == 1
    assert needle in err


def test_cli_unreachable_broker_exit_2_and_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """A refused bootstrap through the CLI: exit 2, every topic unknown, the SASL password nowhere."""
    port = free_port()
    common = ["--no-env", "--extra", f"KAFKA_URL=SASL_PLAINTEXT://user:{CANARY}@127.0.0.1:{port}",
              "--extra", "KAFKA_INGEST_TOPICS=daily:a,macro:b", "--timeout", "2"]
    code, out, err = run(capsys, "report", "--ensure-topics", "--topics-dry-run", *common)
    section = json.loads(out)["kafka_topic_provisioning"]
    assert code == 2
    assert section["dry_run"] is True
    assert [p["state"] for p in section["plan"]] == ["unknown", "unknown"]
    assert section["error_kind"] == "refused"
    code, md, err2 = run(capsys, "topics", "plan", "--format", "markdown", *common)
    assert code == 2
    assert "## Kafka topic provisioning" in md
    assert CANARY not in out + err + md + err2
