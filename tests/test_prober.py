"""Prober lifecycle, single-flight checks, cancellation and cleanup (fake probes) + public API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import anyio
import pytest
from fakes import FakeProbe, fake_prober, hang, make_settings

import ingest_probe
from ingest_probe import Prober, Status


def trio_of(behaviour=None, **kw):
    return [FakeProbe(n, behaviour, **kw) for n in ("timescale", "redis", "kafka")]


async def test_checks_reuse_one_warm_client_and_close_on_exit():
    """Many sequential checks use the same probes (one connect each); all are closed when the block ends."""
    probes = trio_of()
    async with fake_prober(probes, timeout=1.0) as prober:
        for _ in range(20):
            results = await prober.check()
            assert [r.status for r in results] == [Status.OK] * 3
        assert not any(p.closed for p in probes)
    assert [p.connects for p in probes] == [1, 1, 1]
    assert [p.checks for p in probes] == [20, 20, 20]
    assert all(p.closed for p in probes)


async def test_runs_in_the_callers_loop():
    """Checks run on the caller's running event loop (no asyncio.run, no private loop)."""
    probes = trio_of()
    async with fake_prober(probes) as prober:
        await prober.check()
    assert {loop for p in probes for loop in p.loops} == {id(asyncio.get_running_loop())}


async def test_concurrent_checks_share_one_in_flight_check():
    """Ten concurrent check() calls run each probe once and all get the same results (single-flight)."""
    release = anyio.Event()
    probes = trio_of(lambda rec: release.wait())
    got = []
    async with fake_prober(probes, timeout=2.0) as prober:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(lambda: _append(got, prober.check()))
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert [p.checks for p in probes] == [1, 1, 1]
    assert [p.max_active for p in probes] == [1, 1, 1]
    assert len(got) == 10
    assert all(r == got[0] for r in got)


async def _append(into, awaitable):
    into.append(await awaitable)


async def test_cancelled_caller_does_not_orphan_the_shared_check():
    """A caller cancelled while waiting leaves the shared check running; the other caller gets its results."""
    release = anyio.Event()
    probes = trio_of(lambda rec: release.wait())
    got, gave_up = [], []

    async def impatient(prober):
        with anyio.move_on_after(0.05):
            await prober.check()
        gave_up.append(True)

    async with fake_prober(probes, timeout=2.0) as prober:
        async with anyio.create_task_group() as tg:
            tg.start_soon(impatient, prober)  # the first caller starts the check ...
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(lambda: _append(got, prober.check()))  # ... the second joins it
            await anyio.sleep(0.2)
            assert gave_up == [True]
            release.set()
    assert len(got) == 1
    assert [r.status for r in got[0]] == [Status.OK] * 3
    assert [p.checks for p in probes] == [1, 1, 1]


async def test_cancel_mid_check_then_exit_leaves_no_task_and_closes_everything():
    """Cancelling check() on hanging probes, then leaving the block: every probe task ended, all closed."""
    cancelled = []

    async def hang_noting_cancel(rec):
        try:
            await anyio.sleep_forever()
        except BaseException:
            cancelled.append(rec.endpoint)
            raise

    probes = trio_of(hang_noting_cancel)
    before = set(asyncio.all_tasks())
    started = time.monotonic()
    async with fake_prober(probes, timeout=30.0) as prober:
        with anyio.move_on_after(0.1) as scope:
            await prober.check()
        assert scope.cancelled_caught
    assert time.monotonic() - started < 2.0
    assert sorted(cancelled) == sorted(p.endpoint for p in probes)
    assert all(p.closed for p in probes)
    assert set(asyncio.all_tasks()) - before == set()


async def test_outer_cancellation_of_the_caller_still_closes_clients():
    """When the task using the prober is itself cancelled, closing is shielded and still happens."""
    probes = trio_of(hang, close_delay=0.05)
    with anyio.move_on_after(0.1):
        async with fake_prober(probes, timeout=30.0) as prober:
            await prober.check()
    assert all(p.closed for p in probes)


async def test_callers_exception_propagates_unwrapped():
    """An exception raised in the `async with` body comes out as itself, not as an ExceptionGroup."""
    probes = trio_of()

    async def body():
        async with fake_prober(probes) as prober:
            await prober.check()
            raise ValueError("the caller's own error")

    with pytest.raises(ValueError, match="caller's own"):
        await body()
    assert all(p.closed for p in probes)


