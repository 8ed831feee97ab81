"""Live tests of the Redis probe against real redis-server processes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest
from fakes import UnknownNames, assert_failed, run_once
from live.kafka import own_socket_inodes
from live.net import BlackHole, ResetProxy, free_port
from live.redis import (
    AUTH_PASSWORD,
    LIMITED_PASSWORD,
    LIMITED_USER,
    PROBE_PASSWORD,
    PROBE_USER,
    RedisServer,
)

from ingest_probe.connectors._net import use_resolver
from ingest_probe.connectors.redis.probe import RedisProbe
from ingest_probe.connectors.redis.settings import RedisSettings
from ingest_probe.results import Recorder, Status
from ingest_probe.secret import Secret

pytestmark = pytest.mark.live

#: Per-probe deadline of these tests; wall-time asserts are hang guards (T + 3 s), not benchmarks.
T = 1.0
HANG_GUARD = T + 3.0


def unique_name() -> str:
    """A client name no other test uses, so CLIENT LIST counts are this test's alone."""
    return f"probe-test-{uuid.uuid4().hex[:10]}"


def assert_no_stray_tasks() -> None:
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def wait_for_clients(server: RedisServer, name: str, count: int, *, within: float = 3.0) -> None:
    """Poll CLIENT LIST until exactly ``count`` connections carry ``name`` (the server reaps them async)."""
    deadline = time.monotonic() + within
    while True:
        found = server.client_list(name)
        if len(found) == count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} client(s) named {name!r}, server sees {found}")
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """SIGSTOP ``server`` for the block; SIGCONT it afterwards, whatever happens."""
    server.freeze()
    try:
        yield
    finally:
        server.thaw()


# ----------------------------------------------------------------------------------------------- ok path


async def test_ok_reports_version_role_and_replicas(redis_server: RedisServer) -> None:
    """A reachable open Redis is ok, with every phase timed and version/role/replicas in the details."""
    name = unique_name()
    result, wall = await run_once(RedisProbe(redis_server.settings(client_name=name)), T)
    assert result.status is Status.OK, result
    assert result.error is None
    assert result.error_kind is None
    assert all(result.phases[p] is not None for p in ("resolve", "connect", "query")), result.phases
    assert result.endpoint == f"127.0.0.1:{redis_server.port}"
    server_info = redis_server.info()
    assert result.details["redis_version"] == server_info["redis_version"]
    assert result.details["role"] == "master"
    assert result.details["connected_slaves"] == 0
    # What the manifest already shows (db, tls, client name) is not repeated in the details.
    assert not {"db", "tls", "client_name", "host", "port", "username"} & set(result.details), result.details
    assert wall < HANG_GUARD
    await wait_for_clients(redis_server, name, 0)  # the one-shot run closed its connection
    assert_no_stray_tasks()


async def test_url_style_and_host_style_settings_both_work(redis_auth_server: RedisServer) -> None:
    """ACL user + db from a URL and default-user host/port/password parts reach Redis the same way."""
    # What REDIS_URL=redis://probe:<pw>@127.0.0.1:<port>/3 becomes once parsed into parts.
    url_name, host_name = unique_name(), unique_name()
    url_style = redis_auth_server.settings(
        username=PROBE_USER, password=Secret(PROBE_PASSWORD), db=3, client_name=url_name
    )
    # What REDIS_HOST/REDIS_PORT/REDIS_PASSWORD become.
    host_style = redis_auth_server.settings(client_name=host_name)
    url_probe, host_probe = RedisProbe(url_style), RedisProbe(host_style)
    try:
        for probe in (url_probe, host_probe):
            result, _ = await run_once(probe, T, close=False)
            assert result.status is Status.OK, result
            assert result.details["redis_version"]
        [url_conn] = redis_auth_server.client_list(url_name)
        [host_conn] = redis_auth_server.client_list(host_name)
        assert (url_conn["user"], url_conn["db"]) == (PROBE_USER, "3")
        assert (host_conn["user"], host_conn["db"]) == ("default", "0")
    finally:
        await url_probe.aclose()
        await host_probe.aclose()
    await wait_for_clients(redis_auth_server, url_name, 0)
    await wait_for_clients(redis_auth_server, host_name, 0)
    assert_no_stray_tasks()


