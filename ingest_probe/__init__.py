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
    from ingest_probe.connectors._net import use_resolver
    from ingest_probe.engine.prober import Prober
    from ingest_probe.engine.supervisor import TaskSupervisor
    from ingest_probe.report.builder import Report, build_report
    from ingest_probe.report.manifest import build_manifest
    from ingest_probe.settings.service import Settings, load_settings

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
    "Prober": "ingest_probe.engine.prober",
    "Report": "ingest_probe.report.builder",
    "Settings": "ingest_probe.settings.service",
    "TaskSupervisor": "ingest_probe.engine.supervisor",
    "build_manifest": "ingest_probe.report.manifest",
    "build_report": "ingest_probe.report.builder",
    "load_settings": "ingest_probe.settings.service",
    "use_resolver": "ingest_probe.connectors._net",
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
