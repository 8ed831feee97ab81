"""The Prometheus textfile renderer: families, semantics, escaping and secrets, checked with a real parser."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys

import pytest
from fakes import make_settings
from prometheus_client.parser import text_string_to_metric_families

from ingest_probe.connectors.kafka.topic_specs import TopicSpec
from ingest_probe.engine.supervisor import RunInfo
from ingest_probe.renderers import get_renderer
from ingest_probe.renderers.prometheus import render, render_failed_run
from ingest_probe.report.builder import build_report
from ingest_probe.results import ProbeResult, Status
from ingest_probe.topics.plan import Action, ProvisioningSection, TopicPlan

CANARY = 'CANARY-pw-7f3a"\\x'
NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

ALL_FAMILIES = {
    "ingest_probe_up",
    "ingest_probe_status",
    "ingest_probe_latency_seconds",
    "ingest_probe_phase_seconds",
    "ingest_probe_should_run",
    "ingest_probe_last_run_timestamp_seconds",
    "ingest_probe_run_success",
    "ingest_probe_run_duration_seconds",
    "ingest_probe_tls_cert_not_after_timestamp_seconds",
    "ingest_probe_topic_drift",
}


def provisioning(requested, drift):
    """A dry-run provisioning section: every requested topic read, those in ``drift`` drifting."""
    plans = tuple(TopicPlan(spec=TopicSpec(name=name, dimensions=("daily",)),
                            action=Action.DRIFT if name in drift else Action.IN_SYNC, drift=drift.get(name, {}))
                  for name in requested)
    return ProvisioningSection(dry_run=True, before=plans, after=plans)


def results():
    return [
        ProbeResult(
            name="timescale",
            configured=True,
            status=Status.OK,
            latency_ms=12.5,
            phases={"resolve": 0.5, "connect": 10.0, "query": 2.0},
            endpoint="db:5432",
        ),
        ProbeResult(
            name="redis",
            configured=True,
            status=Status.DOWN,
            latency_ms=3.0,
            phases={"resolve": 0.25, "connect": None, "ping": None},
            endpoint=f"{CANARY}:6379",
            error=f"auth failed for password {CANARY}",
            error_kind="auth",
            details={"password": CANARY},
        ),
        ProbeResult(name="kafka", configured=False, status=Status.SKIPPED),
    ]


def parse(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family):
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def full_report(**kw):
    settings = make_settings(REDIS_HOST="db", REDIS_PASSWORD=CANARY)
    return build_report(
        settings,
        results=results(),
        run=RunInfo(timeout_s=5.0, jitter=0.1, seed=1, concurrency=100, duration_ms=1500.0),
        now=NOW,
        topics=provisioning(**kw) if kw else None,
    )


def test_every_listed_family_with_help_and_type_and_nothing_else():
    """A full report yields exactly the issue's families, each a gauge with HELP, and parses cleanly."""
    text = render(full_report(requested=["a", "b"], drift={"b": {"partitions": {"want": 3, "have": 1,
                                                                             "classification": "fixable"}}}))
    families = parse(text)
    assert set(families) == ALL_FAMILIES
    assert all(f.type == "gauge" and f.documentation for f in families.values())
    assert text.endswith("\n")
    for name in ALL_FAMILIES:
        assert text.index(f"# HELP {name} ") < text.index(f"# TYPE {name} gauge") < text.index(f"\n{name}")


def test_up_is_one_for_ok_zero_for_down_and_absent_for_skipped():
    """`up` is 1 for ok/degraded, 0 for starting/down, and has no sample for a skipped connector."""
    res = [
        ProbeResult(name=n, configured=s is not Status.SKIPPED, status=s)
        for n, s in [
            ("a", Status.OK),
            ("b", Status.DEGRADED),
            ("c", Status.STARTING),
            ("d", Status.DOWN),
            ("e", Status.SKIPPED),
        ]
    ]
    up = samples(parse(render(build_report(make_settings(), results=res, now=NOW)))["ingest_probe_up"])
    assert up == {
        (("connector", "a"), ("target", "a")): 1,
        (("connector", "b"), ("target", "b")): 1,
        (("connector", "c"), ("target", "c")): 0,
        (("connector", "d"), ("target", "d")): 0,
    }


def test_status_is_one_hot_per_connector():
    """Every connector has one sample per status, exactly one of them 1 — skipped included."""
    status = samples(parse(render(full_report()))["ingest_probe_status"])
    for connector, expected in [("timescale", "ok"), ("redis", "down"), ("kafka", "skipped")]:
        row = {dict(k)["status"]: v for k, v in status.items() if dict(k)["connector"] == connector}
        assert set(row) == {"ok", "degraded", "starting", "down", "skipped"}
        assert row == {s: (1.0 if s == expected else 0.0) for s in row}


