"""Shared fixtures; the live servers live in tests/live/ and are loaded as plugins."""

pytest_plugins = ["live.postgres", "live.redis", "live.kafka"]