async def test_plain_asyncio_task_cancel_mid_check_closes_clients():
    """`task.cancel()` (plain asyncio, no anyio scope) during a hung check: CancelledError out, all closed."""
    probes = trio_of(hang)

    async def user():
        async with fake_prober(probes, timeout=30.0) as prober:
            await prober.check()

    task = asyncio.ensure_future(user())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(p.closed for p in probes)


async def test_close_is_bounded_when_a_client_hangs_on_close():
    """A client whose close never returns delays exit by at most the close budget."""
    probes = trio_of(close_delay=60.0)
    started = time.monotonic()
    async with fake_prober(probes, close_budget=0.2) as prober:
        await prober.check()
    assert time.monotonic() - started < 1.0


async def test_waiters_get_closed_resource_error_when_the_prober_closes_mid_check():
    """A check still in flight when the block ends is cancelled; a waiter in another task is told why."""
    probes = trio_of(hang)
    outcome = []

    async def waiter(prober):
        try:
            await prober.check()
        except anyio.ClosedResourceError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        async with fake_prober(probes, timeout=30.0) as prober:
            tg.start_soon(waiter, prober)
            await anyio.wait_all_tasks_blocked()
    assert len(outcome) == 1
    assert all(p.closed for p in probes)


async def test_probe_bug_is_that_connectors_result_and_clients_still_close():
    """A non-ProbeError exception in a probe is its connector's internal result; the others are reported."""

    async def buggy(rec):
        raise KeyError("bug")

    probes = [FakeProbe("timescale"), FakeProbe("redis", buggy), FakeProbe("kafka")]
    async with fake_prober(probes) as prober:
        results = await prober.check()
        assert [(r.status, r.error_kind) for r in results] == [
            (Status.OK, None), (Status.DOWN, "internal"), (Status.OK, None)
        ]
        assert isinstance(results[1].exception, KeyError)
        report = await prober.report()
        assert report.exit_code == 3
        assert [type(e) for e in report.internal_errors] == [KeyError]
        # the prober stays usable for the next check
        probes[1].behaviour = None
        assert [r.status for r in await prober.check()] == [Status.OK] * 3
    assert all(p.closed for p in probes)


async def test_check_failure_nobody_waited_for_is_raised_on_exit(monkeypatch):
    """A failure of the check itself (not a probe's: those are results) whose callers all gave up is raised
    when the block ends, not lost."""
    from ingest_probe.engine.supervisor import TaskSupervisor

    async def broken_run(self, probes, *, close=True, ceiling=None):
        await anyio.sleep(0.05)
        raise KeyError("late bug")

    monkeypatch.setattr(TaskSupervisor, "run", broken_run)
    probes = [FakeProbe("redis")]

    async def body():
        async with fake_prober(probes) as prober:
            with anyio.move_on_after(0.01):
                await prober.check()
            await anyio.sleep(0.2)

    with pytest.raises(KeyError, match="late bug"):
        await body()
    assert probes[0].closed


async def test_expected_failure_is_data_and_the_next_check_runs():
    """A ProbeError is a down result; the prober keeps going and the next check sees recovery."""
    from ingest_probe import errors

    state = {"fail": True}

    async def flaky(rec):
        if state["fail"]:
            raise errors.RefusedError("connection refused by redis.test:1")

    probes = [FakeProbe("redis", flaky)]
    async with fake_prober(probes) as prober:
        first = await prober.check()
        state["fail"] = False
        second = await prober.check()
    assert (first[0].status, first[0].error_kind) == (Status.DOWN, "refused")
    assert second[0].status is Status.OK


async def test_report_carries_run_block_and_seed_reproduces_deadlines():
    """report() builds a Report whose run block has the seed, deadlines, duration and check number."""
    runs = []
    for _ in range(2):
        async with fake_prober(trio_of(), timeout=2.0, jitter=0.5, seed=42) as prober:
            await prober.check()
            report = await prober.report()
            runs.append(report.to_dict()["run"])
            assert prober.last_run is report.run
    assert runs[0]["seed"] == 42
    assert runs[0]["check"] == 2
    assert runs[0]["duration_ms"] >= 0
    assert runs[0]["deadlines_s"] == runs[1]["deadlines_s"]
    assert report.status is Status.OK
    assert report.exit_code == 0


async def test_misuse_is_reported_clearly():
    """check() needs `async with`; a prober is single-use; a closed prober refuses new checks."""
    prober = fake_prober(trio_of())
    with pytest.raises(RuntimeError, match="async with"):
        await prober.check()
    async with prober:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with prober:
            pass
    with pytest.raises(anyio.ClosedResourceError):
        await prober.check()


# ------------------------------------------------------------------ per-target single-flight, the cache, ready()


