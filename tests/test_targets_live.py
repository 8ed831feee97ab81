"""Many targets end to end against the suite's real servers: --target services (one broken), a --targets file of
300 endpoints, --only/--skip, --concurrency, --label in Prometheus textfiles, and watch/serve on a targets file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from live.net import free_port
from prometheus_client.parser import text_string_to_metric_families

from ingest_probe.engine.run import run_targets
from ingest_probe.engine.supervisor import TaskSupervisor
from ingest_probe.results import Status
from ingest_probe.settings.targets import target_from_url

pytestmark = pytest.mark.live

APP = "ingest-probe-many"
SHARDS = 300


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingest_probe", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


@pytest.fixture
def services(tmp_path, pg_server, redis_server, kafka_broker) -> tuple[Path, Path]:
    """good.env: every connector healthy; bad.env: PostgreSQL healthy, Redis on a port nothing listens on."""
    pg = {"TIMESCALEDB_HOST": pg_server.host, "TIMESCALEDB_PORT": str(pg_server.port),
          "TIMESCALEDB_USER": pg_server.user, "TIMESCALEDB_PASSWORD": pg_server.password,
          "TIMESCALEDB_DB": pg_server.database, "TIMESCALEDB_APP": APP}  # fmt: skip
    good = env_file(tmp_path / "good.env", {**pg, "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
                                            "KAFKA_BROKERS": kafka_broker.bootstrap})
    bad = env_file(tmp_path / "bad.env", {**pg, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    return good, bad


def shards_file(path: Path, port: int, count: int = SHARDS) -> Path:
    """A targets file of ``count`` Redis endpoints: the one local Redis, databases 0..15 in turn."""
    lines = ["targets:"]
    for i in range(count):
        lines += [f"  shard-{i:03d}:", "    kind: redis", f"    url: redis://127.0.0.1:{port}/{i % 16}",
                  f"    labels: {{shard: \"{i}\"}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_services_one_broken_exit_2_and_a_row_per_target(services, pg_server):
    """--target good=... --target bad=...: each env file read on its own; every target named NAME/KIND with
    label service=NAME, in order; the refused Redis of bad makes the run exit 2 (worst wins), one stderr line."""
    good, bad = services
    proc = cli("report", "--no-env", "--target", f"good={good}", "--target", f"bad={bad}", "--connectivity",
               "-f", "json", "-t", "10s")
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert [(r["name"], r["kind"], r["labels"], r["status"]) for r in doc["connectivity"]] == [
        ("good/timescale", "timescale", {"service": "good"}, "ok"),
        ("good/redis", "redis", {"service": "good"}, "ok"),
        ("good/kafka", "kafka", {"service": "good"}, "ok"),
        ("bad/timescale", "timescale", {"service": "bad"}, "ok"),
        ("bad/redis", "redis", {"service": "bad"}, "down"),
    ]
    assert doc["status"] == "down"
    assert [m["name"] for m in doc["manifest"]] == [r["name"] for r in doc["connectivity"]]
    assert proc.stderr.splitlines() == [line for line in proc.stderr.splitlines() if line.startswith(
        "ingest-probe: bad/redis down [refused]")]
    markdown = cli("report", "--no-env", "--target", f"good={good}", "--target", f"bad={bad}", "--connectivity",
                   "-f", "markdown", "--sections", "connectivity", "-t", "10s")
    assert markdown.returncode == 2
    rows = [line for line in markdown.stdout.splitlines() if line.startswith("| ") and "/" in line.split("|")[1]]
    assert [row.split("|")[1].strip().strip("`") for row in rows] == [r["name"] for r in doc["connectivity"]]
    assert pg_server.count_connections(APP) == 0


def test_only_and_skip_pick_targets_by_name_and_kind_with_globs(services):
    good, bad = services
    proc = cli("report", "--no-env", "--target", f"good={good}", "--target", f"bad={bad}", "--connectivity",
               "-f", "json", "--only", "good/*", "--only", "*/redis", "--skip", "kafka", "--skip", "bad/*")
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)["connectivity"]] == ["good/timescale", "good/redis"]


def test_a_targets_file_of_300_endpoints_gives_300_results(tmp_path, redis_server):
    """300 Redis URLs in one file (one server, 16 databases): 300 ok results, unique names in file order, each
    with its label; the cap is in the run block."""
    path = shards_file(tmp_path / "shards.yaml", redis_server.port)
    proc = cli("report", "--no-env", "--targets", str(path), "--connectivity", "-f", "json", "--concurrency", "50",
               "--label", "env=test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    results = doc["connectivity"]
    assert [r["name"] for r in results] == [f"shard-{i:03d}" for i in range(SHARDS)]
    assert {r["status"] for r in results} == {"ok"}
    assert results[17]["labels"] == {"env": "test", "shard": "17"}
    assert doc["run"]["concurrency"] == 50
    assert doc["run"]["counts"]["finished"] == SHARDS


async def _probe_sampling_fds(targets, concurrency: int) -> tuple[list, int, int]:
    """Probe ``targets`` under a cap of ``concurrency``: the results, the descriptors open before (in the loop)
    and their peak while probing (sampled at every turn of the loop)."""
    baseline = peak = len(os.listdir("/proc/self/fd"))

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, len(os.listdir("/proc/self/fd")))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        results, _ = await run_targets(targets, TaskSupervisor(timeout=20.0, concurrency=concurrency, seed=1))
        tg.cancel_scope.cancel()
    return results, baseline, peak


@pytest.mark.parametrize("concurrency", [1, 100])
def test_the_cap_bounds_descriptors_and_every_target_still_answers(redis_server, concurrency):
    """300 targets with --concurrency 1 and 100: all ok, one connection per target, and never more than the cap of
    sockets open at once (each probe holds one)."""
    targets = [target_from_url("redis", f"redis://127.0.0.1:{redis_server.port}/{i % 16}", name=f"s{i}")[0]
               for i in range(SHARDS)]
    before_connections = int(redis_server.info()["total_connections_received"])
    before = len(os.listdir("/proc/self/fd"))
    results, baseline, peak = anyio.run(_probe_sampling_fds, targets, concurrency)
    assert [r.name for r in results] == [t.name for t in targets]
    assert {r.status for r in results} == {Status.OK}
    assert peak - baseline <= concurrency, (peak, baseline)
    assert len(os.listdir("/proc/self/fd")) <= before  # nothing left open
    # One connection per target (+1: the info() call's own).
    assert int(redis_server.info()["total_connections_received"]) - before_connections == SHARDS + 1


def series(*texts: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every sample's (name, labels) across the textfiles, as node_exporter's textfile collector merges them."""
    return [(s.name, tuple(sorted(s.labels.items()))) for text in texts
            for family in text_string_to_metric_families(text) for s in family.samples]


