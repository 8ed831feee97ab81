"""The watch loop: schedule, failure counting, transition logs, outputs and signals (fakes, fake sleep)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from fakes import FakeProbe, make_settings, scripted, target_of
from prometheus_client.parser import text_string_to_metric_families

from ingest_probe import load_settings
from ingest_probe.commands.report import splay
from ingest_probe.commands.watch_loop import (
    MIN_DELAY,
    NORMAL,
    QUIET,
    VERBOSE,
    WatchOptions,
    next_delay,
    run_watch,
    watch,
)


class Harness:
    """Runs ``watch`` with a fake sleep that records delays and stops the loop after ``cycles`` cycles."""

    def __init__(self, probes, *, cycles=50, **options):
        self.probes = probes
        self.cycles = cycles
        self.delays: list[float] = []
        self.lines: list[str] = []
        opts = {"interval": 60.0, "jitter_seconds": 0.0, "max_failures": 0, "handle_signals": False}
        opts.update(options)
        self.options = WatchOptions(**opts)
        self.code: int | None = None

    async def run(self):
        with anyio.CancelScope() as scope:
            async def sleep(delay):
                self.delays.append(delay)
                if len(self.delays) >= self.cycles:
                    scope.cancel()
                await anyio.lowlevel.checkpoint()

            targets = [target_of(p) for p in self.probes]
            self.code = await watch(make_settings(), self.options, log=self.lines.append, targets=targets,
                                    probes={t.name: p for t, p in zip(targets, self.probes, strict=True)},
                                    sleep=sleep, rng=random.Random(7))
        return self


def test_next_delay_is_interval_plus_jitter_floored_at_one_second():
    """Delays stay in [interval-j, interval+j], never under 1 s, and a seeded rng reproduces them."""
    rng = random.Random(3)
    delays = [next_delay(3.0, 2.5, rng) for _ in range(2000)]
    assert min(delays) == MIN_DELAY
    assert max(delays) <= 5.5
    assert max(delays) > 5.3
    assert [next_delay(60, 10, random.Random(1)) for _ in range(3)] == [
        next_delay(60, 10, random.Random(1)) for _ in range(3)
    ]
    assert all(50 <= next_delay(60, 10, rng) <= 70 for _ in range(500))


def test_jitter_is_capped_at_the_interval():
    """A jitter larger than the interval is capped at it (pauses stay centred on the interval)."""
    rng = random.Random(5)
    assert all(0.05 <= next_delay(0.05, 120.0, rng) <= 0.1 for _ in range(500))
    assert all(MIN_DELAY <= next_delay(60.0, 120.0, rng) <= 120.0 for _ in range(500))


def test_sub_second_interval_is_taken_as_asked():
    """An explicit interval under 1 s (tests) is used as is; jitter then never goes below the interval."""
    rng = random.Random(0)
    assert next_delay(0.05, 0.0, rng) == 0.05
    assert all(0.05 <= next_delay(0.05, 0.02, rng) <= 0.07 for _ in range(200))


def test_splay_is_bounded_and_not_seeded_by_the_supervisor():
    """Splay is in [0, S], 0 when S is 0, and two draws without a shared rng differ."""
    assert splay(0) == 0.0
    draws = [splay(2.0) for _ in range(50)]
    assert all(0.0 <= d <= 2.0 for d in draws)
    assert len(set(draws)) > 1


def test_a_monitor_by_default_the_ingest_schedule_only_when_asked():
    """Without flags: 60 s, no jitter, never stop — whatever TIMESCALE_INGEST_* say; --ingest-schedule takes
    interval, jitter and max failures from them; a flag given wins either way."""
    settings = make_settings(TIMESCALE_INGEST_INTERVAL_SECONDS="120", TIMESCALE_INGEST_JITTER_SECONDS="5",
                             TIMESCALE_INGEST_MAX_FAILURES="4")
    assert WatchOptions().schedule(settings) == (60.0, 0.0, 0)
    assert WatchOptions(ingest_schedule=True).schedule(settings) == (120.0, 5.0, 4)
    assert WatchOptions(ingest_schedule=True, jitter_seconds=0.5).schedule(settings) == (120.0, 0.5, 4)
    assert WatchOptions(interval=10.0, max_failures=2).schedule(settings) == (10.0, 0.0, 2)


async def test_schedule_uses_the_jittered_delay_after_each_cycle():
    """After every cycle the loop sleeps exactly next_delay(interval, jitter) from a seeded rng."""
    h = await Harness([FakeProbe("redis", scripted("ok"))], cycles=5, interval=30.0, jitter_seconds=3.0).run()
    rng = random.Random(7)
    assert h.delays == [next_delay(30.0, 3.0, rng) for _ in range(5)]


async def test_stops_with_exit_2_after_max_consecutive_failures_and_closes_clients():
    """N consecutive down cycles stop the loop with 2 (logged even when quiet); the client is closed."""
    probe = FakeProbe("redis", scripted("ok", "down", "down", "ok", "down", "down", "down"))
    h = await Harness([probe], max_failures=3, verbosity=QUIET).run()
    assert h.code == 2
    assert probe.checks == 7  # the ok in cycle 4 reset the count
    assert probe.closed
    assert len(h.lines) == 1
    assert "stopping after 3 consecutive failing cycles" in h.lines[0]


async def test_zero_max_failures_never_stops():
    """max_failures 0 keeps watching however many cycles fail."""
    probe = FakeProbe("redis", scripted("down"))
    h = await Harness([probe], cycles=20, max_failures=0).run()
    assert h.code is None  # cancelled by the harness, not stopped by the loop
    assert probe.checks == 20
    assert probe.closed


async def test_logs_one_line_per_transition_not_per_cycle():
    """Steady cycles log nothing; each connector status change logs one line with kind and reason."""
    probes = [FakeProbe("redis", scripted("ok", "ok", "down", "down", "down", "ok", "ok")),
              FakeProbe("kafka", scripted(*["ok"] * 5, "degraded"))]
    h = await Harness(probes, cycles=8).run()
    body = [line.split("ingest-probe watch: ", 1)[1] for line in h.lines]
    assert body == [
        "cycle 1: ok (redis ok, kafka ok)",
        "cycle 3: redis ok -> down [refused] connection refused by redis.test:1",
        "cycle 6: redis down -> ok",
        "cycle 6: kafka ok -> degraded [missing_topic] topic x missing",
    ]


async def test_verbose_logs_every_cycle_and_quiet_logs_nothing():
    """--verbose adds lines for each cycle; --quiet prints nothing for a healthy run."""
    loud = await Harness([FakeProbe("redis", scripted("ok"))], cycles=4, verbosity=VERBOSE).run()
    assert sum("next in" in line for line in loud.lines) == 4
    quiet = await Harness([FakeProbe("redis", scripted("ok", "down", "ok"))], cycles=4, verbosity=QUIET).run()
    assert quiet.lines == []


async def test_once_runs_one_cycle_and_returns_the_report_exit_code():
    """--once: one check, no sleep, exit code 0 ok / 1 degraded / 2 down."""
    for outcome, code in [("ok", 0), ("degraded", 1), ("down", 2)]:
        probe = FakeProbe("redis", scripted(outcome))
        h = await Harness([probe], once=True, verbosity=NORMAL).run()
        assert (h.code, probe.checks, h.delays, probe.closed) == (code, 1, [], True)


def test_run_watch_preloads_drivers_before_the_loop_starts(monkeypatch, tmp_path):
    """`watch` imports the client libraries before its event loop starts, as `report` does, not in a cycle."""
    import asyncio
    import threading

    import ingest_probe.commands.watch_loop
    import ingest_probe.prober

    calls: list[tuple[bool, bool]] = []  # (on the main thread, inside a running event loop)

    def spy(targets):
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        calls.append((threading.current_thread() is threading.main_thread(), in_loop))

    for module in (ingest_probe.commands.watch_loop, ingest_probe.prober):
        monkeypatch.setattr(module, "preload_drivers", spy)
    options = WatchOptions(interval=60.0, jitter_seconds=0.0, max_failures=0, once=True, handle_signals=False,
                           output=tmp_path / "report.json", verbosity=QUIET)
    assert run_watch(make_settings(), options) == 3  # --once with nothing configured: UNKNOWN
    assert calls[0] == (True, False), calls  # run_watch, before anyio.run
    assert all(not in_loop for _, in_loop in calls), calls  # and the Prober's (worker thread) after it


async def test_outputs_are_rewritten_every_cycle(tmp_path):
    """The JSON report and the Prometheus textfile are replaced each cycle and always parse."""
    out, prom = tmp_path / "r" / "report.json", tmp_path / "metrics.prom"
    seen = []

    script = scripted("ok", "down", "ok")

    async def spy(rec):
        if out.exists():
            seen.append((json.loads(out.read_text())["run"]["check"], prom.read_text()))
        await script(rec)

    h = await Harness([FakeProbe("redis", spy)], cycles=3, output=out, prometheus_file=prom).run()
    assert h.code is None
    assert [check for check, _ in seen] == [1, 2]
    assert json.loads(out.read_text())["run"]["check"] == 3
    for text in [t for _, t in seen] + [prom.read_text()]:
        names = {f.name for f in text_string_to_metric_families(text)}
        assert "ingest_probe_up" in names
    assert not [p for p in tmp_path.rglob("*.tmp")]


async def test_unwritable_output_is_logged_and_watching_continues(tmp_path):
    """A path that cannot be written logs an error each cycle (even quiet) but the loop goes on."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    h = await Harness([FakeProbe("redis", scripted("ok"))], cycles=3, verbosity=QUIET,
                      output=blocker / "report.json").run()
    assert len(h.lines) == 3
    assert all("error: cannot write" in line for line in h.lines)


