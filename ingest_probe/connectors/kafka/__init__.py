"""The Kafka connector (aiokafka): its keys, settings (with the declared topics), manifest row and probe
(``probe.py``, loaded only when a probe is built)."""

from __future__ import annotations

from typing import Any

from ingest_probe.connectors.declared import Declared
from ingest_probe.connectors.kafka.keys import KEYS
from ingest_probe.connectors.kafka.settings import DRIVERS, KafkaSettings, from_config


def manifest(ks: KafkaSettings) -> dict[str, Any]:
    """The manifest row of a kafka target, from allow-listed parts only."""
    if not ks.configured:
        return {"summary": "Kafka not configured (set KAFKA_BROKERS or KAFKA_BOOTSTRAP_SERVERS)"}
    auth = f" {ks.sasl_mechanism} as {ks.username}" if ks.sasl_mechanism and ks.username else ""
    return {
        "summary": f"Kafka {','.join(ks.bootstrap_servers)} ({ks.security_protocol}{auth})",
        "bootstrap_servers": list(ks.bootstrap_servers),
        "security_protocol": ks.security_protocol,
        "sasl_mechanism": ks.sasl_mechanism,
        "username": ks.username,
        "client_id": ks.client_id,
        "topics": list(ks.topic_names),
        "topic_count": len(ks.topics),
        "topic_specs": [
            {
                "name": t.name,
                "dimensions": list(t.dimensions),
                "partitions": t.partitions,
                "replication_factor": t.replication_factor,
                "configs": dict(sorted(t.configs.items())),
            }
            for t in ks.topics
        ],
        "consumer_group": ks.consumer_group,
        "consumer_offset_reset": ks.consumer_offset_reset,
        "consumer_topics": list(ks.consumer_topics),
        "streaming_enabled": ks.streaming_enabled,
        "consumer_enabled": ks.consumer_enabled,
        "service_defaults": dict(ks.service_defaults),
    }


CONNECTOR = Declared(
    kind="kafka", keys=KEYS, url_key="KAFKA_BROKERS", from_config=from_config, manifest=manifest,
    drivers=lambda ks: DRIVERS, probe_class="ingest_probe.connectors.kafka.probe:KafkaProbe",
)
