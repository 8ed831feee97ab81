"""A hostile or broken peer is that connector's result, never the run's end (broker hosts, bugs, SCRAM, keys)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import assert_failed, jobs, pg_settings
from live.kafka import TansuBroker
from live.net import BlackHole, ScramPeer

from ingest_probe.connectors.timescale.probe import TimescaleProbe
from ingest_probe.connectors.timescale.settings import TimescaleSettings
from ingest_probe.engine.supervisor import TaskSupervisor
from ingest_probe.secret import Secret

BAD_HOST = "broker..example"
#: Slack over a deadline for cleanup: a hang guard, not a performance assertion.
HANG_GUARD = 3.0

#: Runs the CLI with an audit hook that writes every host name given to getaddrinfo to ``argv[1]``, and
#: optionally first runs ``argv[2]`` (a patch that plants a bug). The rest of argv is the command line.
_RUNNER = textwrap.dedent("""
    import json, sys

    resolved = []

    def hook(event, args):
        if event == "socket.getaddrinfo":
            resolved.append(str(args[0]))

    sys.addaudithook(hook)
    log, patch, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    exec(patch)
    try:
        from ingest_probe.commands.cli import main
        main(argv)
    finally:
        with open(log, "w") as f:
            json.dump(resolved, f)
""")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "None"}


def cli(tmp_path: Path, *args: str, patch: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``ingest-probe *args`` in a fresh interpreter; the process and every host name it resolved."""
    log = tmp_path / "resolved.json"
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(log), patch, *args], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    return proc, json.loads(log.read_text())


def stack(pg: Any, redis: Any, kafka_bootstrap: str) -> list[str]:
    values = {
        "TIMESCALEDB_HOST": pg.host, "TIMESCALEDB_PORT": str(pg.port), "TIMESCALEDB_USER": pg.user,
        "TIMESCALEDB_PASSWORD": pg.password, "TIMESCALEDB_DB": pg.database,
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "KAFKA_BROKERS": kafka_bootstrap, "KAFKA_INGEST_TOPICS": "daily:ingest.daily",
    }  # fmt: skip
    return ["--no-env", *(arg for key, value in values.items() for arg in ("--extra", f"{key}={value}"))]


@pytest.fixture(scope="module")
def bad_host_broker() -> Iterator[TansuBroker]:
    """A real Tansu that advertises ``broker..example`` as its own address."""
    with TansuBroker.start(advertised_host=BAD_HOST) as broker:
        yield broker


# --------------------------------------------------------------------------------- unusable broker host


@pytest.mark.live
def test_report_broker_advertising_an_unusable_host(
    tmp_path: Path, pg_server: Any, redis_server: Any, bad_host_broker: TansuBroker
) -> None:
    """Kafka is down/dns naming the advertised host; the healthy connectors' results are kept; exit 2; the
    name is never handed to the resolver."""
    proc, resolved = cli(tmp_path, "report", "--connectivity", "--timeout", "3",
                         *stack(pg_server, redis_server, bad_host_broker.bootstrap))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    statuses = {c["name"]: (c["status"], c["error_kind"]) for c in doc["connectivity"]}
    assert statuses == {"timescale": ("ok", None), "redis": ("ok", None), "kafka": ("down", "dns")}
    kafka = doc["connectivity"][2]["error"]
    assert f"'{BAD_HOST}'" in kafka
    assert "advertised.listeners" in kafka
    assert "internal error" not in proc.stderr
    assert set(resolved) <= LOOPBACK, resolved


@pytest.mark.live
@pytest.mark.parametrize("command", [["topics", "plan"], ["topics", "apply"]])
def test_topics_broker_advertising_an_unusable_host(
    tmp_path: Path, pg_server: Any, redis_server: Any, bad_host_broker: TansuBroker, command: list[str]
) -> None:
    """`topics` reports the broker's bad host as its section's dns error, exit 2."""
    proc, resolved = cli(tmp_path, *command, "--timeout", "3",
                         *stack(pg_server, redis_server, bad_host_broker.bootstrap))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    section = json.loads(proc.stdout)["kafka_topic_provisioning"]
    assert section["error_kind"] == "dns", section
    assert BAD_HOST in section["error"]
    assert set(resolved) <= LOOPBACK, resolved


