"""One service's settings: the key registry of every kind, ``build_settings``/``load_settings``, and the rows of
``ingest-probe config``.

Connection targets are stored *as parts* (host, port, user, ...), never as a raw URL, so that every
rendering of them is built from an allow-list and a secret can only be reached through ``Secret.reveal()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ingest_probe.config.keys import KeyRegistry
from ingest_probe.config.reader import Reader, fallback_warning, set_aside, validate_all
from ingest_probe.config.sources import ConfigRow, Origin, RawConfig, RawValue, Source, load_config
from ingest_probe.config.urls import UrlError
from ingest_probe.connectors import registry
from ingest_probe.connectors.timescale.settings import standby
from ingest_probe.settings import plan as general
from ingest_probe.settings.plan import FailoverSettings, PlanSettings, ScheduleSettings

if TYPE_CHECKING:
    from ingest_probe.connectors.kafka.settings import KafkaSettings
    from ingest_probe.connectors.redis.settings import RedisSettings
    from ingest_probe.connectors.timescale.settings import TimescaleSettings

__all__ = ["Settings", "build_settings", "key_registry", "load_settings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What the rest of ingest-probe may know about one service's configuration.

    ``connectors`` holds each registered kind's settings, in registry order; ``timescale``, ``redis`` and
    ``kafka`` are the built-in kinds' (typed).
    """

    plan: PlanSettings
    schedule: ScheduleSettings
    failover: FailoverSettings
    connectors: Mapping[str, Any]
    #: Every key that has an effective value, with where that value came from.
    origins: Mapping[str, Origin] = field(default_factory=dict)
    #: Non-fatal findings (unknown keys with our prefixes, ...), one line each, no secrets.
    warnings: tuple[str, ...] = ()
    #: ``ingest-probe config``: every effective key, redacted by construction, with its origin.
    effective: tuple[ConfigRow, ...] = ()
    #: The sources read, lowest precedence first: the YAML file and env files as given, ``environment``,
    #: ``--extra`` (names only, for the report's ``config_sources``).
    sources: tuple[str, ...] = ()

    @property
    def timescale(self) -> TimescaleSettings:
        return cast("TimescaleSettings", self.connectors["timescale"])

    @property
    def redis(self) -> RedisSettings:
        return cast("RedisSettings", self.connectors["redis"])

    @property
    def kafka(self) -> KafkaSettings:
        return cast("KafkaSettings", self.connectors["kafka"])


_registry_cache: tuple[int, KeyRegistry] | None = None


def key_registry() -> KeyRegistry:
    """Every known key: the general ones, then each registered connector kind's, in registry order."""
    global _registry_cache
    version = registry.version()
    if _registry_cache is None or _registry_cache[0] != version:
        _registry_cache = (version, KeyRegistry([general.KEYS, *(c.keys for c in registry.connectors())]))
    return _registry_cache[1]


def build_settings(raw: RawConfig) -> Settings:
    """Validate raw values into ``Settings``; bad input: a one-line ``ConfigError`` (key, origin, value)."""
    keys = key_registry()
    set_asides = [(fallback, *set_aside(raw, fallback)) for fallback in keys.fallbacks]
    skip = {v.key for _, _, ignored in set_asides for v in ignored}
    validate_all(raw, keys, skip=skip)
    r = Reader(raw, keys, skip=skip)
    for fallback, target, ignored in set_asides:
        if target is not None and ignored:
            r.warnings.append(fallback_warning(fallback, target, ignored))
            for value in ignored:
                r.notes[value.key] = f"ignored: {fallback.what}; {target.key} is set"
    connectors = {connector.kind: connector.from_config(r) for connector in registry.connectors()}
    plan = general.plan(r, connectors)
    schedule = general.schedule(r)
    failover = general.failover(r, standby(r))
    if (legacy := r.legacy_warning()) is not None:
        r.warnings.append(legacy)
    primary = connectors.get("timescale")
    if primary is not None and primary.configured:  # the database the plan ingests into shows the plan
        connectors["timescale"] = replace(primary, dimensions=plan.dimensions, symbols=plan.symbols)
    return Settings(
        plan=plan, schedule=schedule, failover=failover, connectors=connectors,
        origins=origins(raw, keys),
        warnings=tuple(dict.fromkeys((*raw.warnings, *r.warnings))),
        effective=tuple(rows(raw, keys, r.notes, r.supplied)),
    )


