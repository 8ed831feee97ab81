"""Markdown for people, in incident order: the verdict, the connectivity table, each target's details, then the
run, topics and drill, and last the configuration (gating, connectors, plan, schedule, failover, manifest).

``sections`` (``--sections``) picks what is shown, by the names in ``SECTIONS``; the title and the verdict
are always there. Table cells are cut at ``MAX_CELL`` characters (a full error is in the target's details)
and bullets wrap at ``WRAP``, so no line runs to hundreds of characters.
"""

from __future__ import annotations

from collections.abc import Collection

from ingest_probe.renderers.markdown_blocks import bullets, cell, fmt, item, rounded, table
from ingest_probe.renderers.markdown_drill import failover_drill
from ingest_probe.renderers.markdown_topics import kafka_topic_provisioning
from ingest_probe.renderers.printable import printable
from ingest_probe.report.model import Report
from ingest_probe.results import ProbeResult, Status

__all__ = ["SECTIONS", "bullets", "cell", "fmt", "render", "table"]

#: Every section, in the order they appear (the default shows them all).
SECTIONS = ("connectivity", "details", "run", "topics", "drill", "gating", "connectors", "plan", "schedule",
            "failover", "manifest")


def _connectivity(results: tuple[ProbeResult, ...]) -> list[str]:
    out = ["## Connectivity", ""]
    out += table(
        ["Target", "Status", "Latency (ms)", "Endpoint", "Error"],
        [[r.name, r.status.value, rounded(r.latency_ms), r.endpoint,
          f"{r.error_kind}: {r.error}" if r.error else None] for r in results],
        max_cell=(32, 8, 12, 40, 72),  # the full error is in the target's details
    )
    return out


def _details(results: tuple[ProbeResult, ...]) -> list[str]:
    out: list[str] = []
    for r in results:
        if r.status is Status.SKIPPED:
            continue
        out += ["", f"### {fmt(r.name)}: probe details", ""]
        out += bullets({
            "status": r.status.value,
            **({"error": f"{r.error_kind}: {r.error}"} if r.error else {}),
            "healthy": r.healthy,
            "retryable": r.retryable,
            "deadline (s)": rounded(r.deadline_s),
            "phases (ms)": {k: rounded(v) for k, v in r.phases.items()},
            **r.details,
        })
    return out[1:]


def _run(report: Report) -> list[str]:
    run = report.run
    assert run is not None
    out = ["## Run", ""]
    out += bullets({"timeout (s)": run.timeout_s, "jitter": run.jitter, "seed": run.seed,
                    "duration (ms)": run.duration_ms})
    out += ["", *table(["Task", "State", "Deadline (s)", "Age (s)"],
                       [[t.name, t.state, t.deadline_s, t.age_s] for t in run.tasks])]
    return out


def _header(report: Report) -> list[str]:
    if report.drill is not None:
        title = "failover drill" if report.drill.simulated_outage else "readiness evidence"
    elif report.topics is not None and report.results is None:
        title = "topic provisioning"
    else:
        title = "report"
    where = f" on {fmt(report.probed_from)}" if report.probed_from else ""
    sources = f"; configuration from {fmt(list(report.config_sources))}" if report.config_sources else ""
    out = [f"# ingest-probe {title}", ""]
    out += item(f"Generated {report.timestamp} by ingest-probe {report.version} (schema {report.schema_version})"
                f"{where}{sources}.")
    out += ["", *bullets({
        "Overall status": report.status.value if report.status is not None else "not probed (manifest only)",
    })]
    return out


def render(report: Report, *, sections: Collection[str] | None = None) -> str:
    shown = set(SECTIONS if sections is None else sections)
    blocks: list[list[str]] = [_header(report)]
    if report.results is not None:
        if "connectivity" in shown:
            blocks.append(_connectivity(report.results))
        if "details" in shown and any(r.status is not Status.SKIPPED for r in report.results):
            blocks.append(_details(report.results))
    if report.run is not None and "run" in shown:
        blocks.append(_run(report))
    if report.topics is not None and "topics" in shown:
        blocks.append(["## Kafka topic provisioning", "", *kafka_topic_provisioning(report.topics)])
    if report.drill is not None and "drill" in shown:
        blocks.append(["## Failover drill", "", *failover_drill(report.drill)])
    if "gating" in shown:
        blocks.append(["## Ingest gating", "", *bullets({
            "Should run": report.should_run, "Reason": report.reason, "Dimensions": report.plan.dimensions})])
    if "connectors" in shown:
        blocks.append(["## Connectors", "", *table(
            ["Target", "Configured", "Supervised", "Configured as"],
            [[m.name, m.configured, m.supervised, m.summary] for m in report.manifest],
            max_cell=(32, 3, 3, 80))])
    if "plan" in shown:
        blocks.append(["## Ingest plan", "", *bullets(report.plan.to_dict())])
    if "schedule" in shown:
        blocks.append(["## Schedule", "", *(bullets(report.schedule.to_dict()) if report.schedule
                                            else ["- not scheduled (TIMESCALE_INGEST_SCHEDULE)"])])
    if "failover" in shown:
        failover = report.failover_block()
        blocks.append(["## Failover drill configuration", "",
                       *(bullets(failover) if failover else ["- disabled (TIMESCALE_FAILOVER_DRILL)"])])
    if "manifest" in shown:
        blocks.append(["## Manifest", *_manifest(report)])
    out = [line for block in blocks for line in ["", *block]][1:]
    # Every value went through fmt(); this catches any line built around it (a server's ESC never passes).
    return printable("\n".join(out).rstrip("\n"), keep="\n") + "\n"


def _manifest(report: Report) -> list[str]:
    out: list[str] = []
    for m in report.manifest:
        meta = {k: v for k, v in m.metadata.items() if k != "topic_specs"}
        out += ["", f"### {fmt(m.name)}: configuration", "", *bullets(meta)]
        if m.metadata.get("topic_specs"):
            out += ["", *table(
                ["Topic", "Dimensions", "Partitions", "Replication", "Configs"],
                [[t["name"], t["dimensions"], t["partitions"], t["replication_factor"], t["configs"]]
                 for t in m.metadata["topic_specs"]],
            )]
    return out
