"""The readiness policy (``--fail-on``): which target statuses make a check fail, in one place.

A minimal version written for ``serve``'s ``/readyz`` and ``Prober.ready()`` (issue #13); issue #11 owns
``--fail-on`` for every command and may replace this module with the same names and meaning.

* ``fail_on="down"``: only a ``down`` target fails (a degraded or starting one is reported, not failing).
* ``fail_on="degraded"``: ``degraded``, ``starting`` and ``down`` fail — anything but ``ok``.

A skipped (not configured) target never fails. An internal error is ``down``, so it fails under both.
"""

from __future__ import annotations

from collections.abc import Iterable

from ingest_probe.report.model import Report
from ingest_probe.results import ProbeResult, Status

#: The ``--fail-on`` choices, least strict first.
FAIL_ON = ("down", "degraded")
_FAILING = {
    "down": frozenset({Status.DOWN}),
    "degraded": frozenset({Status.DOWN, Status.STARTING, Status.DEGRADED}),
}


def failing(report_or_results: Report | Iterable[ProbeResult], fail_on: str) -> list[ProbeResult]:
    """The results that fail under ``fail_on`` (``down`` or ``degraded``), in their order."""
    try:
        bad = _FAILING[fail_on]
    except KeyError:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, got {fail_on!r}") from None
    results = (report_or_results.results or ()) if isinstance(report_or_results, Report) else report_or_results
    return [r for r in results if r.status in bad]


def ready(report_or_results: Report | Iterable[ProbeResult], fail_on: str) -> bool:
    """Whether a check passes ``--fail-on``: no target fails under ``fail_on``."""
    return not failing(report_or_results, fail_on)
