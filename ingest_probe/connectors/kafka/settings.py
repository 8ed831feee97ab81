"""Kafka settings: the bootstrap list (CSV or URL forms) in parts, ``KafkaSettings``, and reading them from the
configuration (credentials and protocol from their keys or the URL form, the declared topics)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, cast

from ingest_probe.config.reader import Reader, bad, parse_choice
from ingest_probe.config.sources import RawValue
from ingest_probe.config.urls import UrlError, parse_authority, parse_hostport, unsupported_scheme
from ingest_probe.connectors.kafka.topic_specs import TopicSpec, build_topics
from ingest_probe.defaults import CLIENT_NAME, KAFKA_PORT
from ingest_probe.secret import Secret

#: The client-library modules a Kafka probe imports, loaded together before a loop starts (~150 ms).
DRIVERS = ("aiokafka.admin", "aiokafka.errors", "aiokafka.helpers", "aiokafka.protocol.metadata")

# ---------------------------------------------------------------------------------------- the servers

_KAFKA_SCHEMES: dict[str, str | None] = {
    "kafka": None, "tcp": None, "plaintext": "PLAINTEXT", "ssl": "SSL", "kafka+ssl": "SSL",
    "sasl_plaintext": "SASL_PLAINTEXT", "sasl_ssl": "SASL_SSL",
}


class KafkaServers(NamedTuple):
    """A bootstrap list in parts (a named tuple: cheap on the start-up path); ``repr`` hides the password."""

    servers: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    protocol: str | None = None

    def __repr__(self) -> str:
        return f"KafkaServers(servers={self.servers!r}, username={self.username!r}, ...)"


#: Where a URL item of a bootstrap list starts: at the beginning or after a ',' (its scheme ends at ``://``).
_ITEM_SCHEME = re.compile(r"(?:^|,)\s*([A-Za-z][A-Za-z0-9+._-]*)://")
_COMMA_AMBIGUOUS = ("ambiguous ',' in bootstrap-server credentials: percent-encode ',' in a user name or "
                    "password as %2C (and '@' as %40)")


def _segments(value: str) -> list[tuple[str | None, str]]:
    """The list cut where a ``scheme://`` item starts: (scheme or None, the text up to the next one)."""
    starts = list(_ITEM_SCHEME.finditer(value))
    out: list[tuple[str | None, str]] = []
    if not starts or starts[0].start() > 0:
        out.append((None, value[: starts[0].start() if starts else len(value)]))
    for number, match in enumerate(starts):
        end = starts[number + 1].start() if number + 1 < len(starts) else len(value)
        out.append((match.group(1).lower(), value[match.end() : end]))
    return out


def parse_servers(value: str) -> KafkaServers:
    """CSV of ``host:port`` or URL forms; schemes and credentials are stripped (credentials returned).

    Credentials are parsed before the list is split: in ``scheme://user:password@host,host2`` they run from
    ``://`` to the last ``@`` before the next ``scheme://`` item, so a ``,`` in a password stays in it
    (``sasl_plaintext://u:12,34@h:9092`` is one server, never a server ``u:12`` and a user ``34``). Where a
    ``,`` could as well separate servers (no scheme, or a ``,`` between two ``@``) the value is refused.
    """
    servers: list[str] = []
    users: set[tuple[str | None, str | None]] = set()
    protocols: set[str] = set()
    for number, (scheme, text) in enumerate(_segments(value)):
        if scheme is not None:
            if scheme not in _KAFKA_SCHEMES:
                expected = "kafka://, plaintext://, ssl://, sasl_plaintext://, sasl_ssl:// or host:port"
                if number == 0:
                    raise unsupported_scheme(scheme, expected)
                # Not quoted: after a ',' it may be the end of a password that holds "://".
                raise UrlError(f"unsupported scheme in a bootstrap server (expected {expected})")
            if _KAFKA_SCHEMES[scheme]:
                protocols.add(str(_KAFKA_SCHEMES[scheme]))
        userinfo, at, hosts = text.rpartition("@")
        if at:
            if "," in userinfo and (scheme is None or "@" in userinfo):
                raise UrlError(_COMMA_AMBIGUOUS)
            auth = parse_authority(f"{userinfo}@x")
            if auth.user is not None or auth.password is not None:
                users.add((auth.user, auth.password))
        for item in (part.strip().rstrip("/") for part in hosts.split(",")):
            if not item:
                continue
            host, port = parse_hostport(item)
            if host is None:
                raise UrlError("a bootstrap server has no host")
            servers.append(f"[{host}]:{port or KAFKA_PORT}" if ":" in host else f"{host}:{port or KAFKA_PORT}")
    if not servers:
        raise UrlError("no bootstrap server given")
    if len(users) > 1:
        raise UrlError("bootstrap servers carry different credentials")
    if len(protocols) > 1:
        raise UrlError("bootstrap servers use different schemes")
    user, password = next(iter(users)) if users else (None, None)
    return KafkaServers(servers=tuple(dict.fromkeys(servers)), username=user, password=password,
                        protocol=next(iter(protocols)) if protocols else None)


def shown_servers(value: str) -> str:
    """A ``KAFKA_BROKERS`` value as its servers alone (``UrlError`` when it does not parse)."""
    return ",".join(parse_servers(value).servers)


