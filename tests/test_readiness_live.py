"""`readiness` and `drill` against a real primary and real standbys: promoted, streaming replica, down, none."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live.net import BlackHole, free_port
from live.postgres import PostgresServer, require_postgres

from ingest_probe.commands.cli import main

pytestmark = pytest.mark.live

FAILING = {"daily_bars": {"rows_written": 0, "symbols": ["AAPL"], "start_ts": "2026-11-24T00:00:00Z",
                          "end_ts": "2026-11-25T00:00:00Z", "ingest_duration_seconds": 1.5,
                          "freshness_seconds": 60, "source": "vendor"}}
HEALTHY = {"daily_bars": FAILING["daily_bars"] | {"rows_written": 500}}


@pytest.fixture(scope="module")
def primary() -> Iterator[PostgresServer]:
    """The ingest primary (its own cluster: replicas change its superuser password and add walsenders)."""
    require_postgres()
    with PostgresServer.start(name="drill-primary") as server:
        yield server


@pytest.fixture(scope="module")
def replica(primary: PostgresServer) -> Iterator[PostgresServer]:
    """A streaming replica of the primary (pg_basebackup -R), left in recovery."""
    with PostgresServer.start_replica_of(primary, name="drill-replica") as server:
        yield server


@pytest.fixture(scope="module")
def promoted(primary: PostgresServer) -> Iterator[PostgresServer]:
    """A second streaming replica of the primary, promoted: what a completed failover leaves behind."""
    with PostgresServer.start_replica_of(primary, name="drill-promoted") as server:
        server.promote()
        yield server


def readiness(capsys: pytest.CaptureFixture[str], tmp_path: Path, primary: PostgresServer,
              standby_url: str | None, *, results: dict[str, Any] = FAILING, timeout: float = 5.0,
              command: tuple[str, ...] = ("readiness", "--connectivity")) -> tuple[int, dict[str, Any], float]:
    path = tmp_path / "ingest.json"
    path.write_text(json.dumps(results))
    argv = [*command, "--no-env", "--extra", f"TIMESCALEDB_URL={primary.dsn()}",
            "--extra", "TIMESCALE_FAILOVER_DRILL=true", "--results", str(path),
            "--timeout", str(timeout), "--seed", "7"]
    if standby_url is not None:
        argv += ["--extra", f"TIMESCALEDB_FAILOVER_URL={standby_url}"]
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        main(argv)
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    doc = json.loads(out)
    if "--connectivity" in command:
        assert doc["connectivity"][0]["status"] == "ok"  # the primary was probed alongside
    else:
        assert doc["connectivity"] is None  # the primary is not contacted
    return int(info.value.code or 0), doc, elapsed


def fallback(doc: dict[str, Any]) -> dict[str, Any]:
    components = {c["name"]: c for c in doc["failover_drill"]["components"]}
    assert list(components) == ["health", "failover", "fallback"]
    return components["fallback"]


def test_promoted_standby_is_ok(capsys, tmp_path, primary, promoted):
    """Failover decided and the standby promoted (writable): drill ok, exit 0, standby probed under supervision."""
    code, doc, _ = readiness(capsys, tmp_path, primary, promoted.dsn())
    fb = fallback(doc)
    assert (code, doc["failover_drill"]["status"], fb["status"]) == (0, "ok", "ok"), fb
    assert fb["metadata"]["in_recovery"] is False
    assert fb["metadata"]["writable"] is True
    assert doc["failover_drill"]["failover_decision"]["should_failover"] is True
    assert "ingest-probe-timescale_failover" in doc["run"]["deadlines_s"]
    assert promoted.password not in json.dumps(doc)
    promoted.psql("CREATE TABLE drill_write_check (i int); DROP TABLE drill_write_check")  # it really takes writes


def test_streaming_replica_in_recovery_is_not_a_target(capsys, tmp_path, primary, replica):
    """A real streaming replica (still in recovery) is reachable but reported as in recovery: drill fail, exit 2."""
    assert replica.psql("SELECT pg_is_in_recovery(), status FROM pg_stat_wal_receiver") == "t|streaming"
    code, doc, _ = readiness(capsys, tmp_path, primary, replica.dsn())
    fb = fallback(doc)
    assert (code, doc["failover_drill"]["status"], fb["status"]) == (2, "fail", "fail")
    assert fb["metadata"]["reachable"] is True
    assert fb["metadata"]["in_recovery"] is True
    assert fb["metadata"]["writable"] is False
    assert "still in recovery" in fb["summary"]


def test_standby_down_fails(capsys, tmp_path, primary):
    """Nothing listening on the standby's port: drill fail (refused), exit 2, connectivity unaffected."""
    code, doc, _ = readiness(capsys, tmp_path, primary, f"postgresql://probe:pw@127.0.0.1:{free_port()}/postgres")
    fb = fallback(doc)
    assert (code, doc["failover_drill"]["status"], fb["status"]) == (2, "fail", "fail")
    assert fb["metadata"]["error_kind"] == "refused"
    assert "unreachable" in fb["summary"]
    assert doc["status"] == "ok"  # the standby is not a connector: the primary's status stands alone


