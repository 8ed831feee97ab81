"""Reading raw configuration inputs (defaults, YAML, environment, env files, ``--extra``) with their origins.

Precedence, lowest first: built-in defaults < YAML (``--config``) < process environment < ``--env-file``
(in the order given) < ``--extra KEY=VALUE``. Within the YAML file, top-level keys < ``system_config:`` <
``extras:`` < ``system_config: {extras: ...}``. Only keys in the registry given (a ``keys.KeyRegistry``)
are kept; from the environment nothing else is even read. An unknown key with one of our prefixes warns
(from the environment only when it is a close miss of a known key; Kubernetes service links never count).
The YAML file itself is read by ``yaml_file``. Validation belongs to ``reader`` and the settings layer; this
module only reads, and never quotes a malformed line of a file (it may hold a password).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from ingest_probe.config.keys import KeyRegistry, KeySpec
from ingest_probe.errors import ConfigError

__all__ = ["ConfigRow", "Origin", "RawConfig", "RawValue", "Source", "env_file_values", "load_config", "read_text"]


class Source(StrEnum):
    """Where an effective value came from, lowest precedence first."""

    DEFAULT = "default"
    YAML = "yaml"
    ENV = "env"
    ENV_FILE = "env-file"
    EXTRA = "extra"


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Source plus a human location.

    ``config.yaml:4``, ``config.yaml:9 (system_config)``, ``prod.env:12``, ``env``, ``--extra``, ``default``.
    """

    source: Source
    location: str

    def __str__(self) -> str:
        return self.location


DEFAULT_ORIGIN = Origin(source=Source.DEFAULT, location="default")


@dataclass(frozen=True, slots=True, kw_only=True)
class RawValue:
    """One effective string value, where it came from and its key's spec (``None`` for an unknown key).

    ``repr`` hides the value of secret keys.
    """

    key: str
    value: str = field(repr=False)
    origin: Origin
    spec: KeySpec | None = field(default=None, repr=False, compare=False)

    @property
    def secret(self) -> bool:
        return self.spec is not None and self.spec.secret

    @property
    def shown(self) -> str:
        """The value for an error message: quoted and capped (``quoted``), or ``***`` for a secret-bearing key."""
        return "***" if self.secret else quoted(self.value)

    def __repr__(self) -> str:
        return f"RawValue(key={self.key!r}, value={self.shown}, origin={self.origin.location!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class RawConfig:
    """The effective raw values (defaults included) by key, and non-fatal findings."""

    values: Mapping[str, RawValue]
    warnings: tuple[str, ...] = ()

    def get(self, key: str) -> RawValue | None:
        return self.values.get(key)

    def explicit(self, key: str) -> RawValue | None:
        """The value of ``key`` unless it is only the built-in default."""
        raw = self.values.get(key)
        return None if raw is None or raw.origin.source is Source.DEFAULT else raw


