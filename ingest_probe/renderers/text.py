"""The terminal view (``--format text``): one line per target, then one summary line, never wider than the
terminal (``width`` columns); colour only when asked (the CLI asks on a TTY, never with NO_COLOR/--no-color).

A target's line: status, latency, name, endpoint, and the one-line error as ``[kind] message``. The endpoint
keeps its head and its port (``db-primary.e…ple.com:5432``), the error is cut at the end with ``…``: a row
never wraps. ``topics plan``/``apply`` show their plan instead (``+ create NAME (partitions=3, rf=1, …)``,
``~ drift NAME: partitions 3 → 6 (fixable)``), a manifest-only report one line per configured target.
Server-controlled text is shown with its control characters escaped (``printable``), so it cannot drive the
terminal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from ingest_probe.defaults import FAIL_ON
from ingest_probe.renderers.printable import printable
from ingest_probe.report.model import ManifestEntry, Report
from ingest_probe.report.policy import exit_code
from ingest_probe.results import ProbeResult, Status
from ingest_probe.topics.plan import Action, PlanEntry, ProvisioningSection

#: SGR colour of each status word (green, yellow, red, dim).
COLOURS = {"ok": "32", "degraded": "33", "starting": "33", "down": "31", "skipped": "2", "unknown": "31"}
#: Narrowest layout the columns are computed for (a narrower terminal wraps, as it would anyway).
MIN_WIDTH = 40
_STATUS_WIDTH = 8
_LATENCY_WIDTH = 7
_NAME_MAX = 20
_ENDPOINT_MIN = 12
#: Plan lines: a symbol and a verb per action.
_PLAN = {Action.CREATE: ("+", "create"), Action.DRIFT: ("~", "drift"), Action.IN_SYNC: ("=", "in sync"),
         Action.ERROR: ("!", "error"), Action.UNKNOWN: ("?", "unknown")}  # fmt: skip


def render(report: Report, *, width: int = 80, color: bool = False, fail_on: str = FAIL_ON) -> str:
    width = max(width, MIN_WIDTH)
    lines: list[str] = []
    if report.results is not None:
        lines += target_lines(report.results, width=width, color=color)
    elif report.topics is None and report.drill is None:
        lines += _manifest(report.manifest, width)
    if report.topics is not None:
        lines += plan_lines(report.topics, width=width)
    if report.drill is not None:
        lines += [fit(printable(f"drill {c.name}: {c.status.value} — {c.summary}"), width)
                  for c in report.drill.components]
    lines.append(summary(report, fail_on, width=width))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ targets


def target_lines(results: Sequence[ProbeResult], *, width: int = 80, color: bool = False) -> list[str]:
    """One line per target, columns aligned across the targets, each within ``width`` cells."""
    name_width = min(max((cells(printable(r.name)) for r in results), default=4), _NAME_MAX,
                     max(6, (width - 20) // 3))
    room = width - (_STATUS_WIDTH + 1 + _LATENCY_WIDTH + 2 + name_width + 2)
    endpoint_width = max((cells(printable(r.endpoint or "—")) for r in results), default=1)
    if any(_problem(r) is not None for r in results):  # the error gets at least two thirds of the room
        endpoint_width = min(endpoint_width, max(_ENDPOINT_MIN, room // 3))
    return [_target_line(r, name_width, min(endpoint_width, room), room, color) for r in results]


def _target_line(r: ProbeResult, name_width: int, endpoint_width: int, room: int, color: bool) -> str:
    status = r.status.value.ljust(_STATUS_WIDTH)
    if color:
        status = f"\x1b[{COLOURS.get(r.status.value, '0')}m{status}\x1b[0m"
    name = pad(fit(printable(r.name), name_width), name_width)
    endpoint = pad(fit(printable(r.endpoint or "—"), endpoint_width, middle=True), endpoint_width)
    line = f"{status} {latency(r.latency_ms):>{_LATENCY_WIDTH}}  {name}  {endpoint}"
    problem = _problem(r)
    if problem is not None:
        line += f"  {fit(problem, room - endpoint_width - 2)}"
    return line.rstrip()


def _problem(r: ProbeResult) -> str | None:
    if r.status is Status.SKIPPED:
        return "not configured"
    if r.error is None:
        return None
    kind = f"[{r.error_kind}] " if r.error_kind else ""
    return printable(" ".join(f"{kind}{r.error}".split()))


def latency(ms: float | None) -> str:
    """``12 ms``, ``1.3 ms``, ``2.5 s``; an em dash when not measured."""
    if ms is None:
        return "—"
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def summary(report: Report, fail_on: str = FAIL_ON, *, width: int | None = None) -> str:
    """The closing line: the verdict, what was counted, and the exit code under ``fail_on`` (always shown: the
    rest is cut to ``width`` first)."""
    code = exit_code(report, fail_on)
    policy = " (--fail-on down)" if fail_on == "down" and code != report.exit_code else ""
    tail = f"; exit {code}{policy}"
    body = _summary_body(report)
    return (body if width is None else fit(body, width - cells(tail))) + tail


def _summary_body(report: Report) -> str:
    if report.results is None:
        if report.drill is not None:
            return printable(f"failover drill {report.drill.status.value}: {report.drill.reason}")
        if report.topics is not None:
            return f"topics: {_topic_counts(report.topics)}"
        configured = sum(1 for m in report.manifest if m.configured)
        return (f"not probed (manifest only: add --connectivity); {configured} of {len(report.manifest)} targets"
                " configured")
    counts: dict[str, list[str]] = {}
    for r in report.results:
        counts.setdefault(r.status.value, []).append(printable(r.name))
    order = [s.value for s in (Status.DOWN, Status.STARTING, Status.DEGRADED, Status.OK, Status.SKIPPED)]
    parts = []
    for status in order:
        names = counts.get(status, [])
        if not names:
            continue
        named = f" ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})" if status not in ("ok", "skipped") else ""
        parts.append(f"{len(names)} {status}{named}")
    verdict = report.status.value if report.status is not None else "not probed"
    run = report.run
    took = f" in {latency(run.duration_ms)}" if run is not None and run.duration_ms is not None else ""
    topics = f"; topics: {_topic_counts(report.topics)}" if report.topics is not None else ""
    drill = f"; failover drill {report.drill.status.value}" if report.drill is not None else ""
    return f"{verdict}: {', '.join(parts)}{took}{topics}{drill}"


def _manifest(manifest: Sequence[ManifestEntry], width: int) -> list[str]:
    name_width = min(max((cells(printable(m.name)) for m in manifest), default=4), _NAME_MAX)
    out = []
    for m in manifest:
        state = "configured" if m.configured else "not configured"
        what = printable(m.summary or "—") if m.configured else ""
        out.append(fit(f"{pad(fit(printable(m.name), name_width), name_width)}  {state:<14}  {what}".rstrip(),
                       width))
    return out


# ------------------------------------------------------------------------------------------------- topics


def plan_lines(section: ProvisioningSection, *, width: int = 80) -> list[str]:
    """The plan for people: one line per topic (``+ create``, ``~ drift``, ``= in sync``, ``! error``), then the
    section's error and notes."""
    out = [fit(_plan_line(entry, section), width) for entry in section.entries()]
    if section.error:
        out.append(fit(f"! kafka topics: [{section.error_kind}] {printable(section.error)}", width))
    out += [fit(f"note: {n.code}: {printable(n.text)}", width) for n in section.notes]
    return out


