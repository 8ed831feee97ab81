"""Live tests of the Timescale/PostgreSQL probe and its SQLite rehearsal mode against loopback servers."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fakes import UnknownNames, assert_failed, assert_no_stray_tasks, pg_settings, run_once
from live.kafka import client_connections, own_socket_inodes
from live.net import BlackHole, DelayProxy, ResetProxy, free_port
from live.postgres import CERT_USER, PostgresServer, _server_fixture

from ingest_probe.connectors._net import use_resolver
from ingest_probe.connectors.timescale import probe as timescale_module
from ingest_probe.connectors.timescale.probe import TimescaleProbe
from ingest_probe.connectors.timescale.settings import TimescaleSettings
from ingest_probe.defaults import CLOSE_BUDGET
from ingest_probe.results import Status
from ingest_probe.secret import Secret

pytestmark = pytest.mark.live

T = 1.0  # per-probe deadline for failure cases
HANG_GUARD = 3.0  # generous slack over T: these are hang guards, not performance assertions


async def server_connections(
    pg: PostgresServer, application_name: str | None = None, *, expect: int = 0, stable: float = 0.0
) -> int:
    """Connections the server holds: by application_name (pg_stat_activity), or, when None, every TCP
    backend process, including ones still authenticating. Backends exit asynchronously, so this polls up
    to 5 s for the count to become ``expect`` (and to stay so for ``stable`` s), then returns it."""

    def count() -> int:
        if application_name is None:
            return len(pg.tcp_backends())
        return pg.count_connections(application_name)

    deadline = time.monotonic() + 5.0
    while True:
        n = await anyio.to_thread.run_sync(count)
        if n == expect and stable > 0:
            await anyio.sleep(stable)  # a thawed postmaster may still be working through its backlog
            n = await anyio.to_thread.run_sync(count)
        if n == expect or time.monotonic() > deadline:
            return n
        await anyio.sleep(0.05)


# ------------------------------------------------------------------------------------------------ ok path


async def test_ok_reports_server_facts(pg_server: PostgresServer) -> None:
    """A healthy plain PostgreSQL is ok: server_version, in_recovery, timescaledb=null, our app name."""
    s = pg_settings(pg_server)
    result, wall = await run_once(TimescaleProbe(s), 5.0)
    assert result.status is Status.OK, result
    assert result.error is None
    assert result.endpoint == f"127.0.0.1:{pg_server.port}"
    d = result.details
    assert d["server_version"].split(".")[0].isdigit()
    assert d["in_recovery"] is False
    assert d["timescaledb"] is None
    assert "not installed" in d["timescaledb_note"]
    assert d["application_name"] == s.application_name
    assert d["tls"] is False
    assert d["reused_connection"] is False
    # What the manifest already shows is not repeated; the user was configured, so no user_from_os either.
    assert not {"database", "user", "sslmode", "host", "port", "user_from_os"} & set(d), d
    assert all(result.phases[p] is not None for p in ("resolve", "connect", "query")), result.phases
    assert wall < 5.0
    assert await server_connections(pg_server) == 0
    await assert_no_stray_tasks()


async def test_require_extension_makes_absence_down(pg_server: PostgresServer) -> None:
    """require_extension=True turns a missing timescaledb extension into down/query, facts still reported."""
    result, wall = await run_once(TimescaleProbe(pg_settings(pg_server, require_extension=True)), T)
    assert_failed(result, "query", "timescaledb", f"127.0.0.1:{pg_server.port}", "REQUIRE_EXTENSION")
    assert result.details["server_version"]
    assert result.details["timescaledb"] is None
    assert wall < T + HANG_GUARD
    assert await server_connections(pg_server) == 0


# ---------------------------------------------------------------------------------------- network failures


async def test_refused_port() -> None:
    """Nothing listening: down/refused naming the endpoint, well before the deadline."""
    port = free_port()
    s = TimescaleSettings(
        configured=True, backend="postgresql", url_source_key=None, host="127.0.0.1", port=port
    )
    result, wall = await run_once(TimescaleProbe(s), T)
    assert_failed(result, "refused", f"127.0.0.1:{port}")
    assert result.retryable is True
    assert wall < T + HANG_GUARD
    await assert_no_stray_tasks()


async def test_black_hole_times_out_within_deadline() -> None:
    """A listener that never answers: down/timeout from asyncpg's own timeout, within about T."""
    with BlackHole() as hole:
        s = TimescaleSettings(
            configured=True, backend="postgresql", url_source_key=None, host="127.0.0.1", port=hole.port
        )
        result, wall = await run_once(TimescaleProbe(s), T)
    assert_failed(result, "timeout", f"127.0.0.1:{hole.port}", "connecting")
    assert result.phases["resolve"] is not None
    assert result.phases["connect"] is None
    assert wall < T + HANG_GUARD
    await assert_no_stray_tasks()