async def test_overlapping_selections_share_the_in_flight_check_per_target():
    """check(only=redis) and check() at once: redis is checked once (joined), the others once; nobody waits on
    a second check of a target already in flight."""
    release = anyio.Event()
    probes = trio_of(lambda rec: release.wait())
    got = {}

    async def call(key, **kw):
        got[key] = await prober.check(**kw)

    async with fake_prober(probes, timeout=2.0) as prober:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: call("redis", only=["redis"]))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(lambda: call("all"))
            tg.start_soon(lambda: call("kafka+redis", skip=["timescale"]))
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert [p.checks for p in probes] == [1, 1, 1]
    assert got["redis"][0] is got["all"][1] is got["kafka+redis"][0]
    assert [r.name for r in got["all"]] == ["timescale", "redis", "kafka"]


async def test_200_concurrent_mixed_callers_check_each_target_once():
    """200 concurrent callers over four different selections: every target is checked exactly once, and
    never twice at once."""
    release = anyio.Event()
    probes = trio_of(lambda rec: release.wait())
    selections = [{}, {"only": ["redis"]}, {"skip": ["kafka"]}, {"only": ["k*"]}]
    answers = []
    async with fake_prober(probes, timeout=2.0) as prober:
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(lambda kw=selections[i % 4]: _append(answers, prober.check(**kw)))
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert len(answers) == 200
    assert [p.checks for p in probes] == [1, 1, 1]
    assert [p.max_active for p in probes] == [1, 1, 1]


async def test_max_age_answers_from_the_latest_result_and_rechecks_stale_ones():
    """check(max_age=S) reuses results younger than S (no probe call) and checks only the older ones;
    latest() gives each result with its age, without checking."""
    probes = trio_of()
    async with fake_prober(probes, timeout=1.0) as prober:
        assert prober.latest() == []
        first = await prober.check()
        assert [p.checks for p in probes] == [1, 1, 1]
        again = await prober.check(max_age=60)
        assert [p.checks for p in probes] == [1, 1, 1]
        assert [a is b for a, b in zip(again, first, strict=True)] == [True] * 3
        await anyio.sleep(0.05)
        await prober.check(only=["redis"])  # redis is now fresher than the others
        await prober.check(max_age=0.04)
        assert [p.checks for p in probes] == [2, 2, 2]
        await prober.check(max_age=0.04)
        assert [p.checks for p in probes] == [2, 2, 2]
        await prober.check(max_age=0)  # nothing is fresh enough: every target is checked
        assert [p.checks for p in probes] == [3, 3, 3]
        latest = prober.latest(only=["redis", "kafka"])
        assert [o.result.name for o in latest] == ["redis", "kafka"]
        assert all(0 <= o.age() < 1.0 for o in latest)


async def test_ready_applies_the_fail_on_policy():
    """ready(): fail_on=down fails only on a down target, fail_on=degraded on anything but ok; skipped never
    fails; an unknown policy is a ValueError."""
    from fakes import scripted

    probes = [FakeProbe("timescale", scripted("degraded", "down", "ok")), FakeProbe("redis"),
              FakeProbe("kafka", configured=False)]
    async with fake_prober(probes, timeout=1.0) as prober:
        assert await prober.ready() is True  # degraded: not down
        assert await prober.ready(fail_on="degraded", max_age=60) is False  # the same result, stricter policy
        assert await prober.ready() is False  # down now
        assert await prober.ready(only=["redis"], max_age=60) is True
        assert await prober.ready(fail_on="degraded") is True  # ok; kafka skipped
        with pytest.raises(ingest_probe.errors.UsageError, match="fail-on"):
            await prober.ready(fail_on="sometimes")


async def test_a_lower_timeout_bounds_the_checks_a_call_starts():
    """check(ceiling=T) gives the checks it starts a deadline of at most T (the /probe scrape timeout)."""
    probes = [FakeProbe("redis", hang)]
    async with fake_prober(probes, timeout=30.0, jitter=0.0) as prober:
        started = time.monotonic()
        [result] = await prober.check(ceiling=0.1)
        assert time.monotonic() - started < 2.0
    assert (result.status, result.error_kind, result.deadline_s) == (Status.DOWN, "timeout", 0.1)


