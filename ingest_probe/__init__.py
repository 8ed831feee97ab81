"""ingest-probe's public API: load settings, build reports, and a long-lived Prober for async services.

Importing the package is cheap: the leaf modules errors and version load now; everything else loads
on first attribute access, and client libraries (asyncpg, redis, aiokafka) and yaml only when a probe or a
config file needs them.

A fourth connector kind plugs in through ``register_connector`` (a ``Connector``: its ``KeySet``, settings
from the configuration, a manifest row and a ``Probe``); ``target_from_url`` makes a target of any kind,
``read_targets_file`` the targets of a ``--targets`` file, ``build_targets`` a run's targets as the CLI does.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ingest_probe._version import __version__
from ingest_probe.errors import ConfigError, IngestProbeError, ProbeError

if TYPE_CHECKING:
    from ingest_probe.config.keys import KeySet, KeySpec
    from ingest_probe.connectors._net import use_resolver
    from ingest_probe.connectors.base import Connector, ConnectorSettings, Probe
    from ingest_probe.connectors.registry import get_connector, register_connector, unregister_connector
    from ingest_probe.engine.supervisor import RunInfo, TaskSupervisor
    from ingest_probe.prober import Observation, Prober
    from ingest_probe.report.builder import build_manifest, build_report
    from ingest_probe.report.model import Report
    from ingest_probe.report.policy import ready
    from ingest_probe.results import ProbeResult, Recorder, Status
    from ingest_probe.settings.service import Settings, load_settings
    from ingest_probe.settings.targets import Target, classic_targets, select, target_from_url
    from ingest_probe.settings.targets_file import build_targets, read_targets_file

__all__ = [
    "ConfigError",
    "Connector",
    "ConnectorSettings",
    "IngestProbeError",
    "KeySet",
    "KeySpec",
    "Observation",
    "Probe",
    "ProbeError",
    "ProbeResult",
    "Prober",
    "Recorder",
    "Report",
    "RunInfo",
    "Settings",
    "Status",
    "Target",
    "TaskSupervisor",
    "__version__",
    "build_manifest",
    "build_report",
    "build_targets",
    "classic_targets",
    "get_connector",
    "load_settings",
    "read_targets_file",
    "ready",
    "register_connector",
    "select",
    "target_from_url",
    "unregister_connector",
    "use_resolver",
]

_LAZY = {
    "Connector": "ingest_probe.connectors.base",
    "ConnectorSettings": "ingest_probe.connectors.base",
    "KeySet": "ingest_probe.config.keys",
    "KeySpec": "ingest_probe.config.keys",
    "Observation": "ingest_probe.prober",
    "Probe": "ingest_probe.connectors.base",
    "ProbeResult": "ingest_probe.results",
    "Prober": "ingest_probe.prober",
    "Report": "ingest_probe.report.model",
    "Recorder": "ingest_probe.results",
    "RunInfo": "ingest_probe.engine.supervisor",
    "Settings": "ingest_probe.settings.service",
    "Target": "ingest_probe.settings.targets",
    "Status": "ingest_probe.results",
    "TaskSupervisor": "ingest_probe.engine.supervisor",
    "build_manifest": "ingest_probe.report.builder",
    "build_report": "ingest_probe.report.builder",
    "build_targets": "ingest_probe.settings.targets_file",
    "classic_targets": "ingest_probe.settings.targets",
    "get_connector": "ingest_probe.connectors.registry",
    "load_settings": "ingest_probe.settings.service",
    "read_targets_file": "ingest_probe.settings.targets_file",
    "ready": "ingest_probe.report.policy",
    "register_connector": "ingest_probe.connectors.registry",
    "select": "ingest_probe.settings.targets",
    "target_from_url": "ingest_probe.settings.targets",
    "unregister_connector": "ingest_probe.connectors.registry",
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
