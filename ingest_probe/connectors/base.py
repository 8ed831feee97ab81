"""What a connector kind is: the ``Connector`` protocol, its ``ConnectorSettings`` and the ``Probe`` it builds.

A kind owns its keys, reads its settings from the configuration, describes them for the manifest and
builds a probe for one target. The registry (``connectors.registry``) lists the kinds; nothing else in
ingest-probe names them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ingest_probe.config.keys import KeySet
    from ingest_probe.config.reader import Reader
    from ingest_probe.results import Recorder
    from ingest_probe.secret import Secret


class ConnectorSettings(Protocol):
    """One target's settings (frozen): whether it is configured, where it points, what secrets it holds."""

    @property
    def configured(self) -> bool: ...

    @property
    def endpoint(self) -> str | None:
        """``host:port`` (or the like) for reports; never a credential."""

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret these settings hold, to scrub from messages and logs."""


class Probe(Protocol):
    """A check of one target. ``check`` may keep a warm client between calls; ``aclose`` releases it.

    ``check`` takes no timeout: the caller (the supervisor) owns the deadline through a cancel scope, and
    the probe reads ``anyio.current_effective_deadline()`` to set its library's own timeouts a little
    under it. Expected failures are raised as ``errors.ProbeError`` subclasses; anything else is a bug.
    ``phase_names`` are the steps it times (``Recorder.phase``), reported as ``null`` until reached.
    """

    phase_names: tuple[str, ...]

    async def check(self, rec: Recorder) -> None: ...

    async def aclose(self) -> None: ...


class Connector(Protocol):
    """One connector kind, registered once (``registry.register_connector``) and shared by its targets."""

    #: The kind's name: ``timescale``, ``redis``, ``kafka``, or whatever a plugin registers.
    kind: str
    #: The configuration keys it owns; the registry of all keys is the general ones plus every kind's.
    keys: KeySet
    #: The key a URL of this kind is read from (``REDIS_URL``): a target built from a URL sets it alone.
    url_key: str

    def from_config(self, r: Reader) -> Any:
        """This kind's settings (a ``ConnectorSettings``) from the configuration, configured or not."""

    def manifest(self, settings: Any) -> dict[str, Any]:
        """What the target is configured to be, from allow-listed parts only; ``summary`` is one line."""

    def drivers(self, settings: Any) -> tuple[str, ...]:
        """Client-library modules a probe of these settings imports (loaded before a loop starts)."""

    def probe(self, settings: Any) -> Probe:
        """A fresh probe for one target (imports the probe module, never the client library)."""
