"""The readiness policy: which results a ``--fail-on`` level counts as not ready (``wait``; later ``/readyz``).

A minimal version written for ``wait`` before the ``--fail-on`` work of issue #11 lands; it keeps the agreed name
and signature, ``ready(report_or_results, fail_on)``, so the two reconcile into one function.

* ``fail_on="degraded"`` (the default, the exit codes' meaning): a target is ready only when ``ok``.
* ``fail_on="down"``: only a ``down`` target is not ready (``degraded`` and ``starting`` answer, so they pass).

A skipped target (not configured) never blocks readiness.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ingest_probe.results import ProbeResult, Status

if TYPE_CHECKING:
    from ingest_probe.report.model import Report

#: The ``--fail-on`` levels, the default first.
FAIL_ON = ("degraded", "down")
_FAILING = {
    "degraded": frozenset({Status.DEGRADED, Status.STARTING, Status.DOWN}),
    "down": frozenset({Status.DOWN}),
}


def not_ready(report_or_results: Report | Iterable[ProbeResult], fail_on: str = FAIL_ON[0]) -> list[ProbeResult]:
    """The results that ``fail_on`` counts as not ready, in their order."""
    failing = _FAILING.get(fail_on)
    if failing is None:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, got {fail_on!r}")
    results = report_or_results if isinstance(report_or_results, Iterable) else report_or_results.results or ()
    return [r for r in results if r.status in failing]


def ready(report_or_results: Report | Iterable[ProbeResult], fail_on: str = FAIL_ON[0]) -> bool:
    """Whether every result is ready under ``fail_on`` (see the module docstring)."""
    return not not_ready(report_or_results, fail_on)
