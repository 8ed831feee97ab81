"""A peer that answers junk: a client library's own exception is that connector's protocol failure, not a crash.

Client libraries assume they talk to their server; fed garbage they raise ``TypeError``/``ValueError``/…
from deep inside their parsers. Those become ``down``/``protocol`` for that connector only, while the
same exception types raised by *our* code are bugs: ``internal`` (exit 3), never blamed on the peer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from fakes import assert_failed, assert_no_stray_tasks, jobs, pg_settings
from live.net import JunkServer
from live.postgres import PostgresServer
from live.redis import RedisServer

from ingest_probe import errors
from ingest_probe.connectors._net import library_failure, raised_inside
from ingest_probe.connectors.base import Probe
from ingest_probe.connectors.kafka.probe import KafkaProbe
from ingest_probe.connectors.kafka.settings import KafkaSettings
from ingest_probe.connectors.redis.probe import RedisProbe
from ingest_probe.connectors.redis.settings import RedisSettings
from ingest_probe.connectors.timescale.probe import TimescaleProbe
from ingest_probe.connectors.timescale.settings import TimescaleSettings
from ingest_probe.engine.supervisor import TaskSupervisor
from ingest_probe.results import ProbeResult, Status
from ingest_probe.secret import Secret

T = 2.0  # per-probe deadline
HANG_GUARD = 3.0  # slack over T for cleanup: a hang guard, not a performance assertion

#: Per backend: a reply its client library cannot make sense of, and what the library does with it.
#: Kafka: a frame echoing the correlation id, then bytes that are no ApiVersions response (aiokafka:
#: TypeError in ``_do_version_lookup``). Redis: a bulk string whose length is not a number (redis-py:
#: ValueError in its RESP parser). PostgreSQL: an authentication request for an unknown method 99
#: (asyncpg: InterfaceError from its connect code), with sslmode=disable — and with the default sslmode
#: (prefer), where the same junk answers the SSLRequest first and the probe falls back to plaintext.
JUNK: dict[str, bytes | None] = {
    "kafka": None,  # JunkServer's default Kafka-framed garbage
    "redis": b"$abc\r\n",
    "timescale": b"R\x00\x00\x00\x08\x00\x00\x00\x63",
}
LIBRARY = {"kafka": "aiokafka", "redis": "redis", "timescale": "asyncpg"}
PROTOCOL = {"kafka": "Kafka", "redis": "Redis", "timescale": "PostgreSQL"}


def three_probes(
    junk: str, port: int, pg: PostgresServer, redis: RedisServer, kafka: Any, *, sslmode: str | None = None
) -> list[Probe]:
    """Timescale, Redis, Kafka against the live servers, except ``junk``, which points at ``port``."""
    ts = pg_settings(pg, port=port, sslmode=sslmode) if junk == "timescale" else pg_settings(pg)
    rs = redis.settings(port=port, password=None, tls=False) if junk == "redis" else redis.settings()
    bootstrap = f"127.0.0.1:{port}" if junk == "kafka" else kafka.bootstrap
    return [
        TimescaleProbe(ts),
        RedisProbe(rs),
        KafkaProbe(KafkaSettings(configured=True, bootstrap_servers=(bootstrap,))),
    ]


# ------------------------------------------------------------------------------------------------ live


@pytest.mark.live
@pytest.mark.parametrize(
    ("junk", "sslmode"), [("kafka", None), ("redis", None), ("timescale", "disable"), ("timescale", None)]
)
async def test_junk_peer_is_protocol_and_others_still_reported(
    junk: str, sslmode: str | None, pg_server: PostgresServer, redis_server: RedisServer, kafka_broker: Any
) -> None:
    """Junk on one connector's port: that one is down/protocol naming its library; the others are ok."""
    with JunkServer(JUNK[junk]) as server:
        probes = three_probes(junk, server.port, pg_server, redis_server, kafka_broker, sslmode=sslmode)
        started = time.monotonic()
        results = await TaskSupervisor(timeout=T, jitter=0.0).run(jobs(probes))
        wall = time.monotonic() - started
        assert server.accepted >= 1  # the probe did talk to the junk peer
    by_name: dict[str, ProbeResult] = {r.name: r for r in results}
    assert list(by_name) == ["timescale", "redis", "kafka"]
    bad = by_name[junk]
    # With sslmode=prefer junk is the answer to the SSLRequest: as libpq, no plaintext retry after that.
    prefer = (junk, sslmode) == ("timescale", None)
    said = "broke off the TLS negotiation" if prefer else f"{LIBRARY[junk]} could not parse"
    assert_failed(bad, "protocol", said, f"is this really a {PROTOCOL[junk]} port?", str(server.port))
    for name, result in by_name.items():
        if name != junk:
            assert result.status is Status.OK, result
    assert wall < T + HANG_GUARD
    await assert_no_stray_tasks()