async def test_connect_timeout_setting_cuts_the_connect_before_the_deadline() -> None:
    """TIMESCALEDB_CONNECT_TIMEOUT=0.5 under a 6 s deadline: a black hole is cut after ~0.5 s, and the error
    says which setting cut it (it used to be shown in the manifest and ignored: 4.3 s with 1 and --timeout 5)."""
    with BlackHole() as hole:
        s = TimescaleSettings(configured=True, backend="postgresql", url_source_key=None, host="127.0.0.1",
                              port=hole.port, connect_timeout=0.5)
        result, wall = await run_once(TimescaleProbe(s), 6.0)
    assert_failed(result, "timeout", f"127.0.0.1:{hole.port}", "timed out after 0.5 s", "connect_timeout")
    assert result.phases["connect"] is None
    assert wall < 6.0 / 2, wall  # relative: without the setting asyncpg waits 85% of the deadline
    await assert_no_stray_tasks()


async def test_unknown_host_is_dns() -> None:
    """A host name the resolver does not know (injected): down/dns in the resolve phase, naming the host and
    what to check; nothing is connected to."""
    s = TimescaleSettings(
        configured=True, backend="postgresql", url_source_key=None, host="nonexistent.invalid"
    )
    resolver = UnknownNames()
    with use_resolver(resolver):
        result, wall = await run_once(TimescaleProbe(s), T)
    assert resolver.asked == [("nonexistent.invalid", 5432)]
    assert_failed(result, "dns", "cannot resolve host 'nonexistent.invalid' (Name or service not known)",
                  "check the host name and DNS")
    assert result.phases == {"resolve": None, "connect": None, "query": None}
    assert wall < T + HANG_GUARD


@pytest.fixture
def pg_one_slot() -> Iterator[PostgresServer]:
    """A PostgreSQL with one connection slot for ordinary roles (max_connections 3, 2 kept for superusers)."""
    yield from _server_fixture(name="pg-one-slot",
                               conf={"max_connections": "3", "superuser_reserved_connections": "2"})


async def test_no_free_connection_slot_is_refused_not_auth(pg_one_slot: PostgresServer) -> None:
    """Every slot taken (SQLSTATE 53300, "remaining connection slots are reserved ..."): `refused` (retryable,
    the server is full), not `auth` — the credentials are fine, as the probe holding the slot shows."""
    holder = TimescaleProbe(pg_settings(pg_one_slot))
    try:
        held, _ = await run_once(holder, 5.0, close=False)
        assert held.status is Status.OK, held
        result, _ = await run_once(TimescaleProbe(pg_settings(pg_one_slot)), 5.0)
    finally:
        await holder.aclose()
    assert_failed(result, "refused", f"127.0.0.1:{pg_one_slot.port} has no free connection slots",
                  "connection slots are reserved")
    assert result.retryable is True
    assert await server_connections(pg_one_slot) == 0  # the holder's backend exits after its close returned
    again, _ = await run_once(TimescaleProbe(pg_settings(pg_one_slot)), 5.0)  # the slot is free again
    assert again.status is Status.OK, again


# ---------------------------------------------------------------------------------------- frozen server


