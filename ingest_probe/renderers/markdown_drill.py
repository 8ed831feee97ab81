"""Markdown for the ``failover_drill`` section of a readiness report (pure: the typed snapshot in, lines out)."""

from __future__ import annotations

from ingest_probe.readiness.drill import DimensionHealth, DrillSnapshot
from ingest_probe.readiness.results_file import iso, safe_source
from ingest_probe.renderers.markdown_blocks import bullets, fmt, table


def failover_drill(drill: DrillSnapshot) -> list[str]:
    out = bullets({
        "Status": drill.status.value,
        "Scenario": drill.scenario,
        "Generated": iso(drill.generated_at.replace(microsecond=0)),
        "Verdict": drill.reason,
    })
    if drill.components:
        out += ["", *table(["Component", "Status", "Summary"],
                           [[c.name, c.status.value, c.summary] for c in drill.components])]
    a = drill.assessment
    if a is not None:
        vocab = a.vocabulary
        out += ["", "### Dimension vocabulary", ""]
        out += bullets({
            "Results file": a.results_file,
            f"Required ({vocab.required_source})": vocab.required,
            "In the results": vocab.present,
            "Ingest plan": vocab.planned,
            "Required but absent": vocab.required_absent,
            "Present but not required": vocab.not_required,
            "Required but not planned": vocab.not_planned,
            "Names match": vocab.matches,
        })
        out += [f"- note [{note.code}]: {fmt(note.message)}" for note in vocab.notes()]
        out += ["", "### Dimension health", ""]
        out += table(
            ["Dimension", "Required", "Status", "Rows", "Symbols", "Window (UTC)", "Freshness (s)", "Source",
             "Reasons"],
            [_row(d) for d in a.health],
        )
        out += ["", "### Failover decision", ""]
        out += bullets({"Should fail over": a.decision.should_failover, "Reason": a.decision.reason})
    fallback = drill.component("fallback")
    if fallback is not None and fallback.metadata:
        out += ["", "### Fallback probe", "", *bullets(fallback.metadata)]
    return out


def _row(d: DimensionHealth) -> list[object]:
    r = d.result
    if r is None:
        return [d.name, d.required, d.status.value, None, None, None, None, None, "; ".join(d.reasons) or None]
    named = d.name if r.name == d.name else f"{d.name} (as {r.name})"  # the results file's legacy name
    return [named, d.required, d.status.value, r.rows_written, len(r.symbols), f"{iso(r.start_ts)} – {iso(r.end_ts)}",
            r.freshness_seconds, safe_source(r.source), "; ".join(d.reasons) or None]
