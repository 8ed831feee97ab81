"""Kafka topic provisioning as data: broker answers → per-topic plan and drift → the report section (pure).

The network half (read, create, fix, re-read) lives in ``topics.admin``; everything here works on the
plain dicts aiokafka's responses turn into (``response.to_object()``), so it is tested against recorded
response shapes of Apache Kafka and Tansu.

Config drift. Only *declared* configs (``KAFKA_INGEST_TOPIC*_CONFIG``) are compared, so a broker default
can never show up as drift. A declared config is in sync when the topic's value equals it; the value set
on the topic itself (DescribeConfigs ``config_source`` 1, TOPIC_CONFIG — the admin API's
DYNAMIC_TOPIC_CONFIG) is preferred, else the effective value whatever its source. Relying on the source
alone is not possible: Tansu 0.6 returns only explicitly set configs and labels them 5, which the Kafka
protocol defines as DEFAULT_CONFIG. Configs set on the topic but not declared are listed in a note and
left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ingest_probe.connectors.kafka.topic_specs import TopicSpec
from ingest_probe.defaults import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING
from ingest_probe.errors import ConfigError, InternalError

FIXABLE = "fixable"
NOT_FIXABLE = "not_fixable_by_apply"
#: DescribeConfigs ``config_source`` of a config set on the topic itself (Kafka's TOPIC_CONFIG).
SOURCE_TOPIC_CONFIG = 1
#: Kafka error codes this module reads (aiokafka.errors names them; kept here as data).
UNKNOWN_TOPIC = 3
LEADER_NOT_AVAILABLE = 5
TOPIC_ALREADY_EXISTS = 36


class Action(StrEnum):
    """What a topic needs (before a run) or is (after it)."""

    CREATE = "create"
    IN_SYNC = "in_sync"
    DRIFT = "drift"
    ERROR = "error"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigValue:
    value: str | None
    #: Set on the topic itself (source TOPIC_CONFIG), not inherited from the broker.
    explicit: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicState:
    """What the broker said about one topic."""

    name: str
    exists: bool
    partitions: int | None = None
    replication_factor: int | None = None
    #: None when the configs could not be read (``config_error`` says why).
    configs: Mapping[str, ConfigValue] | None = None
    config_error: str | None = None
    #: A per-topic metadata error (e.g. not authorized): the topic cannot be planned.
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicPlan:
    """One desired topic against what the broker has: an action and, for ``drift``, what differs."""

    spec: TopicSpec
    action: Action
    state: TopicState | None = None
    #: {field: {want, have, classification}}; fields: partitions, replication_factor, config:<name>.
    drift: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    message: str | None = None

    @property
    def classification(self) -> str | None:
        if not self.drift:
            return None
        fixable = all(d["classification"] == FIXABLE for d in self.drift.values())
        return FIXABLE if fixable else NOT_FIXABLE

    def fixable(self, prefix: str) -> dict[str, Mapping[str, Any]]:
        """The fixable drift fields whose name starts with ``prefix``."""
        return {k: d for k, d in self.drift.items()
                if k.startswith(prefix) and d["classification"] == FIXABLE}


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One change to a topic: planned (dry run), skipped, applied, not applied or failed, and why."""

    topic: str
    kind: str  # create | add_partitions | set_configs
    detail: str
    status: str  # planned | skipped | applied | not_applied | failed
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"change": self.kind, "detail": self.detail, "status": self.status, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Note:
    code: str  # stable snake_case
    text: str


# ------------------------------------------------------------------------------------ reading responses


def error_name(code: int) -> str:
    """``TopicAlreadyExistsError``-style name of a Kafka error code."""
    try:
        from aiokafka.errors import for_code
    except ImportError:  # pragma: no cover - aiokafka is a dependency; the name is a nicety
        return f"error {code}"
    return str(for_code(code).__name__)


def read_metadata(md: Mapping[str, Any], names: Iterable[str]) -> dict[str, TopicState]:
    """A Metadata response (``to_object()``) → the state of each wanted topic (missing when not listed)."""
    listed = {t["topic"]: t for t in md.get("topics") or []}
    states: dict[str, TopicState] = {}
    for name in names:
        topic = listed.get(name)
        code = UNKNOWN_TOPIC if topic is None else int(topic["error_code"])
        if code == UNKNOWN_TOPIC:
            states[name] = TopicState(name=name, exists=False)
        elif code not in (0, LEADER_NOT_AVAILABLE):
            states[name] = TopicState(name=name, exists=True, error=f"metadata error {error_name(code)}")
        else:
            assert topic is not None
            parts = topic.get("partitions") or []
            states[name] = TopicState(
                name=name,
                exists=True,
                partitions=len(parts) or None,  # none listed yet: a just-created topic on real Kafka
                replication_factor=max((len(p["replicas"]) for p in parts), default=None),
            )
    return states