async def test_frozen_server_times_out_and_leaves_nothing(pg_server: PostgresServer) -> None:
    """SIGSTOPped server: a cold check times out; after SIGCONT no connection lingers and a check is ok."""
    probe = TimescaleProbe(pg_settings(pg_server))
    with pg_server.frozen():
        result, wall = await run_once(probe, T)
    assert_failed(result, "timeout", f"127.0.0.1:{pg_server.port}")
    assert wall < T + HANG_GUARD
    assert await server_connections(pg_server, stable=0.3) == 0
    later, _ = await run_once(probe, 5.0)
    assert later.status is Status.OK, later
    assert await server_connections(pg_server) == 0
    await assert_no_stray_tasks()


async def test_close_to_a_frozen_server_ends_within_the_budget_and_leaves_no_socket(pg_server: PostgresServer) -> None:
    """Frozen after a good check: the polite close (Terminate, then wait for the server to hang up) gets no
    answer; within the owner's close budget the connection is terminated, and no socket of ours stays open."""
    probe = TimescaleProbe(pg_settings(pg_server))
    first, _ = await run_once(probe, 5.0, close=False)
    assert first.status is Status.OK
    assert client_connections(pg_server.port) == 1
    with pg_server.frozen():
        with anyio.move_on_after(CLOSE_BUDGET, shield=True):  # what the owner (supervisor) gives
            await probe.aclose()
        for _ in range(25):  # an aborted transport closes its socket on the next loop turns
            if client_connections(pg_server.port) == 0:
                break
            await anyio.sleep(0.02)
        assert client_connections(pg_server.port) == 0
    assert await server_connections(pg_server, stable=0.3) == 0  # the backend left once thawed


async def test_frozen_mid_run_with_warm_connection(pg_server: PostgresServer) -> None:
    """Frozen under a warm connection: the query times out, the connection is dropped, then it recovers."""
    s = pg_settings(pg_server)
    probe = TimescaleProbe(s)
    try:
        first, _ = await run_once(probe, 5.0, close=False)
        assert first.status is Status.OK
        assert await server_connections(pg_server, s.application_name, expect=1) == 1
        with pg_server.frozen():
            result, wall = await run_once(probe, T, close=False)
        assert_failed(result, "timeout", "check query")
        assert result.phases["query"] is None
        assert result.details["reused_connection"] is True
        assert wall < T + HANG_GUARD
        assert await server_connections(pg_server, stable=0.3) == 0  # the dropped backend left on thaw
        again, _ = await run_once(probe, 5.0, close=False)
        assert again.status is Status.OK
        assert again.details["reused_connection"] is False
    finally:
        await probe.aclose()
    assert await server_connections(pg_server) == 0
    await assert_no_stray_tasks()


