"""``Declared``: a ``Connector`` made of its parts (keys, functions, the probe class by name), as the built-in
kinds are; a plugin may use it too, or write a class of its own."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest_probe.config.keys import KeySet
    from ingest_probe.config.reader import Reader
    from ingest_probe.connectors.base import Probe


class Declared:
    """A connector kind from its parts. ``probe_class`` is ``"module:Class"``, imported when the first probe is
    built (never on the start-up path of a manifest-only run)."""

    __slots__ = ("_drivers", "_from_config", "_manifest", "keys", "kind", "probe_class", "url_key")

    def __init__(
        self,
        *,
        kind: str,
        keys: KeySet,
        url_key: str,
        from_config: Callable[[Reader], Any],
        manifest: Callable[[Any], dict[str, Any]],
        drivers: Callable[[Any], tuple[str, ...]],
        probe_class: str,
    ) -> None:
        self.kind, self.keys, self.url_key, self.probe_class = kind, keys, url_key, probe_class
        self._from_config, self._manifest, self._drivers = from_config, manifest, drivers

    def from_config(self, r: Reader) -> Any:
        return self._from_config(r)

    def manifest(self, settings: Any) -> dict[str, Any]:
        return self._manifest(settings)

    def drivers(self, settings: Any) -> tuple[str, ...]:
        return self._drivers(settings) if settings.configured else ()

    def probe(self, settings: Any) -> Probe:
        module, _, name = self.probe_class.partition(":")
        probe: Probe = getattr(importlib.import_module(module), name)(settings)
        return probe