def read_configs(resources: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, ConfigValue] | str]:
    """DescribeConfigs resources (every response's ``to_object()["resources"]``) → configs or an error."""
    out: dict[str, Mapping[str, ConfigValue] | str] = {}
    for res in resources:
        name = res["resource_name"]
        if res["error_code"]:
            message = res.get("error_message") or ""
            detail = f": {message}" if message else ""
            out[name] = f"DescribeConfigs {error_name(res['error_code'])}{detail}"
            continue
        configs: dict[str, ConfigValue] = {}
        for entry in res.get("config_entries") or []:
            if "config_source" in entry:  # v1+
                explicit = entry["config_source"] == SOURCE_TOPIC_CONFIG
            else:  # v0 only says whether the value is the default
                explicit = not entry.get("is_default", True)
            configs[entry["config_names"]] = ConfigValue(value=entry["config_value"], explicit=explicit)
        out[name] = configs
    return out


def with_configs(state: TopicState, configs: Mapping[str, ConfigValue] | str | None) -> TopicState:
    """``state`` with the configs read for it (a string: the error that prevented reading them)."""
    if isinstance(configs, str) or configs is None:
        reason = configs or "DescribeConfigs returned nothing for this topic"
        return TopicState(name=state.name, exists=state.exists, partitions=state.partitions,
                          replication_factor=state.replication_factor, config_error=reason, error=state.error)
    return TopicState(name=state.name, exists=state.exists, partitions=state.partitions,
                      replication_factor=state.replication_factor, configs=configs, error=state.error)


def read_results(topic_errors: Iterable[Mapping[str, Any]], key: str = "topic") -> dict[str, tuple[int, str]]:
    """CreateTopics ``topic_errors`` / IncrementalAlterConfigs ``responses`` → {name: (code, message)}."""
    out: dict[str, tuple[int, str]] = {}
    for item in topic_errors:
        code = int(item["error_code"])
        message = item.get("error_message") or ""
        text = "" if code == 0 else error_name(code) + (f": {message}" if message else "")
        out[item[key]] = (code, text)
    return out


# ---------------------------------------------------------------------------------------------- planning


def compare(spec: TopicSpec, state: TopicState | None) -> TopicPlan:
    """The action one topic needs, with its drift classified."""
    if state is None:
        return TopicPlan(spec=spec, action=Action.UNKNOWN)
    if state.error is not None:
        return TopicPlan(spec=spec, action=Action.ERROR, state=state, message=state.error)
    if not state.exists:
        return TopicPlan(spec=spec, action=Action.CREATE, state=state)
    if state.configs is None and spec.configs:
        return TopicPlan(spec=spec, action=Action.ERROR, state=state,
                         message=f"cannot compare topic configs: {state.config_error}")
    drift: dict[str, dict[str, Any]] = {}
    if state.partitions is not None and state.partitions != spec.partitions:
        cls = FIXABLE if spec.partitions > state.partitions else NOT_FIXABLE
        drift["partitions"] = {"want": spec.partitions, "have": state.partitions, "classification": cls}
    if state.replication_factor is not None and state.replication_factor != spec.replication_factor:
        drift["replication_factor"] = {"want": spec.replication_factor, "have": state.replication_factor,
                                       "classification": NOT_FIXABLE}
    for key, want in sorted(spec.configs.items()):
        have = (state.configs or {}).get(key)
        if have is None or have.value != want:
            drift[f"config:{key}"] = {"want": want, "have": None if have is None else have.value,
                                      "classification": FIXABLE}
    return TopicPlan(spec=spec, action=Action.DRIFT if drift else Action.IN_SYNC, state=state, drift=drift)


def plan_topics(specs: Sequence[TopicSpec], states: Mapping[str, TopicState] | None) -> tuple[TopicPlan, ...]:
    """Compare every desired topic; ``states`` None (broker not read) makes every topic ``unknown``."""
    return tuple(compare(spec, None if states is None else states.get(spec.name)) for spec in specs)


def undeclared_overrides(plan: TopicPlan) -> list[str]:
    """Config names set on the topic itself that the configuration does not declare (left alone)."""
    configs = plan.state.configs if plan.state is not None else None
    return sorted(k for k, v in (configs or {}).items() if v.explicit and k not in plan.spec.configs)