@pytest.mark.live
def test_watch_broker_advertising_an_unusable_host(
    tmp_path: Path, pg_server: Any, redis_server: Any, bad_host_broker: TansuBroker
) -> None:
    """`watch --once` reports every connector, Kafka down/dns, and exits 2."""
    proc, resolved = cli(tmp_path, "watch", "--once", "--timeout", "3",
                         *stack(pg_server, redis_server, bad_host_broker.bootstrap))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    statuses = {c["name"]: (c["status"], c["error_kind"]) for c in doc["connectivity"]}
    assert statuses == {"timescale": ("ok", None), "redis": ("ok", None), "kafka": ("down", "dns")}
    assert set(resolved) <= LOOPBACK, resolved


# ------------------------------------------------------------------------------- a bug is a result (exit 3)

#: A bug planted in the Kafka probe's query (what aiokafka's UnicodeError used to be): raised from our code.
_QUERY_BUG = textwrap.dedent("""
    from ingest_probe.connectors.kafka.probe import KafkaProbe

    def _record(self, rec, response):
        raise UnicodeError("encoding with 'idna' codec failed (planted)")

    KafkaProbe._record = _record
""")


@pytest.mark.live
@pytest.mark.parametrize("debug", [False, True])
def test_report_bug_in_one_probe_is_its_internal_result(
    tmp_path: Path, pg_server: Any, redis_server: Any, kafka_broker: Any, debug: bool
) -> None:
    """A bug in the Kafka probe: kafka down/internal with one line, the others ok, exit 3, one stderr line per
    problem; --debug adds the traceback."""
    flags = ["--debug"] if debug else []
    proc, _ = cli(tmp_path, *flags, "report", "--connectivity", "--timeout", "3",
                  *stack(pg_server, redis_server, kafka_broker.bootstrap), patch=_QUERY_BUG)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    statuses = {c["name"]: (c["status"], c["error_kind"]) for c in doc["connectivity"]}
    assert statuses == {"timescale": ("ok", None), "redis": ("ok", None), "kafka": ("down", "internal")}
    expected = ("internal error in the kafka probe: UnicodeError: encoding with 'idna' codec failed (planted);"
                " re-run with --debug for a traceback")
    assert doc["connectivity"][2]["error"] == expected
    assert f"ingest-probe: kafka down [internal]: {expected}" in proc.stderr.splitlines()
    assert ("Traceback (most recent call last):" in proc.stderr) is debug
    assert "ingest-probe: error:" not in proc.stderr


@pytest.mark.live
def test_topics_bug_is_the_sections_internal_error(tmp_path: Path, kafka_broker: Any) -> None:
    """A bug during topic provisioning is the section's internal error with every topic unknown, exit 3."""
    patch = textwrap.dedent("""
        from ingest_probe.topics import admin as _topics_admin

        async def _read(self):
            raise KeyError("planted")

        _topics_admin._Run._read = _read
    """)
    proc, _ = cli(tmp_path, "--debug", "topics", "plan", "--timeout", "3", "--no-env", "--extra",
                  f"KAFKA_BROKERS={kafka_broker.bootstrap}", "--extra", "KAFKA_INGEST_TOPICS=daily:ingest.daily",
                  patch=patch)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    section = json.loads(proc.stdout)["kafka_topic_provisioning"]
    assert section["error_kind"] == "internal"
    assert section["error"].startswith("internal error in topic provisioning (step read): KeyError: 'planted'")
    assert [p["state"] for p in section["plan"]] == ["unknown"]
    assert "Traceback (most recent call last):" in proc.stderr


