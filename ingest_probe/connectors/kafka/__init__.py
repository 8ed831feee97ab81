"""The Kafka connector (aiokafka)."""
