"""Output paths: `-`, devices, FIFOs, sockets and symlinks are never destroyed; files are replaced atomically."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from live.kafka import wait_until

from ingest_probe.commands.cli import main

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mknod (device nodes) needs root")

#: Every option that names a report file, with the rest of a command line that probes nothing.
OUTPUT_OPTIONS = {
    "report --output": ["report", "--no-env", "--output"],
    "readiness --output": ["readiness", "--no-env", "--output"],
    "watch --output": ["watch", "--no-env", "--once", "--output"],
    "watch --prometheus-file": ["watch", "--no-env", "--once", "--prometheus-file"],
}
#: Exit codes of those commands with nothing configured (a manifest-only report, as `readiness` without
#: --connectivity, is OK; the others are UNKNOWN).
EXPECTED_CODE = {"report --output": 0, "readiness --output": 0, "watch --output": 3, "watch --prometheus-file": 3}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def cli(*argv: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingest_probe", *argv], capture_output=True, text=True,
                          timeout=60, **kw)


def leftovers(*dirs: Path) -> list[str]:
    """Temp files (``.NAME.XXXX.tmp``) left in ``dirs``."""
    return [p.name for d in dirs for p in d.iterdir() if p.name.endswith(".tmp")]


def device(path: Path, kind: int, major: int, minor: int) -> Path:
    os.mknod(path, kind | 0o666, os.makedev(major, minor))
    return path


# --------------------------------------------------------------------------------------------- stdout, -


def test_dash_is_stdout_not_a_file_named_dash(capsys, tmp_path, monkeypatch):
    """`--output -` writes the report on stdout and creates no file named `-`."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "report", "--no-env", "--output", "-")
    assert (code, err) == (0, "")
    assert json.loads(out)["schema_version"] == 1
    assert list(tmp_path.iterdir()) == []