async def test_deadline_cancel_during_connect_leaves_nothing(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the supervisor's deadline (not asyncpg's timeout) cuts a connect short, no backend survives."""
    # Give asyncpg a far-away timeout so the cancel scope is what fires, mid-connect.
    monkeypatch.setattr(timescale_module, "budget", lambda: 30.0)
    probe = TimescaleProbe(pg_settings(pg_server))
    with pg_server.frozen():
        result, wall = await run_once(probe, T)
    assert_failed(result, "timeout", "during connect")
    assert wall < T + HANG_GUARD
    assert await server_connections(pg_server, stable=0.3) == 0
    await assert_no_stray_tasks()


@pytest.mark.parametrize("who", ["asyncpg-timeout", "deadline-cancel"])
async def test_slow_handshake_cut_short_leaves_no_backend(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, who: str
) -> None:
    """A handshake slowed by a 0.3 s/chunk proxy, cut mid-auth (asyncpg or deadline), leaves no backend."""
    if who == "deadline-cancel":
        monkeypatch.setattr(timescale_module, "budget", lambda: 30.0)
    with DelayProxy(pg_server.port, 0.3) as proxy:
        probe = TimescaleProbe(pg_settings(pg_server, port=proxy.port))
        result, wall = await run_once(probe, T)
        assert_failed(result, "timeout", f"127.0.0.1:{proxy.port}")
        assert wall < T + HANG_GUARD
        assert await server_connections(pg_server, stable=0.3) == 0
    await assert_no_stray_tasks()


# ------------------------------------------------------------------------------------------- auth, names


@pytest.mark.parametrize("user", ["probe", "nosuchuser"])
async def test_wrong_password_or_unknown_user_is_auth(pg_server: PostgresServer, user: str) -> None:
    """Wrong password / unknown role: down/auth naming the user, never echoing the password."""
    wrong = "wrong-Pa55word"
    s = pg_settings(pg_server, user=user if user != "probe" else pg_server.user, password=Secret(wrong))
    result, wall = await run_once(TimescaleProbe(s), T)
    assert_failed(result, "auth", s.user or "", "password", f"127.0.0.1:{pg_server.port}")
    assert wrong not in (result.error or "")
    assert wall < T + HANG_GUARD
    assert await server_connections(pg_server) == 0


async def test_missing_database_is_not_found(pg_server: PostgresServer) -> None:
    """A database that does not exist: down/not_found naming it."""
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_server, database="nosuchdb")), T)
    assert_failed(result, "not_found", "'nosuchdb'", "does not exist")


async def test_not_accepting_connections_is_starting(pg_starting_server: PostgresServer) -> None:
    """SQLSTATE 57P03 (here: a standby with hot_standby=off) is status starting, retryable, not down."""
    result, wall = await run_once(TimescaleProbe(pg_settings(pg_starting_server, user="postgres")), T)
    assert_failed(result, "starting", "not accepting connections", status=Status.STARTING)
    assert result.retryable is True
    assert result.healthy is False
    assert wall < T + HANG_GUARD


# ------------------------------------------------------------------------------------------------- TLS


async def test_tls_required_by_server_but_disabled(pg_tls_server: PostgresServer) -> None:
    """hostssl-only server and sslmode=disable: tls (PostgreSQL says "no pg_hba entry ... no encryption")."""
    result, wall = await run_once(TimescaleProbe(pg_settings(pg_tls_server, sslmode="disable")), T)
    assert_failed(result, "tls", "requires TLS", "sslmode=require", f"127.0.0.1:{pg_tls_server.port}")
    assert wall < T + HANG_GUARD


async def test_tls_required_by_client_but_not_offered(pg_server: PostgresServer) -> None:
    """sslmode=require against a server with ssl=off: tls, saying the server does not offer TLS."""
    result, wall = await run_once(TimescaleProbe(pg_settings(pg_server, sslmode="require")), T)
    assert_failed(result, "tls", "does not offer TLS", "sslmode=require")
    assert wall < T + HANG_GUARD
    assert await server_connections(pg_server) == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_verify_full_with_right_ca_is_ok(
    pg_tls_server: PostgresServer, host: str, loopback_hosts: Any
) -> None:
    """sslmode=verify-full with the CA that signed the server cert: ok over TLS (IP and DNS SAN). The name
    ``localhost`` comes from a stub resolver (127.0.0.1), not from the machine's."""
    loopback_hosts({"localhost": "127.0.0.1"})
    assert pg_tls_server.tls is not None
    s = pg_settings(pg_tls_server, host=host, sslmode="verify-full", sslrootcert=str(pg_tls_server.tls.ca))
    result, _ = await run_once(TimescaleProbe(s), 5.0)
    assert result.status is Status.OK, result
    assert result.details["tls"] is True
    assert await server_connections(pg_tls_server) == 0


async def test_prefer_uses_tls_when_offered(pg_tls_server: PostgresServer) -> None:
    """The default sslmode (prefer) negotiates TLS with a TLS server, and details say so."""
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_tls_server)), 5.0)
    assert result.status is Status.OK, result
    assert result.details["tls"] is True


async def test_ca_mismatch_is_tls(pg_tls_server: PostgresServer) -> None:
    """verify-full trusting an unrelated CA: down/tls saying the certificate is not trusted."""
    assert pg_tls_server.tls is not None
    s = pg_settings(pg_tls_server, sslmode="verify-full", sslrootcert=str(pg_tls_server.tls.other_ca))
    result, wall = await run_once(TimescaleProbe(s), T)
    assert_failed(result, "tls", "not trusted", f"127.0.0.1:{pg_tls_server.port}")
    assert wall < T + HANG_GUARD
    assert await server_connections(pg_tls_server) == 0


