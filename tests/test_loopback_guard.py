"""The suite's loopback guard (tests/guard/loopback_guard.py) refuses and records what would leave loopback,
in this process and in the Python subprocesses tests spawn.

192.0.2.1 (TEST-NET-1, RFC 5737) is used only here, where the guard refuses it before the call runs: no
packet is sent, no name is looked up.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import loopback_guard
import pytest
from live.net import BlackHole
from loopback_plugin import GUARD_FILE
from loopback_plugin import violations as guard_violations

OFF_LOOPBACK = "192.0.2.1"


def test_connect_off_loopback_is_refused_and_recorded() -> None:
    """connect() to a TEST-NET address raises at the call site and is recorded with the address."""
    with socket.socket() as s, pytest.raises(loopback_guard.LoopbackViolation, match="192.0.2.1:9"):
        s.connect((OFF_LOOPBACK, 9))
    [found] = guard_violations()  # taken: this test's own violation must not fail it
    assert "socket.connect to 192.0.2.1:9" in found


def test_swallowed_violation_fails_the_test_that_did_it(tmp_path: Path) -> None:
    """In a pytest run with the plugin, a test that swallows the refusal (as a probe maps it into a result)
    still fails, naming the address; the test beside it, on loopback only, passes."""
    (tmp_path / "test_inner.py").write_text(
        "import contextlib, socket\n"
        "def test_swallows():\n"
        "    with socket.socket() as s, contextlib.suppress(OSError):\n"
        f"        s.connect(({OFF_LOOPBACK!r}, 9))\n"
        "def test_loopback_only():\n"
        "    with socket.socket() as s:\n"
        "        s.bind(('127.0.0.1', 0)); s.listen(); socket.create_connection(s.getsockname()).close()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "loopback_plugin", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout
    assert "test_inner.py::test_swallows tried to leave loopback" in proc.stdout
    assert f"socket.connect to {OFF_LOOPBACK}:9" in proc.stdout
    assert loopback_guard.take_from_file(GUARD_FILE) == []  # the inner run kept its own record


INET, INET6, UNIX, DGRAM = socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.SOCK_DGRAM


def verdict(event: str, args: tuple[object, ...]) -> str | None:
    """The guard's verdict on ``event``; a ``(family, type)`` first argument becomes a real (unused) socket."""
    if not (args and isinstance(args[0], tuple) and event.startswith(("socket.connect", "socket.send"))):
        return loopback_guard.violation(event, args)
    family, kind = args[0]
    with socket.socket(family, kind) as sock:
        return loopback_guard.violation(event, (sock, *args[1:]))


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("socket.getaddrinfo", ("example.com", 80, 0, 0, 0)),
        ("socket.getaddrinfo", ("localhost", 80, 0, 0, 0)),
        ("socket.getaddrinfo", (b"no-such-host.invalid", None, 0, 0, 0)),
        ("socket.getaddrinfo", ("10.0.0.1", 80, 0, 0, 0)),
        ("socket.gethostbyname", ("localhost",)),
        ("socket.gethostbyaddr", ("192.0.2.1",)),
        ("socket.getnameinfo", (("8.8.8.8", 53), 0)),
        ("socket.sendto", ((INET, DGRAM), ("192.0.2.1", 53))),
        ("socket.sendmsg", ((INET6, DGRAM), ("2001:db8::1", 53, 0, 0))),
        ("socket.connect", ((INET, socket.SOCK_STREAM), ("localhost", 5432))),
        ("socket.connect", ((INET6, socket.SOCK_STREAM), ("::ffff:192.0.2.1", 1, 0, 0))),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_verdict_refuses_names_and_remote_addresses(event: str, args: tuple[object, ...]) -> None:
    """Names (localhost included) and non-loopback addresses are violations, for every watched event."""
    assert verdict(event, args) is not None


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("socket.getaddrinfo", (None, 0, 0, 0, 0)),
        ("socket.getaddrinfo", ("127.0.0.1", 80, 0, 0, 0)),
        ("socket.getaddrinfo", (b"::1", 80, 0, 0, 0)),
        ("socket.getaddrinfo", ("127.255.0.9", 80, 0, 0, 0)),
        ("socket.gethostbyaddr", ("127.0.0.1",)),
        ("socket.getnameinfo", (("::1", 5432, 0, 0), 0)),
        ("socket.connect", ((INET, socket.SOCK_STREAM), ("127.0.0.1", 5432))),
        ("socket.connect", ((INET6, socket.SOCK_STREAM), ("::1", 5432, 0, 0))),
        ("socket.connect", ((INET6, socket.SOCK_STREAM), ("::ffff:127.0.0.1", 5432, 0, 0))),
        ("socket.connect", ((UNIX, socket.SOCK_STREAM), "/tmp/.s.PGSQL.5432")),
        ("socket.sendto", ((INET, DGRAM), ("127.0.0.53", 53))),
        ("socket.sendmsg", ((INET, DGRAM), None)),
        ("socket.bind", (("ignored",), ("0.0.0.0", 0))),  # not watched: binding sends nothing
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_verdict_allows_loopback_unix_and_passive(event: str, args: tuple[object, ...]) -> None:
    """Loopback literals (v4, v6, v4-mapped), unix sockets and passive lookups pass."""
    assert verdict(event, args) is None