# ------------------------------------------------------------------------------------------- the section


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisioningSection:
    """The ``kafka_topic_provisioning`` report section; ``before`` is the plan, ``after`` the re-read."""

    dry_run: bool
    fix_drift: bool = False
    validate_on_broker: bool = False
    before: tuple[TopicPlan, ...] = ()
    after: tuple[TopicPlan, ...] = ()
    created: tuple[str, ...] = ()
    #: Topics that appeared between our read and our create (TOPIC_ALREADY_EXISTS).
    raced: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    changes: tuple[Change, ...] = ()
    notes: tuple[Note, ...] = ()
    error: str | None = None
    error_kind: str | None = None
    #: The unexpected exception behind an ``internal`` error (its traceback is for ``--debug``).
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def exit_code(self) -> int:
        """3: an internal error, or topics declared without Kafka; 2: broker unreachable, a topic unreadable or a
        creation failed; 1: drift remains, or a dry run would create; 0: every topic in sync."""
        if self.error_kind in (InternalError.kind, ConfigError.kind):
            return EXIT_UNKNOWN
        if self.error is not None or self.failed:
            return EXIT_CRITICAL
        actions = {p.action for p in self.after}
        if self.dry_run:  # a dry run's plan counts even if --validate-on-broker made the broker create
            actions |= {p.action for p in self.before}
        if actions & {Action.ERROR, Action.UNKNOWN}:
            return EXIT_CRITICAL
        return EXIT_WARNING if actions & {Action.DRIFT, Action.CREATE} else EXIT_OK

    @property
    def requested(self) -> list[str]:
        return [p.spec.name for p in self.before]

    @property
    def existing(self) -> list[str]:
        """Topics that existed before this run (read, or created concurrently by someone else)."""
        existing = {p.spec.name for p in self.before if p.state is not None and p.state.exists}
        return sorted((existing | set(self.raced)) - set(self.created))

    @property
    def in_sync(self) -> list[str]:
        return [p.spec.name for p in self.after if p.action is Action.IN_SYNC]

    @property
    def drifting(self) -> dict[str, TopicPlan]:
        """The topics whose configuration still drifts after this run, by name."""
        return {p.spec.name: p for p in self.after if p.action is Action.DRIFT}

    def entries(self) -> list[PlanEntry]:
        """One entry per requested topic: its plan, what it is now, the changes made and its state."""
        by_topic: dict[str, list[Change]] = {}
        for change in self.changes:
            by_topic.setdefault(change.topic, []).append(change)
        out = []
        for before, after in zip(self.before, self.after, strict=True):
            state = after.state if after.state is not None and after.state.exists else before.state
            known = state is not None and state.exists and state.error is None
            out.append(PlanEntry(before=before, after=after, changes=tuple(by_topic.get(before.spec.name, ())),
                                 state=state if known else None))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "fix_drift": self.fix_drift,
            "validate_on_broker": self.validate_on_broker,
            "requested": self.requested,
            "existing": self.existing,
            "created": sorted(self.created),
            "in_sync": self.in_sync,
            "drift": {name: {**{k: dict(v) for k, v in p.drift.items()}, "classification": p.classification}
                      for name, p in self.drifting.items()},
            "failed": dict(sorted(self.failed.items())),
            "notes": [{"code": n.code, "text": n.text} for n in self.notes],
            "error": self.error,
            "error_kind": self.error_kind,
            "plan": [e.to_dict() for e in self.entries()],
        }


def kafka_not_configured(specs: Sequence[TopicSpec], *, dry_run: bool, fix_drift: bool = False,
                         validate_on_broker: bool = False) -> ProvisioningSection:
    """The section of ``--ensure-topics`` without Kafka bootstrap servers: a note, nothing contacted. Topics
    declared all the same are ``unknown`` and the section's error says why (exit 3); with none declared there is
    nothing to provision (exit 0)."""
    unknown = plan_topics(specs, None)
    note = Note("kafka_not_configured", "Kafka is not configured (KAFKA_BROKERS, KAFKA_BOOTSTRAP_SERVERS or"
                " KAFKA_URL): no broker was contacted, no topic read or created")
    error = None
    if specs:
        error = ConfigError(f"{len(specs)} Kafka topic{'s are' if len(specs) > 1 else ' is'} declared"
                            f" ({', '.join(s.name for s in specs)}) but no bootstrap servers are set: set"
                            " KAFKA_BROKERS")
    return ProvisioningSection(dry_run=dry_run, fix_drift=fix_drift, validate_on_broker=validate_on_broker,
                               before=unknown, after=unknown, notes=(note,),
                               error=None if error is None else str(error),
                               error_kind=None if error is None else error.kind)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanEntry:
    """One requested topic in the section: its plan, what it is after the run, the changes made, and the state
    read from the broker (None when it does not exist or could not be read)."""

    before: TopicPlan
    after: TopicPlan
    changes: tuple[Change, ...]
    state: TopicState | None

    @property
    def shown_configs(self) -> dict[str, str | None] | None:
        """The configs set on the topic or declared for it (None when they could not be read)."""
        if self.state is None or self.state.configs is None:
            return None
        spec = self.before.spec
        shown = {k: v.value for k, v in self.state.configs.items() if v.explicit or k in spec.configs}
        return dict(sorted(shown.items()))

    def to_dict(self) -> dict[str, Any]:
        spec, state = self.before.spec, self.state
        have = None if state is None else {"partitions": state.partitions,
                                           "replication_factor": state.replication_factor,
                                           "configs": self.shown_configs}
        return {
            "topic": spec.name,
            "dimensions": list(spec.dimensions),
            "action": self.before.action.value,
            "state": self.after.action.value,
            "want": {"partitions": spec.partitions, "replication_factor": spec.replication_factor,
                     "configs": dict(spec.configs)},
            "have": have,
            "classification": self.after.classification,
            "changes": [c.to_dict() for c in self.changes],
            "message": self.after.message or self.before.message,
        }