async def test_missing_ca_file_is_tls(pg_tls_server: PostgresServer, tmp_path: Path) -> None:
    """A sslrootcert path that does not exist: down/tls naming the file, before any connection."""
    missing = tmp_path / "nope.crt"
    s = pg_settings(pg_tls_server, sslmode="verify-ca", sslrootcert=str(missing))
    result, _ = await run_once(TimescaleProbe(s), T)
    assert_failed(result, "tls", str(missing))


@pytest.mark.parametrize("sslmode", ["verify-full", "require", "prefer", "allow"])
async def test_client_certificate_authenticates(pg_tls_server: PostgresServer, sslmode: str) -> None:
    """sslcert/sslkey reach the server in every TLS mode: cert auth logs in; without them: refused (auth)."""
    tls = pg_tls_server.tls
    assert tls is not None
    common = {"user": CERT_USER, "password": None, "sslmode": sslmode, "sslrootcert": str(tls.ca)}
    with_cert = pg_settings(
        pg_tls_server, sslcert=str(tls.client_cert), sslkey=str(tls.client_key), **common
    )
    result, _ = await run_once(TimescaleProbe(with_cert), 5.0)
    assert result.status is Status.OK, result
    without, _ = await run_once(TimescaleProbe(pg_settings(pg_tls_server, **common)), T)
    assert_failed(without, "auth", CERT_USER)


@pytest.mark.parametrize("sslmode", ["require", "prefer", "allow"])
async def test_failed_tls_login_leaves_no_socket_behind(pg_tls_server: PostgresServer, sslmode: str) -> None:
    """A login refused over TLS: asyncpg starts a polite TLS shutdown of that connection and forgets it (a
    close_notify round trip nobody waits for: the socket outlived the test's event loop, a ResourceWarning).
    The probe aborts it: when the check returns, the process holds no more sockets than before (counted by
    file descriptor: a socket the server reset is no longer in the TCP table)."""
    tls = pg_tls_server.tls
    assert tls is not None
    s = pg_settings(pg_tls_server, user=CERT_USER, password=None, sslmode=sslmode, sslrootcert=str(tls.ca))
    probe = TimescaleProbe(s)
    before = own_socket_inodes()
    try:
        result, _ = await run_once(probe, 5.0, close=False)
        assert own_socket_inodes() - before == set()
    finally:
        await probe.aclose()
    assert_failed(result, "auth", CERT_USER)


async def test_allow_falls_back_to_tls_when_the_server_requires_it(pg_tls_server: PostgresServer) -> None:
    """sslmode=allow tries plaintext first; a hostssl-only server refuses it, the retry over TLS is ok."""
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_tls_server, sslmode="allow")), 5.0)
    assert result.status is Status.OK, result
    assert result.details["tls"] is True
    assert await server_connections(pg_tls_server) == 0


async def test_prefer_falls_back_to_plaintext_when_tls_is_not_offered(pg_server: PostgresServer) -> None:
    """sslmode=prefer against a server without TLS: ok in plaintext, one connection left over: none."""
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_server, sslmode="prefer")), 5.0)
    assert result.status is Status.OK, result
    assert result.details["tls"] is False
    assert await server_connections(pg_server) == 0


# ----------------------------------------------------------------------- only our settings decide (env)


def _pgpass(path: Path, password: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"*:*:*:*:{password}\n")
    path.chmod(0o600)
    return path


async def test_pgpassword_and_pgpass_are_not_read(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No password in settings: PGPASSWORD, PGPASSFILE and ~/.pgpass hold the right one, yet auth fails."""
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    monkeypatch.setenv("PGPASSFILE", str(_pgpass(tmp_path / "passfile", pg_server.password)))
    _pgpass(tmp_path / "home" / ".pgpass", pg_server.password)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_server, password=None)), T)
    assert_failed(result, "auth", "none is configured", pg_server.user)
    assert pg_server.password not in (result.error or "")
    assert await server_connections(pg_server) == 0


async def test_pguser_and_user_variables_do_not_choose_the_user(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No user in settings: the OS account is used (reported in details), not PGUSER/USER/LOGNAME."""
    for name in ("PGUSER", "USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, pg_server.user)
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    assert timescale_module.os_user() != pg_server.user  # else this test could not tell them apart
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_server, user=None, password=None)), T)
    assert_failed(result, "auth", repr(timescale_module.os_user()))
    assert result.details["user_from_os"] == timescale_module.os_user()


