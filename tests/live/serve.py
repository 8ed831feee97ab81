"""`ingest-probe serve` as a subprocess on a free loopback port, and HTTP clients for it (standard library).

    with ServeProcess.start(["--no-env", "--env-file", path]) as server:
        status, headers, body = server.get("/readyz")

``fetch_concurrently`` opens N connections at once (asyncio streams, one request each, or many on keep-alive
connections for the benchmark) and returns every status and body; the server is told ``--listen
127.0.0.1:0`` and its port is read from its first log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

VENV_BIN = Path(sys.executable).parent
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+) ")


class ServeProcess:
    """One ``ingest-probe serve`` process; ``lines`` collects its stderr as it comes."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        argv = [str(VENV_BIN / "ingest-probe"), "serve", "--listen", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, **(env or {})})  # fmt: skip
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="serve-stderr", daemon=True)
        self._reader.start()
        self.port = int(self.wait_for_line(LISTENING).group(1))

    @classmethod
    @contextlib.contextmanager
    def start(cls, args: Sequence[str], **kwargs: Any) -> Iterator[ServeProcess]:
        server = cls(args, **kwargs)
        try:
            yield server
        finally:
            server.kill()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    def wait_for_line(self, pattern: re.Pattern[str] | str, *, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        """The first stderr line (from index ``start``) matching ``pattern``, waiting for it."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._new_line:
            while True:
                for line in self.lines[start:]:
                    if match := regex.search(line):
                        return match
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"serve exited {self.proc.returncode} without {regex.pattern!r}: {self.lines}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line matching {regex.pattern!r} after {timeout}s: {self.lines}")
                self._new_line.wait(min(left, 0.2))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def get(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
            timeout: float = 30.0) -> tuple[int, dict[str, str], str]:  # fmt: skip
        """One request on a new connection: (status, headers with lower-case names, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            body = response.read().decode()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, *, timeout: float = 30.0) -> int:
        """Send ``signum`` and wait for the exit code."""
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: (status, body). Enough HTTP for our own server's
    answers: a status line, headers with Content-Length, a body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    return status, await reader.readexactly(length)


async def _client(port: int, path: str, requests: int, latencies: list[float], answers: list[tuple[int, bytes]],
                  opened: list[int], start: asyncio.Event) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    try:
        opened.append(1)
        if len(opened) == opened[0]:  # the last one in: everybody go
            start.set()
        await start.wait()
        for _ in range(requests):
            began = time.perf_counter()
            answers.append(await _exchange(reader, writer, request))
            latencies.append(time.perf_counter() - began)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def load(port: int, path: str, *, connections: int, requests: int = 1,
               within: float = 60.0) -> tuple[list[float], list[tuple[int, bytes]]]:  # fmt: skip
    """``connections`` keep-alive connections opened first, then all released at once, each making
    ``requests`` requests one after another: (every latency in seconds, every (status, body)). The whole
    load may take ``within`` seconds (then TimeoutError)."""
    latencies: list[float] = []
    answers: list[tuple[int, bytes]] = []
    opened = [connections + 1]  # the count to reach, then one entry per open connection
    start = asyncio.Event()
    async with asyncio.timeout(within):
        await asyncio.gather(*(_client(port, path, requests, latencies, answers, opened, start)
                               for _ in range(connections)))
    return latencies, answers


def fetch_concurrently(port: int, path: str, n: int) -> list[tuple[int, bytes]]:
    """``n`` requests at once, each on its own connection (run in a fresh event loop)."""
    return asyncio.run(load(port, path, connections=n))[1]


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServeProcess]]:
    """Start ``ingest-probe serve`` processes: ``serve_process(args, env=None)``; all killed at teardown."""
    started: list[ServeProcess] = []

    def start(args: Sequence[str], **kwargs: Any) -> ServeProcess:
        started.append(ServeProcess(args, **kwargs))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.kill()
