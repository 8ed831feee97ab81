"""Prometheus text exposition (node_exporter textfile collector): ``Report -> str``, walking the typed report.

Families, all gauges, in this order (a family with no samples is left out entirely):

Every per-target series carries ``target`` (the target's name, unique in a run), ``connector`` (its kind) and the
target's labels (``--label``, a targets file's ``labels:``, ``service`` for ``--target``), so the textfiles of
two environments or services in one directory never share a series.

* ``ingest_probe_up{target,connector}`` — 1 ok/degraded, 0 starting/down. A *skipped* connector (not configured)
  gets no ``up`` sample: 0 would page someone for a connector nobody configured, 1 would claim a check that
  never ran. Its state is visible in ``ingest_probe_status{status="skipped"}``.
* ``ingest_probe_status{target,connector,status}`` — one-hot over ok/degraded/starting/down/skipped.
* ``ingest_probe_latency_seconds{target,connector}`` — probed connectors only.
* ``ingest_probe_phase_seconds{target,connector,phase}`` — every phase the probe has, in every run: ``NaN`` for a phase
  not reached in this run (a refused connection never queries; a warm connection is neither resolved nor
  connected again), so the series set of a target never changes between cycles.
* ``ingest_probe_should_run``, ``ingest_probe_last_run_timestamp_seconds`` (the report's ``generated_at``),
  ``ingest_probe_run_success`` (0 when the run cannot vouch for its results — exit code 3: an internal error,
  nothing configured — else 1), ``ingest_probe_run_duration_seconds`` (the ``run`` block's ``duration_ms``, when
  connectors were probed). These and ``topic_drift`` carry the labels every target of the run shares
  (``run_labels``: ``--label env=prod``), so two runs' textfiles differ in them too.
* ``ingest_probe_tls_cert_not_after_timestamp_seconds{target,connector}`` — for each probed target: when the TLS
  certificate its server presented expires (Unix time; the earliest over a probe's connections), as
  blackbox_exporter's ``probe_ssl_earliest_cert_expiry``; ``NaN`` when no certificate was seen in this run (a
  plaintext target, or a TLS one that did not get as far as the handshake), so the series set does not change
  with an outage.
* ``ingest_probe_topic_drift{topic}`` — when the report has a ``kafka_topic_provisioning`` section: 1 for a
  topic whose existing configuration drifts from the declared one, 0 for every other requested topic.

``render_failed_run(at)`` is the textfile of a run that could not run at all (its configuration did not load,
the cycle itself failed): only ``ingest_probe_run_success 0`` and the timestamp, so no per-target series from an
earlier run is left claiming a target is up.

Only allow-listed, non-secret fields are read (names, statuses, numbers, topic names); error messages,
endpoints and details never reach the output. Label values are escaped (backslash, double quote, newline).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

from ingest_probe.defaults import EXIT_UNKNOWN
from ingest_probe.report.model import Report
from ingest_probe.results import ProbeResult, Status
from ingest_probe.settings.targets import shared_labels
from ingest_probe.topics.plan import ProvisioningSection

_HELP = {
    "ingest_probe_up": "1 when the connector answered (ok or degraded), 0 when starting or down; "
    "no sample when skipped.",
    "ingest_probe_status": "Connector status, one-hot over ok/degraded/starting/down/skipped.",
    "ingest_probe_latency_seconds": "Wall time of the connector's probe in seconds.",
    "ingest_probe_phase_seconds": "Wall time of each probe phase in seconds; NaN when not reached in this run.",
    "ingest_probe_should_run": "1 when the ingest plan gates allow the ingest to run.",
    "ingest_probe_last_run_timestamp_seconds": "Unix time of the last run (a failed one too).",
    "ingest_probe_run_success": "1 when the run could vouch for its results, 0 when it could not run or an "
    "internal error decided a result (exit code 3).",
    "ingest_probe_run_duration_seconds": "Wall time of the whole connectivity run in seconds.",
    "ingest_probe_tls_cert_not_after_timestamp_seconds": "Unix time the TLS certificate the target presented "
    "expires (the earliest of its connections); NaN when none was seen in this run.",
    "ingest_probe_topic_drift": "1 when an existing Kafka topic differs from its declaration, else 0.",
}
#: A target's statuses, one-hot (``unknown`` is a whole run's, never a target's).
STATUSES = tuple(s for s in Status if s is not Status.UNKNOWN)

Sample = tuple[Mapping[str, str], float]


def render(report: Report) -> str:
    results = report.results or ()
    own = [(r, _target_labels(r)) for r in results]
    shared = run_labels(report)
    families: list[tuple[str, list[Sample]]] = [
        ("ingest_probe_up", [
            (labels, 1.0 if r.healthy else 0.0) for r, labels in own if r.status is not Status.SKIPPED
        ]),
        ("ingest_probe_status", [
            ({**labels, "status": s.value}, 1.0 if r.status is s else 0.0)
            for r, labels in own
            for s in STATUSES
        ]),
        ("ingest_probe_latency_seconds", [
            (labels, round(r.latency_ms, 3) / 1000.0) for r, labels in own if r.latency_ms is not None
        ]),
        ("ingest_probe_phase_seconds", [
            ({**labels, "phase": phase}, math.nan if ms is None else round(ms, 3) / 1000.0)
            for r, labels in own
            for phase, ms in r.phases.items()
        ]),
        ("ingest_probe_should_run", [(shared, 1.0 if report.should_run else 0.0)]),
        *_run_families(report.generated_at, success=report.exit_code != EXIT_UNKNOWN, labels=shared),
        ("ingest_probe_run_duration_seconds", [] if report.run is None or report.run.duration_ms is None
         else [(shared, report.run.duration_ms / 1000.0)]),
        ("ingest_probe_tls_cert_not_after_timestamp_seconds", [  # NaN: no certificate seen in this run
            (labels, math.nan if r.tls_not_after is None else r.tls_not_after)
            for r, labels in own if r.status is not Status.SKIPPED
        ]),
        ("ingest_probe_topic_drift", [({**shared, **labels}, v) for labels, v in _drift(report.topics)]),
    ]
    return _exposition(families)


def run_labels(report: Report) -> dict[str, str]:
    """The labels of the run's series (``should_run``, ``run_success`` ...): those every target of the run has,
    with the same value (``--label env=prod``; ``service`` when one ``--target`` is probed). None for the
    classic configuration without ``--label``, as before targets had labels."""
    return shared_labels(m.labels for m in report.manifest)


def _target_labels(result: ProbeResult) -> dict[str, str]:
    """A target's series labels: ``target`` (its name), ``connector`` (its kind), then its own labels (names
    checked when they were given: never ``target``/``connector``/``status``/``phase``/``topic``)."""
    labels = {"target": result.name, "connector": result.kind or result.name}
    labels.update((k, v) for k, v in result.labels.items() if k not in labels)
    return labels


def render_failed_run(at: dt.datetime, labels: Mapping[str, str] | None = None) -> str:
    """The textfile of a run that could not run (configuration error, failed cycle): success 0, and when;
    ``labels``: the run's (``--label``, or those of the last good cycle), so it replaces its own series."""
    return _exposition(_run_families(at, success=False, labels=labels or {}))


def _run_families(at: dt.datetime, *, success: bool, labels: Mapping[str, str]) -> list[tuple[str, list[Sample]]]:
    return [
        ("ingest_probe_last_run_timestamp_seconds", [(labels, at.replace(microsecond=0).timestamp())]),
        ("ingest_probe_run_success", [(labels, 1.0 if success else 0.0)]),
    ]


def _exposition(families: list[tuple[str, list[Sample]]]) -> str:
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
