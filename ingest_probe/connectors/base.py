"""One probe per backend, all with the same shape; client libraries are imported only when a probe runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ingest_probe.results import Recorder
    from ingest_probe.settings.service import Settings


class Probe(Protocol):
    """A check of one connector. ``check`` may keep a warm client between calls; ``aclose`` releases it.

    ``check`` takes no timeout: the caller (the supervisor) owns the deadline through a cancel scope, and
    the probe reads ``anyio.current_effective_deadline()`` to set its library's own timeouts a little
    under it. Expected failures are raised as ``errors.ProbeError`` subclasses; anything else is a bug.
    """

    name: str
    configured: bool
    endpoint: str | None
    phase_names: tuple[str, ...]

    async def check(self, rec: Recorder) -> None: ...

    async def aclose(self) -> None: ...


def build_probes(settings: Settings) -> list[Probe]:
    """The three connector probes in manifest order: timescale, redis, kafka."""
    from ingest_probe.connectors.kafka.probe import KafkaProbe
    from ingest_probe.connectors.redis.probe import RedisProbe
    from ingest_probe.connectors.timescale.probe import TimescaleProbe

    # Settings.origins has an entry only for keys that were set: without one, the settings layer chose the
    # protocol (SASL_SSL when credentials are set, else PLAINTEXT, or a URL's scheme).
    inferred = "KAFKA_SECURITY_PROTOCOL" not in settings.origins
    return [
        TimescaleProbe(settings.timescale),
        RedisProbe(settings.redis),
        KafkaProbe(settings.kafka, protocol_inferred=inferred),
    ]


def preload_drivers(settings: Settings) -> None:
    """Import the client libraries of the configured connectors, before an event loop starts.

    Probes import their library lazily, but ~0.2 s of imports inside a running loop would be charged to
    the first probe's phases and stall the concurrent ones. A missing library is left for the probe to
    report as a ``DriverError``.
    """
    import importlib

    modules: list[str] = []
    if settings.timescale.configured and settings.timescale.backend == "postgresql":
        modules.append("asyncpg")
    if settings.redis.configured:
        modules.append("redis.asyncio")
    if settings.kafka.configured:
        from ingest_probe.connectors.kafka.probe import AIOKAFKA_MODULES

        modules += AIOKAFKA_MODULES
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