async def test_report_from_kept_results_dates_them_by_the_oldest_and_merges_the_run_blocks():
    """report(max_age=) over results of two checks: generated_at is the older check's end, the run block
    has one task per target (each from the check behind its result) and the later check number."""
    probes = trio_of()
    async with fake_prober(probes, timeout=1.0) as prober:
        await prober.check()
        oldest = {o.result.name: o for o in prober.latest()}["timescale"].ended_at
        await anyio.sleep(0.02)
        await prober.check(skip=["timescale"])
        report = await prober.report(max_age=60)
    assert [p.checks for p in probes] == [1, 2, 2]
    assert report.generated_at == oldest
    run = report.to_dict()["run"]
    assert [t["name"] for t in run["tasks"]] == ["ingest-probe-timescale", "ingest-probe-redis", "ingest-probe-kafka"]
    assert run["check"] == 2


def test_policy_function_on_results_and_reports():
    """report.policy.ready: the same verdict from a Report and from its results."""
    from ingest_probe.report.builder import build_report
    from ingest_probe.report.policy import ready
    from ingest_probe.results import ProbeResult

    def result(name, status):
        return ProbeResult(name=name, configured=status is not Status.SKIPPED, status=status)

    results = [result("a", Status.OK), result("b", Status.STARTING), result("c", Status.SKIPPED)]
    report = build_report(make_settings(), results=results)
    assert ready(results, "down")
    assert ready(report, "down")
    assert not ready(results, "degraded")
    assert not ready(report, "degraded")
    assert not ready([*results, result("d", Status.DOWN)], "down")


def test_bad_arguments_fail_at_construction():
    """Invalid timeout/jitter raise UsageError when the Prober is built, before any loop runs."""
    with pytest.raises(ingest_probe.ConfigError):
        Prober(make_settings(), timeout=0)
    with pytest.raises(ingest_probe.ConfigError):
        Prober(make_settings(), jitter=1.5)


def test_public_api_is_sorted_and_resolves():
    """`__all__` is sorted, and every name in it resolves to a real object."""
    assert ingest_probe.__all__ == sorted(ingest_probe.__all__)
    for name in ingest_probe.__all__:
        assert getattr(ingest_probe, name) is not None
    assert ingest_probe.Prober is Prober
    with pytest.raises(AttributeError):
        _ = ingest_probe.does_not_exist