def quoted(text: str, limit: int = 80) -> str:
    """``repr(text)`` for a one-line message, cut to ``limit`` characters: a bad value may be megabytes."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


class ConfigRow(NamedTuple):
    """One line of ``ingest-probe config``: key, redacted value, origin location (plus a note if unused)."""

    key: str
    value: str
    source: str


# ------------------------------------------------------------------------------------------------ reading

_Entry = tuple[str, str, Origin]  # key, value, origin


def load_config(
    *,
    keys: KeyRegistry,
    config_file: Path | None = None,
    env_files: Sequence[Path] = (),
    extras: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> RawConfig:
    """Merge every source into one ``RawConfig``. ``environ=None`` means: do not read the environment."""
    warnings: list[str] = []
    values = defaults(keys)
    layers: list[Iterable[_Entry]] = []
    if config_file is not None:
        layers.append(_read_yaml(config_file, keys))
    if environ is not None:
        entries, links = _read_environ(environ, keys)
        layers.append(entries)
        if links:
            warnings.append(_service_link_warning(links))
    layers += [_read_env_file(path, keys) for path in env_files]
    layers.append(_read_extras(extras, keys))
    for layer in layers:
        for key, value, origin in layer:
            spec = keys.spec(key)
            if spec is not None:
                values[key] = RawValue(key=key, value=value, origin=origin, spec=spec)
            elif keys.is_ours(key) or origin.source is Source.EXTRA:
                warning = _unknown_key_warning(key, origin, keys)
                if warning is not None:
                    warnings.append(warning)
    return RawConfig(values=values, warnings=tuple(dict.fromkeys(warnings)))


def defaults(keys: KeyRegistry) -> dict[str, RawValue]:
    """The built-in default of every key that has one."""
    return {spec.name: RawValue(key=spec.name, value=spec.default, origin=DEFAULT_ORIGIN, spec=spec)
            for spec in keys.specs if spec.default is not None and not spec.is_pattern}


def _unknown_key_warning(key: str, origin: Origin, keys: KeyRegistry) -> str | None:
    """A warning naming the known key ``key`` is close to, if any (see ``KeyRegistry.closest_known``).

    From the process environment only a close miss warns: container images set variables of their own
    with our prefixes (``REDIS_VERSION``, ``KAFKA_HEAP_OPTS``, ...) that the operator never chose. A key in
    a YAML file, an env file or ``--extra`` was put there on purpose, so it always warns. A key that is not
    even a variable name (``REDIS_PASSWORD hunter2``) is not quoted: the rest of it may be a value.
    """
    guess = keys.closest_known(key)
    if guess is None and origin.source is Source.ENV:
        return None
    if not _ENV_KEY.fullmatch(key):
        return (f"a key from {origin.location} that is not a valid variable name is ignored"
                f" ({_bad_name(key, keys)})")
    hint = f"; did you mean {guess}?" if guess else "; no similar known key"
    return f"unknown key {key} from {origin.location} is ignored{hint}"


#: Kubernetes "service links": for every Service ``foo`` in the namespace a pod gets ``FOO_SERVICE_HOST``,
#: ``FOO_SERVICE_PORT[_NAME]``, ``FOO_PORT=tcp://10.0.0.11:6379`` and ``FOO_PORT_6379_TCP[_PROTO|_PORT|_ADDR]``.
_SERVICE_LINK_NAME = re.compile(r"\w+_(?:SERVICE_HOST|SERVICE_PORT(?:_\w+)?|PORT_\d+_(?:TCP|UDP|SCTP)(?:_\w+)?)")
_SERVICE_LINK_VALUE = re.compile(r"(?:tcp|udp|sctp)://[^\s/]+:\d+")


def _read_environ(environ: Mapping[str, str], keys: KeyRegistry) -> tuple[list[_Entry], list[str]]:
    """Only known keys and key patterns; of an unknown key with our prefix only the name (for a warning).

    Kubernetes service links are never configuration: ``*_SERVICE_HOST``/``*_SERVICE_PORT*``/``*_PORT_<n>_*``
    names are skipped, and a ``tcp://host:port`` value of a ``*_PORT`` key (``REDIS_PORT`` when the namespace
    has a Service named ``redis``) is set aside and returned by name, for one warning.
    """
    origin = Origin(source=Source.ENV, location="env")
    entries: list[_Entry] = []
    links: list[str] = []
    for key in sorted(environ):
        if _SERVICE_LINK_NAME.fullmatch(key):
            continue
        if keys.spec(key) is not None:
            if key.endswith("PORT") and _SERVICE_LINK_VALUE.fullmatch(environ[key].strip()):
                links.append(key)
                continue
            entries.append((key, environ[key], origin))
        elif keys.is_ours(key):
            entries.append((key, "", origin))
    return entries, links


def _service_link_warning(links: list[str]) -> str:
    names = ", ".join(links)
    verb = "look like Kubernetes service links" if len(links) > 1 else "looks like a Kubernetes service link"
    return (f"{names} from env {verb} (tcp://host:port, set for a Service of that name), not a port, and "
            f"{'are' if len(links) > 1 else 'is'} ignored; set the port in the URL, an env file or --extra")


_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _char(ch: str) -> str:
    """A description of one character for an error, quoting it only when it is punctuation."""
    if ch == " ":
        return "a space"
    if ch.isspace():
        return f"a whitespace character (U+{ord(ch):04X})"
    if ch.isascii() and ch.isprintable() and not ch.isalnum():
        return repr(ch)
    if ch == "\ufeff":
        return "a byte-order mark (U+FEFF)"
    if not ch.isprintable() or "\ud800" <= ch <= "\udfff":
        return f"a control or invalid character (U+{ord(ch):04X})"
    return "a non-ASCII character" if not ch.isascii() else "a letter or digit"


def _bad_name(name: str, keys: KeyRegistry) -> str:
    """Why ``name`` is not a variable name (letters, digits, ``_``, ``.``), without quoting it."""
    if not name:
        return "it is empty"
    match = re.match(r"[A-Za-z_][A-Za-z0-9_.]*", name)
    if match is None:
        return f"it starts with {_char(name[0])}"
    known = keys.known_name_at(match.group())
    lead = f"{known} is followed by" if known == match.group() else "it contains"
    return f"{lead} {_char(name[match.end()])}"


def read_text(path: Path, what: str, keys: KeyRegistry) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        number = data.count(b"\n", 0, exc.start) + 1
        key = keys.known_name_at(data.split(b"\n")[number - 1].decode("utf-8", "replace"))
        at = f" in the value of {key}" if key else ""
        raise ConfigError(f"{path}:{number}: bytes that are not UTF-8 text{at}") from None


def _read_env_file(path: Path, keys: KeyRegistry) -> list[_Entry]:
    """Dotenv: ``#`` comments, blank lines, optional ``export``, matching quotes stripped, no expansion.

    An unquoted value ends at `` #`` (an inline comment, as python-dotenv and docker compose read it).
    Lines end at ``\n`` only (``str.splitlines`` would also cut at a form feed or U+2028 inside a value).
    A malformed line is described, never quoted: ``TIMESCALEDB_URL: postgresql://u:pw@db/x`` holds a password.
    """
    entries: list[_Entry] = []
    for number, line in enumerate(read_text(path, "env file", keys).split("\n"), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export ") or text.startswith("export\t"):
            text = text[len("export") :].lstrip()
        key, eq, value = text.partition("=")
        key = key.strip()
        where = f"{path}:{number}"
        if not eq:
            raise ConfigError(f"{where}: expected KEY=VALUE, found a line without '='{_yaml_hint(text, keys)}")
        if not _ENV_KEY.fullmatch(key):
            raise ConfigError(f"{where}: not a valid variable name before '=' ({_bad_name(key, keys)}); expected "
                              f"KEY=VALUE{_yaml_hint(key, keys)}")
        entries.append((key, _dotenv_value(value.strip(), key, where, keys),
                        Origin(source=Source.ENV_FILE, location=where)))
    return entries


def env_file_values(paths: Sequence[Path], keys: KeyRegistry) -> dict[str, str]:
    """Every variable of the env files ``paths``, a later file winning, as ``load_config`` reads them."""
    return {key: value for path in paths for key, value, _ in _read_env_file(path, keys)}


def _yaml_hint(text: str, keys: KeyRegistry) -> str:
    key = keys.known_name_at(text)
    if key is None or not text.lstrip()[len(key):].lstrip().startswith(":"):
        return ""
    return f" ({key}: ... is YAML syntax; an env file needs {key}=...)"


def _dotenv_value(value: str, key: str, where: str, keys: KeyRegistry) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        rest = value[end + 1 :].strip() if end > 0 else ""
        if end < 0 or (rest and not rest.startswith("#")):
            name = key if keys.known_name_at(key) == key or keys.is_ours(key) else "the variable"
            raise ConfigError(f"{where}: the value of {name} has an unterminated or misplaced {quote} quote")
        return value[1:end]
    comment = re.search(r"\s#", value)
    return value[: comment.start()].rstrip() if comment else value


def _read_yaml(path: Path, keys: KeyRegistry) -> list[_Entry]:
    """The YAML file's entries (``yaml_file.read_entries``), each with its ``file:line (section)`` origin."""
    from ingest_probe.config import yaml_file  # only with --config: the module, and then yaml, load on use

    return [(key, value, Origin(source=Source.YAML, location=where))
            for key, value, where in yaml_file.read_entries(path, read_text(path, "config file", keys), keys)]


def _read_extras(extras: Sequence[str], keys: KeyRegistry) -> list[_Entry]:
    origin = Origin(source=Source.EXTRA, location="--extra")
    entries: list[_Entry] = []
    for index, item in enumerate(extras, start=1):
        key, eq, value = item.partition("=")
        key = key.strip()
        # The argument is never echoed: a mistyped ``--extra`` may well be a password.
        if not eq or not key:
            raise ConfigError(f"--extra #{index}: expected KEY=VALUE")
        if not _ENV_KEY.fullmatch(key):
            raise ConfigError(f"--extra #{index}: not a valid variable name before '=' ({_bad_name(key, keys)})")
        entries.append((key, value, origin))
    return entries
