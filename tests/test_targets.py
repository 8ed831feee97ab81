"""Targets and the engine over N of them: names, kinds and labels in results, selectors, the cap, unique names."""

from __future__ import annotations

import datetime as dt
import json
import time

import anyio
import pytest
from fakes import FakeProbe, fake_prober, jobs, make_settings, target_of
from live.net import BlackHole, free_port

import ingest_probe
from ingest_probe import errors
from ingest_probe.commands.oneshot import run_drill, run_readiness
from ingest_probe.engine.supervisor import TaskSupervisor
from ingest_probe.readiness.drill import parse_ingest_results
from ingest_probe.renderers import get_renderer
from ingest_probe.results import Status
from ingest_probe.settings.targets import (
    STANDBY,
    Target,
    check_unique,
    classic_targets,
    select,
    standby_target,
    target_from_url,
)

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)


def test_classic_targets_are_one_per_kind_in_registry_order():
    """The classic configuration yields timescale, redis, kafka (named after their kinds), configured or not."""
    targets = classic_targets(make_settings(REDIS_URL="redis://cache.test:6380/2"))
    assert [(t.name, t.kind, t.configured, dict(t.labels), t.service) for t in targets] == [
        ("timescale", "timescale", False, {}, None), ("redis", "redis", True, {}, None),
        ("kafka", "kafka", False, {}, None)]
    assert targets[1].settings.endpoint == "cache.test:6380"


def test_the_failover_standby_is_an_ordinary_target():
    """The standby is a timescale target of its own name with label role=standby, none when not configured."""
    assert standby_target(make_settings()) is None
    standby = standby_target(make_settings(TIMESCALEDB_FAILOVER_URL="postgresql://u:pw@standby.test/db"))
    assert standby is not None
    assert (standby.name, standby.kind, dict(standby.labels)) == (STANDBY, "timescale", {"role": "standby"})
    assert standby.settings.endpoint == "standby.test:5432"


def test_readiness_probes_the_standby_under_its_own_name_beside_the_connectors():
    """A drill that fails over probes the standby as target timescale_failover: its task is in the run block,
    its result goes to the drill (refused: a closed loopback port), not to connectivity."""
    port = free_port()
    settings = make_settings(TIMESCALE_FAILOVER_DRILL="true", TIMESCALEDB_FAILOVER_URL=f"postgresql://u@127.0.0.1:{port}/db")
    results = parse_ingest_results(json.dumps({"daily_bars": {
        "rows_written": 0, "symbols": ["EURUSD"], "start_ts": "2026-11-24T00:00:00Z", "end_ts": "2026-11-25T00:00:00Z",
        "ingest_duration_seconds": 1, "freshness_seconds": 1, "source": "vendor"}}), path="r.json")
    report = run_readiness(settings, ingest_results=results, timeout=2.0, now=NOW)
    assert [r.name for r in report.results or ()] == ["timescale", "redis", "kafka"]
    assert report.run is not None
    assert "ingest-probe-timescale_failover" in report.run.deadlines_s
    fallback = report.drill.component("fallback") if report.drill else None
    assert fallback is not None
    assert (fallback.status.value, fallback.metadata["error_kind"]) == ("fail", "refused")


def test_drill_probes_the_standby_target_and_no_connector():
    """`drill` (rehearsal) probes only the standby target timescale_failover: a configured primary and Redis
    (a listener that counts connections) are never contacted, and the standby's refusal goes to the drill."""
    results = parse_ingest_results(json.dumps({"daily_bars": {"rows_written": 500, "symbols": []}}), path="r.json")
    with BlackHole() as hole:
        settings = make_settings(TIMESCALEDB_FAILOVER_URL=f"postgresql://u@127.0.0.1:{free_port()}/db",
                                 TIMESCALEDB_URL=f"postgresql://u@127.0.0.1:{hole.port}/db",
                                 REDIS_URL=f"redis://127.0.0.1:{hole.port}/0")
        report = run_drill(settings, ingest_results=results, timeout=2.0, now=NOW)
    assert hole.accepted == 0
    assert report.results is None
    assert report.run is not None
    assert list(report.run.deadlines_s) == ["ingest-probe-timescale_failover"]
    assert [m.name for m in report.manifest] == ["timescale", "redis", "kafka"]
    assert report.drill is not None
    assert report.drill.simulated_outage == ("daily",)
    fallback = report.drill.component("fallback")
    assert fallback is not None
    assert (fallback.status.value, fallback.metadata["error_kind"]) == ("fail", "refused")
    assert report.exit_code == 2


