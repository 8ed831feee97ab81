"""The Kafka keys: bootstrap servers, security (protocol, SASL, TLS files) and the declared ingest topics."""

from __future__ import annotations

from ingest_probe.config.keys import KeySet, key, service_key
from ingest_probe.config.reader import URL_PARTS_RULE
from ingest_probe.connectors.kafka.settings import MECHANISMS, shown_servers
from ingest_probe.connectors.kafka.topic_specs import SERVICE_TOPICS, near_miss
from ingest_probe.defaults import CLIENT_NAME

_K, _KT = "Kafka", "Kafka topics"
_KS = "Kafka: ingest service settings (not used by ingest-probe)"
#: The ingest service's producer, consumer and readiness keys: known, shown, not used (name, what, its default).
_SERVICE_ONLY = (
    ("KAFKA_ACKS", "producer acks", "all"),
    ("KAFKA_LINGER_MS", "producer linger.ms", "20"),
    ("KAFKA_BATCH_SIZE", "producer batch.size", "32768"),
    ("KAFKA_ENABLE_IDEMPOTENCE", "producer idempotence", "true"),
    ("KAFKA_COMPRESSION_TYPE", "producer compression", None),
    ("KAFKA_INGEST_AUTO_CREATE_TOPICS", "the service creates its topics (ingest-probe creates them only with "
     "`--ensure-topics` or `topics apply`)", None),
    ("KAFKA_AUTO_CREATE_TOPICS", "as KAFKA_INGEST_AUTO_CREATE_TOPICS", None),
    ("KAFKA_INGEST_CONSUMER_AUTO_COMMIT", "consumer auto commit", "true"),
    ("KAFKA_INGEST_CONSUMER_COMMIT_ON_PUBLISH", "commit after publishing (default: when auto commit is off)", None),
    ("KAFKA_INGEST_CONSUMER_COMMIT_ASYNC", "asynchronous commits", "false"),
    ("KAFKA_INGEST_CONSUMER_POLL_TIMEOUT", "poll timeout in seconds", "1.0"),
    ("KAFKA_INGEST_CONSUMER_IDLE_SLEEP", "idle sleep in seconds", "0.5"),
    ("KAFKA_INGEST_CONSUMER_PUBLISH_LAG", "publish consumer lag events", "false"),
    ("KAFKA_INGEST_CONSUMER_LAG_EVENT_TYPE", "lag event type", "telemetry.kafka.lag"),
    ("KAFKA_INGEST_CONSUMER_LAG_EVENT_SOURCE", "lag event source", None),
    ("KAFKA_INGEST_CONSUMER_LAG_INTERVAL", "lag interval in seconds", "30.0"),
    ("KAFKA_INGEST_CONSUMER_EVENT_TYPE", "event type", "telemetry.ingest"),
    ("KAFKA_INGEST_CONSUMER_EVENT_SOURCE", "event source", "timescale_ingest.kafka"),
    ("KAFKA_INGEST_CONSUMER_TOPIC_EVENT_TYPES", "event types per topic", None),
    ("KAFKA_READINESS_WARN_LAG_MESSAGES", "consumer lag that the service's readiness warns at (ingest-probe does "
     "not measure consumer lag)", None),
    ("KAFKA_READINESS_FAIL_LAG_MESSAGES", "consumer lag that the service's readiness fails at", None),
)
#: Caps that keep absurd values from reaching a broker (2**31-1 partitions aborted one).
MAX_PARTITIONS = 10_000
MAX_REPLICATION_FACTOR = 32


