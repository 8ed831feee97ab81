"""A missing server binary (PostgreSQL, redis-server, Tansu, openssl): the live fixtures skip with the reason
locally, and fail the run in CI (CI=true) instead of turning the live tests into silent skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from live import missing

TESTS = Path(__file__).resolve().parent

#: Fixture users run by an inner pytest whose environment points every binary at nothing.
INNER = """
def test_postgres(pg_server):
    assert pg_server.port

def test_redis(redis_server):
    assert redis_server.port

def test_kafka(kafka_broker):
    assert kafka_broker.port

def test_kafka_tls(kafka_tls):
    assert kafka_tls.port
"""


def inner_run(tmp_path: Path, *, ci: bool) -> str:
    """pytest on INNER with the live fixtures, no PostgreSQL, redis-server, Tansu or openssl: its report."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["live.postgres", "live.redis", "live.kafka"]\n')
    (tmp_path / "test_inner.py").write_text(INNER)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "INGEST_PROBE_TEST_KAFKA_BOOTSTRAP")}
    env.update(INGEST_PROBE_PG_BINDIR=str(tmp_path / "no-postgres"),
               INGEST_PROBE_TEST_REDIS_SERVER=str(tmp_path / "no-redis-server"),
               CALF_TANSU_BIN=str(tmp_path / "no-tansu"),
               PATH=str(tmp_path),  # no openssl either
               PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")])))
    if ci:
        env["CI"] = "true"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rsE", "--rootdir", str(tmp_path),
         str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert proc.returncode == (1 if ci else 0), proc.stdout + proc.stderr
    return proc.stdout


def test_missing_binaries_skip_locally_with_their_reason(tmp_path: Path) -> None:
    """Without CI=true: every live fixture skips, each saying which binary is missing and how to get it."""
    out = inner_run(tmp_path, ci=False)
    assert "4 skipped" in out, out
    assert "no PostgreSQL server binaries in INGEST_PROBE_PG_BINDIR" in out
    assert "no-redis-server not found on PATH (set INGEST_PROBE_TEST_REDIS_SERVER)" in out
    assert "no Tansu broker binary (TansuBinaryNotFound" in out


def test_missing_binaries_fail_in_ci(tmp_path: Path) -> None:
    """With CI=true: the same fixtures error out (the run fails), each naming the missing binary."""
    out = inner_run(tmp_path, ci=True)
    assert "4 errors" in out, out
    assert "skipped" not in out
    assert "CI=true: a missing server binary fails the run instead of skipping it" in out
    assert "no PostgreSQL server binaries in INGEST_PROBE_PG_BINDIR" in out
    assert "no-redis-server not found on PATH" in out
    assert "no Tansu broker binary" in out


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_fails_only_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]) -> None:
    """The one helper every fixture calls: a failure under CI=true, a skip otherwise (openssl included)."""
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="openssl not found"):
        missing("openssl not found on PATH")
