"""Prober.update: swap targets between checks, keeping the warm clients of unchanged targets (fakes, then live)."""

from __future__ import annotations

import anyio
import pytest
from fakes import FakeProbe, fake_prober, target_of

from ingest_probe import ConfigError, Prober, target_from_url
from ingest_probe.errors import RefusedError
from ingest_probe.results import Status


def _probes(*probes: FakeProbe) -> tuple[list, dict]:
    targets = [target_of(p) for p in probes]
    return targets, {t.name: p for t, p in zip(targets, probes, strict=True)}


async def test_unchanged_targets_keep_their_clients_removed_and_changed_ones_are_closed():
    """Equal targets keep their probe (no new connection); a removed one and the old probe of a changed one
    are closed at once; the next check runs the new set, in its order."""
    a, b, c = FakeProbe("a"), FakeProbe("b"), FakeProbe("c")
    async with fake_prober([a, b, c], timeout=2.0) as prober:
        await prober.check()
        same_a = prober.targets[0]
        b2, d = FakeProbe("b"), FakeProbe("d")
        targets, probes = _probes(b2, d)  # b: a new FakeSettings object, so not equal to the old b
        swap = await prober.update([same_a, *targets], probes={"a": a, **probes})
        assert swap == (("a",), ("b", "d"), ("b", "c"))
        assert (a.closed, b.closed, c.closed) == (False, True, True)
        results = await prober.check()
        assert [r.name for r in results] == ["a", "b", "d"]
        assert all(r.status is Status.OK for r in results)
        assert (a.connects, a.checks, b2.connects, d.connects) == (1, 2, 1, 1)
        assert results[0].phases["connect"] is None  # a's client stayed warm
    assert a.closed
    assert b2.closed
    assert d.closed


async def test_a_target_equal_by_value_is_unchanged_even_as_a_new_object():
    """Targets compare by value: the same URL read again is the same target, so its client is kept."""
    first, _ = target_from_url("redis", "redis://:pw@127.0.0.1:1/0", labels={"env": "x"})
    again, _ = target_from_url("redis", "redis://:pw@127.0.0.1:1/0", labels={"env": "x"})
    other, _ = target_from_url("redis", "redis://:pw2@127.0.0.1:1/0", labels={"env": "x"})
    assert first is not again
    assert first == again
    assert first != other
    probe = FakeProbe("redis")
    async with Prober([first], probes={"redis": probe}) as prober:
        assert await prober.update([again], probes={"redis": FakeProbe("redis")}) == (("redis",), (), ())
        assert prober.probes["redis"] is probe
        swap = await prober.update([other], probes={"redis": FakeProbe("redis")})
        assert swap == ((), ("redis",), ("redis",))
        assert probe.closed


async def test_a_check_in_flight_keeps_its_clients_until_it_ends():
    """An update during a check returns at once; the dropped probe is closed only when that check is over."""
    started, release, closed = anyio.Event(), anyio.Event(), anyio.Event()

    async def held(rec):
        started.set()
        await release.wait()

    class Closing(FakeProbe):
        async def aclose(self):
            await super().aclose()
            closed.set()

    x = Closing("x", held)
    async with fake_prober([x], timeout=10.0) as prober, anyio.create_task_group() as tg:
        tg.start_soon(prober.check)
        await started.wait()
        y = FakeProbe("y")
        targets, probes = _probes(y)
        assert await prober.update(targets, probes=probes) == ((), ("y",), ("x",))
        assert not x.closed
        assert [r.name for r in await prober.check()] == ["y"]
        assert not x.closed
        release.set()
        with anyio.fail_after(5):
            await closed.wait()


async def test_a_changed_target_is_not_answered_from_its_old_check_or_result():
    """After an update changes a target, a new check does not join the old configuration's check still in
    flight, nor serve its result from latest()/max_age: it waits its turn and checks the new one."""
    started, release = anyio.Event(), anyio.Event()

    async def held(rec):
        started.set()
        await release.wait()
        raise RefusedError("the old configuration's answer")

    proceed = anyio.Event()

    async def gated(rec):
        await proceed.wait()

    old, new = FakeProbe("x", held), FakeProbe("x", gated)
    old_done = anyio.Event()

    async def check_old():
        await prober.check()
        old_done.set()

    async with fake_prober([old], timeout=10.0) as prober, anyio.create_task_group() as tg:
        tg.start_soon(check_old)
        await started.wait()
        targets, probes = _probes(new)
        await prober.update(targets, probes=probes)
        results: list = []

        async def check_new():
            results.extend(await prober.check(max_age=3600))

        tg.start_soon(check_new)
        release.set()
        await old_done.wait()
        assert prober.latest() == []  # the old configuration's answer is not x's latest result
        proceed.set()
    assert [r.status for r in results] == [Status.OK]
    assert new.checks == 1
    assert [o.result.status for o in prober.latest()] == [Status.OK]


async def test_duplicate_names_are_refused_and_leave_the_prober_as_it_was():
    """A new set with a name twice is a ConfigError; the old targets and clients stay."""
    a = FakeProbe("a")
    async with fake_prober([a]) as prober:
        await prober.check()
        targets, _ = _probes(FakeProbe("b"), FakeProbe("b"))
        with pytest.raises(ConfigError, match="given twice"):
            await prober.update(targets)
        assert [t.name for t in prober.targets] == ["a"]
        assert not a.closed


async def test_update_needs_an_open_prober():
    """update() outside `async with` is a clear RuntimeError."""
    prober = fake_prober([FakeProbe("a")])
    with pytest.raises(RuntimeError, match="open Prober"):
        await prober.update([])


@pytest.mark.live
async def test_live_update_keeps_the_redis_connection_of_an_unchanged_target(redis_server_factory):
    """Against a real Redis: after update, the unchanged target's server-side connection (CLIENT ID) is the same
    one, the changed target's old connection is gone from CLIENT LIST and a new one serves it."""
    redis = redis_server_factory()
    url = f"redis://127.0.0.1:{redis.port}/0"
    keep, _ = target_from_url("redis", url, name="keep", options={"REDIS_CLIENT_NAME": "ip-keep"})
    move, _ = target_from_url("redis", url, name="move", options={"REDIS_CLIENT_NAME": "ip-move-1"})

    def ids(name):
        return sorted(int(c["id"]) for c in redis.client_list(name))

    async with Prober([keep, move], timeout=5.0) as prober:
        assert all(r.status is Status.OK for r in await prober.check())
        kept_ids, moved_ids = ids("ip-keep"), ids("ip-move-1")
        assert len(kept_ids) == len(moved_ids) == 1
        moved, _ = target_from_url("redis", url, name="move", options={"REDIS_CLIENT_NAME": "ip-move-2"})
        again, _ = target_from_url("redis", url, name="keep", options={"REDIS_CLIENT_NAME": "ip-keep"})
        assert await prober.update([again, moved]) == (("keep",), ("move",), ("move",))
        assert ids("ip-move-1") == []  # closed by the update, before any check
        results = await prober.check()
        assert all(r.status is Status.OK for r in results)
        assert results[0].details["reused_connection"] is True
        assert ids("ip-keep") == kept_ids
        assert len(ids("ip-move-2")) == 1
