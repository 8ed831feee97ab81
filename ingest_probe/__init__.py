"""ingest-probe's public API: load settings, build reports, and a long-lived Prober for async services.

Importing the package is cheap: the leaf modules (errors, results, version) load now; everything else loads
on first attribute access, and client libraries (asyncpg, redis, aiokafka) and yaml only when a probe or a
config file needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ingest_probe._version import __version__
from ingest_probe.errors import ConfigError, IngestProbeError, ProbeError
from ingest_probe.results import ProbeResult, Status

if TYPE_CHECKING:
    from ingest_probe.manifest import build_manifest
    from ingest_probe.prober import Prober
    from ingest_probe.probes._common import use_resolver
    from ingest_probe.report import Report, build_report
    from ingest_probe.settings import Settings, load_settings
    from ingest_probe.supervisor import TaskSupervisor

__all__ = [
    "ConfigError",
    "IngestProbeError",
    "ProbeError",
    "ProbeResult",
    "Prober",
    "Report",
    "Settings",
    "Status",
    "TaskSupervisor",
    "__version__",
    "build_manifest",
    "build_report",
    "load_settings",
    "use_resolver",
]

_LAZY = {
    "Prober": "ingest_probe.prober",
    "Report": "ingest_probe.report",
    "Settings": "ingest_probe.settings",
    "TaskSupervisor": "ingest_probe.supervisor",
    "build_manifest": "ingest_probe.manifest",
    "build_report": "ingest_probe.report",
    "load_settings": "ingest_probe.settings",
    "use_resolver": "ingest_probe.probes._common",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ingest_probe' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
