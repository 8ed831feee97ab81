"""The ordered registry of connector kinds: timescale, redis and kafka, then any kind a caller registers.

The order is the order of everything per kind: the classic targets, the manifest, the key table. Built-in
kinds are imported on first use (their keys and settings only: probes and client libraries load later).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ingest_probe.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from ingest_probe.connectors.base import Connector

__all__ = ["connectors", "get_connector", "register_connector", "unregister_connector", "version"]

BUILTIN = ("timescale", "redis", "kafka")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")


class _Registry:
    kinds: dict[str, Connector] | None = None
    #: Bumped on every change, so that what is derived from the kinds (the key registry) is rebuilt.
    version = 0


_state = _Registry()


def _kinds() -> dict[str, Connector]:
    if _state.kinds is None:
        from ingest_probe.connectors.kafka import CONNECTOR as kafka
        from ingest_probe.connectors.redis import CONNECTOR as redis
        from ingest_probe.connectors.timescale import CONNECTOR as timescale

        _state.kinds = {c.kind: c for c in (timescale, redis, kafka)}
    return _state.kinds


def connectors() -> tuple[Connector, ...]:
    """Every registered kind, built-ins first, then in the order they were registered."""
    return tuple(_kinds().values())


def get_connector(kind: str) -> Connector:
    """The connector of ``kind``; an unknown kind is a ``ConfigError`` naming the known ones."""
    found = _kinds().get(kind)
    if found is None:
        raise ConfigError(f"unknown connector kind {kind!r} (known: {', '.join(_kinds())})")
    return found


def register_connector(connector: Connector, *, replace: bool = False) -> None:
    """Add a connector kind (after the built-ins), or with ``replace`` swap the one of the same kind.

    Its keys join the configuration (the classic config can configure it), its targets the runs, its rows
    the manifest. Registration is process-wide; ``unregister_connector`` undoes it.
    """
    kind = getattr(connector, "kind", None)
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise UsageError(f"a connector kind must be a lower-case name ([a-z][a-z0-9_]*), got {kind!r}")
    missing = [name for name in ("keys", "url_key", "from_config", "manifest", "drivers", "probe")
               if not hasattr(connector, name)]
    if missing:
        raise UsageError(f"connector {kind!r} lacks {', '.join(missing)} (see ingest_probe.Connector)")
    kinds = _kinds()
    if kind in kinds and not replace:
        raise UsageError(f"connector kind {kind!r} is already registered (pass replace=True to swap it)")
    taken = {n for other in kinds.values() if other.kind != kind for spec in other.keys.specs for n in spec.names}
    clash = sorted(n for spec in connector.keys.specs for n in spec.names if n in taken)
    if clash:
        raise UsageError(f"connector {kind!r} declares keys another kind owns: {', '.join(clash)}")
    kinds[kind] = connector
    _state.version += 1


def unregister_connector(kind: str) -> None:
    """Remove a registered kind (a built-in one cannot be removed)."""
    if kind in BUILTIN:
        raise UsageError(f"the built-in connector kind {kind!r} cannot be unregistered")
    if _kinds().pop(kind, None) is not None:
        _state.version += 1


def version() -> int:
    """A number that changes whenever a kind is registered, replaced or removed."""
    return _state.version
