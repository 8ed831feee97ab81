"""The monitoring-plugin output (``--format nagios``) for Nagios, Icinga, Naemon, Sensu and the like.

One status line, ``INGEST-PROBE <STATE> - <what> | <perfdata>``, then long output, one line per target (and per
topic, and the drill). The state word is the exit code's (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, under
``--fail-on``), so the two never disagree. The status names the targets that are not ok first
(``redis down (refused), timescale ok, kafka ok``); beyond ``LISTED`` targets only the problems are named and
the ok ones counted.

Performance data follows the plugin guidelines (``'label'=value[UOM];[warn];[crit];[min];[max]``): per probed
target its latency in seconds (``'redis_latency'=0.0012s;;;0;``) and, over TLS, the days its certificate has
left (warn below ``--cert-warn-days``); then the number of targets in each status (``'targets_down'=1;;;0;3``).
A ``|`` never appears in the text (it would start the performance data), nor a newline in the status line.
"""

from __future__ import annotations

from ingest_probe.defaults import CERT_WARN_DAYS, FAIL_ON
from ingest_probe.renderers.printable import printable
from ingest_probe.report.model import Report
from ingest_probe.report.policy import exit_code
from ingest_probe.results import ProbeResult, Status
from ingest_probe.topics.plan import ProvisioningSection

PLUGIN = "INGEST-PROBE"
STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
#: Up to this many targets the status line names each one; beyond it, only those not ok (and counts).
LISTED = 8
_COUNTED = (Status.OK, Status.DEGRADED, Status.STARTING, Status.DOWN, Status.SKIPPED)
_WORST_FIRST = {Status.DOWN: 0, Status.STARTING: 1, Status.DEGRADED: 2, Status.OK: 3, Status.SKIPPED: 4}


def render(report: Report, *, fail_on: str = FAIL_ON, cert_warn_days: float = CERT_WARN_DAYS) -> str:
    code = exit_code(report, fail_on)
    status = f"{PLUGIN} {STATES.get(code, 'UNKNOWN')} - {_text(_what(report))}"
    perf = perfdata(report, cert_warn_days=cert_warn_days)
    lines = [f"{status} | {' '.join(perf)}" if perf else status]
    lines += [_text(line) for line in _long_output(report)]
    return "\n".join(lines) + "\n"


def _what(report: Report) -> str:
    parts: list[str] = []
    results = report.results
    if results is not None:
        probed = sorted((r for r in results if r.status is not Status.SKIPPED), key=lambda r: _WORST_FIRST[r.status])
        if not probed:
            parts.append("nothing configured to probe")
        elif len(probed) <= LISTED:
            parts += [_short(r) for r in probed]
        else:
            problems = [r for r in probed if r.status is not Status.OK]
            parts += [_short(r) for r in problems[:LISTED]]
            if len(problems) > LISTED:
                parts.append(f"and {len(problems) - LISTED} more not ok")
            parts.append(f"{len(probed) - len(problems)} of {len(probed)} targets ok")
    elif report.topics is None and report.drill is None:
        parts.append("not probed (manifest only): add --connectivity")
    if report.topics is not None:
        parts.append(_topics(report.topics))
    if report.drill is not None:
        parts.append(f"failover drill {report.drill.status.value}")
    return ", ".join(parts)


def _short(r: ProbeResult) -> str:
    kind = f" ({r.error_kind})" if r.status is not Status.OK and r.error_kind else ""
    return f"{r.name} {r.status.value}{kind}"


def _topics(section: ProvisioningSection) -> str:
    if section.error:
        return f"kafka topics {section.error_kind or 'error'}"
    if section.failed:
        return f"kafka topics failed: {', '.join(sorted(section.failed))}"
    plans = section.before if section.dry_run else section.after
    create = [p.spec.name for p in plans if p.action.value == "create"]
    drift = [p.spec.name for p in plans if p.action.value == "drift"]
    if create:
        return f"kafka topics to create: {', '.join(create)}"
    if drift:
        return f"kafka topics drifting: {', '.join(drift)}"
    return "kafka topics in sync"


def _long_output(report: Report) -> list[str]:
    out = []
    for r in report.results or ():
        if r.status is Status.SKIPPED:
            out.append(f"{r.name}: skipped (not configured)")
            continue
        ms = "—" if r.latency_ms is None else f"{r.latency_ms:.1f} ms"
        where = f" at {r.endpoint}" if r.endpoint else ""
        problem = f" [{r.error_kind}] {r.error}" if r.error else ""
        out.append(f"{r.name}: {r.status.value}, {ms}{where}{problem}")
    section = report.topics
    if section is not None:
        if section.error:
            out.append(f"kafka topics: [{section.error_kind}] {section.error}")
        for entry in section.entries():
            action = (entry.before if section.dry_run else entry.after).action.value
            message = section.failed.get(entry.before.spec.name) or entry.after.message or entry.before.message
            out.append(f"topic {entry.before.spec.name}: {action}" + (f" ({message})" if message else ""))
    if report.drill is not None:
        out.append(f"failover drill {report.drill.status.value}: {report.drill.reason}")
    return out


def perfdata(report: Report, *, cert_warn_days: float = CERT_WARN_DAYS) -> list[str]:
    """Performance data: each probed target's latency (and TLS certificate days left when the report was made),
    then the counts."""
    results = report.results or ()
    now = report.generated_at.timestamp()
    out = []
    for r in results:
        if r.latency_ms is not None and r.status is not Status.SKIPPED:
            out.append(f"{_label(r.name + '_latency')}={_number(r.latency_ms / 1000.0)}s;;;0;")
        if r.tls_not_after is not None:
            days = (r.tls_not_after - now) / 86400.0
            out.append(f"{_label(r.name + '_tls_cert_days_left')}={_number(days)};{_number(cert_warn_days)}:;0:;;")
    if results:
        total = len(results)
        out += [f"{_label('targets_' + s.value)}={sum(1 for r in results if r.status is s)};;;0;{total}"
                for s in _COUNTED]
    return out


def _label(name: str) -> str:
    """A quoted perfdata label: no ``'`` or ``=`` (the guidelines forbid them), one line."""
    return "'" + printable("".join("_" if ch in "'=|" or ch.isspace() else ch for ch in name)) + "'"


def _number(value: float) -> str:
    """A plain decimal (the guidelines' ``[-0-9.]``): no exponent, no trailing zeros."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _text(text: str) -> str:
    """One line without ``|`` (the perfdata separator), control characters escaped."""
    return printable(" ".join(text.replace("|", "/").split()))
