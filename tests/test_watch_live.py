"""`watch` against real servers: outages it keeps reporting, stable series, SIGHUP reloads, clean stops, flat fds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest
from live.kafka import wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_signals import stop, wait_for_line
from test_watch_monitor import series

from ingest_probe import load_settings, target_from_url
from ingest_probe.commands.watch_loop import QUIET, WatchLoop, WatchOptions
from ingest_probe.defaults import CLOSE_BUDGET

pytestmark = pytest.mark.live


class Hooks:
    """A real (tiny) sleep that runs ``hooks[n]`` in a worker thread after cycle n, stopping after ``stop``."""

    def __init__(self, stop: int, hooks):
        self.stop, self.hooks, self.cycles = stop, hooks, 0
        self.scope: anyio.CancelScope | None = None

    async def __call__(self, delay: float) -> None:
        self.cycles += 1
        for n in (self.cycles, "every"):
            if n in self.hooks:
                await anyio.to_thread.run_sync(self.hooks[n], self.cycles)
        if self.cycles >= self.stop:
            assert self.scope is not None
            self.scope.cancel()
        await anyio.sleep(delay)


async def run_loop(loop: WatchLoop, hooks: Hooks) -> int | None:
    with anyio.CancelScope() as hooks.scope:
        return await loop.main()
    return None


async def test_live_watch_reports_every_down_cycle_recovers_and_keeps_one_series_set(pg_server,
                                                                                   redis_server_factory, tmp_path):
    """Redis stopped after cycle 2 and back after cycle 8: cycles 3-8 (six) say down, nothing stops the loop
    (no --max-failures), cycles 9-10 say ok; the textfile's series set is the same in all ten cycles — cold
    (cycle 1), warm (2), down and recovered."""
    redis = redis_server_factory()
    env = {"TIMESCALEDB_URL": pg_server.dsn(), "TIMESCALEDB_APP": "ip-watch-series",
           "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"}
    out, prom = tmp_path / "r.json", tmp_path / "m.prom"
    seen: list[tuple[dict[str, str], dict[str, bool], set]] = []

    def grab(cycle):
        report = json.loads(out.read_text())
        seen.append(({r["name"]: r["status"] for r in report["connectivity"] if r["configured"]},
                     {r["name"]: r["details"].get("reused_connection") for r in report["connectivity"]
                      if r["configured"]},
                     series(prom.read_text())))

    hooks = Hooks(10, {"every": grab, 2: lambda c: redis.stop(), 8: lambda c: redis.launch()})
    lines: list[str] = []
    loop = WatchLoop(load_settings(environ=env), WatchOptions(interval=0.01, handle_signals=False, output=out,
                                                              prometheus_file=prom), log=lines.append, sleep=hooks)
    assert await run_loop(loop, hooks) is None  # still watching when the test stopped it
    statuses = [s["redis"] for s, _, _ in seen]
    assert statuses == ["ok", "ok", *["down"] * 6, "ok", "ok"]
    assert all(s["timescale"] == "ok" for s, _, _ in seen)
    assert seen[0][1] == {"timescale": False, "redis": False}
    assert seen[1][1] == {"timescale": True, "redis": True}
    sets = [s for _, _, s in seen]
    assert all(s == sets[0] for s in sets), [sorted(s ^ sets[0]) for s in sets]
    connect = (("connector", "redis"), ("phase", "connect"), ("target", "redis"))
    assert ("ingest_probe_phase_seconds", connect) in sets[0]
    body = [line.split("ingest-probe watch: ", 1)[1] for line in lines]
    assert body[1].startswith("cycle 3: redis ok -> down [refused]")
    assert body[2] == "cycle 9: redis down -> ok"
    assert len(body) == 3


def _start_watch(env_file: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ingest_probe", "watch", "--no-env", "--env-file", str(env_file),
                             "--output", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_check(out: Path, proc: subprocess.Popen[str], above: int, timeout: float = 30) -> dict:
    """The JSON report once its check number is above ``above`` (a cycle observed, not slept for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            report = json.loads(out.read_text())
        except (OSError, ValueError):
            report = None
        if report is not None and report["run"]["check"] > above:
            return report
        time.sleep(0.02)
    raise AssertionError(f"no check above {above} within {timeout} s")


def test_live_sighup_reloads_the_env_file_keeping_unchanged_clients_and_refuses_a_bad_one(pg_server,
                                                                                          redis_server_factory,
                                                                                          tmp_path):
    """`watch --env-file F`; F changes the PostgreSQL application name, SIGHUP: one line, the next cycle uses
    it (a new backend with the new name; the old one is gone) while Redis keeps the very same connection
    (CLIENT ID). Then F gets a bad value, SIGHUP: one refusal line, cycles go on with the previous
    configuration and the same connections."""
    redis = redis_server_factory()
    env_file, out = tmp_path / "watch.env", tmp_path / "r.json"
    base = (f"TIMESCALEDB_URL={pg_server.dsn()}\nREDIS_URL=redis://127.0.0.1:{redis.port}/0\n"
            "REDIS_CLIENT_NAME=ip-hup-redis\n")
    env_file.write_text(base + "TIMESCALEDB_APP=ip-hup-1\n")
    proc = _start_watch(env_file, out, "--interval", "0.2")
    try:
        report = _wait_for_check(out, proc, 1)  # two cycles: the warm connections exist and were reused
        assert report["status"] == "ok"
        redis_ids = [c["id"] for c in redis.client_list("ip-hup-redis")]
        old_pg = [b["pid"] for b in pg_server.client_backends() if b["application_name"] == "ip-hup-1"]
        assert len(redis_ids) == 1
        assert len(old_pg) == 1

        env_file.write_text(base + "TIMESCALEDB_APP=ip-hup-2\n")
        proc.send_signal(signal.SIGHUP)
        line = wait_for_line(proc, "reloaded the configuration")[-1]
        assert line.rstrip().endswith("reloaded the configuration: 3 targets, 2 unchanged (clients kept),"
                                      " 1 new or changed, 0 removed")
        reloaded_at = json.loads(out.read_text())["run"]["check"]
        _wait_for_check(out, proc, reloaded_at)
        backends = pg_server.client_backends()
        new_pg = [b["pid"] for b in backends if b["application_name"] == "ip-hup-2"]
        assert [b for b in backends if b["application_name"] == "ip-hup-1"] == []
        assert len(new_pg) == 1
        assert new_pg != old_pg
        assert [c["id"] for c in redis.client_list("ip-hup-redis")] == redis_ids

        env_file.write_text(base + "TIMESCALEDB_APP=ip-hup-3\nREDIS_PORT=abc\n")
        proc.send_signal(signal.SIGHUP)
        refused = wait_for_line(proc, "reload refused")
        assert refused[-1].rstrip().endswith(
            "error: reload refused, keeping the previous configuration: REDIS_PORT='abc' from"
            f" {env_file}:5: expected an integer")
        after = _wait_for_check(out, proc, json.loads(out.read_text())["run"]["check"] + 1)
        assert after["status"] == "ok"
        assert [c["id"] for c in redis.client_list("ip-hup-redis")] == redis_ids
        assert [b["pid"] for b in pg_server.client_backends() if b["application_name"] == "ip-hup-2"] == new_pg
        _, err, _ = stop(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "reload refused" not in err  # exactly one refusal line (read above), none after it
    assert redis.client_list("ip-hup-redis") == []


def _redis_targets(port: int, names: list[str], tag: str) -> str:
    """A targets file of Redis targets on ``port``, each with its own client name ``{tag}-{name}``."""
    return "targets:\n" + "".join(f"  {name}:\n    kind: redis\n    url: redis://127.0.0.1:{port}/0\n"
                                   f"    options: {{REDIS_CLIENT_NAME: {tag}-{name}}}\n" for name in names)


def test_live_sighup_rereads_a_changed_targets_file(redis_server, tmp_path):
    """`watch --targets F`; F changes (keep unchanged, gone removed, new added), SIGHUP: one line, the next
    cycle reports keep and new; keep is probed on its very same Redis connection (CLIENT ID), new has one,
    gone's is closed (not left to the garbage collector: no ResourceWarning)."""
    tag = f"ip-watch-hup-{tmp_path.name[-8:]}"
    path, out = tmp_path / "targets.yaml", tmp_path / "r.json"
    path.write_text(_redis_targets(redis_server.port, ["keep", "gone"], tag))
    proc = subprocess.Popen([sys.executable, "-m", "ingest_probe", "watch", "--no-env", "--targets", str(path),
                             "--output", str(out), "--interval", "0.2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "always::ResourceWarning"})  # fmt: skip
    try:
        report = _wait_for_check(out, proc, 1)  # two cycles: the warm connections exist and were reused
        assert [(r["name"], r["status"]) for r in report["connectivity"]] == [("keep", "ok"), ("gone", "ok")]
        [kept] = [c["id"] for c in redis_server.client_list(f"{tag}-keep")]
        assert len(redis_server.client_list(f"{tag}-gone")) == 1

        path.write_text(_redis_targets(redis_server.port, ["keep", "new"], tag))
        proc.send_signal(signal.SIGHUP)
        lines = wait_for_line(proc, "reloaded the configuration")
        assert lines[-1].rstrip().endswith("reloaded the configuration: 2 targets, 1 unchanged (clients kept),"
                                           " 1 new or changed, 1 removed")
        report = _wait_for_check(out, proc, json.loads(out.read_text())["run"]["check"])
        assert [(r["name"], r["status"]) for r in report["connectivity"]] == [("keep", "ok"), ("new", "ok")]
        assert wait_until(lambda: redis_server.client_list(f"{tag}-gone") == [], timeout=5)
        assert [c["id"] for c in redis_server.client_list(f"{tag}-keep")] == [kept]
        assert len(redis_server.client_list(f"{tag}-new")) == 1
        _, err, _ = stop(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "ResourceWarning" not in "".join(lines) + err
    assert wait_until(lambda: redis_server.client_list(f"{tag}-keep") + redis_server.client_list(f"{tag}-new") == [],
                      timeout=5)


def test_live_sigterm_mid_sleep_stops_with_complete_files(tmp_path):
    """SIGTERM while watch sleeps between cycles: exit 0 at once, one line, both files whole, no temp file."""
    from live.net import free_port

    env_file, out, prom = tmp_path / "w.env", tmp_path / "r.json", tmp_path / "m.prom"
    env_file.write_text(f"REDIS_URL=redis://127.0.0.1:{free_port()}/0\n")
    proc = _start_watch(env_file, out, "--prometheus-file", str(prom), "--interval", "600")
    wait_for_line(proc, "cycle 1: down")
    _, err, took = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    assert err.strip().splitlines()[-1].endswith("ingest-probe watch: stopped by SIGTERM; clients closed")
    assert took < 5, took
    assert json.loads(out.read_text())["status"] == "down"
    assert "ingest_probe_up" in {f.name for f in text_string_to_metric_families(prom.read_text())}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.prom", "r.json", "w.env"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_live_signal_mid_write_finishes_the_file_then_stops(tmp_path, signum):
    """A signal sent from inside the report file's fsync (so it lands mid-write, in the writer thread): the
    write completes and is renamed into place, then watch stops (exit 0); no temp file is left."""
    from live.net import free_port

    out, prom = tmp_path / "r.json", tmp_path / "m.prom"
    out.write_text("old\n")
    script = textwrap.dedent(f"""
        import os
        real_fsync = os.fsync
        def hook(fd):
            os.fsync = real_fsync
            os.kill(os.getpid(), {int(signum)})
            real_fsync(fd)
        os.fsync = hook
        from ingest_probe.commands.cli import main
        main(["watch", "--no-env", "--extra", "REDIS_URL=redis://127.0.0.1:{free_port()}/0", "--output", {str(out)!r},
              "--prometheus-file", {str(prom)!r}, "--interval", "600"])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(f"stopped by {signum.name}; clients closed")
    assert json.loads(out.read_text())["status"] == "down"  # the whole new report, not "old" nor half of it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # the cycle stopped before the textfile


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_live_fds_stay_flat_and_cycles_keep_their_pace_over_50_cycles(pg_server, redis_server, kafka_broker,
                                                                           tmp_path):
    """Healthy, refused and black-holed targets of each kind, 50 fast cycles: the process holds the same number
    of descriptors at cycle 50 as at cycle 5, every cycle reports every target, and no cycle takes longer than
    its deadline plus the close budget."""
    from live.net import Unaccepted, free_port

    timeout = 0.3
    with Unaccepted() as hole:
        urls = {
            "timescale": (pg_server.dsn(), f"postgresql://u:p@127.0.0.1:{free_port()}/db",
                          f"postgresql://u:p@127.0.0.1:{hole.port}/db"),
            "redis": (f"redis://127.0.0.1:{redis_server.port}/0", f"redis://127.0.0.1:{free_port()}/0",
                      f"redis://127.0.0.1:{hole.port}/0"),
            "kafka": (kafka_broker.bootstrap, f"127.0.0.1:{free_port()}", f"127.0.0.1:{hole.port}"),
        }
        targets = [target_from_url(kind, url, name=f"{kind}-{state}")[0]
                   for kind, trio in urls.items() for state, url in zip(("ok", "refused", "hole"), trio, strict=True)]
        out = tmp_path / "r.json"
        fds: dict[int, int] = {}
        reports: list[dict] = []

        def sample(cycle):
            reports.append(json.loads(out.read_text()))
            if cycle in (5, 50):
                fds[cycle] = _fds()

        hooks = Hooks(50, {"every": sample})
        loop = WatchLoop(load_settings(environ={}), WatchOptions(interval=0.01, timeout=timeout, jitter=0.0,
                                                                 output=out, handle_signals=False, verbosity=QUIET),
                         targets=targets, sleep=hooks)
        await run_loop(loop, hooks)
    assert fds[50] == fds[5], fds
    assert len(reports) == 50
    for report in reports:
        status = {r["name"]: r["status"] for r in report["connectivity"]}
        assert status == {f"{kind}-{state}": "ok" if state == "ok" else "down"
                          for kind in urls for state in ("ok", "refused", "hole")}, status
        assert report["run"]["duration_ms"] / 1000.0 <= timeout + CLOSE_BUDGET, report["run"]
