"""The exit policy, in one place: a run's exit code under ``--fail-on``, and whether results count as ready.

Every command that probes (``report``, ``readiness``, ``topics``, ``watch --once``, ``wait``) and the embedded
``/readyz`` ask these two functions; nothing else turns statuses into a verdict.

* ``--fail-on degraded`` (the default): WARNING outcomes fail (exit 1) — a degraded or starting target,
  topic drift, a dry run that would create topics, a drill warning.
* ``--fail-on down``: only CRITICAL (a target down, a topic creation failed, the drill failed) and UNKNOWN
  (nothing configured, an internal error) fail; a WARNING is reported and exits 0. For readiness probes
  (Kubernetes exec, Docker ``HEALTHCHECK``) that must not pull a pod for a missing topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ingest_probe.defaults import EXIT_OK, EXIT_WARNING, FAIL_ON, FAIL_ON_CHOICES
from ingest_probe.errors import InternalError, UsageError
from ingest_probe.report.model import Report
from ingest_probe.results import overall_status

if TYPE_CHECKING:
    from ingest_probe.results import ProbeResult

__all__ = ["exit_code", "ready", "results_exit_code"]


def results_exit_code(results: Iterable[ProbeResult]) -> int:
    """The exit code of probe results alone (``--fail-on degraded``): the worst status's, 3 for an
    ``internal`` result (a bug decided it, not the server) or when nothing was configured."""
    results = list(results)
    code = overall_status([r.status for r in results]).exit_code
    if any(r.error_kind == InternalError.kind for r in results):
        code = max(code, InternalError.exit_code)
    return code


def exit_code(report: Report | int, fail_on: str = FAIL_ON) -> int:
    """The process exit code of a report (or of its ``exit_code``) under ``fail_on``: a WARNING (1) becomes 0
    with ``down``; CRITICAL (2) and UNKNOWN (3) never change."""
    _check(fail_on)
    code = report if isinstance(report, int) else report.exit_code
    if fail_on == "down" and code == EXIT_WARNING:
        return EXIT_OK
    return code


def ready(subject: Report | Iterable[ProbeResult], fail_on: str = FAIL_ON) -> bool:
    """Whether a report, or a set of probe results, passes under ``fail_on``: exit code 0.

    Results where every target was skipped are not ready (nothing was checked: UNKNOWN), as a report of
    them exits 3.
    """
    code = subject.exit_code if isinstance(subject, Report) else results_exit_code(subject)
    return exit_code(code, fail_on) == EXIT_OK


def _check(fail_on: str) -> None:
    if fail_on not in FAIL_ON_CHOICES:
        raise UsageError(f"--fail-on must be one of {', '.join(FAIL_ON_CHOICES)}, got {fail_on[:20]!r}")