async def test_tls_environment_is_not_read(
    pg_tls_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """PGSSL* variables and ~/.postgresql files that would break TLS are ignored in every TLS mode."""
    home = tmp_path / "home"
    (home / ".postgresql").mkdir(parents=True)
    for name in ("postgresql.crt", "postgresql.key", "root.crt", "root.crl"):
        (home / ".postgresql" / name).write_text("not a PEM file\n")
    monkeypatch.setenv("HOME", str(home))
    missing = str(tmp_path / "missing.pem")
    for name in ("PGSSLCERT", "PGSSLKEY", "PGSSLROOTCERT", "PGSSLCRL"):
        monkeypatch.setenv(name, missing)
    monkeypatch.setenv("PGSSLMODE", "disable")  # would fail against this hostssl-only server
    monkeypatch.setenv("PGSSLMINPROTOCOLVERSION", "no-such-version")
    monkeypatch.setenv("PGSSLNEGOTIATION", "direct")
    assert pg_tls_server.tls is not None
    for sslmode in ("allow", "prefer", "require", "verify-full"):
        s = pg_settings(pg_tls_server, sslmode=sslmode, sslrootcert=str(pg_tls_server.tls.ca))
        result, _ = await run_once(TimescaleProbe(s), 5.0)
        assert result.status is Status.OK, (sslmode, result)
        assert result.details["tls"] is True
    assert await server_connections(pg_tls_server) == 0


def test_os_user_ignores_user_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default user is the account's passwd name, whatever LOGNAME/USER say."""
    import pwd

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "someone-else")
    assert timescale_module.os_user() == pwd.getpwuid(os.getuid()).pw_name


# ------------------------------------------------------------------------------------------ warm reuse


async def test_warm_probe_keeps_one_connection_and_survives_restart(pg_server: PostgresServer) -> None:
    """20 checks on one probe share one server connection; after a restart the next check reconnects."""
    s = pg_settings(pg_server)
    probe = TimescaleProbe(s)
    try:
        for i in range(20):
            result, _ = await run_once(probe, 5.0, close=False)
            assert result.status is Status.OK, result
            assert result.details["reused_connection"] is (i > 0)
            if i > 0:
                assert result.phases["connect"] is None
                assert result.phases["query"] is not None
        assert await server_connections(pg_server, s.application_name, expect=1) == 1
        assert await server_connections(pg_server, expect=1) == 1
        await anyio.to_thread.run_sync(pg_server.restart)
        result, _ = await run_once(probe, 5.0, close=False)
        assert result.status is Status.OK, result
        assert result.details["reused_connection"] is False
        assert await server_connections(pg_server, s.application_name, expect=1) == 1
    finally:
        await probe.aclose()
        await probe.aclose()  # idempotent
    assert await server_connections(pg_server) == 0
    await assert_no_stray_tasks()


async def test_restart_between_checks_without_await_reconnects_once(pg_server: PostgresServer) -> None:
    """A restart the loop has not seen (no await between): the reused connection fails, one reconnect is ok."""
    s = pg_settings(pg_server)
    probe = TimescaleProbe(s)
    try:
        first, _ = await run_once(probe, 5.0, close=False)
        assert first.status is Status.OK, first
        pg_server.restart()  # blocking on purpose: the event loop gets no turn to notice the dead socket
        second, wall = await run_once(probe, 5.0, close=False)
        assert second.status is Status.OK, second
        assert second.details["reconnected"] is True
        assert second.details["reused_connection"] is False
        assert second.phases["connect"] is not None
        assert wall < 5.0 + HANG_GUARD
        assert await server_connections(pg_server, s.application_name, expect=1) == 1
    finally:
        await probe.aclose()
    assert await server_connections(pg_server) == 0
    await assert_no_stray_tasks()