def _plan_line(entry: PlanEntry, section: ProvisioningSection) -> str:
    spec = entry.before.spec
    name = printable(spec.name)
    if not section.dry_run and spec.name in section.created:
        symbol, verb = "+", "created"
    else:
        symbol, verb = _PLAN[entry.before.action if section.dry_run else entry.after.action]
    plan = entry.before if section.dry_run else entry.after
    shape = ", ".join([f"partitions={spec.partitions}", f"rf={spec.replication_factor}",
                       *(f"{k}={v}" for k, v in sorted(spec.configs.items()))])
    if plan.action is Action.DRIFT:
        drift = "; ".join(f"{k.removeprefix('config:')} {_dash(d['have'])} → {_dash(d['want'])} ({d['classification']})"
                          for k, d in plan.drift.items())
        detail = f": {drift}"
    elif plan.action in (Action.ERROR, Action.UNKNOWN):
        message = section.failed.get(spec.name) or plan.message or entry.before.message
        detail = f": {message}" if message else ""
    else:
        detail = f" ({shape})"
    failed = section.failed.get(spec.name)
    if failed and plan.action is not Action.ERROR:
        detail += f" — failed: {failed}"
    return printable(f"{symbol} {verb} {name}{detail}")


def _topic_counts(section: ProvisioningSection) -> str:
    plans = section.before if section.dry_run else section.after
    counts: dict[Action, int] = {}
    for p in plans:
        counts[p.action] = counts.get(p.action, 0) + 1
    words = {Action.CREATE: "to create", Action.DRIFT: "drifting", Action.IN_SYNC: "in sync",
             Action.ERROR: "in error", Action.UNKNOWN: "unknown"}  # fmt: skip
    parts = [f"{counts[a]} {words[a]}" for a in words if counts.get(a)]
    if not section.dry_run and section.created:
        parts.insert(0, f"{len(section.created)} created")
    suffix = " (dry run: nothing changed)" if section.dry_run else ""
    return (", ".join(parts) or "none declared") + suffix


def _dash(value: object) -> str:
    return "—" if value is None else str(value)


# --------------------------------------------------------------------------------------------- the width


def cells(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide and full-width characters two, combining marks none."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def fit(text: str, room: int, *, middle: bool = False) -> str:
    """``text`` cut to ``room`` columns with ``…`` (at the end, or in the ``middle`` to keep both ends)."""
    if cells(text) <= room:
        return text
    if room <= 1:
        return "…"[:max(room, 0)]
    if not middle:
        return _take(text, room - 1) + "…"
    tail = _take(text[::-1], (room - 1) // 2)[::-1]
    return _take(text, room - 1 - cells(tail)) + "…" + tail


def pad(text: str, room: int) -> str:
    return text + " " * max(room - cells(text), 0)


def _take(text: str, room: int) -> str:
    out, used = [], 0
    for ch in text:
        used += cells(ch)
        if used > room:
            break
        out.append(ch)
    return "".join(out)
