"""`watch` as a monitor (fakes, fake sleep): never gives up, stable series, failed cycles, reloads."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import anyio
import anyio.lowlevel
import pytest
from fakes import FakeProbe, make_settings, scripted, target_of
from prometheus_client.parser import text_string_to_metric_families

from ingest_probe import ConfigError, Prober
from ingest_probe.commands.watch_loop import NORMAL, QUIET, WatchLoop, WatchOptions


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """A textfile's series set: each sample's name and labels (values left out)."""
    return {(s.name, tuple(sorted(s.labels.items())))
            for f in text_string_to_metric_families(text) for s in f.samples}


class Run:
    """A WatchLoop over fake probes with a fake sleep: ``hooks[n]`` runs after cycle n; stops after ``cycles``."""

    def __init__(self, probes, *, cycles, hooks=None, reload=None, **options):
        self.probes = probes
        self.cycles = cycles
        self.hooks = hooks or {}
        self.delays: list[float] = []
        self.lines: list[str] = []
        opts = {"interval": 60.0, "handle_signals": False}
        opts.update(options)
        self.targets = [target_of(p) for p in probes]
        self.loop = WatchLoop(make_settings(), WatchOptions(**opts), log=self.lines.append, targets=self.targets,
                              probes={t.name: p for t, p in zip(self.targets, probes, strict=True)},
                              sleep=self.sleep, rng=random.Random(7), reload=reload)
        self.code: int | None = None

    async def sleep(self, delay):
        self.delays.append(delay)
        hook = self.hooks.get(len(self.delays))
        if hook is not None:
            hook(self)
        if len(self.delays) >= self.cycles:
            self.scope.cancel()
        await anyio.lowlevel.checkpoint()

    async def go(self):
        with anyio.CancelScope() as self.scope:
            self.code = await self.loop.main()
        return self


def bodies(lines):
    return [line.split("ingest-probe watch: ", 1)[1] for line in lines]


async def test_a_target_down_for_100_cycles_is_reported_100_times_and_watching_goes_on(tmp_path):
    """No --max-failures: 100 down cycles are 100 checks and 100 textfiles saying down; nothing stops the loop
    and only the first cycle is logged (no transition after it)."""
    prom = tmp_path / "m.prom"
    downs = []

    def seen(run):
        up = {s.name: s.value for f in text_string_to_metric_families(prom.read_text()) for s in f.samples
              if s.name == "ingest_probe_up"}
        downs.append(up == {"ingest_probe_up": 0.0})

    probe = FakeProbe("redis", scripted("down"))
    run = await Run([probe], cycles=100, prometheus_file=prom, hooks={n: seen for n in range(1, 101)}).go()
    assert run.code is None  # still watching when the test stopped it
    assert probe.checks == 100
    assert downs == [True] * 100
    assert bodies(run.lines) == ["cycle 1: down (redis down)"]


async def test_series_set_is_the_same_in_every_cycle_cold_warm_down_and_back(tmp_path):
    """The textfile's series (names and labels) are identical across a cold cycle, warm ones, a down one and
    the recovery: the connect phase not run on a warm connection is NaN, not missing, and so is the TLS
    certificate's expiry in the cycle that never reached the handshake."""
    prom = tmp_path / "m.prom"
    sets, texts = [], []

    def grab(run):
        texts.append(prom.read_text())
        sets.append(series(texts[-1]))

    outcome = scripted("ok", "ok", "down", "ok")

    async def over_tls(rec):
        await outcome(rec)
        rec.tls_not_after = 2_000_000_000.0  # the handshake's certificate, seen only when the server answers

    probes = [FakeProbe("redis", over_tls), FakeProbe("kafka", scripted("ok"))]
    await Run(probes, cycles=4, prometheus_file=prom, hooks={n: grab for n in range(1, 5)}).go()
    assert len(sets) == 4
    assert all(s == sets[0] for s in sets), [s ^ sets[0] for s in sets]
    connect = (("connector", "redis"), ("phase", "connect"), ("target", "redis"))
    assert ("ingest_probe_phase_seconds", connect) in sets[0]
    assert 'ingest_probe_phase_seconds{target="kafka",connector="kafka",phase="connect"} NaN' in texts[1]  # warm
    assert 'ingest_probe_tls_cert_not_after_timestamp_seconds{target="redis",connector="redis"} 2000000000' in texts[1]
    assert 'ingest_probe_tls_cert_not_after_timestamp_seconds{target="redis",connector="redis"} NaN' in texts[2]  # down