@pytest.mark.parametrize(("only", "skip", "picked"), [
    ((), (), ["timescale", "redis", "kafka", "east/redis"]),
    (("redis",), (), ["redis", "east/redis"]),  # a kind
    (("east/*",), (), ["east/redis"]),  # a glob on names
    (("timescale", "kafka"), (), ["timescale", "kafka"]),
    ((), ("redis",), ["timescale", "kafka"]),
    (("*",), ("east/*",), ["timescale", "redis", "kafka"]),
])
def test_selectors_pick_by_name_or_kind_with_globs(only, skip, picked):
    """--only/--skip (and Prober.check) select target names or kinds, fnmatch-style, in target order."""
    targets = [*classic_targets(make_settings()),
               Target(name="east/redis", kind="redis", settings=make_settings().redis, service="east")]
    assert [t.name for t in select(targets, only=only, skip=skip)] == picked


def test_a_selector_matching_nothing_is_a_usage_error():
    """A typo in a selector is exit 3, naming the selector, never a silent run of nothing (or everything)."""
    with pytest.raises(errors.UsageError, match="selector 'reddis' matches no target") as info:
        select(classic_targets(make_settings()), only=["reddis"])
    assert info.value.exit_code == 3


def test_target_names_are_unique():
    """Two targets of one name are a configuration error (each needs its own task, deadline and result)."""
    redis = make_settings().redis
    with pytest.raises(errors.ConfigError, match="target name 'r' is given twice"):
        check_unique([Target(name="r", kind="redis", settings=redis), Target(name="r", kind="redis", settings=redis)])


async def test_results_carry_the_target_name_kind_and_labels():
    """A result names its target, kind and labels, also when skipped; the JSON adds kind and labels."""
    probe = FakeProbe("redis")
    target = Target(name="prod/redis", kind="redis", labels={"env": "prod"}, settings=target_of(probe).settings)
    skipped = Target(name="prod/kafka", kind="kafka", labels={"env": "prod"},
                     settings=target_of(FakeProbe("kafka", configured=False)).settings)
    ok, off = await TaskSupervisor(timeout=1.0).run([(target, probe), (skipped, None)])
    assert (ok.name, ok.kind, dict(ok.labels), ok.status) == ("prod/redis", "redis", {"env": "prod"}, Status.OK)
    assert (off.name, off.kind, dict(off.labels), off.status) == ("prod/kafka", "kafka", {"env": "prod"},
                                                                  Status.SKIPPED)
    assert {"kind": "redis", "labels": {"env": "prod"}}.items() <= ok.to_dict().items()


async def test_at_most_concurrency_probes_are_in_flight():
    """With a cap of 2, six probes never run more than two at once; all six finish."""
    active, peak = [0], [0]

    async def busy(rec):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        await anyio.sleep(0.02)
        active[0] -= 1

    probes = [FakeProbe(f"p{i}", busy) for i in range(6)]
    supervisor = TaskSupervisor(timeout=5.0, concurrency=2)
    results = await supervisor.run(jobs(probes))
    assert [r.status for r in results] == [Status.OK] * 6
    assert peak[0] == 2
    assert supervisor.run_info().concurrency == 2


async def test_a_deadline_starts_when_the_probe_gets_its_slot():
    """Two 0.3 s probes behind a cap of 1 both pass a 0.5 s deadline: the second one's clock starts with its
    slot, not while it waits (else it would be cut at 0.5 s, after 0.3 s of waiting)."""

    async def slow(rec):
        await anyio.sleep(0.3)

    started = time.monotonic()
    results = await TaskSupervisor(timeout=0.5, jitter=0.0, concurrency=1).run(jobs([FakeProbe("a", slow),
                                                                                      FakeProbe("b", slow)]))
    assert [r.status for r in results] == [Status.OK, Status.OK]
    assert time.monotonic() - started >= 0.6


