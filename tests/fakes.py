"""Shared test helpers: a fake probe, settings loaded from env-style keys, one supervised run and its checks."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from live import in_ci

from ingest_probe import errors
from ingest_probe.config import sources
from ingest_probe.config.sources import RawConfig
from ingest_probe.connectors.kafka.settings import KafkaSettings
from ingest_probe.connectors.redis.settings import RedisSettings
from ingest_probe.connectors.timescale.settings import TimescaleSettings
from ingest_probe.engine.supervisor import TaskSupervisor
from ingest_probe.prober import Prober
from ingest_probe.results import ProbeResult, Recorder, Status
from ingest_probe.secret import Secret
from ingest_probe.settings.service import Settings, key_registry, load_settings
from ingest_probe.settings.targets import Target

Behaviour = Callable[[Recorder], Awaitable[None]]

#: A scheduled institutional tier-1 plan for one symbol, no connector configured, no jitter.
BASE_ENV = {
    "DATA_BACKBONE_MODE": "institutional",
    "EMP_TIER": "tier_1",
    "TIMESCALE_SYMBOLS": "EURUSD",
    "TIMESCALE_INGEST_SCHEDULE": "true",
    "TIMESCALE_INGEST_JITTER_SECONDS": "0",
    "TIMESCALE_INGEST_MAX_FAILURES": "3",
}


def load_config(**kwargs: Any) -> RawConfig:
    """``config.sources.load_config`` with the keys of every registered kind (what ``load_settings`` reads)."""
    return sources.load_config(keys=key_registry(), **kwargs)


def make_settings(**env: str) -> Settings:
    """Settings loaded as the CLI loads them, from ``BASE_ENV`` with ``env`` on top (no process env)."""
    return load_settings(environ={**BASE_ENV, **env})


class FakeProbe:
    """A probe with one fake connection, opened on the first check and kept warm until ``aclose``.

    The first check runs ``connect(rec)`` in phase connect; every check runs ``behaviour(rec)`` in phase
    query. It counts checks and connects, the most checks in flight at once, and the loops it ran on.
    """

    phase_names = ("connect", "query")

    def __init__(
        self,
        name: str,
        behaviour: Behaviour | None = None,
        *,
        connect: Behaviour | None = None,
        configured: bool = True,
        close_delay: float = 0.0,
    ) -> None:
        self.name = name
        self.configured = configured
        self.endpoint = f"{name}.test:1"
        self.behaviour = behaviour
        self.connect = connect
        self.close_delay = close_delay
        self.checks = 0
        self.connects = 0
        self.connected = False
        self.closed = False
        self.active = 0
        self.max_active = 0
        self.loops: set[int] = set()

    async def check(self, rec: Recorder) -> None:
        self.checks += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.loops.add(id(asyncio.get_running_loop()))
        try:
            if not self.connected:
                with rec.phase("connect"):
                    self.connects += 1
                    if self.connect is not None:
                        await self.connect(rec)
                    self.connected = True
            with rec.phase("query"):
                if self.behaviour is not None:
                    await self.behaviour(rec)
                await anyio.lowlevel.checkpoint()
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        await anyio.sleep(self.close_delay)
        self.connected = False
        self.closed = True


class FakeSettings:
    """The settings of a fake target: configured or not, an endpoint, no secret."""

    def __init__(self, *, configured: bool = True, endpoint: str | None = None) -> None:
        self.configured = configured
        self.endpoint = endpoint

    def secrets(self) -> tuple[Secret, ...]:
        return ()


def _fake_settings(probe: FakeProbe) -> tuple[str, Any]:
    """A ``FakeProbe``'s kind and settings: a built-in kind's own settings type when the probe is named after one
    (so a report can describe it), else kind ``fake`` with ``FakeSettings``; the endpoint is the probe's."""
    configured, host = probe.configured, f"{probe.name}.test"
    if probe.name == "timescale":
        return "timescale", TimescaleSettings(configured=configured, backend="postgresql", url_source_key=None,
                                              host=host, port=1)
    if probe.name == "redis":
        return "redis", RedisSettings(configured=configured, host=host, port=1)
    if probe.name == "kafka":
        return "kafka", KafkaSettings(configured=configured, bootstrap_servers=(f"{host}:1",))
    return "fake", FakeSettings(configured=configured, endpoint=probe.endpoint)


