"""Configuration keys as data: ``KeySpec``, the ``KeySet`` each owner contributes, and the ``KeyRegistry`` of all.

Generic: it knows no connector kind. The general keys (gating, schedule, drill) and every connector kind
contribute a ``KeySet``; the settings layer joins them into the registry that reading, warnings,
redaction and the README key table use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple

#: How a key's string value is interpreted. ``url``/``servers`` values may carry credentials: they are
#: rendered only after being parsed into parts and rebuilt from an allow-list (``KeySpec.shown``).
Kind = Literal["str", "int", "float", "bool", "csv", "json", "choice", "url", "servers", "host"]

#: Variables of the test suite share our prefix but are not configuration; never warn about them.
IGNORED_PREFIXES = ("INGEST_PROBE_TEST_",)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    """One configuration key. ``aliases`` are alternative names, in precedence order after ``name``.

    A name holding ``<...>`` is a pattern (``KAFKA_INGEST_TOPIC_<DIM>``): any key with its fixed start and
    end and a name in between is an instance of it.
    """

    name: str
    kind: Kind
    default: str | None
    description: str
    section: str
    secret: bool = False
    aliases: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    #: Other spellings of a choice, lower-case (``tier-1`` for ``tier_1``).
    spellings: Mapping[str, str] = field(default_factory=dict)
    minimum: int | None = None
    maximum: int | None = None
    #: ``url``/``servers`` keys: the value parsed and rebuilt from allow-listed parts; raises ``UrlError``
    #: (which never quotes its input) when it does not parse. Validation and ``ingest-probe config`` use it.
    shown: Callable[[str], str] | None = field(default=None, compare=False)
    #: Pattern keys: why a key only *looks* like an instance (a misspelt setting), else None.
    near_miss: Callable[[str], str | None] | None = field(default=None, compare=False)
    #: Names among ``aliases`` that the replaced system's files use but its code never read: accepted, each
    #: with a note saying which key it is read as.
    legacy: tuple[str, ...] = ()
    #: Other names of the key at the top level and under ``system_config:`` of the YAML file (the replaced
    #: system's ``SystemConfig`` fields, e.g. ``tier`` for ``EMP_TIER``).
    yaml_names: tuple[str, ...] = ()
    #: Values (lower-case) that mean "none" for an ``int`` key (``off`` for a TTL): read as no value.
    none_words: tuple[str, ...] = ()
    #: An ``int`` below ``minimum`` is raised to it with a warning instead of refused (as the replaced system did).
    clamp: bool = False
    #: The value the ingest service itself uses when the key is unset (the manifest shows it, marked).
    service_default: str | None = None
    #: A key of the ingest service that ingest-probe knows but does not use: never warned about as unknown,
    #: shown by ``config`` (redacted if secret), never validated.
    service_only: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def is_pattern(self) -> bool:
        return "<" in self.name


def key(
    name: str, kind: Kind, default: str | None, description: str, *, section: str, secret: bool = False,
    aliases: tuple[str, ...] = (), choices: tuple[str, ...] = (), minimum: int | None = None,
    maximum: int | None = None, shown: Callable[[str], str] | None = None,
    near_miss: Callable[[str], str | None] | None = None, legacy: tuple[str, ...] = (),
    none_words: tuple[str, ...] = (), clamp: bool = False, service_default: str | None = None,
) -> KeySpec:
    """A ``KeySpec`` in the positional shape the key tables are written in."""
    return KeySpec(name=name, kind=kind, default=default, description=description, section=section,
                   secret=secret, aliases=(*aliases, *legacy), choices=choices, minimum=minimum, maximum=maximum,
                   shown=shown, near_miss=near_miss, legacy=legacy, none_words=none_words, clamp=clamp,
                   service_default=service_default)


def service_key(name: str, description: str, *, section: str, secret: bool = False, aliases: tuple[str, ...] = (),
                yaml_names: tuple[str, ...] = (), service_default: str | None = None) -> KeySpec:
    """A key of the ingest service that ingest-probe knows but does not use (``KeySpec.service_only``)."""
    return KeySpec(name=name, kind="str", default=None, description=description, section=section, secret=secret,
                   aliases=aliases, yaml_names=yaml_names, service_default=service_default, service_only=True)


class Fallback(NamedTuple):
    """Alias names used only as a whole, and only when none of ``unless`` is set in any source.

    libpq's ``PG*`` variables: a stray ``PGPORT`` in the shell must not re-target a host the YAML file
    configures, so they count only when no Timescale URL or host is set at all.
    """

    names: tuple[str, ...]
    unless: tuple[str, ...]
    #: What one of ``names`` is, for notes and warnings ("libpq fallback").
    what: str
    #: What a key of ``unless`` sets ("the Timescale target").
    sets: str
    #: The rule in one sentence, quoted by the warning.
    rule: str


class KeySet(NamedTuple):
    """The keys one owner (the general plan, a connector kind) contributes to the registry.

    (Named tuples, not dataclasses, for these two: they are built once per kind, on every start-up path.)
    """

    specs: tuple[KeySpec, ...]
    #: Key prefixes that are "ours": an unknown key with one is probably a typo and earns a warning.
    prefixes: tuple[str, ...] = ()
    #: A note printed under a section's heading in the README key table.
    notes: Mapping[str, str] = MappingProxyType({})
    fallbacks: tuple[Fallback, ...] = ()


#: The name part of a pattern key's instance (``DAILY`` in ``KAFKA_INGEST_TOPIC_DAILY_PARTITIONS``).
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
_LEADING_NAME = re.compile(r"\s*(?:export\s+)?[\"']?([A-Za-z_][A-Za-z0-9_.]*)")
#: difflib ratio from which an unknown key counts as a misspelling of a known one (besides one edit, below).
#: 0.9 is about two edits in a 20-character name. Lower lets in other software's variables that share our
#: prefixes: ``KAFKA_BROKER_ID`` (Kafka images) is 0.857 from ``KAFKA_BROKERS``, ``REDIS_NAME`` (docker
#: links) 0.833 from ``REDIS_USERNAME``, ``KAFKA_OPTS`` 0.8 from ``KAFKA_PASS``, ``TIMESCALEDB_VERSION`` 0.8
#: from ``TIMESCALEDB_USER``. A ratio alone misses one wrong letter in a short name (``REDIS_DV`` is 0.875
#: from ``REDIS_DB``), hence the one-edit rule.
CLOSE_RATIO = 0.9

INTRO = (
    "Names in \"also …\" are aliases of the key, listed in precedence order: when several names of one "
    "key are set, the first listed wins whatever source each comes from — an alias never overrides across "
    "sources (a `--extra TIMESCALE_URL=…` loses to `TIMESCALEDB_URL` from the YAML file, with a warning); "
    "to override, set the first name. Precedence between sources applies to one and the same name. Type "
    "`host`: a DNS name (underscores allowed) or an IPv4/IPv6 literal, without brackets; anything else "
    "(spaces, `/`, `|`, Unix-socket paths) is an error. Type `int`: decimal ASCII digits (no `²`, `1_000` or "
    "`0x10`), within the range given, else at most 2147483647; type `float`: a finite decimal number of "
    "seconds > 0 (at most a day unless stated). No value may hold a control character, a byte-order mark "
    "or bytes that are not UTF-8."
)


class KeyRegistry:
    """Every known key, in the order the key sets were given: lookup by name, alias or pattern instance."""

    def __init__(self, sets: Iterable[KeySet]) -> None:
        sets = tuple(sets)
        self.specs: tuple[KeySpec, ...] = tuple(spec for ks in sets for spec in ks.specs)
        self.prefixes = tuple(p for ks in sets for p in ks.prefixes)
        self.fallbacks = tuple(f for ks in sets for f in ks.fallbacks)
        self.notes = {section: note for ks in sets for section, note in ks.notes.items()}
        self._by_name = {n: spec for spec in self.specs if not spec.is_pattern for n in spec.names}
        self._by_yaml = {n: spec.name for spec in self.specs for n in spec.yaml_names}
        patterns = []
        for spec in self.specs:
            if spec.is_pattern:
                head, _, rest = spec.name.partition("<")
                patterns.append((head, rest.partition(">")[2], spec))
        # The longest fixed end first: KAFKA_INGEST_TOPIC_X_CONFIG is X's _CONFIG, not the topic of X_CONFIG.
        self._patterns = sorted(patterns, key=lambda p: -len(p[1]))

    def spec(self, key: str) -> KeySpec | None:
        """The spec of a key name, alias or pattern instance; ``None`` for an unknown key."""
        spec = self._by_name.get(key)
        if spec is not None:
            return spec
        for head, tail, pattern in self._patterns:
            if key.startswith(head) and key.endswith(tail) and len(key) > len(head) + len(tail):
                if _INSTANCE.fullmatch(key[len(head) : len(key) - len(tail)]):
                    return pattern
        return None

    def yaml_field(self, name: str) -> str | None:
        """The key a YAML field name stands for (``tier`` → ``EMP_TIER``), else None."""
        return self._by_yaml.get(name)

    def names(self) -> Iterator[str]:
        """Every exact name (aliases included) in registry order; pattern keys have none."""
        return iter(self._by_name)

    def is_ours(self, key: str) -> bool:
        upper = key.upper()
        return upper.startswith(self.prefixes) and not upper.startswith(IGNORED_PREFIXES)

    def known_name_at(self, text: str) -> str | None:
        """The known key a line of a file starts with (``REDIS_PORT: x`` → REDIS_PORT), else None.

        Only a *known* key name is ever quoted from a broken line: anything else on it may be a secret.
        """
        match = _LEADING_NAME.match(text)
        if match is None:
            return None
        for name in (match.group(1), match.group(1).upper()):
            if self.spec(name) is not None:
                return name
        return None

    def closest_known(self, key: str) -> str | None:
        """The known key name ``key`` is plausibly a misspelling of, else ``None`` (never a far-off guess).

        Close means: one edit apart (case ignored), or a difflib ratio of at least ``CLOSE_RATIO``. One-edit
        candidates come first, then the highest ratio; ties go to the earlier key in the registry.
        """
        import difflib  # only for an unknown key: a clean configuration never loads it

        upper = key.upper()
        best: tuple[bool, float] | None = None
        found = None
        for name in self._by_name:
            one_edit = _one_edit_apart(upper, name)
            matcher = difflib.SequenceMatcher(None, upper, name)
            if not one_edit and matcher.real_quick_ratio() < CLOSE_RATIO:
                continue
            ratio = matcher.ratio()
            if (one_edit or ratio >= CLOSE_RATIO) and (best is None or (one_edit, ratio) > best):
                best, found = (one_edit, ratio), name
        return found

    def markdown_table(self) -> str:
        """The key table for the README, one section per group, in registry order."""
        lines: list[str] = [INTRO]
        section = ""
        for spec in self.specs:
            if spec.section != section:
                section = spec.section
                note = ["", self.notes[section]] if section in self.notes else []
                lines += ["", f"### {section}", *note, "", "| Key | Type | Default | Description |",
                          "|---|---|---|---|"]
            kind = "/".join(spec.choices) if spec.choices else spec.kind
            also = f" (also {', '.join(f'`{a}`' for a in spec.aliases)})" if spec.aliases else ""
            secret = " Secret." if spec.secret else ""
            default = f"`{spec.default}`" if spec.default is not None else "—"
            extra = ""
            if spec.legacy:
                extra += (f" {', '.join(f'`{n}`' for n in spec.legacy)}: a name of the ingest service's env template"
                          " that its code never read, read as this key with a warning.")
            if spec.yaml_names:
                extra += f" In YAML also `{'`, `'.join(spec.yaml_names)}` (top level or under `system_config:`)."
            if spec.clamp and spec.minimum is not None:
                extra += f" Below {spec.minimum}: raised to {spec.minimum} with a warning."
            if spec.service_default is not None:
                extra += f" Ingest service default: `{spec.service_default}`."
            desc = f"{spec.description}{also}.{secret}{extra}".replace("|", "\\|")
            lines.append(f"| `{spec.name}` | {kind.replace('|', '/')} | {default} | {desc} |")
        return "\n".join(lines).strip() + "\n"


def _one_edit_apart(a: str, b: str) -> bool:
    """At most one inserted, deleted or replaced character, or two adjacent ones swapped."""
    if abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) != len(b):
        short, long_ = (a, b) if len(a) < len(b) else (b, a)
        return short[i:] == long_[i + 1 :]
    return a[i + 1 :] == b[i + 1 :] or (a[i + 2 :] == b[i + 2 :] and a[i : i + 2] == b[i : i + 2][::-1])
