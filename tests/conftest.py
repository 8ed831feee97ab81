"""Shared fixtures: the loopback guard (tests/guard/) and the live servers (tests/live/), loaded as plugins."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "guard"))

pytest_plugins = ["loopback_plugin", "live.postgres", "live.redis", "live.kafka", "live.prometheus", "live.serve"]