#: (probe, the server really on that port): the wrong-port pairings a reviewer hit.
WRONG_PORTS = [("redis", "postgres"), ("timescale", "redis"), ("timescale", "kafka"), ("redis", "kafka"),
               ("kafka", "redis"), ("kafka", "postgres")]  # fmt: skip


@pytest.mark.live
@pytest.mark.parametrize(("probe_name", "server"), WRONG_PORTS)
async def test_wrong_service_on_the_port_is_named_as_a_possibility(
    probe_name: str, server: str, pg_server: PostgresServer, redis_server: RedisServer, kafka_broker: Any
) -> None:
    """A probe pointed at another real server's port says the port may be another service's, never TLS."""
    port = {"postgres": pg_server.port, "redis": redis_server.port, "kafka": kafka_broker.port}[server]
    probe: Probe
    if probe_name == "timescale":
        probe = TimescaleProbe(pg_settings(pg_server, port=port))
    elif probe_name == "redis":
        probe = RedisProbe(redis_server.settings(port=port, password=None, tls=False))
    else:
        probe = KafkaProbe(KafkaSettings(configured=True, bootstrap_servers=(f"127.0.0.1:{port}",)))
    started = time.monotonic()
    [result] = await TaskSupervisor(timeout=T, jitter=0.0).run(jobs([probe]))
    wall = time.monotonic() - started
    assert result.status is Status.DOWN, result
    assert result.error is not None
    assert str(port) in result.error
    # Where the peer's bytes (or its hanging up) give it away: protocol; a peer that silently waits for
    # more of its own protocol looks like a black hole: timeout, naming the possibility.
    assert result.error_kind in ("protocol", "timeout"), result
    if result.error_kind == "protocol":
        assert f"is this really a {PROTOCOL[probe_name]} port" in result.error, result.error
    else:
        assert "a different service listens on that port" in result.error, result.error
    if (probe_name, server) == ("redis", "postgres"):  # PostgreSQL hangs up: not mistaken for TLS-only
        assert result.error_kind == "protocol", result.error
        assert "REDIS_SSL" not in result.error
    assert wall < T + HANG_GUARD
    await assert_no_stray_tasks()


