"""The one Kafka topic list: every topic key resolved into sorted ``TopicSpec``s, one per topic name."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ingest_probe.config.reader import Reader, bad, json_object
from ingest_probe.config.sources import RawValue, Source, quoted
from ingest_probe.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicSpec:
    """One desired Kafka topic; ``dimensions``: the ingest slices (or default/consumer) using it."""

    name: str
    dimensions: tuple[str, ...]
    partitions: int = 1
    replication_factor: int = 1
    configs: Mapping[str, str] = field(default_factory=dict)
    #: The ``KAFKA_INGEST_TOPIC_<DIM>`` keys of the *process environment* that alone declare this topic: it is
    #: probed, but ``--ensure-topics``/``topics apply`` do not create it (a stray variable with that prefix
    #: must not create a topic); empty when a file, the YAML or ``--extra`` declares it.
    env_only: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------- the pattern keys

#: ``KAFKA_INGEST_TOPIC_<DIM>[_PARTITIONS|_REPLICATION_FACTOR|_CONFIG]``; exact keys are matched first.
TOPIC_KEY_RE = re.compile(
    r"KAFKA_INGEST_TOPIC_([A-Za-z0-9][A-Za-z0-9_]*?)(_PARTITIONS|_REPLICATION_FACTOR|_CONFIG)?"
)
#: The exact keys the pattern would also match: settings of every topic, not topics.
GLOBAL_KEYS = ("KAFKA_INGEST_TOPIC_PARTITIONS", "KAFKA_INGEST_TOPIC_REPLICATION_FACTOR", "KAFKA_INGEST_TOPIC_CONFIG")


def topic_key_parts(key: str) -> tuple[str, str] | None:
    """``KAFKA_INGEST_TOPIC_DAILY_PARTITIONS`` → ``("daily", "_PARTITIONS")``; ``None`` if no pattern key."""
    if key in GLOBAL_KEYS:
        return None
    match = TOPIC_KEY_RE.fullmatch(key)
    return None if match is None else (match.group(1).lower(), match.group(2) or "")


#: Spellings a ``KAFKA_INGEST_TOPIC_...`` key may end in by mistake, each with the suffix meant.
_SUFFIX_WORDS = {
    "PARTITIONS": "PARTITIONS", "PARTITION": "PARTITIONS", "NUM_PARTITIONS": "PARTITIONS",
    "REPLICATION_FACTOR": "REPLICATION_FACTOR", "REPLICATION": "REPLICATION_FACTOR",
    "REPLICAS": "REPLICATION_FACTOR", "REPLICA_FACTOR": "REPLICATION_FACTOR",
    "CONFIG": "CONFIG", "CONFIGS": "CONFIG",
}
#: High enough that dimensions like OPTIONS (0.71 to PARTITIONS) or POSITIONS (0.74) are not typos.
#: (No CONFIGURATION: CONFIRMATIONS, a likely dimension, is 0.85 from it.)
_SUFFIX_CUTOFF = 0.8


def misspelt_topic_key(key: str) -> str | None:
    """The key meant by a ``KAFKA_INGEST_TOPIC_...`` key that only *looks* like a topic key, else ``None``.

    ``TOPIC_KEY_RE`` reads any ``KAFKA_INGEST_TOPIC_<X>`` as the topic of dimension ``X``; when the end of
    ``X`` (one or more ``_``-separated words, or all of it) is a near-miss of a per-topic setting,
    ``KAFKA_INGEST_TOPIC_PARTITONS=3`` would otherwise declare a topic named "3".
    """
    match = TOPIC_KEY_RE.fullmatch(key)
    if key in GLOBAL_KEYS or match is None:
        return None
    words = match.group(1).upper().split("_")
    for start in range(len(words)):
        tail = "_".join(words[start:])
        close = difflib.get_close_matches(tail, list(_SUFFIX_WORDS), n=1, cutoff=_SUFFIX_CUTOFF)
        if close:
            head = "_".join(words[:start])
            return f"KAFKA_INGEST_TOPIC_{head + '_' if head else ''}{_SUFFIX_WORDS[close[0]]}"
    return None


def near_miss(key: str) -> str | None:
    """Why a topic pattern key is refused (``KeySpec.near_miss``): it looks like a misspelt setting."""
    meant = misspelt_topic_key(key)
    if meant is None:
        return None
    return (f"looks like a misspelt topic setting, not the topic of a dimension; did you mean {meant}? (a dimension"
            " with such a name can be listed in KAFKA_INGEST_TOPICS)")


# ----------------------------------------------------------------------------------------- the list

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_SUFFIXES = ("_PARTITIONS", "_REPLICATION_FACTOR", "_CONFIG")


#: The topics the ingest service produces its own events to (``KAFKA_INGEST_<DIM>_TOPIC``), by dimension.
SERVICE_TOPICS = ("health", "metrics", "quality")


def dimension_name(text: str) -> str:
    """A dimension as the ingest service normalises it: ``Daily-Bars`` is ``daily_bars``, ``*`` ``default``."""
    name = text.strip().lower().replace("-", "_")
    return "default" if name == "*" else name


def build_topics(r: Reader) -> tuple[tuple[TopicSpec, ...], tuple[str, ...]]:
    """Topics by name (dimensions merged) and the consumer topics.

    Sources: ``KAFKA_INGEST_TOPICS`` (``dim:topic`` / ``dim=topic``; ``*`` is the default topic), then
    ``KAFKA_INGEST_TOPIC_<DIM>`` (wins for its dimension), ``KAFKA_INGEST_DEFAULT_TOPIC`` (dimension
    ``default``), ``KAFKA_INGEST_HEALTH_TOPIC``/``_METRICS_``/``_QUALITY_`` (dimensions ``health``, ``metrics``,
    ``quality``) and ``KAFKA_INGEST_CONSUMER_TOPICS`` (dimension ``consumer``). Per-dimension ``_PARTITIONS``,
    ``_REPLICATION_FACTOR`` and ``_CONFIG`` win over the global ``KAFKA_INGEST_TOPIC_*`` ones. A
    ``KAFKA_INGEST_TOPIC_<DIM>`` from the process environment whose value is not a topic name is a stray
    variable: ignored with a warning.
    """
    by_dim: dict[str, tuple[str, RawValue]] = {}
    listed = r.pick("KAFKA_INGEST_TOPICS")
    if listed is not None:
        for item in (part.strip() for part in listed.value.split(",")):
            if not item:
                continue
            cut = min((i for i in (item.find(":"), item.find("=")) if i >= 0), default=-1)
            dim, topic = dimension_name(item[:cut]), item[cut + 1 :].strip()
            if cut < 0 or not dim or not topic:
                raise bad(listed, f"entry {quoted(item)} is not dimension:topic (or dimension=topic)")
            by_dim[dim] = (_checked(topic, listed), listed)  # checked even if a _TOPIC_<DIM> key replaces it
    specific: dict[tuple[str, str], RawValue] = {}
    for key, raw in sorted(r.raw.values.items()):
        parts = topic_key_parts(key)
        if parts is not None and raw.value.strip():
            specific[parts] = raw
    for (dim, suffix), raw in specific.items():
        if suffix == "" and not _stray(r, raw):
            by_dim[dim] = (raw.value.strip(), raw)
    for dim, name in (("default", "KAFKA_INGEST_DEFAULT_TOPIC"),
                      *((d, f"KAFKA_INGEST_{d.upper()}_TOPIC") for d in SERVICE_TOPICS)):
        named = r.pick(name)
        if named is not None:
            by_dim[dim] = (named.value.strip(), named)
    if "default" in by_dim:
        for suffix in _SUFFIXES:
            explicit = r.pick(f"KAFKA_INGEST_DEFAULT_TOPIC{suffix}", explicit=True)
            if explicit is not None:
                specific[("default", suffix)] = explicit
    uses: dict[str, list[tuple[str, RawValue]]] = {}
    for dim, (topic, raw) in by_dim.items():
        uses.setdefault(_checked(topic, raw), []).append((dim, raw))
    consumer_raw = r.pick("KAFKA_INGEST_CONSUMER_TOPICS")
    consumer_topics = r.csv("KAFKA_INGEST_CONSUMER_TOPICS")
    for topic in consumer_topics:
        assert consumer_raw is not None  # csv() found items, so the key has a value
        uses.setdefault(_checked(topic, consumer_raw), []).append(("consumer", consumer_raw))
    used_dims = {dim for entries in uses.values() for dim, _ in entries}
    for (dim, suffix), raw in specific.items():
        if suffix and dim not in used_dims:
            reason = f"dimension {dim!r} has no topic"
            r.warnings.append(f"{raw.key} from {raw.origin.location} is ignored: {reason}")
            r.notes[raw.key] = f"ignored: {reason}"
    specs = [_spec(r, name, entries, specific) for name, entries in uses.items()]
    return tuple(sorted(specs, key=lambda t: t.name)), consumer_topics


def _from_env(raw: RawValue) -> bool:
    """A ``KAFKA_INGEST_TOPIC_<DIM>`` value from the process environment (any variable may have that prefix)."""
    return raw.origin.source is Source.ENV and topic_key_parts(raw.key) is not None


def _stray(r: Reader, raw: RawValue) -> bool:
    """A ``KAFKA_INGEST_TOPIC_<DIM>`` from the environment whose value is no topic name: noted, not a topic."""
    if not _from_env(raw) or _TOPIC_NAME.fullmatch(raw.value.strip()):
        return False
    r.warnings.append(f"{raw.key} from env is ignored: its value is not a Kafka topic name (a variable of"
                      " something else? declare topics in an env file, the YAML file or --extra)")
    r.notes[raw.key] = "ignored: not a Kafka topic name"
    return True


def _checked(topic: str, raw: RawValue) -> str:
    if not _TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
        raise bad(raw, f"{quoted(topic)} is not a valid Kafka topic name (letters, digits, '.', '_', '-'; "
                       "at most 249)")
    return topic


def _spec(r: Reader, name: str, entries: list[tuple[str, RawValue]],
          specific: dict[tuple[str, str], RawValue]) -> TopicSpec:
    dims = [dim for dim, _ in entries]
    env_only = tuple(sorted(raw.key for _, raw in entries)) if all(_from_env(raw) for _, raw in entries) else ()

    def one(suffix: str) -> int:
        found = {dim: specific[(dim, suffix)] for dim in dims if (dim, suffix) in specific}
        values = {dim: r.integer(raw.key, explicit=True) for dim, raw in found.items()}
        if len(set(values.values())) > 1:
            raise ConfigError(f"topic {name!r}: " + " and ".join(
                f"{found[d].key}={values[d]} from {found[d].origin.location}" for d in sorted(values)
            ) + " disagree")
        if values:
            return next(v for v in values.values() if v is not None)
        return int(r.integer(f"KAFKA_INGEST_TOPIC{suffix}") or 1)

    configs: dict[str, str] = {}
    global_raw = r.pick("KAFKA_INGEST_TOPIC_CONFIG")
    if global_raw is not None:
        configs.update(json_object(global_raw))
    owner: dict[str, RawValue] = {}
    for dim in dims:
        raw = specific.get((dim, "_CONFIG"))
        if raw is None:
            continue
        for key, value in json_object(raw).items():
            if key in owner and configs[key] != value:
                raise ConfigError(f"topic {name!r}: config {quoted(key)} differs between {owner[key].key} from "
                                  f"{owner[key].origin.location} and {raw.key} from {raw.origin.location}")
            owner[key] = raw
            configs[key] = value
    return TopicSpec(name=name, dimensions=tuple(sorted(set(dims))), partitions=one("_PARTITIONS"),
                     replication_factor=one("_REPLICATION_FACTOR"), configs=dict(sorted(configs.items())),
                     env_only=env_only)
