"""End to end: `ingest-probe serve` as a process against real PostgreSQL, Redis and Kafka, over real HTTP:
routes, single-flight under 200 concurrent requests (sessions counted on the servers), background and
on-demand checks, SIGTERM, SIGHUP, no secret anywhere, and a real Prometheus scraping it."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from live.kafka import wait_until
from live.net import free_port
from live.prometheus import probe_job, static_job
from live.serve import fetch_concurrently

pytestmark = pytest.mark.live

APP = "ingest-probe-serve"


def stack(pg, redis, kafka, **overrides: str) -> dict[str, str]:
    """Configuration for the live servers; ``APP`` names the server-side sessions."""
    values = {
        "TIMESCALEDB_URL": pg.dsn(),
        "TIMESCALEDB_APP": APP,
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "REDIS_CLIENT_NAME": APP,
        "KAFKA_BROKERS": kafka.bootstrap if kafka is not None else "",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v}


def env_file(path: Path, values: dict[str, str]) -> str:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return str(path)


def sessions(pg, redis) -> tuple[int, int]:
    """(PostgreSQL sessions, Redis clients) named ``APP``."""
    return pg.count_connections(APP), len(redis.client_list(APP))


def readyz(server, query: str = "") -> tuple[int, dict]:
    status, _, body = server.get(f"/readyz{query}")
    return status, json.loads(body)


def test_routes_against_real_servers(tmp_path, pg_server, redis_server, kafka_broker, serve_process, promtool):
    """Every route against a healthy stack: /livez, /readyz (200, three ok), /metrics (promtool-clean, the
    textfile's series plus process metrics), /probe?target=redis, /report; SIGTERM: exit 0, no session left."""
    server = serve_process(["--no-env", "--env-file", env_file(tmp_path / "s.env", stack(pg_server, redis_server,
                                                                                         kafka_broker))])
    assert server.get("/livez")[::2] == (200, "ok\n")
    status, doc = readyz(server)
    assert (status, doc["ready"]) == (200, True), doc
    assert [(t["name"], t["status"]) for t in doc["targets"]] == [("timescale", "ok"), ("redis", "ok"), ("kafka", "ok")]
    status, headers, metrics = server.get("/metrics")
    assert (status, headers["content-type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert promtool.check_metrics(metrics) == []
    for name in ("timescale", "redis", "kafka"):
        assert f'ingest_probe_up{{target="{name}",connector="{name}"}} 1' in metrics
    assert re.search(r"(?m)^ingest_probe_last_run_timestamp_seconds \d+$", metrics)
    assert re.search(r"(?m)^process_resident_memory_bytes \S+$", metrics)
    status, _, probed = server.get("/probe?target=redis", headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"})
    assert status == 200
    assert 'ingest_probe_up{target="redis",connector="redis"} 1' in probed
    assert "timescale" not in probed
    assert promtool.check_metrics(probed) == []
    status, headers, body = server.get("/report")
    assert (status, headers["content-type"], json.loads(body)["status"]) == (200, "application/json", "ok")
    assert sessions(pg_server, redis_server) == (1, 1)
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped by SIGTERM; clients closed" in server.lines[-1]
    assert sessions(pg_server, redis_server) == (0, 0)


def test_200_concurrent_readyz_share_checks_and_one_session_per_backend(
    tmp_path, pg_server, redis_server_factory, kafka_broker, serve_process
):
    """--max-age 0 (every request wants a fresh result): 200 concurrent /readyz?only=redis while Redis is
    frozen all join one check (same check number, 503); then, thawed, 200 concurrent /readyz over all
    targets: all 200, and PostgreSQL and Redis never see more than one session from the server."""
    redis = redis_server_factory()
    path = env_file(tmp_path / "s.env", stack(pg_server, redis, kafka_broker))
    server = serve_process(["--no-env", "--env-file", path, "--interval", "3600", "--max-age", "0", "--timeout", "4",
                            "--no-access-log"])
    assert readyz(server)[0] == 200
    redis.freeze()
    try:
        answers = fetch_concurrently(server.port, "/readyz?only=redis", 200)
    finally:
        redis.thaw()
    assert [status for status, _ in answers] == [503] * 200
    targets = [json.loads(body)["targets"] for _, body in answers]
    assert {(t[0]["error_kind"], t[0]["check"]) for t in targets} == {("timeout", targets[0][0]["check"])}

    assert wait_until(lambda: sessions(pg_server, redis)[1] <= 1, timeout=5)  # the timed-out client is gone
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pg_n, redis_n = sessions(pg_server, redis)
            peak[:] = max(peak[0], pg_n), max(peak[1], redis_n)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        answers = fetch_concurrently(server.port, "/readyz", 200)
    finally:
        done.set()
        sampler.join(timeout=10)
    assert [status for status, _ in answers] == [200] * 200
    assert peak == [1, 1]
    assert sessions(pg_server, redis) == (1, 1)


def test_background_checks_and_on_demand_checks(tmp_path, redis_server, serve_process):
    """--interval: checks run with no request at all (the check number grows while /report answers from the
    cache); --max-age: a result older than that is checked again on demand, a younger one is not."""
    path = env_file(tmp_path / "s.env", {"REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0"})
    server = serve_process(["--no-env", "--env-file", path, "--interval", "0.2", "--max-age", "3600"])

    def check_number() -> int:
        return int(json.loads(server.get("/report")[2])["run"]["check"])

    first = check_number()
    time.sleep(1.5)
    assert check_number() >= first + 3
    assert server.stop() == 0

    server = serve_process(["--no-env", "--env-file", path, "--interval", "3600", "--max-age", "0.5"])
    first = readyz(server)[1]["targets"][1]["check"]
    assert readyz(server)[1]["targets"][1]["check"] == first  # from the cache
    time.sleep(0.7)
    assert readyz(server)[1]["targets"][1]["check"] == first + 1  # older than --max-age: checked on demand


def test_sigterm_finishes_in_flight_requests_then_closes_every_client(
    tmp_path, pg_server, redis_server_factory, kafka_broker, serve_process
):
    """SIGTERM while a request waits on a check of a frozen Redis: new connections are refused at once, the
    request still gets its answer, then every client is closed and the exit is 0."""
    redis = redis_server_factory()
    path = env_file(tmp_path / "s.env", stack(pg_server, redis, kafka_broker))
    server = serve_process(["--no-env", "--env-file", path, "--max-age", "0", "--timeout", "3", "--grace", "10"])
    assert readyz(server)[0] == 200
    assert sessions(pg_server, redis) == (1, 1)
    answer: list[tuple[int, dict[str, str], str]] = []
    redis.freeze()
    try:
        waiting = threading.Thread(target=lambda: answer.append(server.get("/readyz")), daemon=True)
        waiting.start()
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        assert wait_until(refused, timeout=2)
        waiting.join(timeout=10)
        [(status, _, body)] = answer  # answered with the check's result (Redis timed out), not cut off
        assert status == 503
        assert [t["error_kind"] for t in json.loads(body)["targets"]] == [None, "timeout", None]
        assert server.proc.wait(timeout=10) == 0
    finally:
        redis.thaw()
    assert "stopped by SIGTERM; clients closed" in server.stderr
    assert wait_until(lambda: sessions(pg_server, redis) == (0, 0), timeout=5)


def test_sighup_reloads_the_configuration_and_refuses_a_bad_one(tmp_path, pg_server, redis_server, serve_process):
    """SIGHUP re-reads the env file: a target added is served, an unchanged one keeps its warm client (the
    same Redis connection before and after); a file that does not load is one log line and the previous
    configuration keeps being served."""
    path = tmp_path / "s.env"
    env_file(path, {"REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0", "REDIS_CLIENT_NAME": APP})
    server = serve_process(["--no-env", "--env-file", str(path), "--interval", "0.5"])
    assert [t["status"] for t in readyz(server)[1]["targets"]] == ["skipped", "ok", "skipped"]
    [before] = [c["id"] for c in redis_server.client_list(APP)]
    env_file(path, stack(pg_server, redis_server, None))
    mark = len(server.lines)
    server.send_signal(signal.SIGHUP)
    reloaded = server.wait_for_line("reloaded: timescale, redis", start=mark)
    assert "(2 unchanged, clients kept; 1 new or changed)" in reloaded.string  # timescale new
    assert [t["status"] for t in readyz(server)[1]["targets"]] == ["ok", "ok", "skipped"]
    assert wait_until(lambda: sessions(pg_server, redis_server) == (1, 1), timeout=5)
    assert [c["id"] for c in redis_server.client_list(APP)] == [before]

    path.write_text("REDIS_PORT=notaport\n")
    mark = len(server.lines)
    server.send_signal(signal.SIGHUP)
    refused = server.wait_for_line("reload refused, the previous configuration stays: ", start=mark)
    assert "REDIS_PORT" in refused.string
    assert [t["status"] for t in readyz(server)[1]["targets"]] == ["ok", "ok", "skipped"]
    assert server.stop() == 0
    assert wait_until(lambda: sessions(pg_server, redis_server) == (0, 0), timeout=5)


def redis_targets(redis, names: list[str], tag: str) -> str:
    """A targets file of Redis targets on ``redis``, each with its own client name ``{tag}-{name}``."""
    return "targets:\n" + "".join(
        f"  {name}:\n    kind: redis\n    url: redis://127.0.0.1:{redis.port}/0\n"
        f"    options: {{REDIS_CLIENT_NAME: {tag}-{name}}}\n    labels: {{env: live}}\n" for name in names)


def test_sighup_rereads_a_changed_targets_file(tmp_path, redis_server, serve_process):
    """`serve --targets F`; F changes (keep unchanged, gone removed, new added), SIGHUP: keep is served on its
    very same Redis connection (CLIENT ID), new is served and connected, gone is no longer served (/readyz,
    /metrics, /probe 400) and its connection is closed."""
    tag = f"ip-srv-hup-{tmp_path.name[-8:]}"
    path = tmp_path / "targets.yaml"
    path.write_text(redis_targets(redis_server, ["keep", "gone"], tag))
    server = serve_process(["--no-env", "--targets", str(path), "--interval", "0.5"],
                           env={"PYTHONWARNINGS": "always::ResourceWarning"})  # a client dropped unclosed: a line
    assert [(t["name"], t["status"]) for t in readyz(server)[1]["targets"]] == [("keep", "ok"), ("gone", "ok")]
    [kept] = [c["id"] for c in redis_server.client_list(f"{tag}-keep")]
    assert len(redis_server.client_list(f"{tag}-gone")) == 1

    path.write_text(redis_targets(redis_server, ["keep", "new"], tag))
    mark = len(server.lines)
    server.send_signal(signal.SIGHUP)
    reloaded = server.wait_for_line("reloaded: ", start=mark)
    assert reloaded.string.endswith("reloaded: keep, new (1 unchanged, clients kept; 1 new or changed)")
    assert [(t["name"], t["status"]) for t in readyz(server)[1]["targets"]] == [("keep", "ok"), ("new", "ok")]
    assert wait_until(lambda: redis_server.client_list(f"{tag}-gone") == [], timeout=5)
    assert [c["id"] for c in redis_server.client_list(f"{tag}-keep")] == [kept]
    assert len(redis_server.client_list(f"{tag}-new")) == 1
    metrics = server.get("/metrics")[2]
    assert 'ingest_probe_up{target="new",connector="redis",env="live"} 1' in metrics
    assert 'target="gone"' not in metrics
    assert server.get("/probe?target=gone")[0] == 400
    assert server.stop() == 0
    assert wait_until(lambda: redis_server.client_list(f"{tag}-keep") + redis_server.client_list(f"{tag}-new") == [],
                      timeout=5)
    assert "ResourceWarning" not in server.stderr


CANARY = "CANARY-serve-5e1d"


def test_no_secret_in_any_response_header_or_log_line(tmp_path, pg_server, redis_auth_server, serve_process):
    """Secrets (PostgreSQL's real password, a wrong Redis password, a Kafka SASL password) never appear in
    any route's body or headers, on good and bad requests, nor in any log line (access log included)."""
    closed = free_port()
    values = {"TIMESCALEDB_URL": pg_server.dsn(), "TIMESCALEDB_SSLPASSWORD": CANARY,
              "REDIS_URL": f"redis://:{CANARY}@127.0.0.1:{redis_auth_server.port}/0",
              "KAFKA_URL": f"sasl_plaintext://user:{CANARY}@127.0.0.1:{closed}"}  # fmt: skip
    server = serve_process(["--no-env", "--env-file", env_file(tmp_path / "s.env", values), "--debug",
                            "--timeout", "2"])
    scrape = {"X-Prometheus-Scrape-Timeout-Seconds": "3"}
    seen = []
    for path in ("/livez", "/readyz", "/readyz?only=redis", "/metrics", "/report", "/report?only=kafka",
                 "/probe?target=timescale", "/probe?target=redis", "/probe?target=kafka", f"/probe?target={CANARY}",
                 f"/readyz?only={CANARY}", "/nope", "/probe"):
        for method in ("GET", "HEAD", "POST"):
            status, headers, body = server.get(path, method=method, headers=scrape)
            seen.append((path, method, status))
            text = body + json.dumps(headers)
            for secret in (CANARY, pg_server.password):
                assert secret not in text, (path, method)
    status, doc = readyz(server)
    assert [(t["status"], t["error_kind"]) for t in doc["targets"]] == [("ok", None), ("down", "auth"),
                                                                        ("down", "refused")]  # fmt: skip
    assert ("/probe?target=redis", "GET", 200) in seen
    assert server.stop() == 0
    assert len(server.lines) > 30  # the access log was on
    for secret in (CANARY, pg_server.password):
        assert secret not in server.stderr


def test_bad_start_ups_are_one_line_and_exit_3(tmp_path, redis_server):
    """A taken address, a bad --listen and nothing configured: one line on stderr, exit 3, nothing served."""
    import subprocess

    from live.serve import VENV_BIN

    path = env_file(tmp_path / "s.env", {"REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = {
            f"cannot listen on 127.0.0.1:{port}: Address already in use": ["--env-file", path, "--listen",
                                                                          f"127.0.0.1:{port}"],
            "is not IP:PORT": ["--env-file", path, "--listen", "localhost:9464"],
            "nothing to probe: no connector is configured": [],
        }  # fmt: skip
        for message, args in cases.items():
            proc = subprocess.run([str(VENV_BIN / "ingest-probe"), "serve", "--no-env", *args], capture_output=True,
                                  text=True, timeout=30, stdin=subprocess.DEVNULL)  # fmt: skip
            assert proc.returncode == 3, (args, proc.stderr)
            assert message in proc.stderr
            assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_real_prometheus_scrapes_metrics_and_probe_per_target(
    tmp_path, pg_server, serve_process, prometheus_server, promtool
):
    """A real Prometheus scrapes /metrics and a blackbox-style /probe?target= job over timescale and redis
    (Redis on a closed port): through its HTTP API, ingest_probe_up is 1 for timescale and 0 for redis in both
    jobs, each /probe series labelled with its target as instance."""
    values = {"TIMESCALEDB_URL": pg_server.dsn(), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    server = serve_process(["--no-env", "--env-file", env_file(tmp_path / "s.env", values), "--timeout", "2"])
    assert promtool.check_metrics(server.get("/metrics")[2]) == []
    prom = prometheus_server([static_job("ingest-probe", [server.address]),
                              probe_job("ingest-probe-targets", ["timescale", "redis"], prober=server.address)])
    up = prom.wait_for('up{job=~"ingest-probe.*"}', lambda s: len(s) == 3 and all(x.value == 1 for x in s))
    assert {s.labels["instance"] for s in up} == {server.address, "timescale", "redis"}

    def both_targets(samples) -> bool:
        return len(samples) == 2

    metrics = prom.wait_for('ingest_probe_up{job="ingest-probe"}', both_targets)
    assert {s.labels["connector"]: s.value for s in metrics} == {"timescale": 1, "redis": 0}
    probed = prom.wait_for('ingest_probe_up{job="ingest-probe-targets"}', both_targets)
    assert {(s.labels["instance"], s.labels["connector"], s.value) for s in probed} == {
        ("timescale", "timescale", 1), ("redis", "redis", 0)}
    assert prom.wait_for('process_resident_memory_bytes{job="ingest-probe"}')[0].value > 0
    assert re.search(r'"GET /probe\?target=(timescale|redis)" 200', server.stderr)


def test_request_size_and_connection_count_are_bounded(tmp_path, redis_server, serve_process):
    """A request head over 8 KiB is refused (431 when it arrived whole, a dropped connection when it grows past
    what one read brings); with 512 connections open, one more request is 503; the server answers normally
    afterwards."""
    from ingest_probe.defaults import SERVE_MAX_CONNECTIONS

    path = env_file(tmp_path / "s.env", {"REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0"})
    server = serve_process(["--no-env", "--env-file", path, "--no-access-log"])
    assert server.get("/livez", headers={"X-Padding": "x" * 9000})[0] == 431
    with pytest.raises(ConnectionError):
        server.get("/livez", headers={"X-Padding": "x" * 1_000_000})
    assert server.get("/livez", headers={"X-Padding": "x" * 7000})[0] == 200
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(SERVE_MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)  # every connection accepted
        assert server.get("/livez")[0] == 503
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: server.get("/livez")[0] == 200, timeout=5)
    assert server.stop() == 0


def test_a_second_signal_while_closing_cuts_it_short(tmp_path, redis_server_factory, serve_process):
    """SIGTERM, then SIGTERM again while a request still waits on a frozen Redis within the grace period: the
    exit is 143 at once, with one line saying closing was cut short."""
    redis = redis_server_factory()
    path = env_file(tmp_path / "s.env", {"REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"})
    server = serve_process(["--no-env", "--env-file", path, "--max-age", "0", "--timeout", "5", "--grace", "10"])
    assert readyz(server)[0] == 200
    redis.freeze()
    try:
        threading.Thread(target=lambda: server.get("/readyz"), daemon=True).start()
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.proc.poll() is None  # waiting for the request (grace 10 s)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 143
        assert time.monotonic() - started < 2.0
    finally:
        redis.thaw()
    assert server.lines[-1] == ("ingest-probe: error: terminated by a second SIGTERM while closing; closing was cut"
                                " short")
