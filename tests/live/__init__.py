"""Throwaway real servers on loopback for the live tests, the demo and the benchmark."""

from __future__ import annotations

import os
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