def load_settings(
    *,
    config_file: Path | None = None,
    env_files: Sequence[Path] = (),
    extras: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """``load_config`` then ``build_settings``; ``environ=None`` leaves the process environment unread."""
    raw = load_config(keys=key_registry(), config_file=config_file, env_files=env_files, extras=extras,
                      environ=environ)
    sources = [*([str(config_file)] if config_file is not None else []),
               *(["environment"] if environ is not None else []), *(str(p) for p in env_files),
               *(["--extra"] if extras else [])]
    return replace(build_settings(raw), sources=tuple(sources))


# ------------------------------------------------------------------------------------------------- rows


def rows(raw: RawConfig, keys: KeyRegistry, notes: Mapping[str, str] | None = None,
         supplied: Mapping[str, tuple[str, str]] | None = None) -> list[ConfigRow]:
    """Every key with an effective value, registry order (pattern keys last, sorted), redacted.

    A part that a URL supplies (``REDIS_PORT`` from ``REDIS_URL``) shows the value used and the URL key
    as its source, instead of a default that is not used.
    """
    notes, supplied = notes or {}, supplied or {}
    names = list(keys.names())
    names += sorted(k for k in raw.values if k not in set(names))
    out = []
    for name in names:
        value = raw.get(name)
        if name in supplied and (value is None or value.origin.source is Source.DEFAULT):
            out.append(ConfigRow(key=name, value=supplied[name][0], source=supplied[name][1]))
        elif value is not None and value.origin.source is Source.DEFAULT and _alias_set(raw, value):
            continue  # the default is not used: an alias of the key is set (its own row shows it)
        elif value is not None:
            text = notes.get(name) or ("not used by ingest-probe" if value.spec and value.spec.service_only else None)
            note = f" ({text})" if text else ""
            out.append(ConfigRow(key=name, value=render(value), source=f"{value.origin.location}{note}"))
    return out


def _alias_set(raw: RawConfig, value: RawValue) -> bool:
    return value.spec is not None and _alias_value(raw, value.spec.aliases) is not None


def _alias_value(raw: RawConfig, names: Sequence[str]) -> RawValue | None:
    """The first of ``names`` with an explicit, non-empty value."""
    return next((v for v in map(raw.explicit, names) if v is not None and v.value.strip()), None)


def origins(raw: RawConfig, keys: KeyRegistry) -> dict[str, Origin]:
    """Where each effective value came from, by the name set; a key set only through an alias (e.g. a legacy
    name) also by its own name, with the alias's origin."""
    out = {key: value.origin for key, value in sorted(raw.values.items())}
    fallbacks = {name for fallback in keys.fallbacks for name in fallback.names}  # used only as a whole
    for spec in keys.specs:
        own = raw.explicit(spec.name)
        aliases = [name for name in spec.aliases if name not in fallbacks]
        alias = _alias_value(raw, aliases) if own is None or not own.value.strip() else None
        if alias is not None:
            out[spec.name] = alias.origin
    return out


def render(raw: RawValue) -> str:
    """A value for display: URL kinds rebuilt from parts (allow-list), other secrets ``***``."""
    spec = raw.spec
    if spec is None or not spec.secret:
        return raw.value
    if not raw.value.strip():
        return ""
    if spec.shown is not None:
        try:
            return spec.shown(raw.value)
        except UrlError:
            pass
    return "***"
