"""The YAML config file: a composed node tree read into (key, value, location), bounded against alias bombs.

Nothing in an error quotes the file: PyYAML's own messages do ("found undefined alias 'hunter2'"), so
only their fixed text survives, with ``file:line`` and the known key on that line.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ingest_probe.config.keys import KeyRegistry, KeySpec
from ingest_probe.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = ["MAX_ALIAS_NODES", "MAX_DEPTH", "compose", "node_type", "read_entries"]

_Item = tuple[str, str, str]  # key, value, location

_SECTIONS = (("system_config",), ("extras",), ("system_config", "extras"))
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
#: Where the replaced system's ``SystemConfig`` fields (``tier``, ``environment``, ...) are read.
_FIELD_SECTIONS = ((), ("system_config",))
_TAG = "tag:yaml.org,2002:"


def read_entries(path: Path, text: str, keys: KeyRegistry) -> list[tuple[str, str, str]]:
    """(key, value, location) of the top-level keys, then ``system_config``, ``extras`` and
    ``system_config.extras`` (later wins); location is ``file:line`` plus `` (section)``.

    Values are read from the *composed* node tree, not from ``safe_load``: a scalar's value is its source
    text (``0123``, ``1:20``, ``1_000``, ``0x10`` and dates stay as written; YAML 1.1 would turn them into
    83, 80, 1000, 16 and date objects). Only a bool key's ``yes``/``on``/``True`` ... is normalised to
    ``true``/``false``; int and float keys parse the text as written. Merge keys (``<<: *base``) and
    aliases still work, within ``MAX_ALIAS_NODES`` added nodes and ``MAX_DEPTH`` levels (see ``_check_size``).
    """
    import yaml  # lazily: ``--help`` and env-only runs never pay for it

    node = compose(path, text, keys)
    if node is None or node.tag == _TAG + "null":
        return []
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}: expected a mapping of KEY: value at the top level, got {node_type(node)}")
    entries = list(_yaml_entries(path, node, (), keys))
    for section in _SECTIONS:
        child: yaml.Node | None = node
        for name in section:
            child = _child_node(child, name)
        if child is None or child.tag == _TAG + "null":
            continue
        if not isinstance(child, yaml.MappingNode):
            raise ConfigError(f"{path}: key {'.'.join(section)!r}: expected a mapping of KEY: value, "
                              f"got {node_type(child)}")
        entries += _yaml_entries(path, child, section, keys)
    return entries


def compose(path: Path, text: str, keys: KeyRegistry | None = None) -> yaml.Node | None:
    """The composed node tree of a YAML document (merge keys applied), bounded against alias bombs and deep
    nesting; a YAML error is a one-line ``ConfigError`` with ``file:line`` that never quotes the file
    (``keys``: name the known key on that line)."""
    import yaml

    loader = None
    try:
        loader = _loader_class()(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        _check_size(path, node, budget=MAX_ALIAS_NODES + len(text))
        _flatten_merges(loader, node, set())
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc, keys) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{path}: invalid YAML: collections nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return node


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


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError, keys: KeyRegistry | None) -> ConfigError:
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
    key = keys.known_name_at(text.split("\n")[line - 1]) if line and keys is not None else None
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


def _yaml_entries(path: Path, node: yaml.MappingNode, section: tuple[str, ...],
                  keys: KeyRegistry) -> Iterator[_Item]:
    import yaml

    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # a complex key is never one of ours
        key = str(key_node.value)
        if not section and key in ("system_config", "extras"):
            continue
        if section == ("system_config",) and key == "extras":
            continue
        if section in _FIELD_SECTIONS and keys.yaml_field(key) is not None:
            key = str(keys.yaml_field(key))  # a SystemConfig field: ``tier`` is EMP_TIER
        if keys.spec(key) is None and keys.spec(key.upper()) is not None:
            key = key.upper()
        location = f"{path}:{key_node.start_mark.line + 1}"
        if section:
            location += f" ({'.'.join(section)})"
        spec = keys.spec(key)
        if spec is None and isinstance(value_node, yaml.MappingNode) and f"{key.upper()}_".startswith(keys.prefixes):
            name = key if _PLAIN_NAME.fullmatch(key) else "<NAME>"  # never more of the file than a plain name
            raise ConfigError(f"{location}: key {name!r} holds a mapping, which is not read: write its keys in full"
                              f" ({_spelled_out(name, value_node, keys)}) at the top level, under system_config:"
                              " or under extras:")
        if spec is None:
            if keys.is_ours(key):
                yield key, "", location  # unknown: only its name matters, for the warning
            continue
        if value_node.tag != _TAG + "null":
            yield key, _yaml_value(value_node, spec, f"{location}: key {key!r}"), location


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


def _spelled_out(section: str, node: yaml.MappingNode, keys: KeyRegistry) -> str:
    """``REDIS_URL: ...`` for a ``redis: {url: ...}`` section: the known keys its entries would be, else a form."""
    import yaml

    names = [f"{section}_{k.value}".upper() for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
    known = [name for name in names if keys.spec(name) is not None]
    return ", ".join(f"{name}: ..." for name in known) if known else f"{section.upper()}_<NAME>: ..."


def _child_node(node: yaml.Node | None, name: str) -> yaml.Node | None:
    """The value of key ``name`` in a mapping node (the last one, as a dict would keep)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == name]
    return found[-1] if found else None


def node_type(node: yaml.Node) -> str:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if not str(node.tag).startswith(_TAG):  # a local tag (``!hunter2 x``) is file content: not quoted
        return "a value with a custom tag"
    kind = str(node.tag).rpartition(":")[2]
    return "a string" if kind == "str" else kind