@pytest.mark.parametrize("drop", ["reset", "expire"])
async def test_warm_connection_reset_by_a_middlebox_reconnects_once(pg_server: PostgresServer, drop: str) -> None:
    """A warm connection a middlebox RSTs now or on the next send (idle timeout): one reconnect, then ok."""
    with ResetProxy(pg_server.port) as proxy:
        s = pg_settings(pg_server, port=proxy.port)
        probe = TimescaleProbe(s)
        try:
            first, _ = await run_once(probe, 5.0, close=False)
            assert first.status is Status.OK, first
            # reset: the loop may see the RST before the next check; expire: only the next send meets it.
            assert (proxy.reset_clients() if drop == "reset" else proxy.expire_clients()) == 1
            second, wall = await run_once(probe, 5.0, close=False)
            assert second.status is Status.OK, second
            # asyncpg notices an RST it has read and closes the connection itself: no retry needed then.
            assert second.details.get("reconnected", drop == "reset") is True, (second, proxy.resets)
            assert second.details["reused_connection"] is False
            assert wall < 5.0 + HANG_GUARD
            third, _ = await run_once(probe, 5.0, close=False)
            assert third.details["reused_connection"] is True, third
            assert "reconnected" not in third.details
        finally:
            await probe.aclose()
    assert await server_connections(pg_server) == 0
    await assert_no_stray_tasks()


async def test_aclose_on_dead_server_does_not_raise(tmp_path: Path) -> None:
    """aclose() of a warm probe whose server was stopped returns quietly and promptly."""
    with PostgresServer.start(name="pg-doomed") as pg:
        probe = TimescaleProbe(pg_settings(pg))
        result, _ = await run_once(probe, 5.0, close=False)
        assert result.status is Status.OK
        await anyio.to_thread.run_sync(pg.stop)
        started = time.monotonic()
        await probe.aclose()
        assert time.monotonic() - started < 2.0
        down, _ = await run_once(probe, T)
        assert_failed(down, "refused")
    await assert_no_stray_tasks()


# ---------------------------------------------------------------------------------------------- SQLite


def sqlite_settings(path: Path) -> TimescaleSettings:
    return TimescaleSettings(configured=True, backend="sqlite", url_source_key=None, sqlite_path=str(path))


async def test_sqlite_rehearsal_is_degraded(tmp_path: Path) -> None:
    """An existing SQLite file answers SELECT 1 read-only; status degraded, saying it is only a rehearsal."""
    db = tmp_path / "timescale_sim.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    conn.close()
    before = db.stat().st_mtime_ns
    result, _ = await run_once(TimescaleProbe(sqlite_settings(db)), T)
    assert_failed(result, "rehearsal", "not TimescaleDB", str(db), status=Status.DEGRADED)
    assert result.endpoint == str(db)
    assert result.details["read_only"] is True
    assert "path" not in result.details  # the manifest's url already names it
    assert result.phases["query"] is not None
    assert db.stat().st_mtime_ns == before
    assert os.listdir(tmp_path) == ["timescale_sim.db"]  # no journal/wal left behind
    await assert_no_stray_tasks()


async def test_sqlite_missing_file_is_not_found_and_not_created(tmp_path: Path) -> None:
    """A missing SQLite file: down/not_found naming the path, and the probe does not create it."""
    db = tmp_path / "data" / "timescale_sim.db"
    result, wall = await run_once(TimescaleProbe(sqlite_settings(db)), T)
    assert_failed(result, "not_found", str(db))
    assert not db.exists()
    assert not db.parent.exists()
    assert wall < T + HANG_GUARD


