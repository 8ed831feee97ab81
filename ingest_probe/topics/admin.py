"""Topic provisioning against the broker: read, create, fix drift, re-read — all within one deadline.

Imported on use (it imports aiokafka at the top). The plan/diff logic is pure and lives in ``topics``.
The admin client comes from ``KafkaProbe`` (same security/SASL/TLS settings and bootstrap error mapping)
and is closed on every path, bounded and shielded.

Deadline. ``--timeout`` bounds the whole run (connect, read, create, fix, re-read) in one cancel scope;
each admin request gets aiokafka's request timeout set to a share of the time *left* (``budget()``), so a
stalled broker fails the request with aiokafka's own error just before the deadline. A timeout, whoever
raises it, ends the run: the section names the step it cut (note ``deadline_exceeded``), a topic whose
change was sent but not confirmed by a re-read is ``unknown`` (never claimed created), exit 2.

Round trips do not grow with the number of topics: one CreateTopics, one CreatePartitions (every fixable
partition increase), one IncrementalAlterConfigs (every config fix), one Metadata + DescribeConfigs per read.

aiokafka has no IncrementalAlterConfigs, and its ``alter_configs`` (AlterConfigs) *replaces* a topic's
whole override set, resetting every override not resent. Declared configs are therefore set with
IncrementalAlterConfigs v0 (API key 44, Kafka ≥ 2.3, in ``incremental_alter_configs``): only the declared
keys change. Its ``create_partitions`` raises on the first topic error of the
response, losing the others, so CreatePartitions is sent here too and every topic's result is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError, KafkaTimeoutError, RequestTimedOutError
from aiokafka.protocol.admin import CreatePartitionsRequest

from ingest_probe import errors
from ingest_probe.connectors._log_secrets import scrub
from ingest_probe.connectors._net import bounded_close, budget, one_line
from ingest_probe.connectors.kafka.probe import KafkaProbe
from ingest_probe.connectors.kafka.settings import KafkaSettings
from ingest_probe.topics.incremental_alter_configs import OP_SET, IncrementalAlterConfigsRequest
from ingest_probe.topics.plan import (
    TOPIC_ALREADY_EXISTS,
    Action,
    Change,
    Note,
    ProvisioningSection,
    TopicPlan,
    TopicState,
    plan_topics,
    read_configs,
    read_metadata,
    read_results,
    undeclared_overrides,
    with_configs,
)

T = TypeVar("T")
#: What an admin call can fail with, short of a bug: the library's errors, our mapped ones, sockets.
_ADMIN_ERRORS = (KafkaError, errors.ProbeError, OSError)
#: A request that did not finish in time: aiokafka's own timeouts (``TimeoutError`` from its ready-wait).
_TIMEOUTS = (RequestTimedOutError, KafkaTimeoutError, TimeoutError)
#: The broker speaks no version of the API that aiokafka does (``Request.prepare``): "not applied".
_UNSUPPORTED = (IncompatibleBrokerVersion, NotImplementedError)
_SETTLE_POLL = 0.1


# ---------------------------------------------------------------------------------------------- the run


def why(exc: BaseException, secrets: Sequence[Any] = ()) -> str:
    """``ErrorName: message`` on one line (aiokafka's errors already start with their name)."""
    text = one_line(exc, secrets=secrets)
    name = type(exc).__name__
    if isinstance(exc, errors.ProbeError) or text.startswith(name):
        return text
    return f"{name}: {text}" if text else name


async def provision(kafka: KafkaSettings, *, dry_run: bool, fix_drift: bool = False,
                    validate_on_broker: bool = False,
                    timeout: float) -> ProvisioningSection:  # noqa: ASYNC109 -- see the docstring
    """Plan (``dry_run``) or apply the declared topics within one deadline of ``timeout`` s.

    The deadline covers every step (connect, read, create, fix, re-read); closing the client afterwards is
    bounded on its own (``CLOSE_BUDGET``), so the run takes at most ``timeout`` plus that budget.
    It takes ``timeout`` rather than living in the caller's cancel scope because a cut run still returns
    its section (which step was cut, what is known): a caller's scope would discard that with the result.
    An unexpected exception is the section's error too (kind ``internal``, exit 3), never the run's end.
    """
    run = _Run(kafka, dry_run=dry_run, fix_drift=fix_drift, validate_on_broker=validate_on_broker,
               timeout=timeout)
    try:
        with anyio.move_on_after(timeout):
            return await run.go()
        return run.stopped(errors.ProbeTimeoutError(
            f"Kafka ({run.probe.endpoint}): topic provisioning did not finish within {timeout:g} s"
            f" (--timeout); cut during step {run.step}"))
    except Exception as exc:  # noqa: BLE001 -- a bug (ours or aiokafka's) is the section's error, exit 3
        return run.crashed(exc)
    finally:
        # The owner's close: bounded and shielded, also after a failure or cancellation.
        await bounded_close(run.probe.aclose)


def _limit_requests(admin: Any, seconds: float) -> None:
    """Make aiokafka give up on the next request after ``seconds``.

    Private attributes: aiokafka fixes its request timeout per connection when it opens one and has no
    per-request timeout. ``AIOKafkaClient._request_timeout_ms`` covers the connections it opens next and the
    admin client's wait for a ready node; ``AIOKafkaConnection._request_timeout`` each open connection.
    """
    client = admin._client
    client._request_timeout_ms = max(1, int(seconds * 1000))
    for conn in list(client._conns.values()):
        conn._request_timeout = seconds


class _Run:
    def __init__(self, kafka: KafkaSettings, *, dry_run: bool, fix_drift: bool, validate_on_broker: bool,
                 timeout: float) -> None:
        self.kafka = kafka
        self.probe = KafkaProbe(kafka)
        self.dry_run, self.fix_drift, self.validate = dry_run, fix_drift, validate_on_broker
        self.timeout = timeout
        self.names = [t.name for t in kafka.topics]
        self.changes: list[Change] = []
        self.notes: list[Note] = []
        self.failed: dict[str, str] = {}
        self.created: list[str] = []
        self.raced: list[str] = []
        #: The step under way (stable names: connect, read, create, add_partitions, set_configs, validate,
        #: reread); a deadline that ends the run names it.
        self.step = "connect"
        self.before: tuple[TopicPlan, ...] | None = None
        #: The last completed re-read (the re-read polls until created topics and new partitions show).
        self.last_read: dict[str, TopicState] | None = None
        #: A changing request sent and not answered: (request name, its topics). Their outcome is unknown.
        self.in_flight: tuple[str, tuple[str, ...]] | None = None
        #: Topics a confirmed change may have altered ({name: what}); only a re-read says what they are now.
        self.touched: dict[str, str] = {}

    def section(self, before: tuple[TopicPlan, ...], after: tuple[TopicPlan, ...],
                error: errors.IngestProbeError | None = None) -> ProvisioningSection:
        # A topic that could not be read (not authorized, configs unreadable) is failed too.
        failed = {p.spec.name: p.message or "error" for p in after if p.action is Action.ERROR}
        failed.update(self.failed)
        return ProvisioningSection(
            dry_run=self.dry_run, fix_drift=self.fix_drift, validate_on_broker=self.validate, before=before,
            after=after, created=tuple(self.created), raced=tuple(self.raced), failed=failed,
            changes=tuple(self.changes), notes=tuple(dict.fromkeys(self.notes)),  # re-reads repeat notes
            error=None if error is None else str(error), error_kind=None if error is None else error.kind,
        )

    async def go(self) -> ProvisioningSection:
        if not self.kafka.topics:
            self.notes.append(Note("no_topics_declared", "no Kafka topic is declared (KAFKA_INGEST_TOPICS,"
                                   " KAFKA_INGEST_TOPIC_<DIM>, ...): nothing to provision"))
            return self.section((), ())
        try:
            return await self._steps()
        except errors.ProbeError as exc:  # the broker stopped answering (a timeout included): the run ends
            return self.stopped(exc)

    async def _steps(self) -> ProvisioningSection:
        specs = self.kafka.topics
        self.step = "connect"
        await self.probe.connect()
        self.step = "read"
        before = self.before = plan_topics(specs, await self._read())
        self._note_overrides(before)
        if self.dry_run:
            return await self._plan_only(before)
        self.step = "create"
        attempted = await self._create(self._creatable([p for p in before if p.action is Action.CREATE]))
        drifting = [p for p in before if p.action is Action.DRIFT]
        expect: dict[str, int | None] = {name: None for name in attempted}
        if self.fix_drift:
            self.step = "add_partitions"
            grown = await self._add_partitions([p for p in drifting if p.fixable("partitions")])
            expect.update((p.spec.name, p.spec.partitions) for p in grown)
            self.step = "set_configs"
            await self._set_configs([p for p in drifting if p.fixable("config:")])
        else:
            self._skip_fixable(drifting, "re-run with --fix-drift")
        after = before
        if expect or any(c.status != "skipped" for c in self.changes):
            self.step = "reread"
            after = plan_topics(specs, await self._reread(expect))
        return self.finish(before, after)

    def finish(self, before: tuple[TopicPlan, ...], after: tuple[TopicPlan, ...],
               error: errors.ProbeError | None = None) -> ProvisioningSection:
        self._settle_failures(after)
        self._note_remaining(after)
        return self.section(before, after, error)

    def crashed(self, exc: Exception) -> ProvisioningSection:
        """The section of a run that an unexpected exception ended: every topic unknown (nothing says what
        the step under way did), the error ``internal`` with the exception beside it (exit 3)."""
        detail = scrub(one_line(f"{type(exc).__name__}: {exc}", secrets=self._secrets()))
        error = errors.InternalError(f"internal error in topic provisioning (step {self.step}): {detail};"
                                     " re-run with --debug for a traceback")
        unknown = plan_topics(self.kafka.topics, None)
        section = self.section(unknown if self.before is None else self.before, unknown, error)
        return dataclasses.replace(section, exception=exc)

    def stopped(self, exc: errors.ProbeError) -> ProvisioningSection:
        """The section of a run that ``exc`` ended at ``self.step``: what is known, and what is not."""
        specs = self.kafka.topics
        if isinstance(exc, errors.ProbeTimeoutError):
            self.notes.append(Note("deadline_exceeded", f"step {self.step}: the {self.timeout:g} s deadline"
                                   f" (--timeout) ran out: {exc}"))
        if self.before is None:  # connect or the first read: nothing is known
            unknown = plan_topics(specs, None)
            self.notes.append(Note("broker_unreachable", f"every topic is unknown: {exc}"))
            return self.section(unknown, unknown, exc)
        if self.step == "reread" and self.last_read is not None:  # cut while waiting for changes to show
            return self.finish(self.before, plan_topics(specs, self.last_read), exc)
        if self.step == "reread":
            self.notes.append(Note("reread_failed", f"cannot re-read the changed topics: {exc}"))
        unsure = dict(self.touched)
        if self.in_flight is not None:
            request, names = self.in_flight
            unsure.update((name, f"{request} was sent, but no answer came: outcome unknown") for name in names)
        if unsure:
            self.notes.append(Note("outcome_unknown", "not re-read, state unknown: " + "; ".join(
                f"{name}: {what}" for name, what in sorted(unsure.items()))))
        after = tuple(p if p.spec.name not in unsure else
                      TopicPlan(spec=p.spec, action=Action.UNKNOWN, state=p.state,
                                message=f"not re-read ({unsure[p.spec.name]}): {exc}")
                      for p in self.before)
        self._note_remaining(after)
        return self.section(self.before, after, exc)

    # --------------------------------------------------------------------------------------------- read

    async def _request(self, name: str, topics: Iterable[str], call: Callable[[float], Awaitable[T]]) -> T:
        """One admin request, aiokafka's timeout set to a share of the time left (passed to ``call`` too).

        A timeout becomes a ``ProbeTimeoutError`` that ends the run; ``topics`` (a changing request's) stay
        ``in_flight`` then, so the report marks their outcome unknown. Any other failure is the caller's.
        """
        limit = budget()
        _limit_requests(self.probe.client, limit)
        self.in_flight = (name, tuple(topics))
        try:
            result = await call(limit)
        except _TIMEOUTS as exc:
            raise errors.ProbeTimeoutError(
                f"Kafka ({self.probe.endpoint}) did not answer {name} within {limit:.2f} s: broker frozen or"
                " overloaded?"
            ) from exc
        except Exception:
            self.in_flight = None  # the broker (or the library) answered: a definite failure
            raise
        self.in_flight = None
        return result

    async def _read(self) -> dict[str, TopicState]:
        """Metadata (auto-creation off) then DescribeConfigs of the existing topics: read-only."""
        _limit_requests(self.probe.client, budget())
        response = await self.probe.metadata()  # bounded by budget() inside; failures are ProbeErrors
        states = read_metadata(response.to_object(), self.names)
        existing = [name for name, s in states.items() if s.exists and s.error is None]
        if not existing:
            return states
        admin = self.probe.client
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in existing]
        try:
            responses = await self._request("DescribeConfigs", (),
                                            lambda _limit: admin.describe_configs(resources))
        except errors.ProbeTimeoutError:
            raise
        except _ADMIN_ERRORS as exc:
            reason = why(exc, self._secrets())
            self.notes.append(Note("configs_unreadable", f"DescribeConfigs failed ({reason}): topic configs"
                                   " cannot be compared"))
            return {n: with_configs(s, reason) if n in existing else s for n, s in states.items()}
        configs = read_configs(res for r in responses for res in r.to_object()["resources"])
        return {n: with_configs(s, configs.get(n)) if n in existing else s for n, s in states.items()}

    async def _reread(self, expect: Mapping[str, int | None]) -> dict[str, TopicState]:
        """Read again until created topics list partitions (and added partitions show); the run's deadline
        bounds the polling (``stopped`` then reports the last read)."""
        while True:
            states = self.last_read = await self._read()
            if all(_settled(states.get(name), want) for name, want in expect.items()):
                return states
            await anyio.sleep(_SETTLE_POLL)

    # -------------------------------------------------------------------------------------------- plan

    async def _plan_only(self, before: tuple[TopicPlan, ...]) -> ProvisioningSection:
        creates = self._creatable([p for p in before if p.action is Action.CREATE])
        for p in creates:
            self.changes.append(Change(topic=p.spec.name, kind="create", detail=_describe(p),
                                       status="planned"))
        drifting = [p for p in before if p.action is Action.DRIFT]
        if self.fix_drift:
            for p in drifting:
                for key, d in {**p.fixable("partitions"), **p.fixable("config:")}.items():
                    kind = "add_partitions" if key == "partitions" else "set_configs"
                    self.changes.append(Change(topic=p.spec.name, kind=kind, detail=_arrow(key, d),
                                               status="planned"))
        else:
            self._skip_fixable(drifting, "dry run without --fix-drift")
        if not (self.validate and creates):
            self.notes.append(Note("read_only", "dry run: only Metadata (auto-creation off) and"
                                   " DescribeConfigs were sent; nothing was changed"))
            self._note_remaining(before)
            return self.section(before, before)
        self.notes.append(Note("validate_on_broker", "CreateTopics with validate_only was sent for the"
                               " topics to create; a broker that ignores validate_only (Tansu 0.6) creates"
                               " them"))
        self.step = "validate"
        attempted = await self._create(creates, validate_only=True)
        self.step = "reread"  # did validation create anything? (a failure here ends the run: stopped())
        states = self.last_read = await self._read()
        after = plan_topics(self.kafka.topics, states)
        ignored = [n for n in attempted if n not in self.raced and states[n].exists]
        if ignored:
            self.created += ignored  # said plainly: this dry run *did* create them
            self.notes.append(Note("validate_only_ignored", f"the broker created {', '.join(ignored)}"
                                   " although CreateTopics asked for validate_only"))
        self._note_remaining(before)
        return self.section(before, after)

    # ------------------------------------------------------------------------------------------- apply

    async def _create(self, plans: Sequence[TopicPlan], *, validate_only: bool = False) -> list[str]:
        """One CreateTopics for ``plans``; the names the broker accepted or already had (expected to exist)."""
        if not plans:
            return []
        new = [NewTopic(p.spec.name, p.spec.partitions, p.spec.replication_factor,
                        topic_configs=dict(p.spec.configs)) for p in plans]
        admin = self.probe.client
        verb = "validated" if validate_only else "applied"
        try:
            response = await self._request(
                "CreateTopics", (p.spec.name for p in plans),
                lambda limit: admin.create_topics(new, timeout_ms=_ms(limit), validate_only=validate_only))
        except errors.ProbeTimeoutError:
            raise
        except _ADMIN_ERRORS as exc:
            reason = f"CreateTopics failed: {why(exc, self._secrets())}"
            for p in plans:
                self._change(p, "create", _describe(p), "failed", reason, fail=True)
            return []
        results = read_results(response.to_object()["topic_errors"])
        expected: list[str] = []
        for p in plans:
            code, text = results.get(p.spec.name, (-1, "missing from the CreateTopics response"))
            if code == 0:
                expected.append(p.spec.name)
                if not validate_only:
                    self.created.append(p.spec.name)
                self.touched[p.spec.name] = "CreateTopics validate_only accepted" if validate_only else "created"
                self._change(p, "create", _describe(p), verb)
            elif code == TOPIC_ALREADY_EXISTS:
                expected.append(p.spec.name)
                self.raced.append(p.spec.name)
                self.touched[p.spec.name] = "created concurrently"
                self._change(p, "create", _describe(p), "not_applied",
                             "TOPIC_ALREADY_EXISTS: created concurrently; state taken from the re-read")
            else:
                prefix = "the broker would reject it" if validate_only else "CreateTopics"
                self._change(p, "create", _describe(p), "failed", f"{prefix}: {text}", fail=True)
        return expected

    async def _add_partitions(self, plans: Sequence[TopicPlan]) -> list[TopicPlan]:
        """One CreatePartitions for every fixable partition increase; the plans the broker applied."""
        if not plans:
            return []
        detail = {p.spec.name: _arrow("partitions", p.drift["partitions"]) for p in plans}
        admin = self.probe.client

        def request(limit: float) -> CreatePartitionsRequest:
            return CreatePartitionsRequest(topic_partitions=[(p.spec.name, (p.spec.partitions, None))
                                                             for p in plans],
                                           timeout=_ms(limit), validate_only=False)

        try:
            # private: aiokafka's create_partitions raises on the first topic error and drops the rest.
            response = await self._request("CreatePartitions", detail,
                                           lambda limit: admin._send_to_controller(request(limit)))
        except errors.ProbeTimeoutError:
            raise
        except _UNSUPPORTED as exc:
            reason = f"the broker does not implement CreatePartitions ({why(exc)})"
            return self._not_applied(plans, "add_partitions", detail, reason)
        except _ADMIN_ERRORS as exc:
            return self._not_applied(plans, "add_partitions", detail, why(exc, self._secrets()))
        results = read_results(response.to_object()["topic_errors"])
        applied: list[TopicPlan] = []
        for p in plans:
            code, text = results.get(p.spec.name, (-1, "missing from the CreatePartitions response"))
            if code == 0:
                applied.append(p)
                self.touched[p.spec.name] = "partitions added"
            self._change(p, "add_partitions", detail[p.spec.name], "applied" if code == 0 else "not_applied",
                         text or None)
        return applied

    async def _set_configs(self, plans: Sequence[TopicPlan]) -> None:
        """One IncrementalAlterConfigs (SET of each declared key) for every topic with config drift."""
        if not plans:
            return
        resources = [(int(ConfigResourceType.TOPIC), p.spec.name,
                      [(key.removeprefix("config:"), OP_SET, str(d["want"]))
                       for key, d in p.fixable("config:").items()]) for p in plans]
        client = self.probe.client._client  # private: the admin API has no way to send a custom request
        detail = {p.spec.name: ", ".join(_arrow(k, d) for k, d in p.fixable("config:").items())
                  for p in plans}
        try:
            response = await self._request("IncrementalAlterConfigs", detail, lambda _limit: client.send(
                client.get_random_node(), IncrementalAlterConfigsRequest(resources)))
        except errors.ProbeTimeoutError:
            raise
        except _UNSUPPORTED as exc:
            reason = (f"the broker does not implement IncrementalAlterConfigs ({why(exc)}); AlterConfigs is"
                      " not used because it would reset the topic's other overrides")
            self._not_applied(plans, "set_configs", detail, reason)
            return
        except _ADMIN_ERRORS as exc:
            self._not_applied(plans, "set_configs", detail, why(exc, self._secrets()))
            return
        results = read_results(response.to_object()["responses"], key="resource_name")
        for p in plans:
            code, text = results.get(p.spec.name, (-1, "missing from the IncrementalAlterConfigs response"))
            if code == 0:
                self.touched[p.spec.name] = "configs set"
            self._change(p, "set_configs", detail[p.spec.name], "applied" if code == 0 else "not_applied",
                         text or None)

    # ------------------------------------------------------------------------------------------ record

    def _change(self, p: TopicPlan, kind: str, detail: str, status: str, reason: str | None = None,
                *, fail: bool = False) -> None:
        self.changes.append(Change(topic=p.spec.name, kind=kind, detail=detail, status=status, reason=reason))
        if fail:
            self.failed[p.spec.name] = reason or status
        elif status == "not_applied" and kind != "create":
            self.notes.append(Note("not_applied", f"{p.spec.name}: {kind} {detail} not applied: {reason}"))
        elif status == "not_applied":
            self.notes.append(Note("already_exists", f"{p.spec.name}: {reason}"))

    def _not_applied(self, plans: Sequence[TopicPlan], kind: str, detail: Mapping[str, str],
                     reason: str) -> list[TopicPlan]:
        for p in plans:
            self._change(p, kind, detail[p.spec.name], "not_applied", reason)
        return []

    def _creatable(self, missing: Sequence[TopicPlan]) -> list[TopicPlan]:
        """The missing topics this run may create: one declared only by ``KAFKA_INGEST_TOPIC_<DIM>`` variables of
        the process environment is skipped, with a note (any variable may carry that prefix)."""
        for p in missing:
            if p.spec.env_only:
                keys = ", ".join(p.spec.env_only)
                reason = (f"declared only by {keys} from the process environment: set it in an env file, the YAML"
                          " file or --extra to create it")
                self.changes.append(Change(topic=p.spec.name, kind="create", detail=_describe(p), status="skipped",
                                           reason=reason))
                self.notes.append(Note("env_only_topic", f"{p.spec.name}: not created: {reason}"))
        return [p for p in missing if not p.spec.env_only]

    def _skip_fixable(self, drifting: Sequence[TopicPlan], reason: str) -> None:
        for p in drifting:
            for key, d in {**p.fixable("partitions"), **p.fixable("config:")}.items():
                kind = "add_partitions" if key == "partitions" else "set_configs"
                self.changes.append(Change(topic=p.spec.name, kind=kind, detail=_arrow(key, d),
                                           status="skipped", reason=reason))

    def _settle_failures(self, after: tuple[TopicPlan, ...]) -> None:
        for p in after:
            name = p.spec.name
            if name in self.created and p.action is Action.CREATE:
                self.failed[name] = "CreateTopics succeeded, but the topic is not listed after the re-read"
            elif name in self.failed and p.state is not None and p.state.exists and name not in self.created:
                reason = self.failed.pop(name)
                self.raced.append(name)
                self.notes.append(Note("create_outcome_uncertain",
                                       f"{name}: {reason}; yet the topic exists after the re-read"))

    def _note_overrides(self, plans: tuple[TopicPlan, ...]) -> None:
        for p in plans:
            extra = undeclared_overrides(p)
            if extra:
                self.notes.append(Note("undeclared_overrides", f"{p.spec.name} has configs set on the topic"
                                       f" that are not declared (left alone): {', '.join(extra)}"))

    def _note_remaining(self, plans: tuple[TopicPlan, ...]) -> None:
        for p in plans:
            for key, d in p.drift.items():
                if d["classification"] != "fixable":
                    hint = _NOT_FIXABLE_HINT.get(key, "apply never changes this")
                    self.notes.append(Note("not_fixable", f"{p.spec.name}: {key} {d['have']} → {d['want']}:"
                                           f" {hint}"))
        fixable = [p.spec.name for p in plans if p.fixable("partitions") or p.fixable("config:")]
        if fixable and not self.fix_drift:
            self.notes.append(Note("fix_drift_needed", f"fixable drift on {', '.join(fixable)}: `topics apply"
                                   " --fix-drift` (or `report --ensure-topics --fix-drift`) fixes it"))

    def _secrets(self) -> list[Any]:
        return [self.kafka.password]


_NOT_FIXABLE_HINT = {
    "partitions": "Kafka cannot decrease partitions: recreate the topic or change the declaration",
    "replication_factor": "needs a partition reassignment (kafka-reassign-partitions.sh); apply never does",
}


def _settled(state: TopicState | None, partitions: int | None) -> bool:
    if state is None or not state.exists or state.partitions is None:
        return False
    return partitions is None or state.partitions >= partitions


def _ms(seconds: float) -> int:
    """A Kafka request's own ``timeout`` field (the broker's wait) in ms, from a ``budget()``."""
    return max(1, int(seconds * 1000))


def _arrow(key: str, d: Mapping[str, Any]) -> str:
    """``1 → 3`` for partitions, ``retention.ms unset → 1000`` for a config."""
    have = "unset" if d["have"] is None else d["have"]
    change = f"{have} → {d['want']}"
    return change if key == "partitions" else f"{key.removeprefix('config:')} {change}"


def _describe(p: TopicPlan) -> str:
    s = p.spec
    configs = "".join(f", {k}={v}" for k, v in s.configs.items())
    return f"partitions={s.partitions}, replication_factor={s.replication_factor}{configs}"