KEYS = KeySet(
    prefixes=("KAFKA_",),
    notes={_K: "URL credentials and scheme in `KAFKA_BROKERS` and the keys `KAFKA_USERNAME`, `KAFKA_PASSWORD`, "
               f"`KAFKA_SECURITY_PROTOCOL` combine as for Redis: {URL_PARTS_RULE}."},
    specs=(
        key("KAFKA_BROKERS", "servers", None, "bootstrap servers, CSV of host:port. URL forms "
            "(`sasl_ssl://user:password@host:port,host2:port`): scheme and credentials are stripped and used; the "
            "credentials of a URL end at its last `@`, so a `,` before it is part of the password "
            "(`sasl_plaintext://u:12,34@h:9092` is one server). Without a scheme, or with a `,` between two `@`, "
            "that is ambiguous and refused: percent-encode `,` as `%2C` in credentials", section=_K, secret=True,
            aliases=("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_URL"), shown=shown_servers),
        key("KAFKA_SECURITY_PROTOCOL", "choice", None, "default SASL_SSL when user and password are set, "
            "else PLAINTEXT (or the scheme of a URL form; overrides it, see above)", section=_K,
            choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
        key("KAFKA_SASL_MECHANISM", "choice", None, "default PLAIN when the protocol is SASL_*; the probe cannot "
            "authenticate with OAUTHBEARER or GSSAPI (accepted for the manifest; the Kafka result is `down`, "
            "`error_kind` `driver`)", section=_K, choices=MECHANISMS),
        key("KAFKA_USERNAME", "str", None, "SASL user (overrides URL credentials, see above); a user without a "
            "password (or the reverse) is warned about", section=_K, aliases=("KAFKA_USER",)),
        key("KAFKA_PASSWORD", "str", None, "SASL password (overrides URL credentials, see above)", section=_K,
            secret=True, aliases=("KAFKA_PASS",)),
        key("KAFKA_SSL_CAFILE", "str", None, "CA bundle", section=_K),
        key("KAFKA_SSL_CERTFILE", "str", None, "client certificate", section=_K),
        key("KAFKA_SSL_KEYFILE", "str", None, "client private key", section=_K),
        key("KAFKA_CLIENT_ID", "str", CLIENT_NAME, "client id of the service and of the probe's connection",
            section=_K, service_default="emp-institutional-ingest"),
        key("KAFKA_INGEST_TOPICS", "csv", None, "CSV of `dimension:topic` or `dimension=topic`", section=_KT),
        key("KAFKA_INGEST_TOPIC_<DIM>", "str", None, "topic of one dimension (wins over KAFKA_INGEST_TOPICS); a "
            "near-miss of `_PARTITIONS`/`_REPLICATION_FACTOR`/`_CONFIG` (e.g. `_PARTITONS`, `_REPLICATION`) is an "
            "error, not a dimension", section=_KT, near_miss=near_miss),
        key("KAFKA_INGEST_DEFAULT_TOPIC", "str", None, "topic of the `default` dimension", section=_KT),
        key("KAFKA_INGEST_CONSUMER_TOPICS", "csv", None, "topics consumed (dimension `consumer`)", section=_KT),
        *(key(f"KAFKA_INGEST_{dim.upper()}_TOPIC", "str", None, f"topic the service produces its {dim} events to "
              f"(dimension `{dim}`)", section=_KT) for dim in SERVICE_TOPICS),
        key("KAFKA_INGEST_TOPIC_PARTITIONS", "int", "1", f"partitions of every topic (at most {MAX_PARTITIONS})",
            section=_KT, minimum=1, maximum=MAX_PARTITIONS),
        key("KAFKA_INGEST_TOPIC_REPLICATION_FACTOR", "int", "1", "replication factor of every topic (at most "
            f"{MAX_REPLICATION_FACTOR})", section=_KT, minimum=1, maximum=MAX_REPLICATION_FACTOR),
        key("KAFKA_INGEST_TOPIC_CONFIG", "json", "{}", "topic configs of every topic (JSON object)", section=_KT),
        key("KAFKA_INGEST_TOPIC_<DIM>_PARTITIONS", "int", None, "partitions for one dimension's topic",
            section=_KT, minimum=1, maximum=MAX_PARTITIONS, near_miss=near_miss),
        key("KAFKA_INGEST_TOPIC_<DIM>_REPLICATION_FACTOR", "int", None, "replication factor for one dimension",
            section=_KT, minimum=1, maximum=MAX_REPLICATION_FACTOR, near_miss=near_miss),
        key("KAFKA_INGEST_TOPIC_<DIM>_CONFIG", "json", None, "topic configs for one dimension (JSON object, merged "
            "over the global one)", section=_KT, near_miss=near_miss),
        key("KAFKA_INGEST_DEFAULT_TOPIC_PARTITIONS", "int", None, "partitions of the default topic",
            section=_KT, minimum=1, maximum=MAX_PARTITIONS),
        key("KAFKA_INGEST_DEFAULT_TOPIC_REPLICATION_FACTOR", "int", None, "replication factor of the default "
            "topic", section=_KT, minimum=1, maximum=MAX_REPLICATION_FACTOR),
        key("KAFKA_INGEST_DEFAULT_TOPIC_CONFIG", "json", None, "topic configs of the default topic", section=_KT),
        key("KAFKA_INGEST_CONSUMER_GROUP", "str", None, "consumer group id", section=_KT,
            service_default="emp-ingest-bridge"),
        key("KAFKA_INGEST_CONSUMER_OFFSET_RESET", "choice", None, "auto.offset.reset", section=_KT,
            choices=("earliest", "latest", "none"), aliases=("KAFKA_INGEST_CONSUMER_AUTO_OFFSET_RESET",),
            service_default="latest"),
        key("KAFKA_INGEST_ENABLE_STREAMING", "bool", None, "streaming ingest enabled", section=_KT,
            service_default="true"),
        key("KAFKA_INGEST_CONSUMER_ENABLED", "bool", None, "consumer enabled", section=_KT, service_default="true"),
        *(service_key(name, text, section=_KS, service_default=default) for name, text, default in _SERVICE_ONLY),
    ),
)
