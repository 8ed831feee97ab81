"""TaskSupervisor scheduling, deadlines, jitter and cleanup, pinned with fake probes (no network)."""

from __future__ import annotations

import asyncio
import random

import anyio
import pytest
from fakes import FakeProbe, hang, jobs

from ingest_probe import errors
from ingest_probe.engine.supervisor import Jitter, TaskSupervisor
from ingest_probe.results import Status


async def test_probes_run_concurrently():
    """All three checks are in flight at once: each waits until every other one has started."""
    started = []
    all_started = anyio.Event()

    def waiter(name):
        async def behaviour(rec):
            started.append(name)
            if len(started) == 3:
                all_started.set()
            await all_started.wait()

        return behaviour

    probes = [FakeProbe(n, waiter(n)) for n in ("timescale", "redis", "kafka")]
    results = await TaskSupervisor(timeout=2.0, jitter=0.0).run(jobs(probes))
    assert [r.status for r in results] == [Status.OK] * 3


async def test_deadline_overrun_is_timeout_result_and_others_unaffected():
    """A probe stuck past its deadline is reported down/timeout naming the phase; the others stay ok."""
    probes = [FakeProbe("timescale"), FakeProbe("redis", connect=hang), FakeProbe("kafka")]
    results = await TaskSupervisor(timeout=0.2, jitter=0.0).run(jobs(probes))
    by_name = {r.name: r for r in results}
    assert by_name["timescale"].status is Status.OK
    assert by_name["kafka"].status is Status.OK
    stuck = by_name["redis"]
    assert stuck.status is Status.DOWN
    assert stuck.error_kind == "timeout"
    assert stuck.retryable is True
    assert "during connect" in stuck.error
    assert "redis.test:1" in stuck.error
    assert stuck.phases == {"connect": None, "query": None}
    assert all(p.closed for p in probes)


async def test_probe_errors_become_data_with_policy_from_the_class():
    """ProbeError subclasses map to status, kind and retryable; StartingError gives 'starting'."""

    async def refused(rec):
        raise errors.RefusedError("connection refused by x:1")

    async def starting(rec):
        raise errors.StartingError("the database system is starting up")

    async def auth(rec):
        raise errors.AuthError("password authentication failed for user 'u'")

    probes = [FakeProbe("a", refused), FakeProbe("b", starting), FakeProbe("c", auth)]
    a, b, c = await TaskSupervisor(timeout=1.0).run(jobs(probes))
    assert (a.status, a.error_kind, a.retryable) == (Status.DOWN, "refused", True)
    assert (b.status, b.error_kind, b.retryable) == (Status.STARTING, "starting", True)
    assert (c.status, c.error_kind, c.retryable) == (Status.DOWN, "auth", False)
    assert c.error == "password authentication failed for user 'u'"
    assert c.healthy is False


async def test_degraded_keeps_reason_and_details():
    """A probe that degrades its recorder yields status degraded with the reason as error text."""

    async def missing_topic(rec):
        rec.details["topics_missing"] = ["bars"]
        rec.degrade("missing_topic", "topics missing: bars")

    (result,) = await TaskSupervisor(timeout=1.0).run(jobs([FakeProbe("kafka", missing_topic)]))
    assert result.status is Status.DEGRADED
    assert result.healthy is True
    assert (result.error_kind, result.error) == ("missing_topic", "topics missing: bars")
    assert result.details == {"topics_missing": ["bars"]}


async def test_unconfigured_probe_is_skipped_without_a_task():
    """An unconfigured connector is 'skipped' with healthy None, and no task is spawned for it."""
    probe = FakeProbe("redis", configured=False)
    sup = TaskSupervisor(timeout=1.0)
    (result,) = await sup.run(jobs([probe]))
    assert result.status is Status.SKIPPED
    assert result.healthy is None
    assert probe.checks == 0
    assert sup.describe()["tasks"] == []


