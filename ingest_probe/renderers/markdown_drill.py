"""Markdown for the ``failover_drill`` section of a readiness report (pure: a JSON dict in, lines out)."""

from __future__ import annotations

from typing import Any

from ingest_probe.renderers.markdown_blocks import bullets, fmt, table


def failover_drill(drill: dict[str, Any]) -> list[str]:
    out = bullets({
        "Status": drill["status"],
        "Scenario": drill["scenario"],
        "Generated": drill["generated_at"],
        **({"Simulated outage": drill["simulated_outage"]} if drill.get("simulated_outage") else {}),
        "Verdict": drill["reason"],
    })
    if drill["components"]:
        out += ["", *table(["Component", "Status", "Summary"],
                           [[c["name"], c["status"], c["summary"]] for c in drill["components"]])]
    health = drill["health_report"]
    if health is not None:
        vocab = health["vocabulary"]
        out += ["", "### Dimension vocabulary", ""]
        out += bullets({
            "Results file": health["results_file"],
            f"Required ({vocab['required_source']})": vocab["required"],
            "In the results": vocab["in_results"],
            "Ingest plan": vocab["planned"],
            "Required but absent": vocab["required_absent"],
            "Present but not required": vocab["present_not_required"],
            "Required but not planned": vocab["required_not_planned"],
            "Names match": vocab["matches"],
        })
        out += [f"- note [{note['code']}]: {fmt(note['message'])}" for note in [*health["notes"], *vocab["notes"]]]
        out += ["", "### Dimension health", ""]
        out += table(
            ["Dimension", "Required", "Status", "Rows", "Symbols", "Window (UTC)", "Freshness (s)",
             "Limit (s)", "Source", "Reasons"],
            [[_named(d), d["required"], d["status"], d["rows_written"], d["symbol_count"], _window(d),
              d["freshness_seconds"], d["freshness_sla_seconds"], d["source"], "; ".join(d["reasons"]) or None]
             for d in health["dimensions"]],
        )
    decision = drill["failover_decision"]
    if decision is not None:
        out += ["", "### Failover decision", ""]
        out += bullets({"Should fail over": decision["should_failover"], "Reason": decision["reason"]})
    fallback = next((c for c in drill["components"] if c["name"] == "fallback"), None)
    if fallback is not None and fallback["metadata"]:
        out += ["", "### Fallback probe", "", *bullets(fallback["metadata"])]
    return out


def _named(dimension: dict[str, Any]) -> str:
    """The report's name, with the results file's own name when that was a legacy one."""
    name, written = dimension["name"], dimension["name_in_results"]
    return name if written in (None, name) else f"{name} (as {written})"


def _window(dimension: dict[str, Any]) -> str | None:
    """The ingest window; an unknown end (or start) is shown as ``?``."""
    start, end = dimension["start_ts"], dimension["end_ts"]
    return None if start is None and end is None else f"{start or '?'} – {end or '?'}"
