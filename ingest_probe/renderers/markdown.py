"""Markdown for people: headings, tables, every JSON section in human form, no Python reprs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ingest_probe.renderers.markdown_blocks import bullets, cell, fmt, table
from ingest_probe.renderers.markdown_drill import failover_drill
from ingest_probe.renderers.markdown_topics import kafka_topic_provisioning
from ingest_probe.renderers.printable import printable
from ingest_probe.report.builder import Report

__all__ = ["SECTIONS", "bullets", "cell", "fmt", "render", "table"]


def _connectivity(results: list[dict[str, Any]]) -> list[str]:
    out = ["## Connectivity", ""]
    out += table(
        ["Connector", "Status", "Latency (ms)", "Endpoint", "Error"],
        [
            [
                r["name"],
                r["status"],
                r["latency_ms"],
                r["endpoint"],
                f"{r['error_kind']}: {r['error']}" if r["error"] else None,
            ]
            for r in results
        ],
    )
    for r in results:
        if r["status"] == "skipped":
            continue
        out += ["", f"### {r['name']}: probe details", ""]
        out += bullets(
            {
                "status": r["status"],
                "healthy": r["healthy"],
                "retryable": r["retryable"],
                "deadline (s)": r["deadline_s"],
                "phases (ms)": r["phases"],
                **r["details"],
            }
        )
    return out


def _run(run: dict[str, Any]) -> list[str]:
    out = ["## Run", ""]
    out += bullets(
        {
            "timeout (s)": run["timeout_s"],
            "jitter": run["jitter"],
            "seed": run["seed"],
            "duration (ms)": run.get("duration_ms"),
        }
    )
    out += ["", *table(["Task", "State", "Deadline (s)", "Age (s)"],
                       [[t["name"], t["state"], t["deadline_s"], t["age_s"]] for t in run["tasks"]])]
    return out


#: Optional report sections and how they render, in report order; a null section is left out.
SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "kafka_topic_provisioning": ("Kafka topic provisioning", kafka_topic_provisioning),
    "failover_drill": ("Failover drill", failover_drill),
}


def render(report: Report) -> str:
    doc = report.document
    if doc.get("failover_drill") is not None:
        title = "failover drill" if doc["failover_drill"].get("simulated_outage") else "readiness evidence"
    elif doc.get("kafka_topic_provisioning") is not None and doc["connectivity"] is None:
        title = "topic provisioning"
    else:
        title = "report"
    out = [f"# ingest-probe {title}", ""]
    out += [f"Generated {doc['generated_at']} by {doc['tool']['name']} {doc['tool']['version']}"
            f" (schema {doc['schema_version']}).", ""]
    out += bullets(
        {
            "Overall status": doc["status"] if doc["status"] is not None else "not probed (manifest only)",
            "Should run": doc["should_run"],
            "Reason": doc["reason"],
            "Dimensions": doc["dimensions"],
        }
    )
    out += ["", "## Connectors", ""]
    out += table(
        ["Connector", "Configured", "Supervised", "Target"],
        [[m["name"], m["configured"], m["supervised"], m["metadata"].get("summary")] for m in doc["manifest"]],
    )
    if doc["connectivity"] is not None:
        out += ["", *_connectivity(doc["connectivity"])]
    if doc["run"] is not None:
        out += ["", *_run(doc["run"])]
    for key, (title, render_section) in SECTIONS.items():
        if doc.get(key) is not None:
            out += ["", f"## {title}", "", *render_section(doc[key])]
    out += ["", "## Ingest plan", "", *bullets(doc["configuration"])]
    out += ["", "## Schedule", ""]
    out += bullets(doc["schedule"]) if doc["schedule"] else ["- not scheduled (TIMESCALE_INGEST_SCHEDULE)"]
    out += ["", "## Failover drill configuration", ""]
    out += bullets(doc["failover"]) if doc["failover"] else ["- disabled (TIMESCALE_FAILOVER_DRILL)"]
    out += ["", "## Manifest", ""]
    for m in doc["manifest"]:
        meta = {k: v for k, v in m["metadata"].items() if k != "topic_specs"}
        out += [f"### {m['name']}: configuration", "", *bullets(meta), ""]
        if m["metadata"].get("topic_specs"):
            out += table(
                ["Topic", "Dimensions", "Partitions", "Replication", "Configs"],
                [[t["name"], t["dimensions"], t["partitions"], t["replication_factor"], t["configs"]]
                 for t in m["metadata"]["topic_specs"]],
            )
            out.append("")
    # Every value went through fmt(); this catches any line built around it (a server's ESC never passes).
    return printable("\n".join(out).rstrip("\n"), keep="\n") + "\n"