async def test_bug_in_a_probe_is_its_result_and_the_others_are_reported():
    """A non-ProbeError (a bug) is that probe's down/internal result, one line with the exception kept beside
    it; the other probes finish normally, every client is closed and no task is left."""

    async def bug(rec):
        rec.details["got_this_far"] = True
        raise TypeError("bug in our code\nsecond line")

    probes = [FakeProbe("timescale"), FakeProbe("redis", bug), FakeProbe("kafka")]
    sup = TaskSupervisor(timeout=5.0)
    ok, buggy, other = await sup.run(jobs(probes))
    assert (ok.status, other.status) == (Status.OK, Status.OK)
    assert (buggy.status, buggy.error_kind, buggy.retryable) == (Status.DOWN, "internal", False)
    assert buggy.error == (
        "internal error in the redis probe: TypeError: bug in our code second line; re-run with --debug for"
        " a traceback"
    )
    assert isinstance(buggy.exception, TypeError)
    assert buggy.exception.__traceback__ is not None
    assert buggy.details == {"got_this_far": True}
    assert "exception" not in buggy.to_dict()
    assert sup.describe()["counts"] == {"running": 0, "finished": 2, "failed": 1, "cancelled": 0}
    assert all(p.closed for p in probes)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_bug_in_close_is_the_result_even_with_warm_clients_kept():
    """A bug in aclose() becomes the result; close=False still closes a probe whose check failed."""

    class BadClose(FakeProbe):
        async def aclose(self):
            raise RuntimeError("close bug")

    async def refused(rec):
        raise errors.RefusedError("connection refused by x:1")

    (closing,) = await TaskSupervisor(timeout=1.0).run(jobs([BadClose("redis")]))
    assert (closing.status, closing.error_kind) == (Status.DOWN, "internal")
    assert "internal error in the redis probe while closing its client: RuntimeError: close bug" in closing.error
    failed = FakeProbe("kafka", refused)
    (result,) = await TaskSupervisor(timeout=1.0).run(jobs([failed]), close=False)
    assert result.error_kind == "refused"
    assert failed.closed  # the owner closed the client of the failed check


async def test_hanging_close_is_bounded():
    """A client whose close never finishes costs at most the close budget."""
    probe = FakeProbe("redis", close_delay=60)
    with anyio.fail_after(3):
        (result,) = await TaskSupervisor(timeout=1.0, close_budget=0.1).run(jobs([probe]))
    assert result.status is Status.OK
    assert probe.closed is False


async def test_outer_cancellation_closes_clients_and_leaves_no_task():
    """Cancelling a run from outside (SIGINT, caller's scope) still closes every probe's client."""
    probes = [FakeProbe("timescale", connect=hang), FakeProbe("redis", connect=hang)]
    sup = TaskSupervisor(timeout=30.0)
    with anyio.move_on_after(0.1) as scope:
        await sup.run(jobs(probes))
    assert scope.cancelled_caught
    assert all(p.closed for p in probes)
    assert sup.describe()["counts"] == {"running": 0, "finished": 0, "failed": 0, "cancelled": 2}
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_close_false_keeps_clients_for_reuse():
    """run(close=False) leaves warm clients open for an embedding prober."""
    probe = FakeProbe("redis")
    await TaskSupervisor(timeout=1.0).run(jobs([probe]), close=False)
    assert probe.closed is False


def test_jitter_draws_within_bounds():
    """Deadlines fall in [T(1-J), T]; J=0 gives exactly T."""
    rng = random.Random(7)
    draws = [Jitter(0.25).deadline(4.0, rng) for _ in range(2000)]
    assert min(draws) >= 3.0
    assert max(draws) <= 4.0
    assert min(draws) < 3.05
    assert max(draws) > 3.95
    assert Jitter(0.0).deadline(4.0, rng) == 4.0