async def test_the_supervisor_refuses_two_targets_of_one_name():
    """Unique names: two probes under one name are refused before anything runs."""
    with pytest.raises(errors.ConfigError, match="given twice"):
        await TaskSupervisor(timeout=1.0).run(jobs([FakeProbe("redis"), FakeProbe("redis")]))


def test_bad_concurrency_is_a_usage_error():
    """A cap below one is a usage error (exit 3)."""
    with pytest.raises(errors.UsageError, match="--concurrency"):
        TaskSupervisor(concurrency=0)


async def test_prober_checks_a_subset_and_never_one_target_twice_at_once():
    """check(only=...) probes just those targets; a concurrent check of another selection that includes one of
    them joins the check in flight for it (per-target single-flight: one check, one connection), and each
    call gets the results of its own selection."""
    release = anyio.Event()

    async def held(rec):
        await release.wait()

    probes = [FakeProbe("timescale", held), FakeProbe("redis", held), FakeProbe("kafka", held)]
    got: dict[str, list[str]] = {}
    async with fake_prober(probes, timeout=5.0) as prober:
        async def check(key, only, skip):
            got[key] = [r.name for r in await prober.check(only=only, skip=skip)]

        async with anyio.create_task_group() as tg:
            tg.start_soon(check, "redis", ["redis"], [])
            tg.start_soon(check, "not_kafka", [], ["kafka"])
            await anyio.wait_all_tasks_blocked()
            release.set()
        run = prober.last_run
    assert got == {"redis": ["redis"], "not_kafka": ["timescale", "redis"]}
    assert [p.checks for p in probes] == [1, 1, 0]
    assert [p.max_active for p in probes] == [1, 1, 0]
    assert run is not None
    assert set(run.deadlines_s) <= {"ingest-probe-timescale", "ingest-probe-redis"}


def test_a_target_from_a_url_is_read_as_the_kind_reads_its_key():
    """target_from_url: the kind's URL key plus options of that kind's keys; the same validation and warnings."""
    target, warnings = target_from_url("redis", "rediss://app:pw@cache.test:6380/4?timeout=3", name="cache",
                                       labels={"env": "prod"}, options={"REDIS_CLIENT_NAME": "probe"})
    s = target.settings
    assert (target.name, target.kind, dict(target.labels)) == ("cache", "redis", {"env": "prod"})
    assert (s.host, s.port, s.db, s.username, s.tls, s.client_name) == ("cache.test", 6380, 4, "app", True, "probe")
    assert warnings == ("REDIS_URL from url: query parameter 'timeout' is not supported and is ignored",)
    with pytest.raises(errors.ConfigError, match="KAFKA_BROKERS is not a key of the redis connector"):
        target_from_url("redis", "redis://r", options={"KAFKA_BROKERS": "k:1"})
    with pytest.raises(errors.ConfigError, match=r"^TIMESCALEDB_URL=\*\*\* from targets.yaml:3: unsupported") as info:
        target_from_url("timescale", "mysql://u:hunter2@h/db", where="targets.yaml:3")
    assert "hunter2" not in str(info.value)
    with pytest.raises(errors.ConfigError, match="unknown connector kind 'mongo'"):
        target_from_url("mongo", "mongodb://m")


def test_manifest_and_report_list_targets_with_kind_and_labels():
    """A report of named targets: one manifest entry per target with its kind and labels, in target order."""
    cache, _ = target_from_url("redis", "redis://cache.test:6379/0", name="cache", labels={"env": "prod"})
    report = ingest_probe.build_report(make_settings(), targets=[cache], now=NOW)
    doc = json.loads(get_renderer("json")(report))
    assert [(m["name"], m["kind"], m["labels"], m["configured"]) for m in doc["manifest"]] == [
        ("cache", "redis", {"env": "prod"}, True)]
    assert "| cache | yes | yes | Redis endpoint redis://cache.test:6379/0 |" in get_renderer("markdown")(report)
