"""Markdown for people: headings, tables, every section of the report in human form, no Python reprs."""

from __future__ import annotations

from ingest_probe.renderers.markdown_blocks import bullets, cell, fmt, rounded, table
from ingest_probe.renderers.markdown_drill import failover_drill
from ingest_probe.renderers.markdown_topics import kafka_topic_provisioning
from ingest_probe.renderers.printable import printable
from ingest_probe.report.model import Report
from ingest_probe.results import ProbeResult, Status

__all__ = ["bullets", "cell", "fmt", "render", "table"]


def _connectivity(results: tuple[ProbeResult, ...]) -> list[str]:
    out = ["## Connectivity", ""]
    out += table(
        ["Connector", "Status", "Latency (ms)", "Endpoint", "Error"],
        [[r.name, r.status.value, rounded(r.latency_ms), r.endpoint,
          f"{r.error_kind}: {r.error}" if r.error else None] for r in results],
    )
    for r in results:
        if r.status is Status.SKIPPED:
            continue
        out += ["", f"### {r.name}: probe details", ""]
        out += bullets({
            "status": r.status.value,
            "healthy": r.healthy,
            "retryable": r.retryable,
            "deadline (s)": rounded(r.deadline_s),
            "phases (ms)": {k: rounded(v) for k, v in r.phases.items()},
            **r.details,
        })
    return out


def _run(report: Report) -> list[str]:
    run = report.run
    assert run is not None
    out = ["## Run", ""]
    out += bullets({"timeout (s)": run.timeout_s, "jitter": run.jitter, "seed": run.seed,
                    "duration (ms)": run.duration_ms})
    out += ["", *table(["Task", "State", "Deadline (s)", "Age (s)"],
                       [[t.name, t.state, t.deadline_s, t.age_s] for t in run.tasks])]
    return out


def render(report: Report) -> str:
    if report.drill is not None:
        title = "failover drill" if report.drill.simulated_outage else "readiness evidence"
    elif report.topics is not None and report.results is None:
        title = "topic provisioning"
    else:
        title = "report"
    out = [f"# ingest-probe {title}", ""]
    out += [f"Generated {report.timestamp} by ingest-probe {report.version} (schema {report.schema_version}).", ""]
    out += bullets({
        "Overall status": report.status.value if report.status is not None else "not probed (manifest only)",
        "Should run": report.should_run,
        "Reason": report.reason,
        "Dimensions": report.plan.dimensions,
    })
    out += ["", "## Connectors", ""]
    out += table(["Connector", "Configured", "Supervised", "Target"],
                 [[m.name, m.configured, m.supervised, m.summary] for m in report.manifest])
    if report.results is not None:
        out += ["", *_connectivity(report.results)]
    if report.run is not None:
        out += ["", *_run(report)]
    if report.topics is not None:
        out += ["", "## Kafka topic provisioning", "", *kafka_topic_provisioning(report.topics)]
    if report.drill is not None:
        out += ["", "## Failover drill", "", *failover_drill(report.drill)]
    out += ["", "## Ingest plan", "", *bullets(report.plan.to_dict())]
    out += ["", "## Schedule", ""]
    out += bullets(report.schedule.to_dict()) if report.schedule else ["- not scheduled (TIMESCALE_INGEST_SCHEDULE)"]
    out += ["", "## Failover drill configuration", ""]
    failover = report.failover_block()
    out += bullets(failover) if failover else ["- disabled (TIMESCALE_FAILOVER_DRILL)"]
    out += ["", "## Manifest", ""]
    for m in report.manifest:
        meta = {k: v for k, v in m.metadata.items() if k != "topic_specs"}
        out += [f"### {m.name}: configuration", "", *bullets(meta), ""]
        if m.metadata.get("topic_specs"):
            out += table(
                ["Topic", "Dimensions", "Partitions", "Replication", "Configs"],
                [[t["name"], t["dimensions"], t["partitions"], t["replication_factor"], t["configs"]]
                 for t in m.metadata["topic_specs"]],
            )
            out.append("")
    # Every value went through fmt(); this catches any line built around it (a server's ESC never passes).
    return printable("\n".join(out).rstrip("\n"), keep="\n") + "\n"
