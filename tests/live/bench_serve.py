"""Benchmark (f) of ``scripts/bench``: ``ingest-probe serve`` under 200 concurrent clients.

* ``/readyz`` latency p50/p99 with 200 keep-alive connections, answered from the cache (``--interval 15``, the
  default ``--max-age``), next to the same load on a trivial ASGI app (200 "ok") served by the same uvicorn
  configuration (``serve_loop.uvicorn_config``) in its own process: the ratio is what our route costs over
  the server's own floor. ``/livez`` (the app's routing without a check) is shown too.
* Backend sessions during the load (PostgreSQL ``pg_stat_activity`` and Redis ``CLIENT LIST`` for the
  server's application name), sampled every 0.2 s: the maximum seen.
* RSS of the idle server (after its first check), after 10,000 ``/readyz`` requests (plus 1,000 of warm-up)
  and at the end of all rounds (``/proc/PID/status``).

The load generator is ``live.serve.load`` (asyncio streams in this process, one request at a time on each
kept-alive connection), so the client takes one core and the server the other on a 2-core machine. Medians
over ``runs`` alternated rounds. Numbers are for this machine, this minute: compare the ratios.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from live.serve import ServeProcess, load

CONNECTIONS = 200
#: Requests per connection in a measured round: 200 x 50 = 10,000 requests.
PER_CONNECTION = 50

TRIVIAL = """
import socket, sys
import anyio
from ingest_probe.commands.serve_loop import uvicorn_config, _Server

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"ok\\n"})

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(2048)
print(sock.getsockname()[1], flush=True)
server = _Server(uvicorn_config(app, grace=1))
anyio.run(server.serve, [sock])
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


def round_of(port: int, path: str, per_connection: int = PER_CONNECTION) -> dict[str, float]:
    started = time.perf_counter()
    latencies, answers = asyncio.run(load(port, path, connections=CONNECTIONS, requests=per_connection,
                                          within=300))  # fmt: skip
    wall = time.perf_counter() - started
    bad = [status for status, _ in answers if status != 200]
    if bad:
        raise RuntimeError(f"{path}: {len(bad)} answers were not 200 (first: {bad[0]})")
    return {**percentiles(latencies), "requests_per_s": len(answers) / wall}


class Sessions:
    """Samples the stack's sessions named ``name`` every 0.2 s in a thread; ``peak`` is the most seen."""

    def __init__(self, stack: Any, name: str) -> None:
        self.stack, self.name = stack, name
        self.peak = (0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pg = self.stack.postgres.count_connections(self.name)
            redis = len(self.stack.redis.client_list(self.name))
            self.peak = (max(self.peak[0], pg), max(self.peak[1], redis))
            self._stop.wait(0.2)

    def __enter__(self) -> Sessions:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def measure(stack: Any, env_file: Path, runs: int) -> dict[str, Any]:
    name = stack.env()["TIMESCALEDB_APP"]
    trivial = subprocess.Popen([sys.executable, "-c", TRIVIAL], stdout=subprocess.PIPE, text=True)
    try:
        assert trivial.stdout is not None
        trivial_port = int(trivial.stdout.readline())
        with ServeProcess.start(["--no-env", "--env-file", str(env_file), "--no-access-log"]) as server:
            status, _, _ = server.get("/readyz")
            assert status == 200, server.stderr
            time.sleep(1.0)
            idle_rss = rss_kib(server.proc.pid)
            for port, path in ((server.port, "/readyz"), (trivial_port, "/")):  # warm-up
                round_of(port, path, per_connection=5)
            readyz, base, livez = [], [], []
            with Sessions(stack, name) as sessions:
                for i in range(runs):
                    readyz.append(round_of(server.port, "/readyz"))
                    if i == 0:
                        rss_10k = rss_kib(server.proc.pid)
                    base.append(round_of(trivial_port, "/"))
                    livez.append(round_of(server.port, "/livez"))
                rss_after = rss_kib(server.proc.pid)
            served = CONNECTIONS * 5 + runs * 2 * CONNECTIONS * PER_CONNECTION
    finally:
        trivial.terminate()
        trivial.wait(timeout=10)

    def median(rounds: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    return {
        "connections": CONNECTIONS,
        "requests_per_round": CONNECTIONS * PER_CONNECTION,
        "readyz_p50_ms": median(readyz, "p50_ms"),
        "readyz_p99_ms": median(readyz, "p99_ms"),
        "readyz_requests_per_s": median(readyz, "requests_per_s"),
        "trivial_asgi_p50_ms": median(base, "p50_ms"),
        "trivial_asgi_p99_ms": median(base, "p99_ms"),
        "trivial_asgi_requests_per_s": median(base, "requests_per_s"),
        "livez_p50_ms": median(livez, "p50_ms"),
        "livez_p99_ms": median(livez, "p99_ms"),
        "ratio_p50": median(readyz, "p50_ms") / median(base, "p50_ms"),
        "ratio_p99": median(readyz, "p99_ms") / median(base, "p99_ms"),
        "backend_sessions_peak_pg_redis": list(sessions.peak),
        "rss_idle_kib": idle_rss,
        "rss_after_10k_readyz_kib": rss_10k,
        "rss_at_end_kib": rss_after,
        "requests_served_at_end": served,
    }
