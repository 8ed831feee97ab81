"""The pytest side of the loopback guard: installs it for the session and its subprocesses, fails the test
during which anything tried to leave loopback, and offers ``loopback_hosts`` (a stub resolver).

Loaded by ``tests/conftest.py`` (``pytest_plugins``); ``-p loopback_plugin`` loads it into any pytest run
that has this directory on ``sys.path``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import loopback_guard
import pytest

GUARD_DIR = Path(__file__).resolve().parent

# Installed when the plugin is imported: before any fixture starts a server or a test opens a socket.
loopback_guard.install()
_TMP = tempfile.mkdtemp(prefix="ingest-probe-guard-")
GUARD_FILE = os.path.join(_TMP, "violations")
# Every Python subprocess a test spawns inherits both: sitecustomize (in GUARD_DIR) installs the guard
# there, and it appends what it refused to GUARD_FILE.
os.environ[loopback_guard.ENV_FILE] = GUARD_FILE
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))


def violations() -> list[str]:
    """What the guard refused since the last call, in this process and in its child processes."""
    return loopback_guard.take() + loopback_guard.take_from_file(GUARD_FILE)


def _fail_on_violations(nodeid: str) -> None:
    found = violations()
    if found:
        pytest.fail(f"{nodeid} tried to leave loopback (refused by tests/guard/loopback_guard.py):\n  "
                    + "\n  ".join(found), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """The test body: a violation fails the test itself (a test that raised keeps its own error; the fixture
    below then reports the violation)."""
    result = yield
    _fail_on_violations(item.nodeid)
    return result


@pytest.fixture(autouse=True)
def _loopback_only(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test during which anything tried to leave loopback (its fixtures included), naming the address."""
    _fail_on_violations(request.node.nodeid)  # set-up of the fixtures instantiated before this one
    yield
    _fail_on_violations(request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Violations after the last test (session fixtures' teardown) fail the run too."""
    found = violations()
    if found:
        sys.stderr.write("loopback guard: refused after the last test:\n  " + "\n  ".join(found) + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture
def loopback_hosts(monkeypatch: pytest.MonkeyPatch) -> Callable[[Mapping[str, str]], None]:
    """A stub resolver for names a test needs (``loopback_hosts({"localhost": "127.0.0.1"})``):
    ``socket.getaddrinfo`` answers them from the mapping, so the system's resolver is never asked; any
    other name fails as unknown (EAI_NONAME). IP literals go on to the real call (and the guard)."""
    real = socket.getaddrinfo
    names: dict[str, str] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else host
        if text in names:
            return real(names[text], port, *args, **kwargs)
        if text is None or loopback_guard.loopback_ip(text) is not None:
            return real(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"{text!r} is not in the test's loopback_hosts")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names.update
