"""Shared fixtures: the loopback guard (tests/guard/) and the live servers (tests/live/), loaded as plugins."""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "guard"))

pytest_plugins = ["loopback_plugin", "live.postgres", "live.redis", "live.kafka", "live.prometheus", "live.serve"]

# A suite started as a background job (`scripts/test &`, some CI runners) inherits SIGINT ignored, and so does
# every subprocess it starts; ingest-probe rightly keeps an ignored SIGINT ignored, so the SIGINT tests would
# see no signal at all. The suite runs as a foreground process would: Python's own SIGINT handler, which a
# subprocess's exec turns back into the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
