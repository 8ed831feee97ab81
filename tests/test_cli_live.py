"""End to end: `ingest-probe report --connectivity` as a process against real servers on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from live.kafka import wait_until
from live.net import BlackHole

from ingest_probe.defaults import CLOSE_BUDGET

pytestmark = pytest.mark.live

APP = "ingest-probe-e2e"


def env_file(tmp_path: Path, values: dict[str, str]) -> str:
    path = tmp_path / "e2e.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return str(path)


def stack_env(pg_server, redis_server, kafka_broker, **overrides: str) -> dict[str, str]:
    values = {
        "TIMESCALEDB_HOST": pg_server.host,
        "TIMESCALEDB_PORT": str(pg_server.port),
        "TIMESCALEDB_USER": pg_server.user,
        "TIMESCALEDB_PASSWORD": pg_server.password,
        "TIMESCALEDB_DB": pg_server.database,
        "TIMESCALEDB_APP": APP,
        "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "REDIS_CLIENT_NAME": APP,
        "KAFKA_BROKERS": kafka_broker.bootstrap,
    }
    values.update(overrides)
    return values


def cli(*args: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ingest_probe", *args], capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.monotonic() - started


def assert_no_server_connections(pg_server, redis_server) -> None:
    assert pg_server.count_connections(APP) == 0
    assert redis_server.client_list(APP) == []


def test_all_ok_exit_0_and_nothing_left_on_the_servers(tmp_path, pg_server, redis_server, kafka_broker):
    """A healthy stack: every connector ok, exit 0, stdout is only the report, no connection remains."""
    path = env_file(tmp_path, stack_env(pg_server, redis_server, kafka_broker))
    proc, _ = cli("report", "--no-env", "--env-file", path, "--connectivity", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "ok"
    assert [(c["name"], c["status"]) for c in doc["connectivity"]] == [
        ("timescale", "ok"), ("redis", "ok"), ("kafka", "ok")]
    assert doc["run"]["seed"] == 7
    assert doc["run"]["counts"]["finished"] == 3
    assert all(c["phases"]["connect"] is not None for c in doc["connectivity"])
    assert pg_server.password not in proc.stdout + proc.stderr
    assert_no_server_connections(pg_server, redis_server)


def test_no_client_is_left_for_the_teardown_to_find(tmp_path, pg_server, redis_server, kafka_broker):
    """The script's fast exit skips the final collection that reports an unclosed socket or transport; with
    ``-W`` the process keeps it, and a healthy run leaves it nothing to report."""
    path = env_file(tmp_path, stack_env(pg_server, redis_server, kafka_broker))
    proc = subprocess.run([sys.executable, "-W", "always::ResourceWarning", "-m", "ingest_probe", "report",
                           "--no-env", "--env-file", path, "--connectivity"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"
    assert proc.stderr == ""


def test_one_failure_hides_nothing_and_exit_is_2(tmp_path, pg_server, redis_server, kafka_broker):
    """A wrong Postgres password is reported as auth/down while Redis and Kafka are still probed; exit 2."""
    values = stack_env(pg_server, redis_server, kafka_broker, TIMESCALEDB_PASSWORD="wrong-CANARY-e2e")
    proc, _ = cli("report", "--no-env", "--env-file", env_file(tmp_path, values), "--connectivity",
                  "--format", "markdown")
    assert proc.returncode == 2, proc.stderr
    assert "| timescale | down |" in proc.stdout
    assert "auth:" in proc.stdout
    assert "| redis | ok |" in proc.stdout
    assert "| kafka | ok |" in proc.stdout
    assert "wrong-CANARY-e2e" not in proc.stdout + proc.stderr


def test_three_blocked_connectors_take_one_deadline_not_three(tmp_path):
    """Three connectors that never answer end together: the run lasts about one probe's time, not the sum of
    the three. Judged against the probes' own latencies in the same run, not against a wall-clock limit."""
    timeout = 1.5
    with BlackHole() as pg, BlackHole() as rd, BlackHole() as kf:
        values = {"TIMESCALEDB_HOST": "127.0.0.1", "TIMESCALEDB_PORT": str(pg.port), "TIMESCALEDB_USER": "u",
                  "REDIS_URL": f"redis://127.0.0.1:{rd.port}/0", "KAFKA_BROKERS": f"127.0.0.1:{kf.port}"}
        proc, _ = cli("report", "--no-env", "--env-file", env_file(tmp_path, values), "--connectivity",
                      "--timeout", str(timeout))
    doc = json.loads(proc.stdout)
    assert proc.returncode == 2
    assert [c["error_kind"] for c in doc["connectivity"]] == ["timeout"] * 3
    latencies = sorted(c["latency_ms"] for c in doc["connectivity"])
    # One after the other, the run would last at least the sum; side by side, the longest plus the closing.
    assert doc["run"]["duration_ms"] < latencies[-1] + latencies[0], (doc["run"]["duration_ms"], latencies)


def startup_baseline() -> float:
    """Wall time of a run that contacts nothing (start, imports, manifest, exit): this machine, right now."""
    _, wall = cli("report", "--no-env")
    return wall


@pytest.mark.parametrize(("sig", "code", "message"), [
    (signal.SIGINT, 130, "ingest-probe: error: interrupted by SIGINT; every connection was closed"),
    (signal.SIGTERM, 143, "ingest-probe: error: terminated by SIGTERM; every connection was closed"),
])
def test_signal_mid_run_exits_promptly_and_closes_everything(tmp_path, pg_server, redis_server, sig, code, message):
    """SIGINT/SIGTERM while a probe hangs on a black-holed Redis (--timeout 30): exit within the close budget
    plus a few process start-ups (measured), no connection left behind. The signal goes out once the probe
    is seen connected to the black hole, not after a fixed sleep."""
    baseline = startup_baseline()
    with BlackHole() as hole:
        values = {"TIMESCALEDB_HOST": pg_server.host, "TIMESCALEDB_PORT": str(pg_server.port),
                  "TIMESCALEDB_USER": pg_server.user, "TIMESCALEDB_PASSWORD": pg_server.password,
                  "TIMESCALEDB_APP": APP, "REDIS_URL": f"redis://127.0.0.1:{hole.port}/0"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest_probe", "report", "--no-env", "--env-file", env_file(tmp_path, values),
             "--connectivity", "--timeout", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        try:
            assert wait_until(lambda: hole.accepted > 0 or proc.poll() is not None, timeout=60)
            assert proc.poll() is None, proc.communicate()
            started = time.monotonic()
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
            elapsed = time.monotonic() - started
        finally:
            proc.kill()
    assert proc.returncode == code, err
    assert elapsed < CLOSE_BUDGET + 3 * baseline, (elapsed, baseline)
    assert err.strip() == message
    assert out == ""
    assert wait_until(lambda: pg_server.count_connections(APP) == 0)  # the server reaps its backend async
    assert redis_server.client_list(APP) == []