async def test_db_out_of_range_is_a_query_error(redis_server: RedisServer) -> None:
    """REDIS_DB past the server's `databases` (16 by default): the server answered SELECT with an error, so
    `query` naming the db and REDIS_DB to fix — not `refused`, not retryable — and no connection left."""
    name = unique_name()
    result, _ = await run_once(RedisProbe(redis_server.settings(db=16, client_name=name)), T)
    assert_failed(result, "query", f"127.0.0.1:{redis_server.port} has no database 16", "check REDIS_DB")
    assert result.retryable is False
    assert result.phases["connect"] is None  # SELECT is part of the handshake
    await wait_for_clients(redis_server, name, 0)
    assert_no_stray_tasks()


async def test_acl_user_without_info_is_ok_without_details(redis_auth_server: RedisServer) -> None:
    """An ACL user that may PING but not INFO is usable: ok, with the missing details explained."""
    settings = redis_auth_server.settings(username=LIMITED_USER, password=Secret(LIMITED_PASSWORD))
    result, _ = await run_once(RedisProbe(settings), T)
    assert result.status is Status.OK, result
    assert "info" in result.details["info_unavailable"]
    assert "redis_version" not in result.details


# ------------------------------------------------------------------------------------- network failures


async def test_refused_port() -> None:
    """Nothing listening: down/refused at once, naming the endpoint."""
    port = free_port()
    settings = RedisSettings(configured=True, host="127.0.0.1", port=port)
    result, wall = await run_once(RedisProbe(settings), T)
    assert_failed(result, "refused", f"127.0.0.1:{port}", "refused")
    assert result.retryable
    assert result.phases["resolve"] is not None
    assert result.phases["connect"] is None
    assert wall < HANG_GUARD
    assert_no_stray_tasks()


async def test_black_hole_times_out_within_deadline() -> None:
    """A listener that accepts and never answers: down/timeout after about T, not a hang."""
    with BlackHole() as hole:
        settings = RedisSettings(configured=True, host="127.0.0.1", port=hole.port)
        result, wall = await run_once(RedisProbe(settings), T)
    assert_failed(result, "timeout", f"127.0.0.1:{hole.port}", "black-holed")
    assert result.phases["connect"] is None
    assert 0.5 * T < wall < HANG_GUARD
    assert_no_stray_tasks()


async def test_unknown_host_is_dns() -> None:
    """A host name the resolver does not know (injected): down/dns in the resolve phase, naming the host and
    what to check; nothing is connected to."""
    settings = RedisSettings(configured=True, host="nonexistent.invalid", port=6379)
    resolver = UnknownNames()
    with use_resolver(resolver):
        result, wall = await run_once(RedisProbe(settings), T)
    assert resolver.asked == [("nonexistent.invalid", 6379)]
    assert_failed(result, "dns", "cannot resolve host 'nonexistent.invalid' (Name or service not known)",
                  "check the host name and DNS")
    assert result.phases == {"resolve": None, "connect": None, "query": None}
    assert wall < HANG_GUARD