# ------------------------------------------------------------------------------------------ the settings

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]
#: Every mechanism the ingest service accepts; the probe authenticates with the first three only.
MECHANISMS: tuple[Mechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
PROBE_MECHANISMS = MECHANISMS[:3]


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaSettings:
    configured: bool
    bootstrap_servers: tuple[str, ...] = ()
    bootstrap_source_key: str | None = None
    security_protocol: Protocol = "PLAINTEXT"
    #: KAFKA_SECURITY_PROTOCOL was not set (the protocol was inferred): messages say so, and how to choose.
    protocol_inferred: bool = False
    sasl_mechanism: Mechanism | None = None
    username: str | None = None
    password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id: str = CLIENT_NAME
    #: The one topic list: manifest, probes and provisioning all read it. Sorted by name.
    topics: tuple[TopicSpec, ...] = ()
    consumer_topics: tuple[str, ...] = ()
    consumer_group: str | None = None
    consumer_offset_reset: str | None = None
    #: None when unset (the service's default is in ``service_defaults``).
    streaming_enabled: bool | None = None
    consumer_enabled: bool | None = None
    #: Manifest fields whose key is unset, with the value the ingest service uses instead (its own default;
    #: the probe's connection keeps client id ``ingest-probe``).
    service_defaults: Mapping[str, object] = field(default_factory=dict)

    @property
    def endpoint(self) -> str | None:
        """The bootstrap servers, comma-separated (never credentials)."""
        return ",".join(s.strip() for s in self.bootstrap_servers) or None

    @property
    def topic_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics)

    def secrets(self) -> tuple[Secret, ...]:
        return () if self.password is None else (self.password,)


# ------------------------------------------------------------------------------ from the configuration


def from_config(r: Reader) -> KafkaSettings:
    """Servers from KAFKA_BROKERS; credentials and protocol from their keys or the URL form (as for Redis)."""
    servers_raw = r.pick("KAFKA_BROKERS")
    parsed = KafkaServers(servers=())
    if servers_raw is not None:
        try:
            parsed = parse_servers(servers_raw.value)
        except UrlError as exc:
            raise bad(servers_raw, str(exc)) from None
    user_raw = r.over_url("KAFKA_USERNAME", servers_raw, parsed.username is not None, "SASL user")
    password_raw = r.over_url("KAFKA_PASSWORD", servers_raw, parsed.password is not None, "SASL password")
    protocol_raw = r.over_url("KAFKA_SECURITY_PROTOCOL", servers_raw, parsed.protocol is not None,
                              "security protocol (by its scheme)")
    username = (user_raw.value.strip() or None) if user_raw else parsed.username
    secret = password_raw.value if password_raw else parsed.password
    password = Secret(secret) if secret else None
    protocol = parse_choice(protocol_raw) if protocol_raw else parsed.protocol
    if protocol is None:
        protocol = "SASL_SSL" if username and password else "PLAINTEXT"
    if bool(username) != bool(password) and servers_raw is not None:
        r.warnings.append(_half_credentials(username is not None, user_raw or password_raw or servers_raw,
                                            protocol))
    mechanism = r.choice("KAFKA_SASL_MECHANISM")
    if mechanism is None and protocol.startswith("SASL"):
        mechanism = "PLAIN"
    topics, consumer_topics = build_topics(r)
    return KafkaSettings(
        configured=bool(parsed.servers), bootstrap_servers=parsed.servers,
        bootstrap_source_key=servers_raw.key if servers_raw else None,
        security_protocol=cast(Protocol, protocol), protocol_inferred=r.raw.get("KAFKA_SECURITY_PROTOCOL") is None,
        sasl_mechanism=cast(Mechanism | None, mechanism),
        username=username, password=password, ssl_cafile=r.text("KAFKA_SSL_CAFILE"),
        ssl_certfile=r.text("KAFKA_SSL_CERTFILE"), ssl_keyfile=r.text("KAFKA_SSL_KEYFILE"),
        client_id=r.text("KAFKA_CLIENT_ID") or CLIENT_NAME, topics=topics,
        consumer_topics=consumer_topics, consumer_group=r.text("KAFKA_INGEST_CONSUMER_GROUP"),
        consumer_offset_reset=r.choice("KAFKA_INGEST_CONSUMER_OFFSET_RESET"),
        streaming_enabled=r.boolean("KAFKA_INGEST_ENABLE_STREAMING"),
        consumer_enabled=r.boolean("KAFKA_INGEST_CONSUMER_ENABLED"), service_defaults=_service_defaults(r),
    )


#: Manifest field → key, where the ingest service has a default of its own.
_DEFAULTED = {"client_id": "KAFKA_CLIENT_ID", "consumer_group": "KAFKA_INGEST_CONSUMER_GROUP",
              "consumer_offset_reset": "KAFKA_INGEST_CONSUMER_OFFSET_RESET",
              "streaming_enabled": "KAFKA_INGEST_ENABLE_STREAMING", "consumer_enabled": "KAFKA_INGEST_CONSUMER_ENABLED"}


def _service_defaults(r: Reader) -> dict[str, object]:
    out: dict[str, object] = {}
    for shown, name in _DEFAULTED.items():
        value = r.service_default(name)
        if value is not None:
            out[shown] = value == "true" if shown.endswith("_enabled") else value
    return out


def _half_credentials(has_user: bool, raw: RawValue, protocol: str) -> str:
    """One line naming the key that holds half a SASL login and the one that is missing (never a value)."""
    have, missing = ("user", "KAFKA_PASSWORD") if has_user else ("password", "KAFKA_USERNAME")
    effect = (f"the {protocol} login will fail" if protocol.startswith("SASL")
              else f"no SASL is used (security protocol {protocol})")
    return f"{raw.key} from {raw.origin.location} sets a Kafka {have} but no {missing} is set: {effect}"
