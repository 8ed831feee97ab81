"""Throwaway real servers on loopback for the live tests, the demo and the benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``, as CI services set it, and as ``.ci/run`` does)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str) -> NoReturn:
    """A server binary the live tests need (postgres, redis-server, Tansu, openssl) is not there.

    Locally the test skips, saying why. In CI it fails: a machine without the binary must not turn the live
    tests into silent skips and a green run.
    """
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing server binary fails the run instead of skipping it)",
                    pytrace=False)
    pytest.skip(reason)


def stop_process(pid: int, *, timeout: float = 5.0) -> None:
    """SIGSTOP ``pid`` and return once every one of its threads is stopped.

    ``kill()`` only queues the signal: a thread that is running (a broker's I/O thread on the other core) goes
    on until the kernel gets to stop it, and may answer a request sent meanwhile — a "frozen" broker that
    answered in 0.3 ms, a CreateTopics carried out after the freeze. Waiting for state ``T`` of every thread
    (/proc/PID/task/*/stat) closes that window.
    """
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
                    states.append(stat.rsplit(")", 1)[1].split()[0])
        if all(state in ("T", "t", "Z", "X") for state in states):
            return
        time.sleep(0.001)
