"""Report builder and renderers: gating, JSON shape and determinism, Markdown golden output."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path

import pytest
from fakes import assert_golden

from ingest_probe.engine.supervisor import RunInfo, TaskInfo
from ingest_probe.renderers import get_renderer
from ingest_probe.report.builder import (
    REASON_NO_DIMENSIONS,
    REASON_NOT_INSTITUTIONAL,
    REASON_NOT_TIER_1,
    build_report,
)
from ingest_probe.results import ProbeResult, Status
from ingest_probe.settings.service import load_settings

GOLDEN = Path(__file__).parent / "golden"
NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)

FULL_ENV = {
    "TIMESCALEDB_URL": "postgresql+psycopg2://ingest:pw@db.example.com:5433/market?sslmode=require",
    "TIMESCALEDB_POOL_SIZE": "5",
    "REDIS_URL": "rediss://cache:pw@cache.example.com:6380/1",
    "REDIS_CLIENT_NAME": "ingest",
    "KAFKA_BROKERS": "k1:9092,k2:9092",
    "KAFKA_INGEST_TOPICS": "daily:bars.daily,intraday:bars.intraday",
    "KAFKA_INGEST_TOPIC_DAILY_PARTITIONS": "3",
    "TIMESCALE_SYMBOLS": "AAPL,MSFT",
    "TIMESCALE_ENABLE_INTRADAY": "true",
    "EMP_TIER": "tier-1",
    "TIMESCALE_INGEST_SCHEDULE": "true",
    "TIMESCALE_FAILOVER_DRILL": "true",
}


def results() -> list[ProbeResult]:
    return [
        ProbeResult(name="timescale", configured=True, status=Status.OK, latency_ms=12.3456,
                    phases={"resolve": 0.5, "connect": 9.25, "query": 1.5}, endpoint="db.example.com:5433",
                    details={"server_version": "15.19", "in_recovery": False, "timescaledb": None},
                    deadline_s=4.75),
        ProbeResult(name="redis", configured=True, status=Status.DOWN, latency_ms=1.0,
                    phases={"resolve": 0.2, "connect": None, "query": None}, endpoint="cache.example.com:6380",
                    error="connection refused by cache.example.com:6380 | is it\nrunning?", error_kind="refused",
                    retryable=True, deadline_s=4.9),
        ProbeResult(name="kafka", configured=True, status=Status.DEGRADED, latency_ms=30.0,
                    phases={"resolve": 0.1, "connect": 20.0, "query": 9.0}, endpoint="k1:9092",
                    error="topics missing on the cluster: bars.intraday", error_kind="missing_topic",
                    details={"topics_missing": ["bars.intraday"], "topics_present": ["bars.daily"]},
                    deadline_s=5.0),
    ]


RUN = RunInfo(timeout_s=5.0, jitter=0.1, seed=42, concurrency=100, duration_ms=31.5,
              tasks=(TaskInfo(name="ingest-probe-timescale", state="finished", age_s=0.01, deadline_s=4.75),))


@pytest.mark.parametrize(
    ("env", "should_run", "reason"),
    [
        ({"DATA_BACKBONE_MODE": "bootstrap", "EMP_TIER": "tier_1", "TIMESCALE_SYMBOLS": "A"}, False,
         REASON_NOT_INSTITUTIONAL),
        ({"DATA_BACKBONE_MODE": "institutional", "EMP_TIER": "tier_2", "TIMESCALE_SYMBOLS": "A"}, False,
         REASON_NOT_TIER_1),
        ({"DATA_BACKBONE_MODE": "institutional", "EMP_TIER": "tier_1"}, False, REASON_NO_DIMENSIONS),
        ({"DATA_BACKBONE_MODE": "institutional", "EMP_TIER": "tier_1", "TIMESCALE_ENABLE_MACRO": "1",
          "TIMESCALE_MACRO_EVENTS": '[{"event": "cpi"}]'}, True, None),
        # The ingest service's rule: intraday needs symbols, macro needs events or a window.
        ({"DATA_BACKBONE_MODE": "institutional", "EMP_TIER": "tier_1", "TIMESCALE_ENABLE_INTRADAY": "y",
          "TIMESCALE_ENABLE_MACRO": "1", "TIMESCALE_MACRO_EVENTS": "[]"}, False, REASON_NO_DIMENSIONS),
        ({"REDIS_HOST": "r", "EMP_TIER": "tier_1", "TIMESCALE_SYMBOLS": "A"}, True, None),
    ],
)
def test_gating(env, should_run, reason):
    """should_run/reason follow mode, then tier, then dimensions (institutional inferred from Redis)."""
    doc = build_report(load_settings(environ=env), now=NOW).to_dict()
    assert (doc["should_run"], doc["reason"]) == (should_run, reason)


def test_manifest_only_json_shape():
    """A manifest-only report has every top-level key, three snapshots in order, no probe data."""
    report = build_report(load_settings(environ=FULL_ENV), now=NOW)
    doc = report.to_dict()
    assert set(doc) == {"schema_version", "generated_at", "tool", "status", "should_run", "reason", "dimensions",
                        "schedule", "failover", "configuration", "manifest", "connectivity", "run",
                        "kafka_topic_provisioning", "failover_drill", "probed_from", "config_sources"}
    assert doc["generated_at"] == "2026-11-25T12:00:00Z"
    assert doc["probed_from"] == socket.gethostname()
    assert doc["config_sources"] == ["environment"]
    assert [m["name"] for m in doc["manifest"]] == ["timescale", "redis", "kafka"]
    assert doc["dimensions"] == ["daily", "intraday"]
    assert doc["schedule"] == {"interval_seconds": 3600, "jitter_seconds": 120, "max_failures": 3}
    assert doc["failover"]["dimensions"] == ["daily_bars"]
    kafka = doc["manifest"][2]["metadata"]
    assert kafka["topics"] == ["bars.daily", "bars.intraday"]
    assert kafka["topic_count"] == 2
    assert doc["manifest"][0]["metadata"]["pool"]["size"] == 5
    assert (doc["status"], doc["connectivity"], report.exit_code) == (None, None, 0)
    assert (doc["kafka_topic_provisioning"], doc["failover_drill"]) == (None, None)


def test_unconfigured_connectors_and_sqlite_have_no_pool():
    """Unconfigured connectors say so; pool settings appear only for PostgreSQL targets."""
    doc = build_report(load_settings(environ={"TIMESCALEDB_URL": "sqlite:///tmp/x.db",
                                              "TIMESCALEDB_POOL_SIZE": "5"}), now=NOW).to_dict()
    ts, redis, kafka = doc["manifest"]
    assert ts["metadata"]["backend"] == "sqlite"
    assert "pool" not in ts["metadata"]
    assert redis["configured"] is False
    assert kafka["configured"] is False
    assert "not configured" in redis["metadata"]["summary"]


@pytest.mark.parametrize(
    ("statuses", "overall", "code"),
    [
        (["ok", "ok", "skipped"], "ok", 0),
        (["ok", "degraded", "ok"], "degraded", 1),
        (["starting", "degraded", "ok"], "starting", 1),
        (["ok", "down", "starting"], "down", 2),
        (["skipped", "skipped", "skipped"], "unknown", 3),
    ],
)
def test_overall_status_and_exit_code(statuses, overall, code):
    """Overall status is the worst configured one; exit code has the Nagios meaning (nothing probed: 3)."""
    rs = [ProbeResult(name=n, configured=s != "skipped", status=Status(s))
          for n, s in zip(("timescale", "redis", "kafka"), statuses, strict=True)]
    report = build_report(load_settings(environ={}), results=rs, now=NOW)
    assert (report.to_dict()["status"], report.exit_code) == (overall, code)


class _Section:
    """A report section with a given exit code (what topic provisioning and the drill hand the builder)."""

    exception = None

    def __init__(self, exit_code: int) -> None:
        self.exit_code = exit_code

    def to_dict(self) -> dict[str, int]:
        return {"exit_code": self.exit_code}


@pytest.mark.parametrize(
    ("connector", "topics", "drill", "code"),
    [
        ("down", 1, None, 2),  # topic drift (warning) beside a down connector
        ("down", None, 1, 2),  # drill warn beside a down connector
        ("down", 1, 1, 2),
        ("down", 0, 0, 2),
        ("ok", 1, 0, 1),
        ("degraded", 0, 2, 2),
        ("ok", None, None, 0),
    ],
)
def test_exit_code_is_the_worst_of_connectors_and_sections(connector, topics, drill, code):
    """The exit code is the worst of the connectors' and every section's: a section that only warns never hides
    a down connector, and a failing section counts even when every connector is fine."""
    rs = [ProbeResult(name="redis", configured=True, status=Status(connector))]
    report = build_report(load_settings(environ={}), results=rs, now=NOW,
                          topics=None if topics is None else _Section(topics),
                          drill=None if drill is None else _Section(drill))
    assert report.exit_code == code


def test_json_is_deterministic_and_sorted():
    """The same inputs render byte-identical JSON with sorted keys and a trailing newline."""
    settings = load_settings(environ=FULL_ENV)
    a = get_renderer("json")(build_report(settings, results=results(), run=RUN, now=NOW))
    b = get_renderer("json")(build_report(settings, results=results(), run=RUN, now=NOW))
    assert a == b
    assert a.endswith("}\n")
    doc = json.loads(a)
    assert list(doc) == sorted(doc)
    assert [c["name"] for c in doc["connectivity"]] == ["timescale", "redis", "kafka"]
    assert "metadata" not in doc["connectivity"][0]  # connectivity does not repeat the manifest
    assert doc["connectivity"][0]["latency_ms"] == 12.346


def test_markdown_golden():
    """Markdown output matches the reviewed golden file (regenerate with INGEST_PROBE_REGEN_GOLDEN=1)."""
    settings = load_settings(environ=FULL_ENV)
    text = get_renderer("markdown")(build_report(settings, results=results(), run=RUN, now=NOW,
                                                 probed_from="probe-01.example"))
    assert_golden(GOLDEN / "report.md", text)


def test_regenerating_golden_files_is_refused_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """INGEST_PROBE_REGEN_GOLDEN under CI=true fails with a message saying why and leaves the golden file as
    reviewed; locally it rewrites the file."""
    golden = tmp_path / "g.md"
    golden.write_text("reviewed\n")
    monkeypatch.setenv("INGEST_PROBE_REGEN_GOLDEN", "1")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="INGEST_PROBE_REGEN_GOLDEN is set in CI"):
        assert_golden(golden, "new output\n")
    assert golden.read_text() == "reviewed\n"
    monkeypatch.delenv("CI")
    assert_golden(golden, "new output\n")
    assert golden.read_text() == "new output\n"


def test_markdown_has_no_python_reprs_and_tables_stay_intact():
    """No True/None/tuple reprs; multi-line errors stay on one table row; pipes are escaped."""
    settings = load_settings(environ=FULL_ENV)
    text = get_renderer("markdown")(build_report(settings, results=results(), run=RUN, now=NOW))
    for bad in ("True", "False", "None", "('", "{'"):
        assert bad not in text
    row = next(line for line in text.splitlines() if line.startswith("| redis | down"))
    assert "\\|" in row
    assert "- error: refused: connection refused by cache.example.com:6380 | is it running?" in text  # in full
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith("|")