async def test_frozen_server_times_out_then_recovers(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """SIGSTOP: timeout within the deadline, the failed client is dropped, after SIGCONT a check is ok."""
    server = redis_server_factory()
    name = unique_name()
    probe = RedisProbe(server.settings(client_name=name))
    ok, _ = await run_once(probe, T, close=False)
    assert ok.status is Status.OK
    with frozen(server):
        # The warm connection is reused; PING gets no answer. No aclose(): the probe must drop it itself.
        stuck, wall = await run_once(probe, T, close=False)
    assert_failed(stuck, "timeout", f"127.0.0.1:{server.port}")
    assert wall < HANG_GUARD
    await wait_for_clients(server, name, 0)  # the failed check closed its connection
    with frozen(server):
        cold, wall = await run_once(RedisProbe(server.settings(client_name=name)), T)
    assert_failed(cold, "timeout", "connecting")
    assert wall < HANG_GUARD
    after, _ = await run_once(probe, T)
    assert after.status is Status.OK, after
    await wait_for_clients(server, name, 0)
    assert_no_stray_tasks()


# ------------------------------------------------------------------------------------ authentication


async def test_wrong_password_is_auth(redis_auth_server: RedisServer) -> None:
    """Wrong default-user password: down/auth, says what to fix, never shows the password."""
    secret = "wrong-pw-" + uuid.uuid4().hex
    result, wall = await run_once(RedisProbe(redis_auth_server.settings(password=Secret(secret))), T)
    assert_failed(result, "auth", f"127.0.0.1:{redis_auth_server.port}", "REDIS_PASSWORD")
    assert secret not in (result.error or "")
    assert not result.retryable
    assert wall < HANG_GUARD


async def test_missing_password_is_auth_noauth(redis_auth_server: RedisServer) -> None:
    """No password configured for a server that needs one (NOAUTH): auth, asking for REDIS_PASSWORD."""
    result, _ = await run_once(RedisProbe(redis_auth_server.settings(password=None)), T)
    assert_failed(result, "auth", "requires a password", "REDIS_PASSWORD")


async def test_acl_user_wrong_password_is_auth(redis_auth_server: RedisServer) -> None:
    """An ACL user with a wrong password (WRONGPASS): auth, naming the user, not the password."""
    settings = redis_auth_server.settings(username=PROBE_USER, password=Secret("nope-" + PROBE_PASSWORD))
    result, _ = await run_once(RedisProbe(settings), T)
    assert_failed(result, "auth", repr(PROBE_USER), "REDIS_USERNAME")
    assert PROBE_PASSWORD not in (result.error or "")
    assert AUTH_PASSWORD not in (result.error or "")


# ------------------------------------------------------------------------------------------------- TLS


async def test_tls_ok_with_the_right_ca(redis_tls_server: RedisServer) -> None:
    """TLS with the server's CA (a TLS-only port): ok, server facts in the details, connection closed afterwards."""
    name = unique_name()
    result, _ = await run_once(RedisProbe(redis_tls_server.settings(client_name=name)), T)
    assert result.status is Status.OK, result
    assert result.details["redis_version"]
    await wait_for_clients(redis_tls_server, name, 0)


async def test_tls_close_leaves_no_socket_behind(redis_tls_server: RedisServer) -> None:
    """redis-py's ``disconnect(nowait=True)`` starts a polite TLS shutdown and forgets it (a close_notify
    round trip nobody waits for: the socket outlived the test's event loop, a ResourceWarning). The probe
    aborts the socket: one loop iteration after ``aclose()``, the process holds no more sockets than before."""
    before = own_socket_inodes()
    result, _ = await run_once(RedisProbe(redis_tls_server.settings(client_name=unique_name())), T)
    assert result.status is Status.OK, result
    assert own_socket_inodes() - before == set()


async def test_tls_ca_mismatch_is_tls(redis_tls_server: RedisServer) -> None:
    """A CA that did not sign the server certificate: down/tls, pointing at the CA file."""
    assert redis_tls_server.tls is not None
    settings = redis_tls_server.settings(ssl_ca_certs=redis_tls_server.tls.other_ca_cert)
    result, wall = await run_once(RedisProbe(settings), T)
    assert_failed(result, "tls", f"127.0.0.1:{redis_tls_server.port}", "not trusted", "CA")
    assert wall < HANG_GUARD


async def test_plaintext_client_to_tls_port_says_enable_tls(redis_tls_server: RedisServer) -> None:
    """A plaintext client on a TLS-only port gets an actionable error: enable REDIS_SSL / rediss://."""
    settings = redis_tls_server.settings(tls=False, ssl_ca_certs=None)
    result, wall = await run_once(RedisProbe(settings), T)
    assert_failed(result, "tls", f"127.0.0.1:{redis_tls_server.port}", "REDIS_SSL=true", "rediss://")
    assert wall < HANG_GUARD


async def test_tls_client_to_plaintext_port_says_disable_tls(
    redis_server: RedisServer, redis_tls_server: RedisServer
) -> None:
    """TLS against a plaintext port: tls error (or handshake timeout) telling to unset REDIS_SSL."""
    assert redis_tls_server.tls is not None
    settings = redis_server.settings(tls=True, ssl_ca_certs=redis_tls_server.tls.ca_cert)
    result, wall = await run_once(RedisProbe(settings), T)
    # A plaintext Redis answers a ClientHello only if its random bytes happen to contain a newline,
    # so the outcome is either an immediate "not TLS" or a handshake timeout; both must say what to do.
    assert result.status is Status.DOWN, result
    assert result.error_kind in ("tls", "timeout"), result
    assert "unset REDIS_SSL" in (result.error or ""), result.error
    assert wall < HANG_GUARD


async def test_missing_ca_file_is_tls(redis_tls_server: RedisServer, tmp_path: Any) -> None:
    """A CA path that does not exist: down/tls naming the file and the key to fix, not 'refused'."""
    missing = str(tmp_path / "no-such-ca.crt")
    result, _ = await run_once(RedisProbe(redis_tls_server.settings(ssl_ca_certs=missing)), T)
    assert_failed(result, "tls", missing, "REDIS_SSL_CA_CERTS")


# ----------------------------------------------------------------------------------- starting / loading


async def test_loading_dataset_is_starting_then_ok(
    redis_server_factory: Callable[..., RedisServer], redis_loading_rdb: Any
) -> None:
    """A server still loading its RDB (LOADING) is 'starting' (retryable); once loaded it is ok."""
    server = redis_server_factory(
        rdb=redis_loading_rdb,
        extra_args=["--key-load-delay", "50", "--loading-process-events-interval-bytes", "1024"],
        wait_loaded=False,
    )
    result, wall = await run_once(RedisProbe(server.settings()), T)
    assert_failed(result, "starting", "LOADING", f"127.0.0.1:{server.port}", status=Status.STARTING)
    assert result.retryable
    assert wall < HANG_GUARD
    deadline = time.monotonic() + 15
    while True:
        result, _ = await run_once(RedisProbe(server.settings()), T)
        if result.status is not Status.STARTING or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert result.status is Status.OK, result


# ------------------------------------------------------------------------------------ warm client reuse


async def test_warm_probe_keeps_exactly_one_connection(redis_server: RedisServer) -> None:
    """50 checks on one probe reuse one server-side connection; aclose() leaves none."""
    name = unique_name()
    probe = RedisProbe(redis_server.settings(client_name=name))
    ids: set[str] = set()
    try:
        for i in range(50):
            result, _ = await run_once(probe, T, close=False)
            assert result.status is Status.OK, result
            assert result.details["reused_connection"] is (i > 0)
            if i % 10 == 9:
                [conn] = redis_server.client_list(name)
                ids.add(conn["id"])
        assert len(ids) == 1
    finally:
        await probe.aclose()
        await probe.aclose()  # idempotent
    await wait_for_clients(redis_server, name, 0)
    assert_no_stray_tasks()


async def test_check_after_restart_reconnects(redis_server_factory: Callable[..., RedisServer]) -> None:
    """After a restart on the same port, the next check sees the dead connection and reconnects."""
    server = redis_server_factory()
    name = unique_name()
    probe = RedisProbe(server.settings(client_name=name))
    try:
        first, _ = await run_once(probe, T, close=False)
        assert first.status is Status.OK
        server.restart()
        await asyncio.sleep(0.05)  # let the loop see the old connection's EOF
        second, _ = await run_once(probe, T, close=False)
        assert second.status is Status.OK, second
        assert second.details["reused_connection"] is False
        assert second.phases["connect"] is not None
        await wait_for_clients(server, name, 1)
    finally:
        await probe.aclose()
    await wait_for_clients(server, name, 0)


async def test_cancelled_check_drops_its_connection(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """A check cancelled from outside mid-connect (no deadline of ours) closes its half-open client."""
    server = redis_server_factory()
    name = unique_name()
    probe = RedisProbe(server.settings(client_name=name))
    with frozen(server):
        started = time.monotonic()
        # asyncio.timeout is invisible to anyio's deadline, so the library budget is the 5 s default
        # and this cancellation, not a library timeout, ends the check.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await probe.check(Recorder(endpoint=probe.endpoint, phase_names=probe.phase_names))
        assert time.monotonic() - started < HANG_GUARD
    await wait_for_clients(server, name, 0)
    ok, _ = await run_once(probe, T)
    assert ok.status is Status.OK, ok
    assert_no_stray_tasks()


# ----------------------------------------------------------------------------------------------- driver


async def test_missing_redis_library_is_driver_error(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the redis package the probe reports down/driver instead of crashing the run."""
    for module in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "redis", None)
    result, _ = await run_once(RedisProbe(redis_server.settings()), T)
    assert_failed(result, "driver", "pip install redis")


async def test_stuck_name_lookup_is_abandoned_off_the_callers_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup stuck in the resolver times out in phase resolve, in a daemon thread, not the loop's executor."""
    release = threading.Event()
    threads: list[threading.Thread] = []

    def stuck_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        release.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "released by the test")

    loop = asyncio.get_running_loop()
    callers_executor = ThreadPoolExecutor(max_workers=1)  # an embedder's loop, with its own small executor
    loop.set_default_executor(callers_executor)
    monkeypatch.setattr(socket, "getaddrinfo", stuck_getaddrinfo)
    try:
        probe = RedisProbe(RedisSettings(configured=True, host="stuck.example", port=6379))
        result, wall = await run_once(probe, T)
        assert_failed(result, "timeout", "during resolve")
        assert wall < HANG_GUARD
        assert [t.daemon for t in threads] == [True]
        with anyio.fail_after(HANG_GUARD):  # the caller's executor is still free for its own work
            assert await loop.run_in_executor(None, lambda: 42) == 42
    finally:
        release.set()


@pytest.mark.parametrize("drop", ["reset", "expire"])
async def test_warm_connection_reset_by_a_middlebox_reconnects_once(redis_server: RedisServer, drop: str) -> None:
    """A warm connection a middlebox RSTs now or on the next send (idle timeout): one reconnect, then ok."""
    name = unique_name()
    with ResetProxy(redis_server.port) as proxy:
        probe = RedisProbe(redis_server.settings(port=proxy.port, client_name=name))
        try:
            first, _ = await run_once(probe, T, close=False)
            assert first.status is Status.OK, first
            # reset: the loop may see the RST before the next check; expire: only the next send meets it.
            assert (proxy.reset_clients() if drop == "reset" else proxy.expire_clients()) == 1
            second, wall = await run_once(probe, T, close=False)
            assert second.status is Status.OK, second
            assert second.details["reconnected"] is True
            assert second.details["reused_connection"] is False
            assert second.phases["connect"] is not None
            assert wall < HANG_GUARD
            third, _ = await run_once(probe, T, close=False)
            assert third.status is Status.OK, third
            assert third.details["reused_connection"] is True
            assert "reconnected" not in third.details
            assert proxy.accepted == 2
        finally:
            await probe.aclose()
    await wait_for_clients(redis_server, name, 0)
    assert_no_stray_tasks()


@pytest.mark.live
async def test_tls_socket_is_closed_when_the_check_returns(redis_tls_server: Any) -> None:
    """TLS through a slow path (a 0.3 s proxy): once the check and its close return, no socket of ours is
    still waiting for the server's TLS close_notify (a loop closing now would leak it)."""
    from live.kafka import client_connections
    from live.net import DelayProxy

    with DelayProxy(redis_tls_server.port, 0.3) as slow:
        result, _ = await run_once(RedisProbe(redis_tls_server.settings(port=slow.port)), 10.0)
        assert result.status is Status.OK, result.error
        assert client_connections(slow.port) == 0