def test_import_is_cheap():
    """`import ingest_probe` loads no client library, no yaml and not the prober/report machinery."""
    code = (
        "import sys, ingest_probe; "
        "heavy = {'asyncpg', 'redis', 'aiokafka', 'yaml', 'anyio', 'click', 'ingest_probe.engine.prober'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_prober_import_does_not_load_client_libraries():
    """Touching `ingest_probe.Prober` still loads no client library and no yaml."""
    code = (
        "import sys, ingest_probe; ingest_probe.Prober; ingest_probe.build_report; "
        "print(sorted({'asyncpg', 'redis', 'aiokafka', 'yaml'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


_PRELOAD_SCRIPT = """
import json, sys, threading
import anyio
import ingest_probe

LIBS = ("asyncpg", "redis", "aiokafka")
on_loop_thread = []

class Spy:
    def find_spec(self, name, path=None, target=None):
        if name in LIBS and threading.current_thread() is threading.main_thread():
            on_loop_thread.append(name)
        return None

sys.meta_path.insert(0, Spy())
settings = ingest_probe.load_settings(environ={
    "TIMESCALEDB_HOST": "127.0.0.1", "REDIS_HOST": "127.0.0.1", "KAFKA_BROKERS": "127.0.0.1:9",
})

async def main():
    async with ingest_probe.Prober(settings) as prober:
        loaded = sorted(lib for lib in LIBS if lib in sys.modules)
        kafka_ready = "aiokafka.admin" in sys.modules and "redis.asyncio" in sys.modules
        return loaded, kafka_ready, list(prober.probes)

loaded, ready, probes = anyio.run(main)
print(json.dumps({"loaded": loaded, "ready": ready, "on_loop_thread": on_loop_thread, "probes": probes}))
"""


def test_prober_entry_imports_client_libraries_off_the_loop():
    """After `async with Prober(...)` entry, before any check, every needed driver is imported — in a thread."""
    out = subprocess.run([sys.executable, "-c", _PRELOAD_SCRIPT], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["loaded"] == ["aiokafka", "asyncpg", "redis"], result
    assert result["ready"] is True
    assert result["on_loop_thread"] == [], "client libraries were imported on the event loop's thread"
    assert result["probes"] == ["timescale", "redis", "kafka"]


# ------------------------------------------------------------------------------------------------- live


def live_settings(pg, redis, kafka, name):
    """Settings for the live servers, loaded like the CLI does but from a mapping (no process env)."""
    from live.bench_prober import stack_env

    return ingest_probe.load_settings(environ=stack_env(pg=pg, redis=redis, kafka=kafka, name=name))


async def server_counts(pg, redis, kafka_port, name):
    """(postgres sessions, redis clients, our sockets to kafka) tagged with / belonging to ``name``."""
    from live.kafka import client_connections

    pg_n = await anyio.to_thread.run_sync(pg.count_connections, name)
    redis_n = len(await anyio.to_thread.run_sync(redis.client_list, name))
    return pg_n, redis_n, client_connections(kafka_port)


async def wait_for_counts(pg, redis, kafka_port, name, expected):
    """Poll the server-side counts (up to 5 s) until they equal ``expected``; returns the last counts seen."""
    deadline = time.monotonic() + 5.0
    while True:
        counts = await server_counts(pg, redis, kafka_port, name)
        if counts == expected or time.monotonic() > deadline:
            return counts
        await anyio.sleep(0.05)


@pytest.mark.live
async def test_live_one_connection_per_connector_across_50_checks(pg_server, redis_server, kafka_broker):
    """50 checks keep exactly one server-side connection per connector; none remain after exit."""
    name = "ip-test-reuse"
    settings = live_settings(pg_server, redis_server, kafka_broker, name)
    seen = []
    async with Prober(settings, timeout=5.0) as prober:
        for i in range(50):
            results = await prober.check()
            assert [r.status for r in results] == [Status.OK] * 3, [r.to_dict() for r in results]
            if i in (0, 24, 49):
                seen.append(await server_counts(pg_server, redis_server, kafka_broker.port, name))
    assert seen == [(1, 1, 1)] * 3
    assert await wait_for_counts(pg_server, redis_server, kafka_broker.port, name, (0, 0, 0)) == (0, 0, 0)


@pytest.mark.live
async def test_live_concurrent_checks_do_not_multiply_connections(pg_server, redis_server, kafka_broker):
    """20 concurrent check() calls on one prober share one check: still one connection per connector."""
    name = "ip-test-concurrent"
    settings = live_settings(pg_server, redis_server, kafka_broker, name)
    got = []
    async with Prober(settings, timeout=5.0) as prober:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(lambda: _append(got, prober.check()))
        assert await server_counts(pg_server, redis_server, kafka_broker.port, name) == (1, 1, 1)
        assert prober.last_run is not None
        assert prober.last_run.check <= 2
    assert all([r.status for r in results] == [Status.OK] * 3 for results in got)


@pytest.mark.live
async def test_live_prober_survives_server_restarts(pg_server, redis_server_factory, kafka_broker):
    """After Postgres and Redis restart, the prober reconnects within two checks, one connection each."""
    name = "ip-test-restart"
    redis = redis_server_factory()
    settings = live_settings(pg_server, redis, kafka_broker, name)
    async with Prober(settings, timeout=3.0) as prober:
        assert [r.status for r in await prober.check()] == [Status.OK] * 3
        await anyio.to_thread.run_sync(redis.restart)
        await anyio.to_thread.run_sync(pg_server.restart)
        statuses = []
        for _ in range(3):
            statuses.append([r.status for r in await prober.check()])
            if statuses[-1] == [Status.OK] * 3:
                break
        assert statuses[-1] == [Status.OK] * 3, statuses
        assert len(statuses) <= 2
        assert await server_counts(pg_server, redis, kafka_broker.port, name) == (1, 1, 1)
    assert await wait_for_counts(pg_server, redis, kafka_broker.port, name, (0, 0, 0)) == (0, 0, 0)


@pytest.mark.live
async def test_live_cancel_during_check_against_frozen_servers(pg_server, redis_server_factory, kafka_broker):
    """Cancel a check hung on frozen Postgres+Redis: prompt exit; after thaw no task, no session remains."""
    name = "ip-test-frozen"
    redis = redis_server_factory()
    settings = live_settings(pg_server, redis, kafka_broker, name)
    before = set(asyncio.all_tasks())
    try:
        async with Prober(settings, timeout=10.0) as prober:
            assert [r.status for r in await prober.check()] == [Status.OK] * 3  # warm clients
            redis.freeze()
            pg_server.freeze()
            started = time.monotonic()
            with anyio.move_on_after(0.5) as scope:
                await prober.check()
            assert scope.cancelled_caught
        elapsed = time.monotonic() - started
    finally:
        pg_server.thaw()
        redis.thaw()
    assert elapsed < 0.5 + 2.5  # the cancel, then one bounded, concurrent close budget
    assert set(asyncio.all_tasks()) - before == set()
    assert await wait_for_counts(pg_server, redis, kafka_broker.port, name, (0, 0, 0)) == (0, 0, 0)
