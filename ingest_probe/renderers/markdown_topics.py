"""Markdown for the ``kafka_topic_provisioning`` section (pure: a JSON dict in, lines out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest_probe.renderers.markdown_blocks import bullets, fmt, table


def kafka_topic_provisioning(section: Mapping[str, Any]) -> list[str]:
    """The section for people: a summary line, one table row per topic, then the notes."""
    out = bullets({
        "dry run": section["dry_run"],
        "summary": f"{len(section['requested'])} requested, {len(section['existing'])} existing,"
                   f" {len(section['created'])} created, {len(section['in_sync'])} in sync,"
                   f" {len(section['drift'])} drifting, {len(section['failed'])} failed",
    })
    if section.get("error"):
        out.append(f"- error: {fmt(section['error_kind'])}: {fmt(section['error'])}")
    rows = []
    for entry in section.get("plan") or []:
        have = entry["have"] or {}
        drift = section["drift"].get(entry["topic"], {})
        rows.append([
            entry["topic"],
            entry["action"],
            entry["state"],
            f"{entry['want']['partitions']} / {_dash(have.get('partitions'))}",
            f"{entry['want']['replication_factor']} / {_dash(have.get('replication_factor'))}",
            "; ".join(f"{k}: want {_dash(v['want'])}, have {_dash(v['have'])} ({v['classification']})"
                      for k, v in drift.items() if k != "classification") or None,
            "; ".join(f"{c['change']} {c['detail']}: {c['status']}" for c in entry["changes"]) or None,
            section["failed"].get(entry["topic"]) or entry["message"],
        ])
    out += ["", *table(["Topic", "Plan", "Now", "Partitions (want / have)", "Replication (want / have)",
                        "Drift", "Changes", "Error"], rows)]
    if section["notes"]:
        out += ["", "Notes:", ""]
        out += [f"- {fmt(n['code'])}: {fmt(n['text'])}" for n in section["notes"]]
    return out


def _dash(value: Any) -> str:
    return "—" if value is None else str(value)
