"""The Kafka keys: bootstrap servers, security (protocol, SASL, TLS files) and the declared ingest topics."""

from __future__ import annotations

from ingest_probe.config.keys import KeySet, key
from ingest_probe.config.reader import URL_PARTS_RULE
from ingest_probe.connectors.kafka.settings import shown_servers
from ingest_probe.connectors.kafka.topic_specs import near_miss
from ingest_probe.defaults import CLIENT_NAME

_K, _KT = "Kafka", "Kafka topics"
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
        key("KAFKA_SASL_MECHANISM", "choice", None, "default PLAIN when the protocol is SASL_*", section=_K,
            choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")),
        key("KAFKA_USERNAME", "str", None, "SASL user (overrides URL credentials, see above); a user without a "
            "password (or the reverse) is warned about", section=_K, aliases=("KAFKA_USER",)),
        key("KAFKA_PASSWORD", "str", None, "SASL password (overrides URL credentials, see above)", section=_K,
            secret=True, aliases=("KAFKA_PASS",)),
        key("KAFKA_SSL_CAFILE", "str", None, "CA bundle", section=_K),
        key("KAFKA_SSL_CERTFILE", "str", None, "client certificate", section=_K),
        key("KAFKA_SSL_KEYFILE", "str", None, "client private key", section=_K),
        key("KAFKA_CLIENT_ID", "str", CLIENT_NAME, "client id", section=_K),
        key("KAFKA_INGEST_TOPICS", "csv", None, "CSV of `dimension:topic` or `dimension=topic`", section=_KT),
        key("KAFKA_INGEST_TOPIC_<DIM>", "str", None, "topic of one dimension (wins over KAFKA_INGEST_TOPICS); a "
            "near-miss of `_PARTITIONS`/`_REPLICATION_FACTOR`/`_CONFIG` (e.g. `_PARTITONS`, `_REPLICATION`) is an "
            "error, not a dimension", section=_KT, near_miss=near_miss),
        key("KAFKA_INGEST_DEFAULT_TOPIC", "str", None, "topic of the `default` dimension", section=_KT),
        key("KAFKA_INGEST_CONSUMER_TOPICS", "csv", None, "topics consumed (dimension `consumer`)", section=_KT),
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
        key("KAFKA_INGEST_CONSUMER_GROUP", "str", None, "consumer group id", section=_KT),
        key("KAFKA_INGEST_CONSUMER_OFFSET_RESET", "choice", None, "auto.offset.reset", section=_KT,
            choices=("earliest", "latest", "none")),
        key("KAFKA_INGEST_ENABLE_STREAMING", "bool", "false", "streaming ingest enabled", section=_KT),
        key("KAFKA_INGEST_CONSUMER_ENABLED", "bool", "false", "consumer enabled", section=_KT),
    ),
)
