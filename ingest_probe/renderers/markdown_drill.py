"""Markdown for the ``failover_drill`` section (readiness, drill): the typed snapshot in, lines out (pure)."""

from __future__ import annotations

from ingest_probe.readiness.drill import DimensionHealth, DimensionResult, DrillSnapshot
from ingest_probe.readiness.results_file import iso, safe_source
from ingest_probe.renderers.markdown_blocks import bullets, fmt, table


def failover_drill(drill: DrillSnapshot) -> list[str]:
    out = bullets({
        "Status": drill.status.value,
        "Scenario": drill.scenario,
        "Generated": iso(drill.generated_at.replace(microsecond=0)),
        **({"Simulated outage": drill.simulated_outage} if drill.simulated_outage else {}),
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
        out += [f"- note [{note.code}]: {fmt(note.message)}" for note in [*a.results_notes, *vocab.notes()]]
        out += ["", "### Dimension health", ""]
        out += table(
            ["Dimension", "Required", "Status", "Rows", "Symbols", "Window (UTC)", "Freshness (s)",
             "Limit (s)", "Source", "Reasons"],
            [_row(d) for d in a.health],
        )
        out += ["", "### Failover decision", ""]
        out += bullets({"Should fail over": a.decision.should_failover, "Reason": a.decision.reason})
    fallback = drill.component("fallback")
    if fallback is not None and fallback.metadata:
        out += ["", "### Fallback probe", "", *bullets(fallback.metadata)]
    return out


def _row(d: DimensionHealth) -> list[object]:
    r, reasons = d.result, "; ".join(d.reasons) or None
    if r is None:
        return [d.name, d.required, d.status.value, None, None, None, None, d.freshness_sla_seconds, None, reasons]
    named = d.name if r.name == d.name else f"{d.name} (as {r.name})"  # the results file's own (service) name
    return [named, d.required, d.status.value, r.rows_written, len(r.symbols), _window(r), r.freshness_seconds,
            d.freshness_sla_seconds, None if r.source is None else safe_source(r.source), reasons]


def _window(r: DimensionResult) -> str | None:
    """The ingest window; an unknown end (or start) is shown as ``?``."""
    if r.start_ts is None and r.end_ts is None:
        return None
    return f"{'?' if r.start_ts is None else iso(r.start_ts)} – {'?' if r.end_ts is None else iso(r.end_ts)}"
