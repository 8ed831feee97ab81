"""SIGTERM/SIGINT at any moment of a run: the documented exit code, one line, and no temp file left behind."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SIGNALS = pytest.mark.parametrize(("signum", "code", "line"), [
    (signal.SIGTERM, 143, "ingest-probe: error: terminated by SIGTERM; every connection was closed"),
    (signal.SIGINT, 130, "ingest-probe: error: interrupted by SIGINT; every connection was closed"),
], ids=["SIGTERM", "SIGINT"])


def start(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> list[str]:
    """stderr lines up to and including the first containing ``needle`` (an observable state, not a sleep)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if needle in line:
                return seen
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"no {needle!r} on stderr; saw {seen!r}, then {err!r}; exit {proc.returncode}")


def stop(proc: subprocess.Popen[str], signum: int) -> tuple[str, str, float]:
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out, err, time.monotonic() - sent


@SIGNALS
def test_signal_while_the_output_is_written_leaves_no_temp_file(tmp_path, signum, code, line):
    """A signal that arrives while the temp file is being synced (sent from inside os.fsync, so it lands
    there every time): the documented exit code, the target holds a whole report or its old content, and
    no `.NAME.XXXX.tmp` survives."""
    target = tmp_path / "r.json"
    target.write_text("old report\n")
    script = textwrap.dedent(f"""
        import os, sys
        real_fsync = os.fsync
        def fsync(fd):
            os.fsync = real_fsync
            os.kill(os.getpid(), {int(signum)})
            real_fsync(fd)
        os.fsync = fsync
        from ingest_probe.cli import main
        main(["report", "--no-env", "--output", {str(target)!r}])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    text = target.read_text()
    assert text == "old report\n" or json.loads(text)["schema_version"] == 1


@SIGNALS
def test_signal_during_splay_exits_with_the_documented_code(tmp_path, signum, code, line):
    """A signal while `report --splay` sleeps (before anything is contacted): exit 143/130 at once, one line."""
    proc = start("-m", "ingest_probe", "report", "--no-env", "--connectivity", "--splay", "600", "--debug",
                 "--output", str(tmp_path / "r.json"))
    wait_for_line(proc, "--splay: sleeping")
    out, err, took = stop(proc, signum)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == line
    assert "Traceback" not in err
    assert out == ""
    assert took < 5, took
    assert list(tmp_path.iterdir()) == []


@SIGNALS
def test_signal_while_drivers_import_exits_with_the_documented_code(tmp_path, signum, code, line):
    """A signal while the client libraries are imported, before the event loop (a stand-in `redis` package
    on PYTHONPATH that says so on stderr, then takes its time): exit 143/130 at once, one line."""
    fake = tmp_path / "slow" / "redis"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "asyncio.py").write_text(
        "import sys, time\nsys.stderr.write('test: importing redis.asyncio\\n')\nsys.stderr.flush()\n"
        "time.sleep(600)\n"
    )
    proc = start("-m", "ingest_probe", "report", "--no-env", "--connectivity", "--extra",
                 "REDIS_URL=redis://127.0.0.1:9/0", "--output", str(tmp_path / "r.json"),
                 env={"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])})
    wait_for_line(proc, "test: importing redis.asyncio")
    out, err, took = stop(proc, signum)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == line
    assert "Traceback" not in err
    assert took < 5, took
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow"]


def test_sigterm_while_waiting_for_a_fifo_reader_exits_143_and_keeps_the_fifo(tmp_path):
    """`--output FIFO` with no reader yet blocks in open(); SIGTERM still ends it (143), the FIFO intact."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = start("-m", "ingest_probe", "report", "--no-env", "--debug", "--output", str(fifo))
    wait_for_line(proc, f"writing report to {fifo}")
    out, err, took = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("ingest-probe: error: terminated by SIGTERM")
    assert took < 5, took
    assert Path(fifo).is_fifo()