def test_watch_prometheus_file_dash_is_stdout(capsys, tmp_path, monkeypatch):
    """`watch --prometheus-file -` writes the textfile on stdout."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "watch", "--no-env", "--once", "-q", "--prometheus-file", "-")
    assert code == 3  # nothing configured: UNKNOWN
    assert "# TYPE ingest_probe_" in out
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- devices, FIFOs, sockets


@needs_root
@pytest.mark.parametrize("option", OUTPUT_OPTIONS)
def test_character_device_is_written_in_place(capsys, tmp_path, option):
    """A character device (a private copy of /dev/null) stays that device: opened for writing, never replaced."""
    null = device(tmp_path / "null", stat.S_IFCHR, 1, 3)
    before = os.stat(null)
    code, out, _ = run(capsys, *OUTPUT_OPTIONS[option], str(null))
    after = os.stat(null)
    assert code == EXPECTED_CODE[option]
    assert out == ""
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


@needs_root
def test_full_device_is_a_one_line_error_naming_it(capsys, tmp_path):
    """Disk full on an in-place write (a copy of /dev/full): exit 3, one line naming the target, node intact."""
    full = device(tmp_path / "full", stat.S_IFCHR, 1, 7)
    code, out, err = run(capsys, "report", "--no-env", "--output", str(full))
    assert (code, out) == (3, "")
    assert err == f"ingest-probe: error: cannot write report to {full}: No space left on device\n"
    assert stat.S_ISCHR(os.stat(full).st_mode)


@needs_root
def test_block_device_is_refused_before_anything_runs(capsys, tmp_path):
    """A block device is never written nor replaced: a one-line usage error, exit 3."""
    disk = device(tmp_path / "disk", stat.S_IFBLK, 240, 0)  # 240: "local/experimental use", no driver
    code, out, err = run(capsys, "report", "--no-env", "--connectivity", "--output", str(disk))
    assert (code, out) == (3, "")
    assert err.count("\n") == 1
    assert "block device" in err
    assert stat.S_ISBLK(os.stat(disk).st_mode)


@pytest.mark.parametrize("option", ["report --output", "watch --output"])
def test_fifo_gets_the_text_and_stays_a_fifo(capsys, tmp_path, option):
    """A FIFO is opened and written, not replaced: its reader receives the whole report."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, _ = run(capsys, *OUTPUT_OPTIONS[option], str(fifo))
    if reader.is_alive():  # the FIFO was replaced: release the reader, still blocked on the old node
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(timeout=10)
    assert code == EXPECTED_CODE[option]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received, "the reader got nothing"
    assert json.loads(received[0])["schema_version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_unix_socket_gets_the_text_and_stays_a_socket(tmp_path):
    """A listening Unix socket is connected to and sent the report, not replaced by a file."""
    path = tmp_path / "sock"
    received: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        server.settimeout(30)

        def serve() -> None:
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                with conn:
                    received.append(b"".join(iter(lambda: conn.recv(65536), b"")))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        done = cli("report", "--no-env", "--output", str(path))
        thread.join(timeout=10)  # the process may be gone before the accept: the connection waits in the backlog
        if thread.is_alive():
            server.close()  # never connected to (the socket was replaced): end the accept
        thread.join(timeout=35)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert received, "the server got nothing"
    assert json.loads(received[0])["schema_version"] == 1


@pytest.mark.parametrize("target", ["link to /dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_stdout_device_paths_write_to_stdout(tmp_path, target):
    """`--output /dev/stdout` (and /dev/fd/1, /proc/self/fd/1, a link to them) writes into the stdout pipe."""
    if target.startswith("link"):
        link = tmp_path / "out"
        link.symlink_to("/dev/stdout")
        target = str(link)
    done = cli("report", "--no-env", "--output", target)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["schema_version"] == 1
    if target == str(tmp_path / "out"):
        assert os.readlink(target) == "/dev/stdout"
        assert leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["link to /dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_stdout_redirected_to_a_file_is_appended_to_not_replaced(tmp_path, target):
    """`--output /dev/stdout >> log`: the report is appended to the log through the descriptor; the log is
    not replaced by a new file (which would drop its old lines and detach the shell's descriptor)."""
    log = tmp_path / "log"
    log.write_text("earlier line\n")
    inode = log.stat().st_ino
    if target.startswith("link"):
        (tmp_path / "out").symlink_to("/dev/stdout")
        target = str(tmp_path / "out")
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "ingest_probe", "report", "--no-env", "--output", target],
                              stdout=out, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert log.stat().st_ino == inode
    first, rest = log.read_text().split("\n", 1)
    assert first == "earlier line"
    assert json.loads(rest)["schema_version"] == 1
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------- symlinks


@pytest.mark.parametrize("option", OUTPUT_OPTIONS)
def test_symlink_is_followed_and_its_target_replaced_atomically(capsys, tmp_path, option):
    """A symlink stays a link; its target (in another directory) is replaced by a new inode, mode kept."""
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "real" / "report.out"
    target.write_text("old")
    target.chmod(0o640)
    old_inode = target.stat().st_ino
    link = tmp_path / "links" / "report.out"
    link.symlink_to("../real/report.out")
    code, _, _ = run(capsys, *OUTPUT_OPTIONS[option], str(link))
    assert code == EXPECTED_CODE[option]
    assert link.is_symlink()
    assert os.readlink(link) == "../real/report.out"
    assert target.read_text() not in ("", "old")
    assert target.stat().st_ino != old_inode
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert leftovers(tmp_path / "real", tmp_path / "links") == []


def test_dangling_symlink_creates_its_target(capsys, tmp_path):
    """A dangling symlink is followed: its target is created (parent directories too) and the link kept."""
    link = tmp_path / "latest.json"
    link.symlink_to("runs/today/report.json")
    code, _, err = run(capsys, "report", "--no-env", "--output", str(link))
    assert (code, err) == (0, "")
    assert link.is_symlink()
    assert json.loads((tmp_path / "runs" / "today" / "report.json").read_text())["schema_version"] == 1


def test_symlink_loop_is_a_one_line_error_before_anything_runs(capsys, tmp_path):
    """A symlink loop is refused up front: exit 3, one line naming the path."""
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    code, out, err = run(capsys, "report", "--no-env", "--connectivity", "--output", str(loop))
    assert (code, out) == (3, "")
    assert err.count("\n") == 1
    assert str(loop) in err
    assert loop.is_symlink()


@pytest.mark.parametrize("option", OUTPUT_OPTIONS)
@pytest.mark.parametrize("via_link", [False, True], ids=["dir", "link-to-dir"])
def test_directory_is_refused_before_anything_runs(capsys, tmp_path, option, via_link):
    """A directory (or a link to one) is a one-line error, exit 3, and nothing is written into it."""
    adir = tmp_path / "adir"
    adir.mkdir()
    path = adir
    if via_link:
        path = tmp_path / "link"
        path.symlink_to(adir)
    code, out, err = run(capsys, *OUTPUT_OPTIONS[option], str(path))
    assert (code, out) == (3, "")
    assert err.count("\n") == 1
    assert "is a directory" in err
    assert list(adir.iterdir()) == []


# ------------------------------------------------------------------------------------- modes and names


@pytest.mark.parametrize(("umask", "mode"), [(0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
@pytest.mark.parametrize("option", ["report --output", "watch --prometheus-file"])
def test_new_file_gets_0666_minus_the_umask(capsys, tmp_path, umask, mode, option):
    """A new output file is created like any other file: 0666 & ~umask (not a forced 0644)."""
    target = tmp_path / "new.out"
    old = os.umask(umask)
    try:
        code, _, _ = run(capsys, *OUTPUT_OPTIONS[option], str(target))
    finally:
        os.umask(old)
    assert code == EXPECTED_CODE[option]
    assert stat.S_IMODE(target.stat().st_mode) == mode


@pytest.mark.parametrize("mode", [0o600, 0o664, 0o444])
def test_replaced_file_keeps_its_mode(capsys, tmp_path, mode):
    """Replacing an existing file keeps its permission bits, whatever the umask."""
    target = tmp_path / "r.json"
    target.write_text("old")
    target.chmod(mode)
    code, _, _ = run(capsys, "report", "--no-env", "--output", str(target))
    assert code == 0
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert json.loads(target.read_text())["schema_version"] == 1


@pytest.mark.parametrize("length", [250, 255])
def test_long_file_names_work(capsys, tmp_path, length):
    """A 250- or 255-character file name works: the temp name is shortened to fit NAME_MAX."""
    target = tmp_path / ("r" * (length - 5) + ".json")
    code, _, err = run(capsys, "report", "--no-env", "--output", str(target))
    assert (code, err) == (0, "")
    assert json.loads(target.read_text())["schema_version"] == 1
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------ atomic replacement


def test_output_replaces_the_file_and_never_rewrites_it_in_place(capsys, tmp_path):
    """The report is written to a new inode and renamed over the target: a reader of the old file still
    sees it whole, never truncated or half-written (an in-place rewrite fails this)."""
    target = tmp_path / "r.json"
    target.write_text("old report\n")
    with target.open() as reader:
        code, _, _ = run(capsys, "report", "--no-env", "--output", str(target))
        assert reader.read() == "old report\n"
    assert code == 0
    assert json.loads(target.read_text())["schema_version"] == 1
    assert leftovers(tmp_path) == []


def test_failure_mid_write_keeps_the_old_file_whole_and_names_the_target(capsys, tmp_path, monkeypatch):
    """Disk full while the new content is synced (fault injected at fsync): the old file is intact, no
    temp file is left, and the one-line error names the target, not the temp file."""
    target = tmp_path / "r.json"
    target.write_text("old report\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code, out, err = run(capsys, "report", "--no-env", "--output", str(target))
    assert (code, out) == (3, "")
    assert err == f"ingest-probe: error: cannot write report to {target}: No space left on device\n"
    assert target.read_text() == "old report\n"
    assert leftovers(tmp_path) == []


def test_permission_denied_names_the_target_not_the_temp_file(capsys, tmp_path, monkeypatch):
    """Permission denied creating the temp file (injected at os.open: root bypasses file modes) names the
    target in a one-line error, exit 3."""
    target = tmp_path / "r.json"
    real_open = os.open

    def denied(path, flags, mode=0o777, *, dir_fd=None):
        if os.fsdecode(path).startswith(str(tmp_path)) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", denied)
    code, out, err = run(capsys, "report", "--no-env", "--output", str(target))
    assert (code, out) == (3, "")
    assert err == f"ingest-probe: error: cannot write report to {target}: Permission denied\n"
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (root and mount(8) needed): a real ENOSPC, not a simulated one."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not ROOT:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_really_full_disk_keeps_the_old_file_and_names_the_target(capsys, small_tmpfs):
    """On a full (real, 64 KiB tmpfs) file system: exit 3, one line naming the target, old file intact,
    no temp file left behind."""
    target = small_tmpfs / "r.json"
    target.write_text("old report\n")
    with contextlib.suppress(OSError):  # fill every last block
        with (small_tmpfs / "filler").open("wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
    code, out, err = run(capsys, "report", "--no-env", "--output", str(target))
    assert (code, out) == (3, "")
    assert err == f"ingest-probe: error: cannot write report to {target}: No space left on device\n"
    assert target.read_text() == "old report\n"
    assert leftovers(small_tmpfs) == []


# ------------------------------------------------------------------------------- closed stdout, EPIPE


@pytest.mark.parametrize("argv", [["report"], ["report", "--output", "-"], ["watch", "--once"], ["config"]])
def test_closed_stdout_is_exit_3_before_anything_runs(argv):
    """`ingest-probe report >&-`: exit 3 with one line "cannot write report", not a silent exit 0."""
    done = subprocess.run(["sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-m", "ingest_probe", *argv,
                           "--no-env"], capture_output=False, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("ingest-probe: error: cannot write report")


@pytest.mark.parametrize("argv", [["--help"], ["report", "--help"], ["--version"]])
def test_help_to_a_closed_stdout_is_exit_3(argv):
    """`ingest-probe --help >&-`: the text went nowhere, so exit 3 with one line, not a silent exit 0."""
    done = subprocess.run(["sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-m", "ingest_probe", *argv],
                          stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr == "ingest-probe: error: cannot write help: stdout is closed\n"


def test_reader_gone_is_exit_3_with_one_line_and_no_python_noise():
    """A stdout pipe whose reader has gone (EPIPE): exit 3, one line, no "Exception ignored ... BrokenPipeError"."""
    r, w = os.pipe()
    os.close(r)
    try:
        done = subprocess.run([sys.executable, "-m", "ingest_probe", "report", "--no-env"], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert done.returncode == 3
    assert done.stderr == "ingest-probe: error: cannot write report to stdout: Broken pipe\n"



def test_watch_into_a_reader_that_stalls_still_stops_on_sigterm(tmp_path):
    """`watch | reader-that-stopped-reading`: the pipe fills, the write blocks, and SIGTERM still ends watch
    promptly with exit 0 (the blocked write is abandoned), instead of hanging until SIGKILL."""
    import fcntl
    import signal

    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "ingest_probe", "watch", "--no-env", "--interval", "0.05",
                                 "-v"], stdout=subprocess.PIPE, stderr=stderr)
    try:
        fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)  # full after a few cycles' lines
        assert wait_until(lambda: err.read_text().count("next in") >= 2, timeout=30)  # 2 lines of ~2 KB fill it
        # the pipe is full now: no cycle ends any more, each waits for its write
        blocked = err.read_text().count("next in")
        time.sleep(0.5)
        assert err.read_text().count("next in") == blocked
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert "Traceback" not in err.read_text()

@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "normal"])
def test_watch_into_head_1_ends_promptly_on_epipe(quiet):
    """`watch | head -1`: after the reader goes, watch stops at the next write (exit 0) with at most one
    line about it, instead of logging "Broken pipe" every cycle."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest_probe", "watch", "--no-env", "--interval", "0.05", *(["-q"] * quiet)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()
        proc.stdout.close()  # what `head -1` does after its line
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(first)["run"]["check"] == 1
    assert proc.returncode == 0, err
    assert "Exception ignored" not in err
    assert "Traceback" not in err
    if quiet:
        assert err == ""
    else:
        lines = err.splitlines()
        assert "cycle 1:" in lines[0]
        assert len(lines) == 2
        assert "stdout was closed" in lines[1]


# ------------------------------------------------------------------------------- the process exit

#: The process entry, as the script runs it, plus an exit handler and a garbage cycle whose finalizer only
#: the interpreter's teardown (its final collection) would run.
ENTRY_WITH_WITNESSES = (
    "import atexit, sys\n"
    "from ingest_probe.__main__ import run\n"
    "class Witness:\n"
    "    def __del__(self):\n        sys.stderr.write('teardown collected a cycle\\n')\n"
    "w = Witness(); w.cycle = w; del w\n"
    "atexit.register(lambda: sys.stderr.write('exit handlers ran\\n'))\n"
    "sys.argv = ['ingest-probe', *sys.argv[1:]]\n"
    "run()\n"
)


@pytest.mark.parametrize("to", ["pipe", "file"])
def test_fast_exit_loses_no_output_and_runs_the_exit_handlers(tmp_path, to):
    """The script's entry leaves without the interpreter's teardown (the cycle is never collected), yet the
    report on stdout is whole, to a pipe as to a file, stderr has its lines, and exit handlers ran."""
    env = tmp_path / "a.env"
    env.write_text("REDIS_URL=redis://127.0.0.1:1/0\nKAFKA_BROKERS=127.0.0.1:1\nTIMESCALEDB_HOST=127.0.0.1\n")
    argv = [sys.executable, "-c", ENTRY_WITH_WITNESSES, "report", "--no-env", "--env-file", str(env)]
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a cron job runs it
    expected = tmp_path / "expected.json"
    subprocess.run([*argv, "--output", str(expected)], check=True, timeout=60)
    if to == "pipe":
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=buffered)
        out = done.stdout
    else:
        with (tmp_path / "stdout").open("w") as stdout:
            done = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60, env=buffered)
        out = (tmp_path / "stdout").read_text()
    assert done.returncode == 0, done.stderr
    assert json.loads(out).keys() == json.loads(expected.read_text()).keys()
    assert out.endswith("}\n")
    assert done.stderr == "exit handlers ran\n"


def test_a_leak_check_keeps_the_whole_teardown():
    """Under ``-W``/``-X dev`` the final collection still runs: it is what reports an unclosed transport."""
    done = subprocess.run([sys.executable, "-W", "always::ResourceWarning", "-c", ENTRY_WITH_WITNESSES, "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ingest-probe" in done.stdout
    assert done.stderr.splitlines() == ["exit handlers ran", "teardown collected a cycle"]
