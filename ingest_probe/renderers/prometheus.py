"""Prometheus text exposition (node_exporter textfile collector): ``Report -> str``, walking the typed report.

Families, all gauges, in this order (a family with no samples is left out entirely):

* ``ingest_probe_up{connector}`` — 1 ok/degraded, 0 starting/down. A *skipped* connector (not configured)
  gets no ``up`` sample: 0 would page someone for a connector nobody configured, 1 would claim a check that
  never ran. Its state is visible in ``ingest_probe_status{status="skipped"}``.
* ``ingest_probe_status{connector,status}`` — one-hot over ok/degraded/starting/down/skipped.
* ``ingest_probe_latency_seconds{connector}`` — probed connectors only.
* ``ingest_probe_phase_seconds{connector,phase}`` — only the phases a probe actually reached.
* ``ingest_probe_should_run``, ``ingest_probe_last_run_timestamp_seconds`` (the report's ``generated_at``),
  ``ingest_probe_run_duration_seconds`` (the ``run`` block's ``duration_ms``, when connectors were probed).
* ``ingest_probe_tls_cert_not_after_timestamp_seconds{target}`` — for each target that spoke TLS: when the
  certificate its server presented expires (Unix time; the earliest over a probe's connections), as
  blackbox_exporter's ``probe_ssl_earliest_cert_expiry``. Labelled ``target`` (the target's name).
* ``ingest_probe_topic_drift{topic}`` — when the report has a ``kafka_topic_provisioning`` section: 1 for a
  topic whose existing configuration drifts from the declared one, 0 for every other requested topic.

Only allow-listed, non-secret fields are read (names, statuses, numbers, topic names); error messages,
endpoints and details never reach the output. Label values are escaped (backslash, double quote, newline).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ingest_probe.report.model import Report
from ingest_probe.results import Status
from ingest_probe.topics.plan import ProvisioningSection

_HELP = {
    "ingest_probe_up": "1 when the connector answered (ok or degraded), 0 when starting or down; "
    "no sample when skipped.",
    "ingest_probe_status": "Connector status, one-hot over ok/degraded/starting/down/skipped.",
    "ingest_probe_latency_seconds": "Wall time of the connector's probe in seconds.",
    "ingest_probe_phase_seconds": "Wall time of each probe phase that was reached, in seconds.",
    "ingest_probe_should_run": "1 when the ingest plan gates allow the ingest to run.",
    "ingest_probe_last_run_timestamp_seconds": "Unix time the report was generated.",
    "ingest_probe_run_duration_seconds": "Wall time of the whole connectivity run in seconds.",
    "ingest_probe_tls_cert_not_after_timestamp_seconds": "Unix time the TLS certificate the target presented "
    "expires (the earliest of its connections).",
    "ingest_probe_topic_drift": "1 when an existing Kafka topic differs from its declaration, else 0.",
}
#: A target's statuses, one-hot (``unknown`` is a whole run's, never a target's).
STATUSES = tuple(s for s in Status if s is not Status.UNKNOWN)

Sample = tuple[Mapping[str, str], float]


def render(report: Report) -> str:
    results = report.results or ()
    families: list[tuple[str, list[Sample]]] = [
        ("ingest_probe_up", [
            ({"connector": r.name}, 1.0 if r.healthy else 0.0) for r in results if r.status is not Status.SKIPPED
        ]),
        ("ingest_probe_status", [
            ({"connector": r.name, "status": s.value}, 1.0 if r.status is s else 0.0)
            for r in results
            for s in STATUSES
        ]),
        ("ingest_probe_latency_seconds", [
            ({"connector": r.name}, round(r.latency_ms, 3) / 1000.0) for r in results if r.latency_ms is not None
        ]),
        ("ingest_probe_phase_seconds", [
            ({"connector": r.name, "phase": phase}, round(ms, 3) / 1000.0)
            for r in results
            for phase, ms in r.phases.items()
            if ms is not None
        ]),
        ("ingest_probe_should_run", [({}, 1.0 if report.should_run else 0.0)]),
        ("ingest_probe_last_run_timestamp_seconds", [({}, report.generated_at.replace(microsecond=0).timestamp())]),
        ("ingest_probe_run_duration_seconds", [] if report.run is None or report.run.duration_ms is None
         else [({}, report.run.duration_ms / 1000.0)]),
        ("ingest_probe_tls_cert_not_after_timestamp_seconds", [
            ({"target": r.name}, r.tls_not_after) for r in results if r.tls_not_after is not None
        ]),
        ("ingest_probe_topic_drift", _drift(report.topics)),
    ]
    lines: list[str] = []
    for name, samples in families:
        if not samples:
            continue
        lines.append(f"# HELP {name} {_escape_help(_HELP[name])}")
        lines.append(f"# TYPE {name} gauge")
        lines += [f"{name}{_labels(labels)} {_value(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def _drift(section: ProvisioningSection | None) -> list[Sample]:
    """One sample per requested topic (1 drifting, 0 otherwise), plus any drifting topic not requested."""
    if section is None:
        return []
    drifting = set(section.drifting)
    return [({"topic": t}, 1.0 if t in drifting else 0.0) for t in sorted(drifting | set(section.requested))]


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items()) + "}"


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(round(value, 6))  # microseconds: no float noise such as 0.0037679999999999996