async def test_sqlite_junk_file_is_protocol(tmp_path: Path) -> None:
    """A file that is not an SQLite database: down/protocol naming it."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    result, _ = await run_once(TimescaleProbe(sqlite_settings(junk)), T)
    assert_failed(result, "protocol", str(junk), "not an SQLite database")


@pytest.mark.parametrize("kind", ["fifo", "directory"])
async def test_sqlite_non_regular_file_is_refused_without_opening(tmp_path: Path, kind: str) -> None:
    """A FIFO or directory as the rehearsal file: down/protocol at once, never opened (a FIFO would block)."""
    target = tmp_path / "rehearsal.db"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    result, wall = await run_once(TimescaleProbe(sqlite_settings(target)), T)
    assert_failed(result, "protocol", str(target), "not an SQLite database file", "FIFO" if kind == "fifo" else kind)
    assert wall < T + HANG_GUARD
    await assert_no_stray_tasks()


async def test_sqlite_missing_relative_path_names_absolute_path_and_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:///relative (three slashes) that is missing: the error shows the absolute path tried and the fix."""
    monkeypatch.chdir(tmp_path)
    result, _ = await run_once(TimescaleProbe(sqlite_settings(Path("data/sim.db"))), T)
    assert_failed(result, "not_found", str(tmp_path / "data" / "sim.db"), "absolute paths need sqlite:////abs/path")
    absolute, _ = await run_once(TimescaleProbe(sqlite_settings(tmp_path / "abs.db")), T)
    assert_failed(absolute, "not_found", str(tmp_path / "abs.db"))
    assert "sqlite:////" not in (absolute.error or "")


def test_stuck_sqlite_call_does_not_hold_the_process_exit(tmp_path: Path) -> None:
    """A SQLite call that never returns is abandoned at the deadline and the CLI process still exits."""
    db = tmp_path / "sim.db"
    db.write_bytes(b"")
    code = (
        "import sys, threading\n"
        "from ingest_probe.connectors.timescale import sqlite\n"
        "sqlite.select_one = lambda *args: threading.Event().wait()  # a hung mount\n"
        "from ingest_probe.commands.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    args = ["report", "--no-env", "--connectivity", "--timeout", "1", "--extra", f"TIMESCALEDB_URL=sqlite:///{db}"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "timescale down [timeout]" in proc.stderr


async def test_a_refused_tls_attempt_leaves_no_socket_behind(pg_tls_server: PostgresServer) -> None:
    """The server refuses a TLS login (no client certificate) and is slow to hang up (a 0.3 s proxy): when the
    check returns, no socket of ours is left open waiting for the TLS close (the loop may close right away)."""
    tls = pg_tls_server.tls
    assert tls is not None
    with DelayProxy(pg_tls_server.port, 0.3) as proxy:
        s = pg_settings(pg_tls_server, user=CERT_USER, password=None, sslmode="verify-full",
                        sslrootcert=str(tls.ca), port=proxy.port)
        result, _ = await run_once(TimescaleProbe(s), 5.0)
        assert_failed(result, "auth", CERT_USER)
        assert client_connections(proxy.port) == 0


@pytest.mark.live
async def test_a_connect_cancelled_right_after_the_tcp_connect_leaves_no_unretrieved_future(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel (SIGTERM's, a deadline's) landing between the TCP connect and asyncpg's TLS negotiation: asyncpg
    never awaits the negotiation's future, whose ConnectionError asyncio would then log as "Future exception
    was never retrieved" (seen on a CLI run's stderr after SIGTERM). The probe retrieves it."""
    import asyncio
    import gc

    from asyncpg import connect_utils

    from ingest_probe.results import Recorder

    seen: list[str] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: seen.append(ctx["message"]))
    task = asyncio.current_task()
    assert task is not None
    made = connect_utils.TLSUpgradeProto.connection_made

    def cancel_now(self: Any, transport: Any) -> None:
        made(self, transport)
        task.cancel()  # what a signal's cancel does at that moment

    monkeypatch.setattr(connect_utils.TLSUpgradeProto, "connection_made", cancel_now)
    probe = TimescaleProbe(pg_settings(pg_server, sslmode="prefer"))
    try:
        with pytest.raises(asyncio.CancelledError):
            await probe.check(Recorder())
        task.uncancel()
    finally:
        await probe.aclose()
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    await asyncio.sleep(0)
    assert seen == []
