"""Reading raw configuration inputs (defaults, YAML, environment, env files, ``--extra``) with their origins.

Precedence, lowest first: built-in defaults < YAML (``--config``) < process environment < ``--env-file``
(in the order given) < ``--extra KEY=VALUE``. Within the YAML file, top-level keys < ``system_config:`` <
``extras:`` < ``system_config: {extras: ...}``. Only keys in the registry (``_keys.KEYS``) are kept; from
the environment nothing else is even read. An unknown key with one of our prefixes warns (from the
environment only when it is a close miss of a known key). Validation belongs to ``settings``; this module
only reads.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ingest_probe import _keys
from ingest_probe._keys import KEYS, KeySpec, spec_for
from ingest_probe.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = ["ConfigRow", "Origin", "RawConfig", "RawValue", "Source", "load_config"]


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
    """One effective string value and where it came from. ``repr`` hides the value of secret keys."""

    key: str
    value: str = field(repr=False)
    origin: Origin

    @property
    def secret(self) -> bool:
        spec = spec_for(self.key)
        return spec is not None and spec.secret

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
    config_file: Path | None = None,
    env_files: Sequence[Path] = (),
    extras: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> RawConfig:
    """Merge every source into one ``RawConfig``. ``environ=None`` means: do not read the environment."""
    warnings: list[str] = []
    values: dict[str, RawValue] = {
        spec.name: RawValue(key=spec.name, value=spec.default, origin=DEFAULT_ORIGIN)
        for spec in KEYS
        if spec.default is not None and not spec.is_pattern
    }
    layers: list[Iterable[_Entry]] = []
    if config_file is not None:
        layers.append(_read_yaml(config_file))
    if environ is not None:
        entries, links = _read_environ(environ)
        layers.append(entries)
        if links:
            warnings.append(_service_link_warning(links))
    layers += [_read_env_file(path) for path in env_files]
    layers.append(_read_extras(extras))
    for layer in layers:
        for key, value, origin in layer:
            if spec_for(key) is not None:
                values[key] = RawValue(key=key, value=value, origin=origin)
            elif _keys.is_ours(key) or origin.source is Source.EXTRA:
                warning = _unknown_key_warning(key, origin)
                if warning is not None:
                    warnings.append(warning)
    return RawConfig(values=values, warnings=tuple(dict.fromkeys(warnings)))


def _unknown_key_warning(key: str, origin: Origin) -> str | None:
    """A warning naming the known key ``key`` is close to, if any (see ``_keys.closest_known``).

    From the process environment only a close miss warns: container images set variables of their own
    with our prefixes (``REDIS_VERSION``, ``KAFKA_HEAP_OPTS``, ...) that the operator never chose. A key in
    a YAML file, an env file or ``--extra`` was put there on purpose, so it always warns. A key that is not
    even a variable name (``REDIS_PASSWORD hunter2``) is not quoted: the rest of it may be a value.
    """
    guess = _keys.closest_known(key)
    if guess is None and origin.source is Source.ENV:
        return None
    if not _ENV_KEY.fullmatch(key):
        return f"a key from {origin.location} that is not a valid variable name is ignored ({_bad_name(key)})"
    hint = f"; did you mean {guess}?" if guess else "; no similar known key"
    return f"unknown key {key} from {origin.location} is ignored{hint}"


#: Kubernetes "service links": for every Service ``foo`` in the namespace a pod gets ``FOO_SERVICE_HOST``,
#: ``FOO_SERVICE_PORT[_NAME]``, ``FOO_PORT=tcp://10.0.0.11:6379`` and ``FOO_PORT_6379_TCP[_PROTO|_PORT|_ADDR]``.
_SERVICE_LINK_NAME = re.compile(r"\w+_(?:SERVICE_HOST|SERVICE_PORT(?:_\w+)?|PORT_\d+_(?:TCP|UDP|SCTP)(?:_\w+)?)")
_SERVICE_LINK_VALUE = re.compile(r"(?:tcp|udp|sctp)://[^\s/]+:\d+")


def _read_environ(environ: Mapping[str, str]) -> tuple[list[_Entry], list[str]]:
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
        if spec_for(key) is not None:
            if key.endswith("PORT") and _SERVICE_LINK_VALUE.fullmatch(environ[key].strip()):
                links.append(key)
                continue
            entries.append((key, environ[key], origin))
        elif _keys.is_ours(key):
            entries.append((key, "", origin))
    return entries, links


def _service_link_warning(links: list[str]) -> str:
    names = ", ".join(links)
    verb = "look like Kubernetes service links" if len(links) > 1 else "looks like a Kubernetes service link"
    return (f"{names} from env {verb} (tcp://host:port, set for a Service of that name), not a port, and "
            f"{'are' if len(links) > 1 else 'is'} ignored; set the port in the URL, an env file or --extra")


_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_LEADING_NAME = re.compile(r"\s*(?:export\s+)?[\"']?([A-Za-z_][A-Za-z0-9_.]*)")


def known_name_at(text: str) -> str | None:
    """The known key a line of a file starts with (``REDIS_PORT: x`` → REDIS_PORT), else None.

    Only a *known* key name is ever quoted from a broken line: anything else on it may be a secret.
    """
    match = _LEADING_NAME.match(text)
    if match is None:
        return None
    for name in (match.group(1), match.group(1).upper()):
        if spec_for(name) is not None:
            return name
    return None


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


def _bad_name(name: str) -> str:
    """Why ``name`` is not a variable name (letters, digits, ``_``, ``.``), without quoting it."""
    if not name:
        return "it is empty"
    match = re.match(r"[A-Za-z_][A-Za-z0-9_.]*", name)
    if match is None:
        return f"it starts with {_char(name[0])}"
    known = known_name_at(match.group())
    lead = f"{known} is followed by" if known == match.group() else "it contains"
    return f"{lead} {_char(name[match.end()])}"


def _read_text(path: Path, what: str) -> str:
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
        key = known_name_at(data.split(b"\n")[number - 1].decode("utf-8", "replace"))
        at = f" in the value of {key}" if key else ""
        raise ConfigError(f"{path}:{number}: bytes that are not UTF-8 text{at}") from None


def _read_env_file(path: Path) -> list[_Entry]:
    """Dotenv: ``#`` comments, blank lines, optional ``export``, matching quotes stripped, no expansion.

    An unquoted value ends at `` #`` (an inline comment, as python-dotenv and docker compose read it).
    Lines end at ``\n`` only (``str.splitlines`` would also cut at a form feed or U+2028 inside a value).
    A malformed line is described, never quoted: ``TIMESCALEDB_URL: postgresql://u:pw@db/x`` holds a password.
    """
    entries: list[_Entry] = []
    for number, line in enumerate(_read_text(path, "env file").split("\n"), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export ") or text.startswith("export\t"):
            text = text[len("export") :].lstrip()
        key, eq, value = text.partition("=")
        key = key.strip()
        where = f"{path}:{number}"
        if not eq:
            raise ConfigError(f"{where}: expected KEY=VALUE, found a line without '='{_yaml_hint(text)}")
        if not _ENV_KEY.fullmatch(key):
            raise ConfigError(f"{where}: not a valid variable name before '=' ({_bad_name(key)}); expected "
                              f"KEY=VALUE{_yaml_hint(key)}")
        entries.append((key, _dotenv_value(value.strip(), key, where), Origin(source=Source.ENV_FILE,
                                                                               location=where)))
    return entries


def _yaml_hint(text: str) -> str:
    key = known_name_at(text)
    if key is None or not text.lstrip()[len(key):].lstrip().startswith(":"):
        return ""
    return f" ({key}: ... is YAML syntax; an env file needs {key}=...)"


def _dotenv_value(value: str, key: str, where: str) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        rest = value[end + 1 :].strip() if end > 0 else ""
        if end < 0 or (rest and not rest.startswith("#")):
            name = key if known_name_at(key) == key or _keys.is_ours(key) else "the variable"
            raise ConfigError(f"{where}: the value of {name} has an unterminated or misplaced {quote} quote")
        return value[1:end]
    comment = re.search(r"\s#", value)
    return value[: comment.start()].rstrip() if comment else value


def _read_extras(extras: Sequence[str]) -> list[_Entry]:
    origin = Origin(source=Source.EXTRA, location="--extra")
    entries: list[_Entry] = []
    for index, item in enumerate(extras, start=1):
        key, eq, value = item.partition("=")
        key = key.strip()
        # The argument is never echoed: a mistyped ``--extra`` may well be a password.
        if not eq or not key:
            raise ConfigError(f"--extra #{index}: expected KEY=VALUE")
        if not _ENV_KEY.fullmatch(key):
            raise ConfigError(f"--extra #{index}: not a valid variable name before '=' ({_bad_name(key)})")
        entries.append((key, value, origin))
    return entries


# -------------------------------------------------------------------------------------------------- YAML

_SECTIONS = (("system_config",), ("extras",), ("system_config", "extras"))
_TAG = "tag:yaml.org,2002:"


def _read_yaml(path: Path) -> list[_Entry]:
    """Top-level keys, then ``system_config``, ``extras`` and ``system_config.extras`` (later wins).

    Values are read from the *composed* node tree, not from ``safe_load``: a scalar's value is its source
    text (``0123``, ``1:20``, ``1_000``, ``0x10`` and dates stay as written; YAML 1.1 would turn them into
    83, 80, 1000, 16 and date objects). Only a bool key's ``yes``/``on``/``True`` ... is normalised to
    ``true``/``false``; int and float keys parse the text as written. Merge keys (``<<: *base``) and
    aliases still work, within ``MAX_ALIAS_NODES`` added nodes and ``MAX_DEPTH`` levels (see ``_check_size``).
    """
    import yaml  # lazily: ``--help`` and env-only runs never pay for it

    text = _read_text(path, "config file")
    loader = None
    try:
        loader = _loader_class()(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        _check_size(path, node, budget=MAX_ALIAS_NODES + len(text))
        _flatten_merges(loader, node, set())
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{path}: invalid YAML: collections nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None or node.tag == _TAG + "null":
        return []
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}: expected a mapping of KEY: value at the top level, got {_node_type(node)}")
    entries = list(_yaml_entries(path, node, ()))
    for section in _SECTIONS:
        child: yaml.Node | None = node
        for name in section:
            child = _child_node(child, name)
        if child is None or child.tag == _TAG + "null":
            continue
        if not isinstance(child, yaml.MappingNode):
            raise ConfigError(f"{path}: key {'.'.join(section)!r}: expected a mapping of KEY: value, "
                              f"got {_node_type(child)}")
        entries += _yaml_entries(path, child, section)
    return entries


#: Nodes that aliases may add when expanded (each use counted), beyond one per character of the file (a
#: file without aliases never has more): a real file adds a few dozen; "billion laughs" adds billions.
MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 50
#: A quoted token in a PyYAML problem text that is kept: its own token names and single punctuation marks.
_KEPT_TOKEN = re.compile(r"'(?:<[a-z ]+>| |[^\w\s'\\]|\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|[a-z]))'")
_QUOTED = re.compile(r"""\s*(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


@functools.cache
def _loader_class() -> type[yaml.SafeLoader]:
    """``SafeLoader`` refusing flow collections nested past ``MAX_DEPTH``.

    PyYAML's scanner looks ahead over every ``[`` for a possible simple key, with work per token that grows
    with the nesting: 5,000 ``[`` (10 KB) took 2 s before the composer's recursion limit could stop it.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        def fetch_flow_collection_start(self, TokenClass: type) -> None:  # noqa: N803 -- PyYAML's name
            if self.flow_level >= MAX_DEPTH:
                raise yaml.scanner.ScannerError(None, None, f"collections nested more than {MAX_DEPTH} levels deep",
                                                self.get_mark())
            super().fetch_flow_collection_start(TokenClass)

    return Loader


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> ConfigError:
    """file:line, the known key on that line if any, and PyYAML's problem with every quoted token dropped.

    PyYAML quotes the file in its messages ("found undefined alias 'hunter2'"); only its own token names
    (``'<scalar>'``) and single punctuation marks survive, and the context snippet is never shown.
    """
    import yaml

    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else 0
        kind = "an invalid character (undecodable bytes?)" if 0xD800 <= code <= 0xDFFF else "a control character"
        problem = f"{kind} (U+{code:04X}) is not allowed; write it as an escape in a double-quoted string"
    else:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raw = str(getattr(exc, "problem", None) or "invalid YAML")
        problem = _QUOTED.sub(lambda m: m.group() if _KEPT_TOKEN.fullmatch(m.group().strip()) else "", raw)
        problem = problem.strip()[:120]
    where = f"{path}:{line}" if line else str(path)
    key = known_name_at(text.split("\n")[line - 1]) if line else None
    return ConfigError(f"{where}: invalid YAML{f' at key {key}' if key else ''}: {problem}")


def _check_size(path: Path, root: yaml.Node | None, *, budget: int) -> None:
    """Refuse a document whose aliases expand past ``budget`` nodes (or loop back), or that nests too deeply.

    Computed once per distinct node (memoised), so the check itself costs what the file's text does, and
    so does everything after it: expanding merge keys and walking values never meets more than ``budget``.
    """
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        where = f"{path}:{node.start_mark.line + 1}"
        if id(node) in open_nodes:
            raise ConfigError(f"{where}: invalid YAML: an alias refers to a collection that contains it")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: invalid YAML: collections nested more than {MAX_DEPTH} levels deep")
        open_nodes.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > budget:
                raise ConfigError(f"{where}: invalid YAML: anchors and aliases expand to more than {budget} "
                                  "values (an alias bomb?); write the values out")
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root, 0)


def _flatten_merges(loader: yaml.SafeLoader, node: yaml.Node | None, seen: set[int]) -> None:
    """Apply ``<<`` merge keys in every mapping (what ``construct_document`` would do), once per node."""
    import yaml

    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        for key, value in node.value:
            _flatten_merges(loader, key, seen)
            _flatten_merges(loader, value, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _flatten_merges(loader, item, seen)


def _yaml_entries(path: Path, node: yaml.MappingNode, section: tuple[str, ...]) -> Iterator[_Entry]:
    import yaml

    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # a complex key is never one of ours
        key = str(key_node.value)
        if not section and key in ("system_config", "extras"):
            continue
        if section == ("system_config",) and key == "extras":
            continue
        if spec_for(key) is None and spec_for(key.upper()) is not None:
            key = key.upper()
        location = f"{path}:{key_node.start_mark.line + 1}"
        if section:
            location += f" ({'.'.join(section)})"
        spec = spec_for(key)
        origin = Origin(source=Source.YAML, location=location)
        if spec is None:
            if _keys.is_ours(key):
                yield key, "", origin  # unknown: only its name matters, for the warning
            continue
        if value_node.tag != _TAG + "null":
            yield key, _yaml_value(value_node, spec, f"{location}: key {key!r}"), origin


def _yaml_value(node: yaml.Node, spec: KeySpec, where: str) -> str:
    """A value's source text; a list of plain values as CSV; a mapping as JSON for ``json`` keys."""
    import yaml

    if isinstance(node, yaml.ScalarNode):
        if spec.kind == "bool" and node.tag == _TAG + "bool":
            return "true" if str(node.value).lower() in ("true", "yes", "on") else "false"
        return str(node.value)
    if isinstance(node, yaml.SequenceNode):
        if spec.kind not in ("csv", "servers"):
            raise ConfigError(f"{where}: expected a single value, got a list")
        items = node.value
        if not all(isinstance(i, yaml.ScalarNode) and i.tag != _TAG + "null" for i in items):
            raise ConfigError(f"{where}: expected a list of plain values")
        return ",".join(str(item.value) for item in items)
    if spec.kind == "json":
        return json.dumps(_json_value(node, where, 0), sort_keys=True)
    raise ConfigError(f"{where}: expected a single value, got a mapping")


def _json_value(node: yaml.Node, where: str, depth: int) -> object:
    """A node as JSON data: plain scalars that are JSON numbers/booleans stay typed, the rest is text."""
    import yaml

    if depth > 20:
        raise ConfigError(f"{where}: the mapping is nested too deeply")
    if isinstance(node, yaml.MappingNode):
        if not all(isinstance(k, yaml.ScalarNode) for k, _ in node.value):
            raise ConfigError(f"{where}: mapping keys must be plain values")
        return {str(k.value): _json_value(v, where, depth + 1) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_json_value(item, where, depth + 1) for item in node.value]
    if node.tag == _TAG + "null":
        return None
    if isinstance(node, yaml.ScalarNode) and node.style is None:  # plain, unquoted
        try:
            data = json.loads(node.value)
        except ValueError:
            data = None
        if isinstance(data, bool | int) or (isinstance(data, float) and math.isfinite(data)):
            return data
    return str(node.value)


def _child_node(node: yaml.Node | None, name: str) -> yaml.Node | None:
    """The value of key ``name`` in a mapping node (the last one, as a dict would keep)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == name]
    return found[-1] if found else None


def _node_type(node: yaml.Node) -> str:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    kind = str(node.tag).rpartition(":")[2]
    return "a string" if kind == "str" else kind


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ingest_probe.config --markdown-keys`` prints the README key table."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["--markdown-keys"]:
        print("usage: python -m ingest_probe.config --markdown-keys", file=sys.stderr)
        return 2
    sys.stdout.write(_keys.markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