def test_two_environments_in_one_textfile_directory_never_collide(tmp_path, services, promtool):
    """The same service written twice to one directory with --label env=staging / env=prod, and two services
    (--target good / --target bad) in two files: each file is promtool-clean, the files share no series, the
    labels are on the per-target and the run series. The control, without --label, collides."""
    good, bad = services
    directory = tmp_path / "textfiles"
    directory.mkdir()

    def textfile(name: str, *args: str) -> str:
        path = directory / f"{name}.prom"
        cli("report", "--no-env", "--connectivity", "-f", "prometheus", "-o", str(path), *args)
        text = path.read_text()
        assert promtool.check_metrics(text) == []
        return text

    staging = textfile("staging", "--target", f"app={good}", "--label", "env=staging")
    prod = textfile("prod", "--target", f"app={good}", "--label", "env=prod")
    merged = series(staging, prod)
    assert len(merged) == len(set(merged))
    assert 'ingest_probe_up{target="app/redis",connector="redis",env="prod",service="app"} 1' in prod
    assert 'ingest_probe_run_success{env="staging",service="app"} 1' in staging
    one, two = textfile("good", "--target", f"good={good}"), textfile("bad", "--target", f"bad={bad}")
    merged = series(one, two)
    assert len(merged) == len(set(merged))
    assert 'ingest_probe_up{target="bad/redis",connector="redis",service="bad"} 0' in two
    control = series(textfile("plain", "--env-file", str(good)), textfile("plain2", "--env-file", str(good)))
    assert len(control) > len(set(control))


def test_watch_once_on_a_targets_file(tmp_path, redis_server):
    path = shards_file(tmp_path / "shards.yaml", redis_server.port, count=5)
    out = tmp_path / "watch.json"
    proc = cli("watch", "--no-env", "--targets", str(path), "--once", "-o", str(out), "--only", "shard-00[0-2]",
               "--label", "env=w")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())["connectivity"]
    assert [(r["name"], r["status"], r["labels"]["env"]) for r in results] == [
        ("shard-000", "ok", "w"), ("shard-001", "ok", "w"), ("shard-002", "ok", "w")]


def test_serve_on_a_targets_file(tmp_path, redis_server, serve_process, promtool):
    path = tmp_path / "t.yaml"
    path.write_text(f"targets:\n  cache:\n    kind: redis\n    url_env: CACHE_URL\n    labels: {{env: live}}\n"
                    f"  gone:\n    kind: redis\n    url: redis://127.0.0.1:{free_port()}/0\n")
    refused = cli("serve", "--no-env", "--targets", str(path), "--listen", "127.0.0.1:0")
    assert refused.returncode == 3  # --no-env: url_env cannot be read
    assert "url_env CACHE_URL cannot be read with --no-env" in refused.stderr
    server = serve_process(["--targets", str(path), "--concurrency", "4"],
                           env={"CACHE_URL": f"redis://127.0.0.1:{redis_server.port}/0"})
    status, _, body = server.get("/readyz")
    assert status == 503
    assert [(t["name"], t["status"]) for t in json.loads(body)["targets"]] == [("cache", "ok"), ("gone", "down")]
    status, _, metrics = server.get("/metrics")
    assert 'ingest_probe_up{target="cache",connector="redis",env="live"} 1' in metrics
    assert promtool.check_metrics(metrics) == []
    status, _, probed = server.get("/probe?target=" + urllib.parse.quote("cache"),
                                   headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"})
    assert status == 200
    assert "gone" not in probed
    assert server.stop(signal.SIGTERM) == 0