@pytest.mark.live
def test_watch_bug_in_one_probe_is_its_internal_result(
    tmp_path: Path, pg_server: Any, redis_server: Any, kafka_broker: Any
) -> None:
    """`watch --once` with a bug in the Kafka probe: every result reported, exit 3; --debug logs the traceback."""
    proc, _ = cli(tmp_path, "--debug", "watch", "--once", "--timeout", "3",
                  *stack(pg_server, redis_server, kafka_broker.bootstrap), patch=_QUERY_BUG)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    statuses = {c["name"]: (c["status"], c["error_kind"]) for c in doc["connectivity"]}
    assert statuses == {"timescale": ("ok", None), "redis": ("ok", None), "kafka": ("down", "internal")}
    assert "Traceback (most recent call last):" in proc.stderr


# ------------------------------------------------------------------------------- a SCRAM iteration bomb


def scram_probe(port: int) -> TimescaleProbe:
    return TimescaleProbe(TimescaleSettings(
        configured=True, backend="postgresql", url_source_key=None, host="127.0.0.1", port=port, user="probe",
        password=Secret("canary-pw"), sslmode="disable",
    ))  # fmt: skip


@pytest.mark.live
async def test_scram_iteration_bomb_is_auth_within_the_deadline() -> None:
    """A peer asking for 20,000,000 SCRAM iterations (PostgreSQL's default: 4096) is refused before hashing:
    auth naming the count, within the deadline (it used to freeze the event loop for ~14 s)."""
    deadline = 2.0
    with ScramPeer(20_000_000) as peer:
        started = time.monotonic()
        [result] = await TaskSupervisor(timeout=deadline, jitter=0.0).run(jobs([scram_probe(peer.port)]))
        elapsed = time.monotonic() - started
        assert peer.asked.is_set()
    assert_failed(result, "auth", "20000000 SCRAM iterations", "4096")
    assert elapsed < deadline + HANG_GUARD, elapsed


@pytest.mark.live
def test_scram_iteration_bomb_never_holds_off_sigterm(tmp_path: Path) -> None:
    """SIGTERM right after the peer asked for 2,000,000,000 iterations (a black-holed Redis keeps the run
    going): the process exits 143 promptly instead of hashing for half an hour."""
    with ScramPeer(2_000_000_000) as peer, BlackHole() as hole:
        values = {"TIMESCALEDB_HOST": "127.0.0.1", "TIMESCALEDB_PORT": str(peer.port), "TIMESCALEDB_USER": "probe",
                  "TIMESCALEDB_PASSWORD": "canary-pw", "TIMESCALEDB_SSLMODE": "disable",
                  "REDIS_URL": f"redis://127.0.0.1:{hole.port}/0"}  # fmt: skip
        extras = [arg for k, v in values.items() for arg in ("--extra", f"{k}={v}")]
        proc = subprocess.Popen([sys.executable, "-m", "ingest_probe", "report", "--no-env", "--connectivity",
                                 "--timeout", "60", *extras], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        try:
            assert peer.asked.wait(30), "the client never reached the SCRAM challenge"
            time.sleep(0.2)  # the challenge is read (and, before the fix, hashing has begun)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "terminated by SIGTERM" in err


@pytest.mark.live
@pytest.mark.parametrize("tls", [False, True])
async def test_scram_cap_sits_where_asyncpg_hashes_and_only_for_the_probe(
    tls: bool, pg_server: Any, pg_tls_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins the asyncpg seam against a real PostgreSQL (SCRAM-SHA-256, 4096 iterations; plaintext and TLS):
    with the cap below 4096 the probe's login is refused before hashing, while an application's own asyncpg
    connection, opened after the cap was installed, is untouched."""
    import asyncpg

    from ingest_probe.connectors.timescale import connect as _pg_connect

    monkeypatch.setattr(_pg_connect, "MAX_SCRAM_ITERATIONS", 4095)
    settings = pg_settings(pg_tls_server, sslmode="require") if tls else pg_settings(pg_server)
    [result] = await TaskSupervisor(timeout=5.0, jitter=0.0).run(jobs([TimescaleProbe(settings)]))
    assert_failed(result, "auth", "4096 SCRAM iterations")
    conn = await asyncpg.connect(host=pg_server.host, port=pg_server.port, user=pg_server.user,
                                 password=pg_server.password, database=pg_server.database, ssl=False)  # fmt: skip
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