async def test_seed_reproduces_deadlines_and_is_reported():
    """The same seed gives the same deadlines; the run block records seed and each deadline."""

    async def run(seed):
        sup = TaskSupervisor(timeout=2.0, jitter=0.5, seed=seed)
        await sup.run(jobs([FakeProbe("timescale"), FakeProbe("redis")]))
        return sup.run_info().to_dict()

    first, second, other = await run(42), await run(42), await run(43)
    assert first["seed"] == 42
    assert first["deadlines_s"] == second["deadlines_s"]
    assert first["deadlines_s"] != other["deadlines_s"]
    assert set(first["deadlines_s"]) == {"ingest-probe-timescale", "ingest-probe-redis"}
    assert all(1.0 <= d <= 2.0 for d in first["deadlines_s"].values())
    assert first["counts"]["finished"] == 2


async def test_task_names_and_describe():
    """Tasks are named <namespace>-<connector> and describe() reports their states."""
    seen = {}

    async def record_name(rec):
        seen["name"] = asyncio.current_task().get_name()

    sup = TaskSupervisor(timeout=1.0, namespace="nightly")
    await sup.run(jobs([FakeProbe("kafka", record_name), FakeProbe("redis", connect=hang)]))
    assert seen["name"] == "nightly-kafka"
    states = {t["name"]: t["state"] for t in sup.describe()["tasks"]}
    assert states == {"nightly-kafka": "finished", "nightly-redis": "cancelled"}


@pytest.mark.parametrize(("kwargs", "message"), [({"timeout": 0}, "--timeout"), ({"jitter": 1.0}, "--jitter")])
def test_bad_supervisor_arguments_are_usage_errors(kwargs, message):
    """Nonsensical timeout/jitter are usage errors (exit 3), not silent defaults."""
    with pytest.raises(errors.UsageError, match=message):
        TaskSupervisor(**kwargs)


async def test_two_bugs_are_two_results():
    """Bugs in two probes at once are two internal results, each with its own exception."""

    async def key_error(rec):
        raise KeyError("first")

    async def type_error(rec):
        raise TypeError("second")

    a, b = await TaskSupervisor(timeout=5.0).run(jobs([FakeProbe("redis", key_error), FakeProbe("kafka", type_error)]))
    assert (a.error_kind, type(a.exception)) == ("internal", KeyError)
    assert (b.error_kind, type(b.exception)) == ("internal", TypeError)


async def test_cancellation_is_never_a_result():
    """A cancellation from outside propagates out of run(), never recorded as a result, clients closed."""
    probes = [FakeProbe("timescale", connect=hang), FakeProbe("redis", connect=hang)]
    sup = TaskSupervisor(timeout=30.0)
    returned = []
    async with anyio.create_task_group() as tg:
        async def run():
            returned.append(await sup.run(jobs(probes)))

        tg.start_soon(run)
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert returned == []
    assert all(p.closed for p in probes)


async def test_deadline_hint_names_a_different_service_only_before_the_handshake():
    """Stuck connecting: the hint includes 'a different service listens on that port'; stuck querying: not."""
    connecting = FakeProbe("redis", connect=hang)
    querying = FakeProbe("kafka", hang)
    a, b = await TaskSupervisor(timeout=0.2, jitter=0.0).run(jobs([connecting, querying]))
    assert "during connect" in a.error
    assert "a different service listens on that port" in a.error
    assert "during query" in b.error
    assert "different service" not in b.error


async def test_internal_error_never_shows_a_secret_a_probe_holds():
    """A bug whose message quotes a password a probe holds is reported with the password masked."""
    from ingest_probe.connectors._log_secrets import HeldSecrets
    from ingest_probe.secret import Secret

    held = HeldSecrets([Secret("hunter2-canary")])

    async def bug(rec):
        held.hold()
        raise ValueError("cannot parse b'user\\x00user\\x00hunter2-canary'")

    try:
        (result,) = await TaskSupervisor(timeout=1.0).run(jobs([FakeProbe("kafka", bug)]))
    finally:
        held.release()
    assert result.error_kind == "internal"
    assert "hunter2-canary" not in result.error
    assert "***" in result.error
