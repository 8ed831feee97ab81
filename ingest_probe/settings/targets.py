"""Targets: what a run probes. Each has a unique name, a connector kind, labels and that kind's settings.

The classic configuration yields one target per registered kind, named after it (``timescale``,
``redis``, ``kafka``: unconfigured ones are skipped when probed); the failover drill adds the standby as
``timescale_failover`` (label ``role=standby``). A URL makes a target of one kind (``target_from_url``).
Selectors (``--only``/``--skip``, ``Prober.check(only=..., skip=...)``) pick targets by name or kind, with
shell-style globs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest_probe.config.reader import Reader
from ingest_probe.config.sources import Origin, RawConfig, RawValue, Source, defaults
from ingest_probe.connectors import registry
from ingest_probe.errors import ConfigError, UsageError
from ingest_probe.settings.service import key_registry

if TYPE_CHECKING:
    from ingest_probe.connectors.base import ConnectorSettings
    from ingest_probe.settings.service import Settings

#: The failover drill's standby, probed beside the classic targets when the drill decides to fail over.
STANDBY = "timescale_failover"


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One thing to probe: ``name`` (unique in a run), ``kind`` (a registered connector kind), ``labels``,
    ``settings`` (that kind's) and the ``service`` it belongs to (None for the classic configuration)."""

    name: str
    kind: str
    settings: ConnectorSettings
    labels: Mapping[str, str] = field(default_factory=dict)
    service: str | None = None

    @property
    def configured(self) -> bool:
        return self.settings.configured


def classic_targets(settings: Settings) -> tuple[Target, ...]:
    """One target per registered kind, named after it, configured or not (registry order)."""
    return tuple(Target(name=kind, kind=kind, settings=s) for kind, s in settings.connectors.items())


def standby_target(settings: Settings) -> Target | None:
    """The failover standby as a target (kind timescale, label role=standby), when one is configured."""
    standby = settings.failover.target
    if standby is None or not standby.configured:
        return None
    return Target(name=STANDBY, kind="timescale", settings=standby, labels={"role": "standby"})


def target_from_url(
    kind: str,
    url: str,
    *,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    options: Mapping[str, str] | None = None,
    where: str = "url",
) -> tuple[Target, tuple[str, ...]]:
    """A target of ``kind`` from a URL (the kind's ``url_key``) and ``options`` (other keys of that kind), and
    the warnings reading them gave (one line each, no secret). ``where`` names the place in messages.

    The URL goes through the same reading and validation as the same key in a configuration file; a bad one
    is a ``ConfigError`` naming ``where`` (never the URL: it may hold a password).
    """
    connector = registry.get_connector(kind)
    keys = key_registry()
    own = {spec.name for spec in connector.keys.specs}  # by name: comparing KeySpecs by value costs ~0.5 ms a target
    origin = Origin(source=Source.EXTRA, location=where)
    values = {k: v for k, v in defaults(keys).items() if k in own}
    for key, value in {**(options or {}), connector.url_key: url}.items():
        spec = keys.spec(key)
        if spec is None or spec.name not in own:
            raise ConfigError(f"{where}: {key} is not a key of the {kind} connector")
        values[key] = RawValue(key=key, value=value, origin=origin, spec=spec)
    r = Reader(RawConfig(values=values), keys)
    target = Target(name=name or kind, kind=kind, settings=connector.from_config(r), labels=dict(labels or {}))
    return target, tuple(dict.fromkeys(r.warnings))


def check_unique(targets: Iterable[Target]) -> None:
    """Target names are unique in a run: a duplicate is a ``ConfigError`` naming it."""
    seen: set[str] = set()
    for target in targets:
        if target.name in seen:
            raise ConfigError(f"target name {target.name!r} is given twice: every target needs its own name")
        seen.add(target.name)


def matches(target: Target, selector: str) -> bool:
    """Whether ``selector`` (a target name or a kind, shell-style globs allowed) picks ``target``."""
    import fnmatch  # only when selecting: not on the path of a plain report

    return fnmatch.fnmatchcase(target.name, selector) or fnmatch.fnmatchcase(target.kind, selector)


def select(targets: Sequence[Target], *, only: Sequence[str] = (), skip: Sequence[str] = ()) -> tuple[Target, ...]:
    """The targets ``only`` picks (all when empty) minus those ``skip`` picks, in their order.

    A selector that matches no target is a ``UsageError`` (exit 3): a typo must not silently probe
    nothing, or everything.
    """
    for selector in (*only, *skip):
        if not any(matches(t, selector) for t in targets):
            names = ", ".join(t.name for t in targets[:10]) or "none"
            more = f", … {len(targets)} in all" if len(targets) > 10 else ""
            raise UsageError(f"selector {selector!r} matches no target name or kind (targets: {names}{more})")
    return tuple(t for t in targets
                 if (not only or any(matches(t, s) for s in only)) and not any(matches(t, s) for s in skip))


def shared_labels(label_sets: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The labels every one of ``label_sets`` has with the same value (a run's own labels: ``--label
    env=prod``, or ``service`` when one service is probed); none for no sets."""
    sets = [dict(labels) for labels in label_sets]
    if not sets:
        return {}
    return {k: v for k, v in sets[0].items() if all(other.get(k) == v for other in sets[1:])}