def test_name_lookup_is_refused_before_the_resolver_is_asked() -> None:
    """getaddrinfo of a name raises the guard's error, not a resolver's (the system resolver never ran)."""
    with pytest.raises(loopback_guard.LoopbackViolation, match="example.com"):
        socket.getaddrinfo("example.com", 443)
    assert len(guard_violations()) == 1


async def test_asyncio_connection_off_loopback_is_refused() -> None:
    """asyncio.open_connection to a TEST-NET address fails with the guard's error; loopback still works."""
    with pytest.raises(loopback_guard.LoopbackViolation):
        await asyncio.open_connection(OFF_LOOPBACK, 9)
    assert [v for v in guard_violations() if "192.0.2.1:9" in v]
    with BlackHole() as hole:
        _, writer = await asyncio.open_connection("127.0.0.1", hole.port)
        writer.close()
        await writer.wait_closed()
    assert guard_violations() == []


def test_subprocess_is_guarded_and_its_violation_recorded_for_the_fixture() -> None:
    """A `python -c` child refuses a TEST-NET connect and a name lookup at the call site, and the violations
    reach the parent through the guard file, with the child's pid; loopback still connects."""
    with BlackHole() as hole:
        code = (
            "import json, os, socket\n"
            "out = {'pid': os.getpid()}\n"
            "for name, call in [('connect', lambda: socket.create_connection(('192.0.2.1', 9), timeout=5)),\n"
            "                   ('lookup', lambda: socket.getaddrinfo('example.com', 443)),\n"
            f"                   ('loopback', lambda: socket.create_connection(('127.0.0.1', {hole.port})))]:\n"
            "    try:\n"
            "        call().close() if name != 'lookup' else call()\n"
            "        out[name] = 'ok'\n"
            "    except OSError as exc:\n"
            "        out[name] = type(exc).__name__\n"
            "print(json.dumps(out))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"pid": out["pid"], "connect": "LoopbackViolation", "lookup": "LoopbackViolation", "loopback": "ok"}
    found = loopback_guard.take_from_file(GUARD_FILE)
    assert len(found) == 2, found
    assert f"pid {out['pid']}: socket.getaddrinfo('192.0.2.1') (not a loopback address)" in found[0]
    assert "socket.getaddrinfo('example.com')" in found[1]


def test_cli_subprocess_probing_off_loopback_is_refused() -> None:
    """`python -m ingest_probe` probing a TEST-NET Redis: the probe reports the refusal (it swallowed it into
    its result) and the guard file still names the address."""
    proc = subprocess.run(
        [sys.executable, "-m", "ingest_probe", "report", "--no-env", "--connectivity", "--timeout", "2",
         "--extra", f"REDIS_URL=redis://{OFF_LOOPBACK}:9/0"],
        capture_output=True, text=True, timeout=30,
    )
    redis = json.loads(proc.stdout)["connectivity"][1]
    assert (proc.returncode, redis["status"]) == (2, "down"), proc.stderr
    found = loopback_guard.take_from_file(GUARD_FILE)
    assert found
    assert all("192.0.2.1:9" in line for line in found), found
