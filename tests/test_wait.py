"""`wait`: backoff, state-change lines, the readiness policy, timeout (exit 2) and exec of COMMAND (same pid)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio.lowlevel
import pytest
from fakes import FakeProbe, scripted, target_of

from ingest_probe.commands.wait import BACKOFF_JITTER, backoff, not_ready, wait_until_ready
from ingest_probe.defaults import WAIT_MAX_INTERVAL
from ingest_probe.errors import ProbeTimeoutError, RefusedError
from ingest_probe.results import ProbeResult, Status

CLI = [sys.executable, "-m", "ingest_probe", "wait", "--no-env"]


def result(status: Status) -> ProbeResult:
    return ProbeResult(name=status.value, configured=status is not Status.SKIPPED, status=status)


@pytest.mark.parametrize(("fail_on", "passing"), [
    ("degraded", {Status.OK, Status.SKIPPED}),
    ("down", {Status.OK, Status.SKIPPED, Status.DEGRADED, Status.STARTING}),
])
def test_a_target_is_ready_as_the_exit_policy_says(fail_on, passing):
    """degraded (default): only ok is ready; down: everything but down is; a skipped target never blocks."""
    for status in (s for s in Status if s is not Status.UNKNOWN):
        assert (not_ready([result(status)], fail_on) == []) is (status in passing), status
    assert not_ready([result(Status.OK), result(Status.DOWN), result(Status.SKIPPED)], fail_on) == [
        result(Status.DOWN)]


def test_backoff_doubles_from_the_interval_up_to_the_cap_with_jitter():
    """Pause n is in [(1-J)·d, d], d = interval·2^(n-1) capped at 5 s (or at the interval when larger);
    a seeded generator reproduces it."""
    rng = random.Random(4)
    for attempt in range(1, 40):
        d = min(WAIT_MAX_INTERVAL, 0.1 * 2 ** (attempt - 1))
        pauses = [backoff(attempt, 0.1, rng) for _ in range(200)]
        assert all((1 - BACKOFF_JITTER) * d <= p <= d for p in pauses), attempt
        assert max(pauses) - min(pauses) > 0.1 * d  # jittered, not a constant
    assert backoff(1, 9.0, rng) <= 9.0
    assert backoff(3, 9.0, rng) > 6.0
    assert [backoff(n, 1.0, random.Random(2)) for n in (1, 2)] == [backoff(n, 1.0, random.Random(2)) for n in (1, 2)]


class Clock:
    """A clock that only the fake sleep moves."""

    def __init__(self):
        self.now = 100.0
        self.pauses: list[float] = []

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.pauses.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def _wait(probes, **kw):
    clock, lines = Clock(), []
    targets = [target_of(p) for p in probes]
    waited = await wait_until_ready(targets, probes={t.name: p for t, p in zip(targets, probes, strict=True)},
                                    probe_timeout=2.0, log=lines.append, rng=random.Random(1), sleep=clock.sleep,
                                    clock=clock, **kw)
    return waited, lines, clock


async def test_waits_until_ready_with_one_line_per_state_change():
    """down, down (timeout), down (timeout), ok: lines for the first state, the change of kind and the
    recovery — not for repeats, not for a target ready from the start — then 'ready'."""
    calls = []

    async def behaviour(rec):
        calls.append(1)
        if len(calls) == 1:
            raise RefusedError(f"connection refused by {rec.endpoint}")
        if len(calls) in (2, 3):
            raise ProbeTimeoutError("no answer from redis.test:1")

    redis, kafka = FakeProbe("redis", behaviour), FakeProbe("kafka")
    waited, lines, clock = await _wait([redis, kafka], interval=0.5)
    assert waited.ready
    assert waited.attempts == 4
    assert lines == [
        "redis down [refused] connection refused by redis.test:1 (attempt 1, 0.00 s)",
        f"redis down -> down [timeout] no answer from redis.test:1 (attempt 2, {clock.pauses[0]:.2f} s)",
        f"redis down -> ok (attempt 4, {sum(clock.pauses):.2f} s)",
        f"ready after {sum(clock.pauses):.2f} s (4 attempts)",
    ]
    rng = random.Random(1)
    assert clock.pauses == [backoff(n, 0.5, rng) for n in (1, 2, 3)]
    assert kafka.checks == 4
    assert redis.closed
    assert kafka.closed


async def test_gives_up_at_the_limit_with_the_last_result_of_each_target():
    """A target that stays down: not ready once `limit` has passed (the last pause is cut to fit), with its
    last result; pauses never go past the limit."""
    waited, lines, clock = await _wait([FakeProbe("redis", scripted("down"))], limit=3.0, interval=1.0)
    assert not waited.ready
    assert waited.results["redis"].error_kind == "refused"
    assert sum(clock.pauses) == pytest.approx(3.0)
    rng = random.Random(1)
    assert clock.pauses[:2] == [backoff(n, 1.0, rng) for n in (1, 2)]
    assert len(lines) == 1  # the first state; no repeats


async def test_fail_on_down_lets_a_degraded_target_pass():
    """--fail-on down: degraded is ready at once; the default policy keeps waiting for ok."""
    waited, _, _ = await _wait([FakeProbe("kafka", scripted("degraded"))], fail_on="down")
    assert waited.ready
    assert waited.attempts == 1
    waited, lines, _ = await _wait([FakeProbe("kafka", scripted("degraded"))], limit=2.0)
    assert not waited.ready
    assert waited.attempts > 1
    assert lines[0].startswith("kafka degraded [missing_topic]")


def test_cli_nothing_configured_is_exit_3():
    """Nothing configured: nothing to wait for, one line, exit 3."""
    done = subprocess.run(CLI, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "ingest-probe: error: nothing to wait for: no connector is configured (TIMESCALEDB_URL, REDIS_URL,"
        " KAFKA_BROKERS, ...)"]
    assert done.stdout == ""


def test_cli_times_out_with_exit_2_and_the_last_result_of_each_target_not_ready():
    """A refused Redis: exit 2 after --timeout, a line for its first state and one with its last result."""
    from live.net import free_port

    port = free_port()
    done = subprocess.run([*CLI, "--extra", f"REDIS_URL=redis://127.0.0.1:{port}/0", "--timeout", "0.5",
                           "--interval", "0.05", "--", "false"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("ingest-probe wait: redis down [refused] connection refused")
    assert len(lines) == 2
    assert lines[1].startswith("ingest-probe wait: not ready after 0.5")
    assert f"redis down [refused] connection refused by Redis at 127.0.0.1:{port}" in lines[1]
    assert done.stdout == ""


@pytest.mark.live
def test_live_a_black_holed_target_cut_by_the_timeout_is_named(tmp_path):
    """--timeout shorter than the probe deadline: the first attempt is cut, the target is named as giving no
    answer, exit 2 — in about --timeout, not the 10 s probe deadline."""
    from live.net import BlackHole

    with BlackHole() as hole:
        started = time.monotonic()
        done = subprocess.run([*CLI, "--extra", f"REDIS_URL=redis://127.0.0.1:{hole.port}/0", "--timeout", "0.5",
                               "--probe-timeout", "10"], capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert re.fullmatch(r"ingest-probe wait: not ready after 0\.5\d s: redis gave no answer yet \(first check cut"
                        r" by --timeout\)", line), line
    assert took < 8, took


def _child(tmp_path: Path) -> list[str]:
    """A COMMAND that reports its pid, its open descriptors (probed without opening any) and its SIGHUP
    disposition, then exits 7."""
    script = tmp_path / "child.py"
    script.write_text(
        "import os, signal, sys\n"
        "def is_open(fd):\n"
        "    try:\n        os.fstat(fd)\n        return True\n"
        "    except OSError:\n        return False\n"
        "hup = signal.getsignal(signal.SIGHUP)\n"
        "assert hup in (signal.SIG_DFL, signal.SIG_IGN), hup\n"
        "print(os.getpid(), [fd for fd in range(1024) if is_open(fd)], hup is signal.SIG_DFL, flush=True)\n"
        "sys.exit(7)\n"
    )
    return [sys.executable, "-I", "-S", str(script)]


@pytest.mark.live
@pytest.mark.parametrize("nohup", [False, True], ids=["plain", "nohup"])
def test_live_wait_returns_when_a_late_redis_comes_up_then_execs_the_command(redis_server_factory, tmp_path, nohup):
    """Redis started after `wait` has seen it refused: wait notices on a later attempt, closes its client and
    execs COMMAND — the same pid, only fds 0-2 inherited, SIGHUP as ingest-probe inherited it (default, or
    ignored under nohup), COMMAND's exit code."""
    from test_signals import wait_for_line

    def ignore_hup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    redis = redis_server_factory()
    redis.stop()
    proc = subprocess.Popen([*CLI, "--extra", f"REDIS_URL=redis://127.0.0.1:{redis.port}/0", "--interval", "0.1",
                             "--timeout", "60", "--", *_child(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ignore_hup if nohup else None)
    try:
        wait_for_line(proc, "redis down [refused]")
        redis.launch()
        up = time.monotonic()
        out, err = proc.communicate(timeout=60)
        after = time.monotonic() - up
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 7, err
    pid, fds, hup_default = out.split(" ", 1)[0], out.split(" ", 1)[1].rsplit(" ", 1)[0], out.split()[-1]
    assert int(pid) == proc.pid  # exec, not a child process
    assert fds == "[0, 1, 2]"
    assert hup_default == ("False" if nohup else "True")  # ignored stays ignored, else the default
    lines = err.strip().splitlines()
    assert lines[-2].startswith("ingest-probe wait: redis down -> ok (attempt ")
    assert lines[-1].startswith("ingest-probe wait: ready after ")
    assert after < WAIT_MAX_INTERVAL + 3, after  # the next attempt, not the --timeout
    assert redis.client_list() == []  # the probe's connection was closed before the exec


@pytest.mark.live
def test_live_signals_after_the_exec_are_the_commands(redis_server, tmp_path):
    """Once exec'd, SIGTERM reaches COMMAND itself (here: killed by it, as Python's default is)."""
    script = tmp_path / "sleeper.py"
    script.write_text("import sys, time\nprint('child up', flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([*CLI, "--extra", f"REDIS_URL=redis://127.0.0.1:{redis_server.port}/0", "--",
                             sys.executable, "-I", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "child up\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGTERM, err  # not 143: ingest-probe's handler is gone


@pytest.mark.live
def test_live_a_command_that_cannot_run_is_126_or_127(redis_server_factory, tmp_path):
    """A ready wait whose COMMAND does not exist exits 127 (not executable: 126), one line."""
    redis = redis_server_factory()
    url = f"REDIS_URL=redis://127.0.0.1:{redis.port}/0"
    missing = subprocess.run([*CLI, "--extra", url, "--", str(tmp_path / "nope")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 127, missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith(f"ingest-probe: error: cannot run {tmp_path}/nope:")
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    denied = subprocess.run([*CLI, "--extra", url, "--", str(plain)], capture_output=True, text=True, timeout=60)
    assert denied.returncode == 126, denied.stderr
    assert os.path.exists(plain)


@pytest.mark.parametrize("command", ["wait", "watch"])
def test_help_says_the_defaults_and_exit_codes_and_imports_no_client_library(command):
    """`wait --help` and `watch --help` document their defaults and exit codes, importing no client library."""
    from fakes import help_in_a_fresh_interpreter

    text, imported = help_in_a_fresh_interpreter(command)
    assert imported == "[]"
    flat = " ".join(text.split())
    if command == "wait":
        assert "exec: same pid" in flat
        assert "127 COMMAND not found" in flat
        assert "[default: (60s)]" in flat
    else:
        assert "[default: 60; with --ingest-schedule: TIMESCALE_INGEST_INTERVAL_SECONDS]" in flat
        assert "SIGHUP reloads the configuration" in flat


def test_cli_sigterm_while_waiting_exits_143_with_clients_closed(tmp_path):
    """SIGTERM during the wait (between attempts): exit 143, the documented line, COMMAND never run."""
    from live.net import free_port
    from test_signals import stop, wait_for_line

    proc = subprocess.Popen([*CLI, "--extra", f"REDIS_URL=redis://127.0.0.1:{free_port()}/0", "--interval", "5",
                             "--", "touch", str(tmp_path / "never")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_line(proc, "redis down [refused]")
    out, err, took = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "ingest-probe: error: terminated by SIGTERM; every connection was closed"
    assert out == ""
    assert took < 5, took
    assert not (tmp_path / "never").exists()