def test_black_holed_standby_is_cut_at_the_deadline(capsys, tmp_path, primary):
    """A standby that accepts TCP and never answers fails as a timeout within the --timeout deadline."""
    hole = BlackHole()
    try:
        code, doc, elapsed = readiness(capsys, tmp_path, primary,
                                       f"postgresql://probe:pw@127.0.0.1:{hole.port}/postgres", timeout=1.0)
    finally:
        hole.close()
    fb = fallback(doc)
    assert (code, fb["status"], fb["metadata"]["error_kind"]) == (2, "fail", "timeout")
    assert elapsed < 1.0 + 1.5  # deadline plus the bounded close budget and process overhead


def test_no_standby_configured_warns(capsys, tmp_path, primary):
    """Failover decided but no standby configured: drill warn, exit 1."""
    code, doc, _ = readiness(capsys, tmp_path, primary, None)
    fb = fallback(doc)
    assert (code, doc["failover_drill"]["status"], fb["status"]) == (1, "warn", "warn")
    assert "no standby configured" in fb["summary"]


def test_no_failover_needed_does_not_probe_standby(capsys, tmp_path, primary):
    """Healthy required dimensions: drill ok, fallback skipped, and the standby is never contacted."""
    code, doc, _ = readiness(capsys, tmp_path, primary, f"postgresql://probe:pw@127.0.0.1:{free_port()}/x",
                             results=HEALTHY)
    assert (code, doc["failover_drill"]["status"], fallback(doc)["status"]) == (0, "ok", "skipped")
    assert "ingest-probe-timescale_failover" not in doc["run"]["deadlines_s"]


def test_healthy_daily_result_under_the_default_key_is_ok(capsys, tmp_path, primary):
    """A healthy `daily` result with the default TIMESCALE_FAILOVER_DRILL_DIMENSIONS=daily_bars: ok, exit 0,
    and no vocabulary note for the tool's own default."""
    code, doc, _ = readiness(capsys, tmp_path, primary, None, results={"daily": HEALTHY["daily_bars"]})
    snap = doc["failover_drill"]
    assert (code, snap["status"], snap["failover_decision"]["should_failover"]) == (0, "ok", False)
    assert snap["reason"].startswith("no failover needed: every dimension healthy")
    assert snap["health_report"]["vocabulary"]["legacy_names"] == []
    assert snap["components"][0]["metadata"]["vocabulary_notes"] == ["required_not_planned"]  # no symbols here


def test_readiness_without_connectivity_contacts_no_server(capsys, tmp_path, primary):
    """Without --connectivity readiness contacts nothing, as the old readiness did (issue #14): neither the
    primary nor the standby of a decided failover (a listener that counts connections: none), no `run` block;
    the fallback warns naming --connectivity (exit 1). With it, the standby is probed (see above)."""
    hole = BlackHole()
    try:
        code, doc, _ = readiness(capsys, tmp_path, primary, f"postgresql://probe:pw@127.0.0.1:{hole.port}/postgres",
                                 command=("readiness",), timeout=1.0)
        accepted = hole.accepted
    finally:
        hole.close()
    assert accepted == 0
    assert doc["run"] is None
    fb = fallback(doc)
    assert (code, doc["failover_drill"]["status"], fb["status"]) == (1, "warn", "warn")
    assert "standby not probed" in fb["summary"]
    assert "--connectivity" in fb["summary"]


def test_drill_rehearses_healthy_results_against_the_promoted_standby(capsys, tmp_path, primary, promoted):
    """`drill` with healthy results: the simulated outage decides a failover and the promoted standby makes it
    ok (exit 0); the primary is not contacted (the old drill could never be ok: it had no fallback)."""
    code, doc, _ = readiness(capsys, tmp_path, primary, promoted.dsn(), results=HEALTHY, command=("drill",))
    snap = doc["failover_drill"]
    assert (code, snap["status"], snap["simulated_outage"]) == (0, "ok", ["daily"])
    assert fallback(doc)["metadata"]["writable"] is True
    assert list(doc["run"]["deadlines_s"]) == ["ingest-probe-timescale_failover"]
    assert snap["scenario"] == "timescale_failover"


def test_drill_against_a_streaming_replica_fails(capsys, tmp_path, primary, replica):
    """`drill` against a replica still in recovery: the rehearsal fails (exit 2) and says to promote it."""
    code, doc, _ = readiness(capsys, tmp_path, primary, replica.dsn(), results=HEALTHY, command=("drill",))
    assert (code, doc["failover_drill"]["status"]) == (2, "fail")
    assert "still in recovery" in fallback(doc)["summary"]
