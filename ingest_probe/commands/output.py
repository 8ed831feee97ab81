"""Report output that never destroys what is at the path: `-` is stdout, devices are written in place,
files are replaced atomically.

Rules, for every ``--output`` and ``--prometheus-file``:

- ``-`` is stdout.
- An existing character device, FIFO or socket, and a path that names an open descriptor (``/dev/stdout``,
  ``/dev/fd/N``, ``/proc/PID/fd/N``, or a symlink to one) is written in place: opened for writing (a
  socket: connected to) and appended to, never truncated, renamed over or created.
- A block device or a directory is refused.
- Anything else is a file: symlinks are followed (a dangling one too: its target is created) and the
  final target is replaced atomically, by a temp file beside it, fsync, then ``os.replace``. A new file
  gets ``0666 & ~umask`` (the kernel applies the umask, and a default ACL); a replaced one keeps its
  permission bits. The temp file never survives: signals wait until it is renamed or removed.
- Errors name the path that was asked for, never the temp file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
from pathlib import Path
from typing import TextIO

from ingest_probe.commands import signals as _signals

#: The path that means stdout.
STDOUT = Path("-")

#: Paths that name an open file descriptor: reopening them reaches that descriptor's file, pipe or tty.
_FD_PATH = re.compile(r"/dev/(stdin|stdout|stderr|fd/\d+)|/proc/[^/]+/fd/\d+")


def is_stdout(path: Path) -> bool:
    return path == STDOUT


def check(path: Path) -> str | None:
    """Why ``path`` cannot take a report, or None; checked before anything is probed."""
    if is_stdout(path):
        return None
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # a new file, or a dangling symlink: check where it goes
        return _check_directory(Path(os.path.realpath(path)))
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a directory"
    if stat.S_ISBLK(st.st_mode):
        return f"{path} is a block device: a report is never written to a disk"
    if in_place(path):
        return None if os.access(path, os.W_OK) else f"{path}: cannot write to it"
    return _check_directory(Path(os.path.realpath(path)))


def _check_directory(target: Path) -> str | None:
    """The nearest existing ancestor of ``target`` must be a directory we can create files in."""
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{target}: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{target}: cannot write in {ancestor}"
    return None


def in_place(path: Path) -> bool:
    """Whether ``path`` is written where it is (no temp file, no rename): not a regular file or missing."""
    if _names_a_descriptor(path):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _names_a_descriptor(path: Path) -> bool:
    """``path``, or a symlink it leads through, is /dev/stdout, /dev/fd/N, /proc/PID/fd/N, ..."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own symlink limit
        if _FD_PATH.fullmatch(current):
            return True
        try:
            link = os.readlink(current)
        except OSError:
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), link))
    return False


def write_output(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` by the rules above; ``OSError``s name ``path``."""
    if is_stdout(path):
        write_stdout(text)
    elif in_place(path):
        write_in_place(path, text)
    else:
        write_atomic(path, text)


def write_stdout(text: str, *, unbuffered: bool = False) -> None:
    """``text`` on stdout. After EPIPE, stdout is pointed at /dev/null, so the interpreter's final flush
    does not print "Exception ignored ... BrokenPipeError".

    ``unbuffered``: written to the descriptor itself, past ``sys.stdout``'s buffer, so a thread blocked on a
    reader that stalls holds no lock the interpreter's exit would wait for (``watch`` abandons such a write
    on a signal).
    """
    if sys.stdout is None:  # fd 1 was closed when the process started (`>&-`)
        raise OSError(errno.EBADF, os.strerror(errno.EBADF), "stdout")
    try:
        if unbuffered and (fd := _fileno(sys.stdout)) is not None:
            data = memoryview(text.encode(sys.stdout.encoding or "utf-8", "backslashreplace"))
            while data:
                data = data[os.write(fd, data):]
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise


def _fileno(stream: TextIO) -> int | None:
    """``stream``'s descriptor, None for one without (a test's capture); its buffer flushed first."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None
    stream.flush()
    return fd


def _silence_stdout() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no real descriptor (a test's capture)
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def write_in_place(path: Path, text: str) -> None:
    """Open (a socket: connect to) ``path`` and write ``text``; never create, truncate or rename.

    A regular file reached through /dev/stdout is appended to, as the shell's ``>>`` would; a FIFO
    without a reader blocks until one opens it (a signal ends the wait).
    """
    data = text.encode()
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            _send(path, data)
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _naming(exc, path) from exc


def _send(path: Path, data: bytes) -> None:
    import socket

    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_UNIX, kind) as sock:
            try:
                sock.connect(os.fspath(path))
            except OSError as exc:
                if exc.errno == errno.EPROTOTYPE and kind == socket.SOCK_STREAM:
                    continue  # a datagram socket (syslog style)
                raise
            sock.sendall(data)
            return


def write_atomic(path: Path, text: str) -> None:
    """Replace the file ``path`` leads to (symlinks followed, parents created) by ``text``, atomically."""
    target = os.fsencode(os.path.realpath(path))
    data = text.encode()
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with _signals.deferred():
            try:
                mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
            except FileNotFoundError:
                mode = None
            fd, tmp = _create_temp(target, 0o666 if mode is None else 0o600)
            try:
                try:
                    _write_all(fd, data)
                    if mode is not None:
                        os.fchmod(fd, mode)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
    except OSError as exc:
        raise _naming(exc, path) from exc


def _create_temp(target: bytes, mode: int) -> tuple[int, bytes]:
    """A new ``.NAME.XXXXXXXX.tmp`` beside ``target``, its name cut to fit the directory's NAME_MAX."""
    directory, name = os.path.split(target)
    try:
        name_max = os.pathconf(directory or b".", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        token = os.urandom(4).hex().encode()  # what secrets.token_hex does, without its hashlib import
        room = name_max - len(b"..") - len(token) - len(b".tmp")
        tmp = os.path.join(directory, b"." + name[:room] + b"." + token + b".tmp")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name", os.fsdecode(target))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _naming(exc: OSError, path: Path) -> OSError:
    """The same error, naming the path that was asked for (not a temp file, not nothing)."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(path))
