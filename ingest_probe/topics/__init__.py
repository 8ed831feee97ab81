"""Kafka topic provisioning: the pure plan/drift model and the admin run against a broker."""
