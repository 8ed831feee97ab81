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

from ingest_probe.commands import signals as _signals

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


#: Where, inside the write, the signal is sent from (so it lands there every time): just after the temp
#: file is created (before its name is known to the code that would remove it), and while it is synced.
MOMENTS = {
    "temp created": """
        real_open = os.open
        def hook(path, flags, *args, **kw):
            fd = real_open(path, flags, *args, **kw)
            if flags & os.O_CREAT and os.fsdecode(path).endswith(".tmp"):
                os.open = real_open
                os.kill(os.getpid(), SIGNUM)
            return fd
        os.open = hook
    """,
    "fsync": """
        real_fsync = os.fsync
        def hook(fd):
            os.fsync = real_fsync
            os.kill(os.getpid(), SIGNUM)
            real_fsync(fd)
        os.fsync = hook
    """,
}


@SIGNALS
@pytest.mark.parametrize("moment", MOMENTS)
def test_signal_while_the_output_is_written_leaves_no_temp_file(tmp_path, signum, code, line, moment):
    """A signal that arrives while the report file is written: the documented exit code, the target holds
    a whole report or its old content, and no `.NAME.XXXX.tmp` survives."""
    target = tmp_path / "r.json"
    target.write_text("old report\n")
    script = "import os\n" + textwrap.dedent(MOMENTS[moment]).replace("SIGNUM", str(int(signum))) + (
        "from ingest_probe.commands.cli import main\n"
        f"main(['report', '--no-env', '--output', {str(target)!r}])\n"
    )
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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_watch_imports_drivers_is_a_clean_stop(tmp_path, signum):
    """`watch` stopped before its first cycle (while drivers import) ends as a stop in a cycle does: exit 0,
    one "stopped by" line."""
    fake = tmp_path / "slow" / "redis"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "asyncio.py").write_text(
        "import sys, time\nsys.stderr.write('test: importing redis.asyncio\\n')\nsys.stderr.flush()\n"
        "time.sleep(600)\n"
    )
    proc = start("-m", "ingest_probe", "watch", "--no-env", "--extra", "REDIS_URL=redis://127.0.0.1:9/0",
                 "--prometheus-file", str(tmp_path / "m.prom"),
                 env={"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])})
    wait_for_line(proc, "test: importing redis.asyncio")
    out, err, took = stop(proc, signum)
    assert proc.returncode == 0, err
    assert err.strip().splitlines()[-1].endswith(f"ingest-probe watch: stopped by {signum.name}; clients closed")
    assert took < 5, took
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow"]


# ------------------------------------------------------------------------------- the handler, in-process


def test_outside_a_loop_a_signal_raises_interrupted_with_the_exit_code():
    """With the handler installed, SIGTERM raises Interrupted (a SystemExit with code 143) where it lands."""
    with _signals.handled(), pytest.raises(_signals.Interrupted) as info:
        signal.raise_signal(signal.SIGTERM)
    assert (info.value.code, info.value.name, info.value.forced) == (143, "SIGTERM", False)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored afterwards


def test_inside_a_loop_the_first_signal_cancels_and_a_second_forces_the_exit():
    """While a loop runs, the first signal only calls its cancel; a second raises Interrupted(forced)."""
    cancelled = []
    with _signals.handled(), _signals.cancelling(lambda: cancelled.append(True)) as seen:
        signal.raise_signal(signal.SIGINT)
        assert cancelled == [True]
        with pytest.raises(_signals.Interrupted) as info:
            signal.raise_signal(signal.SIGTERM)
    assert info.value.forced
    assert seen.signum == signal.SIGINT


def test_a_deferred_signal_waits_for_the_end_of_the_block():
    """Inside ``deferred`` (a temp file being written) a signal waits; it raises once the block is done."""
    steps = []

    def write() -> None:
        with _signals.deferred():
            signal.raise_signal(signal.SIGTERM)
            steps.append("rest of the write")

    with _signals.handled(), pytest.raises(_signals.Interrupted) as info:
        write()
    assert steps == ["rest of the write"]
    assert info.value.code == 143
