"""Markdown for the ``kafka_topic_provisioning`` section (pure: the typed section in, lines out)."""

from __future__ import annotations

from ingest_probe.renderers.markdown_blocks import bullets, fmt, item, table
from ingest_probe.topics.plan import ProvisioningSection


def kafka_topic_provisioning(section: ProvisioningSection) -> list[str]:
    """The section for people: a summary line, one table row per topic (what it needs, what it is, partitions
    and replication), then a line per topic with drift, changes or an error, then the notes."""
    drifting = section.drifting
    out = bullets({
        "dry run": section.dry_run,
        "summary": f"{len(section.requested)} requested, {len(section.existing)} existing,"
                   f" {len(section.created)} created, {len(section.in_sync)} in sync,"
                   f" {len(drifting)} drifting, {len(section.failed)} failed",
    })
    if section.error:
        out += item(f"- error: {fmt(section.error_kind)}: {fmt(section.error)}")
    rows, lines = [], []
    for entry in section.entries():
        spec, state = entry.before.spec, entry.state
        drift = drifting[spec.name].drift if spec.name in drifting else {}
        rows.append([
            spec.name,
            entry.before.action.value,
            entry.after.action.value,
            f"{spec.partitions} / {_dash(None if state is None else state.partitions)}",
            f"{spec.replication_factor} / {_dash(None if state is None else state.replication_factor)}",
        ])
        facts = [
            ("drift", "; ".join(f"{k}: want {_dash(v['want'])}, have {_dash(v['have'])} ({v['classification']})"
                                for k, v in drift.items())),
            ("changes", "; ".join(f"{c.kind} {c.detail}: {c.status}" for c in entry.changes)),
            ("error", section.failed.get(spec.name) or entry.after.message or entry.before.message),
        ]
        lines += [line for what, text in facts if text for line in item(f"- {fmt(spec.name)}: {what}: {fmt(text)}")]
    out += ["", *table(["Topic", "Plan", "Now", "Partitions (want / have)", "Replication (want / have)"], rows,
                       max_cell=(60, 8, 8, 16, 16))]
    if lines:
        out += ["", *lines]
    if section.notes:
        out += ["", "Notes:", ""]
        out += [line for n in section.notes for line in item(f"- {fmt(n.code)}: {fmt(n.text)}")]
    return out


def _dash(value: object) -> str:
    return "—" if value is None else str(value)