@pytest.mark.live
def test_cli_report_survives_junk_on_the_kafka_port(
    pg_server: PostgresServer, redis_server: RedisServer
) -> None:
    """The reviewer's repro end to end: exit 2 with a full report, not "internal error: ExceptionGroup"."""
    with JunkServer() as server:
        extras = {
            "TIMESCALEDB_HOST": pg_server.host,
            "TIMESCALEDB_PORT": str(pg_server.port),
            "TIMESCALEDB_USER": pg_server.user,
            "TIMESCALEDB_PASSWORD": pg_server.password,
            "TIMESCALEDB_DB": pg_server.database,
            "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
            "KAFKA_BROKERS": f"127.0.0.1:{server.port}",
        }
        args = [arg for key, value in extras.items() for arg in ("--extra", f"{key}={value}")]
        proc = subprocess.run(
            [sys.executable, "-m", "ingest_probe", "report", "--no-env", "--connectivity", "--timeout", "2", *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "internal error" not in proc.stderr
    statuses = {r["name"]: (r["status"], r["error_kind"]) for r in json.loads(proc.stdout)["connectivity"]}
    assert statuses == {"timescale": ("ok", None), "redis": ("ok", None), "kafka": ("down", "protocol")}


# ------------------------------------------------------------------------------------------------ unit


def _library_function(module: str, body: str) -> Callable[..., Any]:
    """A function whose frames belong to ``module`` (as if defined in the library), for frame tests."""
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile(f"def f(callback=None):\n    {body}\n", f"<{module}>", "exec"), namespace)  # noqa: S102 - test helper
    func: Callable[..., Any] = namespace["f"]
    return func


def test_library_failure_maps_only_exceptions_raised_inside_the_library() -> None:
    """Innermost frame in aiokafka → ProtocolError naming endpoint/type; ours, another package's → None."""
    parse = _library_function("aiokafka.conn", "raise TypeError(\"'NoneType' object is not iterable\")")
    with pytest.raises(TypeError) as inside:
        parse()
    mapped = library_failure(inside.value, package="aiokafka", protocol="Kafka", endpoint="127.0.0.1:9")
    assert isinstance(mapped, errors.ProtocolError)
    assert str(mapped) == (
        "127.0.0.1:9 answered with something aiokafka could not parse (TypeError: 'NoneType' object is not"
        " iterable): is this really a Kafka port?"
    )
    assert library_failure(inside.value, package="redis", protocol="Redis", endpoint=None) is None
    # A module whose name merely starts with the package's: not the library.
    lookalike = _library_function("aiokafkaesque", "raise TypeError('x')")
    with pytest.raises(TypeError) as near:
        lookalike()
    assert not raised_inside(near.value, "aiokafka")
    # Our own probe module ``ingest_probe.connectors.redis.probe`` is not the ``redis`` package.
    ours = _library_function("ingest_probe.connectors.redis.probe", "raise ValueError('x')")
    with pytest.raises(ValueError, match="x") as own:
        ours()
    assert library_failure(own.value, package="redis", protocol="Redis", endpoint=None) is None


def test_library_failure_looks_past_the_standard_library() -> None:
    """Raised in a stdlib helper the library called (base64 on a peer's junk): still the library's failure;
    a stdlib helper called by our code stays ours."""
    decode = _library_function("aiokafka.conn", "__import__('base64').b64decode('x')")
    with pytest.raises(ValueError, match="base64") as inside:
        decode()
    assert raised_inside(inside.value, "aiokafka")
    ours = _library_function("ingest_probe.connectors.kafka.probe", "__import__('base64').b64decode('x')")
    with pytest.raises(ValueError, match="base64") as own:
        ours()
    assert not raised_inside(own.value, "aiokafka")


def test_library_failure_leaves_our_bugs_secrets_and_cancellation_alone() -> None:
    """Our callback raising inside a library call, a ProbeError and cancellation are not mapped; secrets blanked."""

    def our_callback() -> None:
        raise TypeError("bug in our code")

    calls_back = _library_function("asyncpg.connect_utils", "callback()")
    with pytest.raises(TypeError) as bug:
        calls_back(our_callback)
    assert library_failure(bug.value, package="asyncpg", protocol="PostgreSQL", endpoint=None) is None

    expected = errors.AuthError("wrong password")
    assert library_failure(expected, package="asyncpg", protocol="PostgreSQL", endpoint=None) is None
    cancelled = _library_function("asyncpg.protocol", "raise __import__('asyncio').CancelledError()")
    with pytest.raises(asyncio.CancelledError) as cancel:
        cancelled()
    assert library_failure(cancel.value, package="asyncpg", protocol="PostgreSQL", endpoint=None) is None

    leaky = _library_function("redis._parsers.resp2", "raise ValueError('bad frame near hunter2')")
    with pytest.raises(ValueError, match="hunter2") as leak:
        leaky()
    mapped = library_failure(
        leak.value, package="redis", protocol="Redis", endpoint="r:1", secrets=[Secret("hunter2")]
    )
    assert mapped is not None
    assert "hunter2" not in str(mapped)
    assert "***" in str(mapped)


async def _raise_type_error(*args: Any, **kwargs: Any) -> Any:
    raise TypeError("a bug in our code")


def _bug_at_the_boundary(name: str, monkeypatch: pytest.MonkeyPatch) -> Probe:
    """A probe whose library call is replaced by our code raising TypeError, at the mapped boundary."""
    if name == "timescale":
        monkeypatch.setattr(TimescaleProbe, "_asyncpg_connect", _raise_type_error)
        return TimescaleProbe(
            TimescaleSettings(configured=True, backend="postgresql", url_source_key=None, host="127.0.0.1",
                              port=9, user="u", sslmode="disable")
        )  # fmt: skip
    if name == "redis":
        from redis.asyncio import Redis

        monkeypatch.setattr(Redis, "initialize", _raise_type_error)
        return RedisProbe(RedisSettings(configured=True, host="127.0.0.1", port=9))
    from ingest_probe.connectors.kafka import probe as kafka_probe

    monkeypatch.setattr(kafka_probe, "bootstrap", _raise_type_error)  # what starts the admin client
    return KafkaProbe(KafkaSettings(configured=True, bootstrap_servers=("127.0.0.1:9",)))


@pytest.mark.parametrize("name", ["timescale", "redis", "kafka"])
async def test_type_error_from_our_code_is_internal_not_protocol(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TypeError raised by our code at a probe's library boundary is a bug, not the peer's fault: the
    probe lets it out (never ``protocol``) and the supervisor records it as ``internal``."""
    probe = _bug_at_the_boundary(name, monkeypatch)
    [result] = await TaskSupervisor(timeout=T, jitter=0.0).run(jobs([probe]))
    assert_failed(result, "internal", f"internal error in the {name} probe: TypeError: a bug in our code")
    assert isinstance(result.exception, TypeError)
