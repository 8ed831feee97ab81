"""The suite's network guard: an audit hook that lets tests reach loopback only, and records every attempt past it.

Watched (``sys.addaudithook``), in the pytest process and — through ``sitecustomize`` in this directory, which
the conftest puts on ``PYTHONPATH`` — in every Python subprocess the tests spawn:

- ``socket.connect`` (and ``connect_ex``), ``socket.sendto``, ``socket.sendmsg`` (UDP datagrams): allowed to
  AF_UNIX (and AF_NETLINK, the kernel), to IPv4 127.0.0.0/8, to IPv6 ``::1`` and to v4-mapped loopback
  (``::ffff:127.x.y.z``). A datagram to a connected socket (no address) passed ``connect`` already.
- ``socket.getaddrinfo``: allowed for ``None`` (a passive lookup) and for a loopback IP *literal*; any name is
  refused, so no test depends on the machine's resolver. ``socket.gethostbyname``/``gethostbyname_ex``
  (one audit event) likewise; ``socket.gethostbyaddr`` and ``socket.getnameinfo`` (reverse lookups, which may
  ask DNS for a PTR record) only for loopback literals.

``localhost`` is refused like any other name (strict). Whether it resolves, and to what, is the machine's
``/etc/hosts`` and NSS configuration — a dependency on the machine's resolver the suite must not have. No
library path forces a name on us: the probes and the test servers connect to ``127.0.0.1``; the one test
that needs a *name* (certificate host name verification, ``verify-full`` against ``DNS:localhost``) maps it
to 127.0.0.1 with the ``loopback_hosts`` fixture, a stub resolver that never reaches the system's.

A violation is refused at the call site — the hook raises ``LoopbackViolation`` (a ``PermissionError``,
EPERM, what a local firewall gives) before the call runs, so nothing leaves the machine — and is recorded,
because a probe may swallow the exception into a result: in this process in a list (``take()``), in a
subprocess as one line appended to the file named by ``$INGEST_PROBE_TEST_GUARD_FILE``. The autouse fixture
in ``tests/conftest.py`` fails the test during which either was recorded, naming the address.

Not covered: non-Python children (postgres, redis-server, Tansu, openssl). The suite starts them itself,
bound to 127.0.0.1, and points them at nothing else.

This module imports nothing but ``sys`` and ``os`` at start-up: it loads into every child interpreter, and
tests count what a fresh interpreter imports.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

#: The file a child process appends its violations to, one line each.
ENV_FILE = "INGEST_PROBE_TEST_GUARD_FILE"

_lock = threading.Lock()
_violations: list[str] = []
_installed = False
#: Where ``record()`` appends (a child process); None in the pytest process, which keeps them in memory.
_record_file: str | None = None


class LoopbackViolation(PermissionError):
    """Raised at the call site of a connection or lookup that would leave loopback."""


def loopback_ip(text: object) -> bool | None:
    """True/False for an IP literal (str or bytes) on loopback or not; None when ``text`` is no IP literal."""
    import ipaddress

    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str):
        return None
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _where(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if isinstance(host, str) and ":" in host else f"{host}:{port}"
    return repr(address)


def _address(event: str, sock: Any, address: object) -> str | None:
    """Why ``event`` to ``address`` on ``sock`` is refused, or None when it stays on the machine."""
    import socket  # loaded already: a socket exists

    if address is None:  # sendmsg on a connected socket
        return None
    family = getattr(sock, "family", None)
    if family in (socket.AF_UNIX, getattr(socket, "AF_NETLINK", socket.AF_UNIX)):
        return None
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
        loopback = loopback_ip(address[0])
        if loopback:
            return None
        if loopback is None:
            return f"{event} to {_where(address)} (a host name, resolved by the system: use 127.0.0.1)"
        return f"{event} to {_where(address)}"
    return f"{event} to {address!r} (address family {family})"


def _lookup(event: str, host: object, *, passive_ok: bool) -> str | None:
    if host is None and passive_ok:
        return None
    loopback = loopback_ip(host)
    if loopback:
        return None
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if loopback is False:
        return f"{event}({host!r}) (not a loopback address)"
    return f"{event}({host!r}) (tests resolve no names: use 127.0.0.1, or the loopback_hosts fixture)"


def violation(event: str, args: tuple[Any, ...]) -> str | None:
    """The guard's verdict on one audit event: a description of the violation, or None (allowed/not ours)."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        return _address(event, args[0], args[1])
    if event == "socket.getaddrinfo":
        return _lookup(event, args[0], passive_ok=True)
    if event in ("socket.gethostbyname", "socket.gethostbyaddr"):
        return _lookup(event, args[0], passive_ok=False)
    if event == "socket.getnameinfo":
        sockaddr = args[0]
        host = sockaddr[0] if isinstance(sockaddr, tuple) and sockaddr else sockaddr
        return _lookup(event, host, passive_ok=False)
    return None


_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                     "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"})


def record(what: str) -> None:
    """Keep ``what`` for ``take()``; in a child process, append it to the guard file as well."""
    line = f"pid {os.getpid()}: {what}"
    with _lock:
        _violations.append(line)
    path = _record_file
    if path:
        # One write() of one short line with O_APPEND: lines of concurrent children never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line.replace("\n", " ") + "\n").encode())
        finally:
            os.close(fd)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _EVENTS:
        return
    what = violation(event, args)
    if what is None:
        return
    record(what)
    raise LoopbackViolation(f"loopback guard: {what} refused: tests talk to 127.0.0.0/8 and ::1 only")


def install(record_file: str | None = None) -> None:
    """Install the audit hook (once per process: an audit hook cannot be removed); a child process passes
    the file to append its violations to."""
    global _installed, _record_file
    _record_file = record_file
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


def take() -> list[str]:
    """The violations recorded in this process since the last call (and forget them)."""
    with _lock:
        found = list(_violations)
        _violations.clear()
    return found


def take_from_file(path: str) -> list[str]:
    """The violations child processes appended to ``path`` (the file is emptied)."""
    with _lock:
        try:
            with open(path, "r+") as f:
                lines = f.read().splitlines()
                f.seek(0)
                f.truncate()
        except FileNotFoundError:
            return []
    return [line for line in lines if line]