def target_of(probe: Any, name: str | None = None) -> Target:
    """The target a probe checks: a ``FakeProbe``'s is named after it (``_fake_settings``); a real probe's is named
    after its kind (``TimescaleProbe`` → ``timescale``) unless ``name`` is given, with the probe's settings."""
    if isinstance(probe, FakeProbe):
        kind, settings = _fake_settings(probe)
        return Target(name=name or probe.name, kind=kind, settings=settings)
    kind = type(probe).__name__.removesuffix("Probe").lower()
    return Target(name=name or kind, kind=kind, settings=probe.settings)


def jobs(probes: Any) -> list[tuple[Target, Any]]:
    """What ``TaskSupervisor.run`` takes: each probe with its target (``target_of``)."""
    return [(target_of(p), p) for p in probes]


def fake_prober(probes: list[Any], **kwargs: Any) -> Prober:
    """A ``Prober`` over the targets of ``probes`` (``target_of``), each checked by its probe."""
    targets = [target_of(p) for p in probes]
    return Prober(targets, probes={t.name: p for t, p in zip(targets, probes, strict=True)}, **kwargs)


async def hang(rec: Recorder) -> None:
    """A behaviour that never returns."""
    await anyio.sleep_forever()


def scripted(*outcomes: str) -> Behaviour:
    """A behaviour with one outcome per call, 'ok', 'down' or 'degraded'; the last one repeats."""
    calls = itertools.count()

    async def behaviour(rec: Recorder) -> None:
        outcome = outcomes[min(next(calls), len(outcomes) - 1)]
        if outcome == "down":
            raise errors.RefusedError(f"connection refused by {rec.endpoint}")
        if outcome == "degraded":
            rec.degrade("missing_topic", "topic x missing")

    return behaviour


# ------------------------------------------------------------------------------------- real probe runs


def pg_settings(pg: Any, **overrides: Any) -> TimescaleSettings:
    """Settings that point at the live server ``pg`` as its probe user, with a unique application_name."""
    values: dict[str, Any] = {
        "configured": True,
        "backend": "postgresql",
        "url_source_key": None,
        "host": pg.host,
        "port": pg.port,
        "user": pg.user,
        "password": Secret(pg.password),
        "database": pg.database,
        "application_name": f"ingest-probe-test-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return TimescaleSettings(**values)


async def run_once(probe: Any, deadline: float, *, close: bool = True) -> tuple[ProbeResult, float]:
    """One supervised check (no jitter): the result and the wall time it took, close included."""
    started = time.monotonic()
    [result] = await TaskSupervisor(timeout=deadline, jitter=0.0).run(jobs([probe]), close=close)
    return result, time.monotonic() - started


def assert_failed(result: ProbeResult, kind: str, *needles: str, status: Status = Status.DOWN) -> None:
    """``result`` has ``status`` and ``kind``, and a one-line error containing every needle."""
    assert result.status is status, result
    assert result.error_kind == kind, result
    assert result.error is not None
    assert "\n" not in result.error
    for needle in needles:
        assert needle in result.error, result.error


class UnknownNames:
    """A resolver for ``use_resolver`` to which every name is unknown (what DNS says for NXDOMAIN): it raises
    ``socket.gaierror(EAI_NONAME)`` and records each ``(host, port)`` asked. The machine's resolver is never
    consulted."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def assert_no_stray_tasks() -> None:
    """No task but the test's own, once cancelled ones have had a few loop turns to unwind."""
    for _ in range(5):
        await asyncio.sleep(0.01)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not others, others


#: Set to regenerate the golden files locally (review the diff); refused in CI.
REGEN_GOLDEN = "INGEST_PROBE_REGEN_GOLDEN"


def assert_golden(path: Path, text: str) -> None:
    """``text`` equals the reviewed golden file. With INGEST_PROBE_REGEN_GOLDEN set the file is rewritten
    first (locally, for a reviewed change); in CI (CI=true) that is a failure: CI never blesses its output."""
    if os.environ.get(REGEN_GOLDEN):
        if in_ci():
            pytest.fail(f"{REGEN_GOLDEN} is set in CI (CI=true): golden files are regenerated locally and the"
                        " diff reviewed, never rewritten by the run that checks them", pytrace=False)
        path.write_text(text)
    assert text == path.read_text()


def help_in_a_fresh_interpreter(command: str) -> tuple[str, str]:
    """`ingest-probe <command> --help` run in a new interpreter: the help text, then (as a list's repr)
    which of asyncpg, redis, aiokafka, yaml and anyio it imported."""
    code = (
        "import sys\n"
        "from ingest_probe.commands.cli import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('asyncpg', 'redis', 'aiokafka', 'yaml', 'anyio') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    text, _, imported = proc.stdout.rstrip("\n").rpartition("\n")
    return text, imported