def test_latency_and_every_phase_in_seconds_nan_when_not_reached():
    """Latency and phases are in seconds; every phase of a probe has a sample, NaN when it was not reached
    (so a target's series set does not change with how far its probe got)."""
    families = parse(render(full_report()))
    assert samples(families["ingest_probe_latency_seconds"]) == {
        (("connector", "timescale"), ("target", "timescale")): 0.0125,
        (("connector", "redis"), ("target", "redis")): 0.003,
    }
    phases = samples(families["ingest_probe_phase_seconds"])
    assert {(dict(k)["connector"], dict(k)["phase"]) for k in phases} == {
        ("timescale", "resolve"),
        ("timescale", "connect"),
        ("timescale", "query"),
        ("redis", "resolve"),
        ("redis", "connect"),
        ("redis", "ping"),
    }
    assert phases[(("connector", "timescale"), ("phase", "connect"), ("target", "timescale"))] == pytest.approx(0.010)
    assert math.isnan(phases[(("connector", "redis"), ("phase", "connect"), ("target", "redis"))])
    assert 'ingest_probe_phase_seconds{target="redis",connector="redis",phase="ping"} NaN\n' in render(full_report())


def test_run_gauges_come_from_the_report():
    """should_run, the generated_at timestamp, the run's success and duration are taken from the report."""
    families = parse(render(full_report()))
    assert families["ingest_probe_should_run"].samples[0].value == 1
    assert families["ingest_probe_last_run_timestamp_seconds"].samples[0].value == NOW.timestamp()
    assert families["ingest_probe_run_success"].samples[0].value == 1
    assert families["ingest_probe_run_duration_seconds"].samples[0].value == 1.5


@pytest.mark.parametrize(("result", "success"), [
    (ProbeResult(name="redis", configured=True, status=Status.DOWN, error_kind="refused"), 1),
    (ProbeResult(name="redis", configured=True, status=Status.DOWN, error_kind="internal",
                 exception=KeyError("bug")), 0),
    (ProbeResult(name="redis", configured=False, status=Status.SKIPPED), 0),
], ids=["down", "internal", "nothing-configured"])
def test_run_success_is_zero_exactly_when_the_run_cannot_vouch_for_its_results(result, success):
    """A down target is a successful run (it found the outage); an internal error or nothing to probe
    (exit 3) is not."""
    report = build_report(make_settings(), results=[result], now=NOW)
    assert (report.exit_code == 3) == (success == 0)
    assert parse(render(report))["ingest_probe_run_success"].samples[0].value == success


def test_a_failed_run_textfile_has_only_success_zero_and_its_time():
    """A run that could not run: run_success 0 and the time, and no per-target family at all."""
    families = parse(render_failed_run(NOW))
    assert set(families) == {"ingest_probe_last_run_timestamp_seconds", "ingest_probe_run_success"}
    assert families["ingest_probe_run_success"].samples[0].value == 0
    assert families["ingest_probe_last_run_timestamp_seconds"].samples[0].value == NOW.timestamp()


def test_manifest_only_report_has_no_connector_families():
    """Without --connectivity only should_run, the timestamp and the run's success are exported (no fake `up`)."""
    families = parse(render(build_report(make_settings(), now=NOW)))
    assert set(families) == {"ingest_probe_should_run", "ingest_probe_last_run_timestamp_seconds",
                             "ingest_probe_run_success"}


def test_topic_drift_per_requested_topic_with_escaped_labels():
    """Drift is 1 for drifting topics, 0 for the others; backslash, quote and newline survive escaping."""
    odd = 'we\\ird"top\nic'
    text = render(full_report(requested=["in.sync", odd], drift={odd: {}}))
    drift = samples(parse(text)["ingest_probe_topic_drift"])
    assert drift == {(("topic", "in.sync"),): 0, (("topic", odd),): 1}
    assert 'topic="we\\\\ird\\"top\\nic"' in text


def test_no_topic_drift_family_without_a_provisioning_section():
    """The drift family appears only when topics were provisioned."""
    assert "ingest_probe_topic_drift" not in render(full_report())


def test_secret_canary_never_appears():
    """A password in the settings, an error message, an endpoint and details never reach the textfile."""
    text = render(full_report(requested=["t"], drift={}))
    assert "CANARY" not in text
    assert "7f3a" not in text


def test_output_is_deterministic_and_registered_as_a_format():
    """Same report, same bytes; `get_renderer('prometheus')` is this renderer."""
    report = full_report()
    assert render(report) == render(report)
    assert get_renderer("prometheus") is render


def test_cli_report_format_prometheus_parses():
    """`ingest-probe report --format prometheus` (manifest only) prints a parseable textfile, exit 0."""
    out = subprocess.run(
        [sys.executable, "-m", "ingest_probe", "report", "--no-env", "--format", "prometheus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert set(parse(out.stdout)) == {"ingest_probe_should_run", "ingest_probe_last_run_timestamp_seconds",
                                      "ingest_probe_run_success"}