def _start_watch(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    prom = tmp_path / "m.prom"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest_probe", "watch", "--no-env", "--interval", "0.05",
         "--prometheus-file", str(prom), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while not prom.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc, prom


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_watch_subprocess_with_exit_0(tmp_path, signum):
    """SIGTERM/SIGINT to `python -m ingest_probe watch` exits 0 promptly and says so on stderr."""
    proc, _ = _start_watch(tmp_path)
    time.sleep(0.2)
    sent = time.monotonic()
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert time.monotonic() - sent < 3.0
    assert f"stopped by {signum.name}" in err


def test_cli_watch_once_and_flag_conflicts(tmp_path):
    """`watch --once --output` writes one JSON report (exit 3: nothing configured is UNKNOWN); -q with -v is 3."""
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "ingest_probe", "watch", "--no-env", "--once", "--output",
                           str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert json.loads(out.read_text())["run"]["check"] == 1
    bad = subprocess.run([sys.executable, "-m", "ingest_probe", "watch", "--no-env", "-q", "-v"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3
    assert "contradict" in bad.stderr


# ------------------------------------------------------------------------------------------------- live


class LiveSleep:
    """A real (tiny) sleep that runs ``hooks[cycle]`` in a thread after that cycle; stops after ``stop``."""

    def __init__(self, scope_box, stop, hooks=None):
        self.scope_box = scope_box
        self.stop = stop
        self.hooks = hooks or {}
        self.cycles = 0

    async def __call__(self, delay):
        self.cycles += 1
        hook = self.hooks.get(self.cycles)
        if hook is not None:
            await anyio.to_thread.run_sync(hook)
        if self.cycles >= self.stop:
            self.scope_box[0].cancel()
        await anyio.sleep(delay)


async def _watch_live(settings, options, sleep):
    lines: list[str] = []
    box: list[anyio.CancelScope] = []
    code = None
    with anyio.CancelScope() as scope:
        box.append(scope)
        sleep.scope_box = box
        code = await watch(settings, options, log=lines.append, sleep=sleep)
    return code, lines


@pytest.mark.live
async def test_live_watch_runs_cycles_and_writes_parseable_outputs(pg_server, redis_server, kafka_broker,
                                                                   tmp_path):
    """On the live stack a tiny interval gives ≥ 3 cycles, each writing the JSON and a valid textfile."""
    from live.bench_prober import stack_env

    env = stack_env(pg=pg_server, redis=redis_server, kafka=kafka_broker, name="ip-watch")
    settings = load_settings(environ=env)
    out, prom = tmp_path / "report.json", tmp_path / "ingest.prom"
    options = WatchOptions(interval=0.05, jitter_seconds=0.02, max_failures=3, handle_signals=False,
                           output=out, prometheus_file=prom)
    code, lines = await _watch_live(settings, options, LiveSleep([], stop=3))
    assert code is None  # stopped by the test after 3 cycles, not by the loop
    assert json.loads(out.read_text())["run"]["check"] == 3
    assert json.loads(out.read_text())["status"] == "ok"
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert {s.labels["connector"]: s.value for s in families["ingest_probe_up"].samples} == {
        "timescale": 1, "redis": 1, "kafka": 1,
    }
    assert len(lines) == 1
    assert "cycle 1: ok" in lines[0]


@pytest.mark.live
async def test_live_watch_recovers_when_a_stopped_redis_comes_back(redis_server_factory):
    """Redis stopped after cycle 1, back after cycle 3: both transitions are logged, watching goes on."""
    redis = redis_server_factory()
    settings = load_settings(environ={"REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"})
    options = WatchOptions(interval=0.05, jitter_seconds=0.0, max_failures=5, handle_signals=False)
    sleep = LiveSleep([], stop=5, hooks={1: redis.stop, 3: redis.launch})
    code, lines = await _watch_live(settings, options, sleep)
    assert code is None
    body = [line.split("ingest-probe watch: ", 1)[1] for line in lines]
    assert body[0] == "cycle 1: ok (timescale skipped, redis ok, kafka skipped)"
    assert body[1].startswith("cycle 2: redis ok -> down [refused] connection refused")
    assert f"127.0.0.1:{redis.port}" in body[1]
    assert body[2] == "cycle 4: redis down -> ok"
    assert len(body) == 3


@pytest.mark.live
@pytest.mark.parametrize("flags", [
    ("--max-failures", "3"),
    ("--ingest-schedule", "--extra", "TIMESCALE_INGEST_MAX_FAILURES=3"),
], ids=["max-failures", "ingest-schedule"])
def test_live_watch_cli_stops_with_exit_2_after_consecutive_failures(redis_server_factory, tmp_path, flags):
    """`watch --max-failures 3` (or `--ingest-schedule` with TIMESCALE_INGEST_MAX_FAILURES=3) against a Redis
    that stays down exits 2 after 3 cycles."""
    redis = redis_server_factory()
    redis.stop()
    prom = tmp_path / "m.prom"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ingest_probe", "watch", "--no-env", "--extra",
         f"REDIS_URL=redis://127.0.0.1:{redis.port}/0", *flags,
         "--interval", "0.05", "--prometheus-file", str(prom)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 15
    assert "stopping after 3 consecutive failing cycles" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 2  # the first cycle's line, then the stop
    up = {f.name: f for f in text_string_to_metric_families(prom.read_text())}["ingest_probe_up"]
    assert [s.value for s in up.samples] == [0]


@pytest.mark.live
def test_live_sigterm_cancels_a_hung_cycle_and_exits_0(tmp_path):
    """SIGTERM while a check hangs on a black-holed Redis (timeout 20 s) exits 0 in well under the timeout."""
    from live.net import BlackHole

    with BlackHole() as hole:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest_probe", "watch", "--no-env", "--timeout", "20", "--extra",
             f"REDIS_URL=redis://127.0.0.1:{hole.port}/0", "--output", str(tmp_path / "r.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 20
        while not hole._conns:  # the probe has connected and now waits for an answer
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert time.monotonic() - sent < 3.0
    assert "stopped by SIGTERM" in err
    assert not (tmp_path / "r.json").exists()  # the cancelled cycle wrote nothing


def test_cli_report_splay_sleeps_and_is_recorded_in_the_run_block():
    """`report --connectivity --splay S` sleeps a random 0..S s first and records it as run.splay_s."""
    done = subprocess.run(
        [sys.executable, "-m", "ingest_probe", "report", "--no-env", "--connectivity", "--splay", "0.3",
         "--seed", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 3, done.stderr  # nothing configured: UNKNOWN, the report is still written
    run = json.loads(done.stdout)["run"]
    assert 0.0 <= run["splay_s"] <= 0.3
    assert run["seed"] == 1


async def test_a_probe_bug_is_a_cycle_result_and_the_loop_goes_on():
    """A bug in a probe is that connector's internal result: logged as a transition, the next cycle runs,
    --once exits 3; with debug the traceback is logged too."""
    calls = []

    async def buggy_once(rec):
        calls.append(1)
        if len(calls) == 2:
            raise KeyError("planted")

    h = await Harness([FakeProbe("redis", buggy_once)], cycles=3, debug=True).run()
    assert len(calls) == 3  # the loop went on after the bug
    assert any("redis ok -> down [internal] internal error in the redis probe: KeyError: 'planted'" in line
               for line in h.lines), h.lines
    assert any(line.startswith("Traceback (most recent call last):") for line in h.lines)

    async def bug(rec):
        raise KeyError("planted")

    once = await Harness([FakeProbe("redis", bug)], once=True).run()
    assert once.code == 3
