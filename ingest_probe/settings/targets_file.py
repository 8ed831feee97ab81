"""Targets beyond the classic configuration: services (``--target NAME=ENV_FILE``), a targets file
(``--targets FILE``), labels (``--label``), and ``build_targets``, which turns all of it into one run's targets.

A service is one env file read on its own (no process environment, no other file, no ``--extra``): its
configured connectors become the targets ``NAME/timescale``, ``NAME/redis``, ``NAME/kafka`` with label
``service=NAME``. A targets file is YAML::

    targets:
      staging:                      # a whole service, as --target staging=staging.env
        env_file: staging.env       # relative to this file's directory
        labels: {env: staging}
      cache-1:                      # one endpoint
        kind: redis
        url_env: CACHE_1_URL        # the URL from an --env-file or the environment: no secret here
        labels: {shard: "1"}
      events:
        kind: kafka
        url: broker-1.internal:9092,broker-2.internal:9092
        options: {KAFKA_SECURITY_PROTOCOL: SSL}

Every error is one line naming the file and line (or the flag), never a URL or a password.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ingest_probe.config.sources import env_file_values, read_text
from ingest_probe.config.yaml_file import compose, node_type
from ingest_probe.connectors import registry
from ingest_probe.errors import ConfigError, UsageError
from ingest_probe.settings.service import key_registry, load_settings
from ingest_probe.settings.targets import Target, check_unique, classic_targets, select, target_from_url

if TYPE_CHECKING:
    import yaml

    from ingest_probe.settings.service import Settings

__all__ = ["RESERVED_LABELS", "build_targets", "check_label", "parse_label", "read_targets_file", "service_targets"]

#: A target name given by the user: a letter, digit or ``_`` first, then also ``.`` and ``-`` (a service's
#: targets add ``/KIND``).
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
#: Prometheus label names (the ``__`` prefix is Prometheus's own).
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,99}")
#: Labels ingest-probe's own series carry: a user label of one of these names would clash with them.
RESERVED_LABELS = frozenset({"target", "connector", "status", "phase", "topic"})
_FIELDS = ("env_file", "kind", "url", "url_env", "labels", "options")
_TAG = "tag:yaml.org,2002:"


def check_name(name: str, where: str) -> str:
    if not _NAME.fullmatch(name):
        shown = repr(name) if len(name) <= 100 and name.isprintable() else "a name"
        raise ConfigError(f"{where}: {shown} is not a target name (letters, digits, '_', '.', '-'; at most 100,"
                          " not starting with '.' or '-')")
    return name


def check_label(key: str, where: str) -> str:
    """A user label name: Prometheus syntax, not ``__``-prefixed, not one of ``RESERVED_LABELS``."""
    if not _LABEL.fullmatch(key) or key.startswith("__"):
        shown = repr(key) if len(key) <= 100 and key.isprintable() else "the name"
        raise UsageError(f"{where}: {shown} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with '__')")
    if key in RESERVED_LABELS:
        raise UsageError(f"{where}: label {key!r} is reserved (ingest-probe's series carry"
                         f" {', '.join(sorted(RESERVED_LABELS))}); choose another name")
    return key


def parse_label(text: str, where: str = "--label") -> tuple[str, str]:
    """``KEY=VALUE`` (``--label``): a checked label name and its value (any text, one line)."""
    key, eq, value = text.partition("=")
    if not eq:
        raise UsageError(f"{where}: expected KEY=VALUE")
    if "\n" in value or "\r" in value:
        raise UsageError(f"{where} {key[:40]}: the value must be one line")
    return check_label(key.strip(), where), value


def service_targets(name: str, env_file: Path, *, where: str = "--target",
                    labels: Mapping[str, str] | None = None) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    """The configured connectors of one service (``env_file``, read on its own) as targets ``NAME/KIND`` with
    label ``service=NAME`` (and ``labels``), and the warnings reading it gave. No connector configured is a
    ``ConfigError``: a service that probes nothing is a mistake."""
    check_name(name, where)
    settings = load_settings(env_files=[env_file])
    targets = tuple(Target(name=f"{name}/{t.name}", kind=t.kind, settings=t.settings, service=name,
                           labels={"service": name, **(labels or {})})
                    for t in classic_targets(settings) if t.configured)
    if not targets:
        raise ConfigError(f"{where} {name}: {env_file} configures no connector (TIMESCALEDB_URL, REDIS_URL,"
                          " KAFKA_BROKERS, ...)")
    return targets, tuple(f"{env_file}: {w}" for w in settings.warnings)


def read_targets_file(path: Path, environ: Mapping[str, str] | None
                      ) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    """The targets of a targets file (see the module) and its warnings. ``environ``: where ``url_env`` is
    looked up (None: nothing to look it up in, so ``url_env`` is an error)."""
    import yaml

    text = read_text(path, "targets file", key_registry())
    root = compose(path, text)
    if not isinstance(root, yaml.MappingNode):
        got = "nothing" if root is None or root.tag == _TAG + "null" else node_type(root)
        raise ConfigError(f"{path}: expected a mapping with a top-level targets: key, got {got}")
    section: yaml.Node | None = None
    for key, value in root.value:
        if not (isinstance(key, yaml.ScalarNode) and key.value == "targets"):
            raise ConfigError(f"{path}:{_line(key)}: unknown top-level key {_shown(key)} (expected targets:)")
        section = value
    if not isinstance(section, yaml.MappingNode) or not section.value:
        got = "nothing" if section is None or section.tag == _TAG + "null" else node_type(section)
        raise ConfigError(f"{path}: targets: expected a mapping of NAME: {{kind: ..., url: ...}} or"
                          f" {{env_file: ...}}, got {got if section is None or section.value else 'an empty one'}")
    targets: list[Target] = []
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for key, value in section.value:
        where = f"{path}:{_line(key)}"
        if not isinstance(key, yaml.ScalarNode):
            raise ConfigError(f"{where}: a target name must be a plain value")
        name = check_name(str(key.value), where)
        if name in seen:
            raise ConfigError(f"{where}: target {name!r} is given twice (first on line {seen[name]})")
        seen[name] = _line(key)
        made, said = _target(path, name, value, environ)
        targets += made
        warnings += said
    return tuple(targets), tuple(warnings)


def _target(path: Path, name: str, node: yaml.Node, environ: Mapping[str, str] | None
            ) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    import yaml

    where = f"{path}:{_line(node)}: target {name!r}"
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{where}: expected a mapping (kind: and url: or url_env:, or env_file:), got"
                          f" {node_type(node)}")
    fields: dict[str, yaml.Node] = {}
    for key, value in node.value:
        field = str(key.value) if isinstance(key, yaml.ScalarNode) else ""
        if field not in _FIELDS:
            raise ConfigError(f"{path}:{_line(key)}: target {name!r}: unknown field {_shown(key)} (expected"
                              f" {', '.join(_FIELDS)})")
        if field in fields:
            raise ConfigError(f"{path}:{_line(key)}: target {name!r}: field {field} is given twice")
        fields[field] = value
    labels = {check_label(k, f"{path}:{line}: target {name!r}"): v
              for k, v, line in _mapping(path, name, fields.get("labels"), "labels")}
    if "env_file" in fields:
        extra = [f for f in ("kind", "url", "url_env", "options") if f in fields]
        if extra:
            raise ConfigError(f"{where}: env_file: is a whole service; {', '.join(extra)} belong to a single"
                              " endpoint (kind: with url: or url_env:)")
        env_file = Path(_scalar(path, name, fields["env_file"], "env_file"))
        return service_targets(name, env_file if env_file.is_absolute() else path.parent / env_file,
                               where=where, labels=labels)
    if "kind" not in fields:
        raise ConfigError(f"{where}: needs kind: ({', '.join(c.kind for c in registry.connectors())}) with url:"
                          " or url_env:, or env_file:")
    kind = _scalar(path, name, fields["kind"], "kind")
    kinds = [c.kind for c in registry.connectors()]
    if kind not in kinds:
        raise ConfigError(f"{path}:{_line(fields['kind'])}: target {name!r}: kind {kind[:40]!r} is not one of"
                          f" {', '.join(kinds)}")
    if ("url" in fields) == ("url_env" in fields):
        raise ConfigError(f"{where}: give exactly one of url: and url_env:")
    warnings: list[str] = []
    at = f"{path}:{_line(fields.get('url') or fields['url_env'])}: target {name!r}"
    if "url" in fields:
        url = _scalar(path, name, fields["url"], "url")
        if _has_password(url):
            warnings.append(f"{path}:{_line(fields['url'])}: target {name!r}: the url holds a password written in"
                            " the file; prefer url_env: VAR (the URL from the environment), so the file holds no"
                            " secret")
    else:
        variable = _scalar(path, name, fields["url_env"], "url_env")
        if environ is None:
            raise ConfigError(f"{at}: url_env {variable[:60]} cannot be read with --no-env")
        url = environ.get(variable, "")
        if not url.strip():
            raise ConfigError(f"{at}: url_env {variable[:60]} is not set in the environment or an env file (or is"
                              " empty)")
    options = {k: v for k, v, _ in _mapping(path, name, fields.get("options"), "options")}
    target, said = target_from_url(kind, url, name=name, labels=labels, options=options, where=at)
    return (target,), (*warnings, *(f"{at}: {w}" for w in said))


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(url.strip()).password)
    except ValueError:
        return False


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _shown(node: yaml.Node) -> str:
    """A key for a message: quoted when it is a plain name, never more of the file."""
    import yaml

    text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    return repr(text) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,39}", text) else "(not a plain name)"


def _scalar(path: Path, name: str, node: yaml.Node, field: str) -> str:
    import yaml

    if not isinstance(node, yaml.ScalarNode) or node.tag == _TAG + "null" or not str(node.value).strip():
        raise ConfigError(f"{path}:{_line(node)}: target {name!r}: {field}: expected a non-empty value")
    return str(node.value)


def _mapping(path: Path, name: str, node: yaml.Node | None, field: str) -> list[tuple[str, str, int]]:
    """(key, value, line) of a mapping of plain values (``labels:``, ``options:``)."""
    import yaml

    if node is None or node.tag == _TAG + "null":
        return []
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:{_line(node)}: target {name!r}: {field}: expected a mapping, got {node_type(node)}")
    out = []
    for key, value in node.value:
        if not (isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode)):
            raise ConfigError(f"{path}:{_line(key)}: target {name!r}: {field}: expected KEY: value (plain values)")
        out.append((str(key.value), "" if value.tag == _TAG + "null" else str(value.value), _line(key)))
    return out


def build_targets(
    settings: Settings,
    *,
    services: Sequence[tuple[str, Path]] = (),
    targets_file: Path | None = None,
    labels: Mapping[str, str] | None = None,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    env_files: Sequence[Path] = (),
) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    """One run's targets, and the warnings reading them gave.

    Without ``services`` and ``targets_file``: the classic targets of ``settings``. With them: the services'
    targets (in the order given), then the file's, and not the classic ones (``settings`` then only gives
    the run's global settings). ``labels`` go on every target (a target's own label of the same name wins);
    ``only``/``skip`` select (``targets.select``). Names are unique (``ConfigError`` otherwise). A targets
    file's ``url_env`` is looked up in ``env_files`` (a later one winning) over ``environ``, as the classic
    configuration reads them: a Secret or credential mounted as an env file can hold the URLs.
    """
    warnings: list[str] = []
    if not services and targets_file is None:
        targets: list[Target] = list(classic_targets(settings))
    else:
        targets = []
        for name, env_file in services:
            made, said = service_targets(name, env_file)
            targets += made
            warnings += said
        if targets_file is not None:
            if env_files:
                environ = {**(environ or {}), **env_file_values(env_files, key_registry())}
            made, said = read_targets_file(targets_file, environ)
            targets += made
            warnings += said
    if labels:
        targets = [replace(t, labels={**labels, **t.labels}) for t in targets]
    check_unique(targets)
    return select(targets, only=only, skip=skip), tuple(dict.fromkeys(warnings))


def label_map(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``--label`` pairs as a mapping; a name given twice with two values is a ``UsageError``."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if out.get(key, value) != value:
            raise UsageError(f"--label {key} is given twice with different values")
        out[key] = value
    return out