async def test_a_cycle_that_cannot_run_is_logged_written_as_failed_and_the_loop_goes_on(tmp_path, monkeypatch):
    """A bug in the check machinery (not in a probe): one error line, the textfile says run_success 0 with no
    per-target series, it counts as a failure, and the next cycle runs normally."""
    prom = tmp_path / "m.prom"
    texts = []
    real = Prober.report
    calls = []

    async def flaky(self, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("machinery broke")
        return await real(self, **kw)

    monkeypatch.setattr(Prober, "report", flaky)
    probe = FakeProbe("redis", scripted("ok"))
    run = await Run([probe], cycles=3, prometheus_file=prom, verbosity=QUIET,
                    hooks={n: lambda r: texts.append(prom.read_text()) for n in range(1, 4)}).go()
    assert run.code is None
    assert [line for line in bodies(run.lines)] == [
        "error: cycle 2 could not run: internal error: RuntimeError: machinery broke"]
    names = [{f.name for f in text_string_to_metric_families(t)} for t in texts]
    assert "ingest_probe_up" in names[0]
    assert "ingest_probe_up" in names[2]
    assert names[1] == {"ingest_probe_run_success", "ingest_probe_last_run_timestamp_seconds"}
    assert "ingest_probe_run_success 0" in texts[1]
    assert "ingest_probe_run_success 1" in texts[2]


async def test_a_failed_cycle_counts_towards_max_failures_and_once_exits_3(monkeypatch):
    """--max-failures counts cycles that could not run; --once with such a cycle exits 3."""
    async def broken(self, **kw):
        raise RuntimeError("machinery broke")

    monkeypatch.setattr(Prober, "report", broken)
    stopped = await Run([FakeProbe("redis")], cycles=10, max_failures=2, verbosity=QUIET).go()
    assert stopped.code == 2
    once = await Run([FakeProbe("redis")], cycles=10, once=True, verbosity=QUIET).go()
    assert once.code == 3


async def test_reload_swaps_targets_keeps_unchanged_clients_and_starts_the_next_cycle_at_once(tmp_path):
    """A reload requested during the pause ends it: the loader runs, unchanged targets keep their probe
    (no reconnect), a removed one is closed, the next cycle probes the new set; one line says so."""
    out = tmp_path / "r.json"
    redis, kafka, timescale = FakeProbe("redis"), FakeProbe("kafka"), FakeProbe("timescale")
    settings = make_settings()
    loaded = []

    def loader():
        loaded.append(1)
        return settings, [run.targets[0], target_of(timescale)]

    def ask(r):
        r.loop.probes = {"redis": redis, "timescale": timescale}  # what the fresh configuration maps to
        r.loop.request_reload()

    reports = []
    run = Run([redis, kafka], cycles=3, output=out, reload=loader,
              hooks={1: ask, 2: lambda r: reports.append(json.loads(out.read_text()))})
    await run.go()
    assert loaded == [1]
    assert [r["name"] for r in reports[0]["connectivity"]] == ["redis", "timescale"]
    assert (redis.connects, redis.checks, redis.closed) == (1, 3, True)  # kept warm; closed at the end
    assert kafka.closed
    assert kafka.checks == 1
    assert timescale.checks == 2
    assert any("reloaded the configuration: 2 targets, 1 unchanged (clients kept), 1 new or changed, 1 removed"
               in line for line in run.lines), run.lines
    # the reload ended the first pause: the second sleep is a fresh full interval
    assert run.delays == [60.0, 60.0, 60.0]


@pytest.mark.parametrize("problem", [ConfigError("REDIS_PORT='x' from prod.env:3: expected an integer"),
                                     KeyError("bug in the loader")], ids=["config-error", "bug"])
async def test_a_bad_reload_keeps_the_configuration_with_one_line(problem):
    """A configuration that does not load (or a loader that crashes) is refused with one error line; the old
    targets keep being probed with their warm clients and the loop goes on."""
    def loader():
        raise problem

    redis = FakeProbe("redis")
    run = await Run([redis], cycles=4, reload=loader, verbosity=NORMAL,
                    hooks={2: lambda r: r.loop.request_reload()}).go()
    refused = [b for b in bodies(run.lines) if "reload" in b]
    assert len(refused) == 1
    assert refused[0].startswith("error: reload refused, keeping the previous configuration: ")
    assert str(problem).strip("'") in refused[0]
    assert (redis.checks, redis.connects, redis.closed) == (3, 1, True)
    assert run.code is None
    # the refused reload cut the second pause short; the pause went on for what was left of it
    assert len(run.delays) == 4
    assert run.delays[1] == 60.0
    assert 59.0 < run.delays[2] <= 60.0
    assert run.delays[3] == 60.0


async def test_reload_requested_mid_cycle_runs_before_the_pause():
    """A reload asked for while a cycle runs is done when that cycle ends, and its pause is skipped: the next
    cycle starts at once with the new configuration."""
    settings = make_settings()
    holder: dict[str, Run] = {}

    async def ask_during_first_check(rec):
        if redis.checks == 1:
            holder["run"].loop.request_reload()

    redis = FakeProbe("redis", ask_during_first_check)
    loads = []
    run = Run([redis], cycles=2, reload=lambda: loads.append(redis.checks) or (settings, holder["run"].targets))
    holder["run"] = run
    await run.go()
    assert loads == [1]  # after the first check, before any pause
    assert redis.checks == 3
    assert len(run.delays) == 2


# ------------------------------------------------------------------------------------- the command line

def _old_textfile(path):
    path.write_text('# TYPE ingest_probe_up gauge\ningest_probe_up{target="redis",connector="redis"} 1\n')


@pytest.mark.parametrize("argv", [
    ["watch", "--prometheus-file", "{prom}"],
    ["report", "--connectivity", "--format", "prometheus", "--output", "{prom}"],
], ids=["watch", "report"])
def test_a_config_error_replaces_the_textfile_with_run_success_0(tmp_path, argv):
    """A configuration that does not load: exit 3 with one error line, and the textfile no longer says
    `up 1` — it says the run failed (run_success 0, with the time), nothing per target."""
    prom, env = tmp_path / "m.prom", tmp_path / "bad.env"
    _old_textfile(prom)
    env.write_text("REDIS_PORT=abc\n")
    done = subprocess.run([sys.executable, "-m", "ingest_probe", argv[0], "--no-env", "--env-file", str(env),
                           *[a.format(prom=prom) for a in argv[1:]]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        f"ingest-probe: error: REDIS_PORT='abc' from {env}:1: expected an integer"]
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert set(families) == {"ingest_probe_run_success", "ingest_probe_last_run_timestamp_seconds"}
    assert families["ingest_probe_run_success"].samples[0].value == 0
    assert abs(families["ingest_probe_last_run_timestamp_seconds"].samples[0].value - time.time()) < 120
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.env", "m.prom"]


def test_a_config_error_writes_nothing_on_stdout_or_for_other_formats(tmp_path):
    """On stdout a failed run is exit 3 and an empty stdout (as before); a JSON --output is left alone."""
    env, out = tmp_path / "bad.env", tmp_path / "r.json"
    env.write_text("REDIS_PORT=abc\n")
    out.write_text("{}")
    base = [sys.executable, "-m", "ingest_probe", "report", "--no-env", "--env-file", str(env), "--connectivity"]
    to_stdout = subprocess.run([*base, "--format", "prometheus"], capture_output=True, text=True, timeout=60)
    assert (to_stdout.returncode, to_stdout.stdout) == (3, "")
    as_json = subprocess.run([*base, "--output", str(out)], capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 3
    assert out.read_text() == "{}"


def test_sighup_does_not_kill_other_commands(tmp_path):
    """SIGHUP (meant for a `watch`) is ignored by `report`: it goes on, and SIGTERM then ends it as usual."""
    from test_signals import start, stop, wait_for_line

    proc = start("-m", "ingest_probe", "report", "--no-env", "--connectivity", "--splay", "600", "--debug",
                 "--output", str(tmp_path / "r.json"))
    wait_for_line(proc, "--splay: sleeping")
    proc.send_signal(signal.SIGHUP)  # delivered before the SIGTERM below: at its default, it would kill (-1)
    out, err, _ = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "ingest-probe: error: terminated by SIGTERM; every connection was closed"
