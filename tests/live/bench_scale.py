"""Scale benchmark: N targets in one run against one local server, next to a raw client baseline.

    scripts/bench --scale [--runs 3] [--concurrency 100]

1, 10, 100 and 1,000 Redis targets against one local ``redis-server`` (databases 0..15 in turn), and 1, 10 and 50
PostgreSQL targets against one local PostgreSQL (started with ``max_connections`` 200). Each side runs in a fresh
subprocess, alternated, ``--runs`` times (medians):

* ``lib``: the engine as the CLI runs it: N targets built from URLs (``target_from_url``; ``setup_ms``), then
  ``run_targets`` under a ``TaskSupervisor`` with the cap (the one-shot run: fresh clients, closed at the end);
* ``raw``: the same N probes written directly: ``redis.asyncio.Redis`` connect + ``PING`` + ``aclose`` (asyncpg:
  ``connect`` + ``SELECT 1`` + ``close``), gathered under the same ``anyio.CapacityLimiter`` cap;
* ``cli`` (Redis N=1,000 only): ``ingest-probe report --targets FILE --connectivity -f json`` as a whole process.

Per side: wall time of the probing, CPU ms per probe (``time.process_time`` of the child over the probing, less
the descriptor sampler thread's own CPU), peak RSS (``ru_maxrss`` of the child, from ``os.wait4``) and peak open
descriptors (``/proc/self/fd``, sampled every millisecond by a thread). Verdicts against the issue's goals:
1,000 Redis targets in under 2 s, CPU per probe at most 1.5x the raw baseline's, peak RSS at most 150 MiB, and
linear cost (CPU per probe at the largest N within 1.5x of that at the N before it; the smallest Ns carry one-off
first-use costs). Descriptors: at most ``SOCKETS`` per probe in flight (the cap bounds those) plus the loop's own.
Not a test: numbers and a verdict.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REDIS_NS = (1, 10, 100, 1000)
PG_NS = (1, 10, 50)
GOAL_WALL_S = 2.0
GOAL_CPU_RATIO = 1.5
GOAL_RSS_MIB = 150.0
GOAL_LINEARITY = 1.5
#: Descriptors the event loop itself opens (epoll, its self-pipe), counted in "peak descriptors added".
LOOP_FDS = 3
#: Sockets one probe in flight holds (PostgreSQL's sslmode=prefer falls back to plaintext on the same one).
SOCKETS = {"redis": 1, "timescale": 1}

CHILD = r'''
import json, os, resource, sys, threading, time

spec = json.loads(sys.argv[1])
kind, n, cap, side, urls = spec["kind"], spec["n"], spec["cap"], spec["side"], spec["urls"]

import anyio
if kind == "redis":
    import redis.asyncio as aioredis
else:
    import asyncpg

done = threading.Event()
peak = [len(os.listdir("/proc/self/fd"))]
sampler_cpu = [0.0]

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], len(os.listdir("/proc/self/fd")))
        time.sleep(0.001)
    sampler_cpu[0] = time.thread_time()

setup_ms = None
if side == "lib":
    from ingest_probe.engine.run import preload_drivers, run_targets
    from ingest_probe.engine.supervisor import TaskSupervisor
    from ingest_probe.settings.targets import target_from_url
    t0 = time.perf_counter()
    targets = [target_from_url(kind, url, name=f"{kind}-{i}")[0] for i, url in enumerate(urls)]
    setup_ms = (time.perf_counter() - t0) * 1000.0
    preload_drivers(targets)

    async def main():
        results, _ = await run_targets(targets, TaskSupervisor(timeout=30.0, concurrency=cap, seed=1))
        return sum(r.status.value == "ok" for r in results)
else:
    async def one(url, limiter, ok):
        async with limiter:
            if kind == "redis":
                client = aioredis.Redis.from_url(url, protocol=2, socket_connect_timeout=30, socket_timeout=30)
                try:
                    await client.ping()
                finally:
                    await client.aclose()
            else:
                conn = await asyncpg.connect(url, timeout=30)
                try:
                    await conn.fetchval("SELECT 1")
                finally:
                    await conn.close()
            ok.append(1)

    async def main():
        limiter, ok = anyio.CapacityLimiter(cap), []
        async with anyio.create_task_group() as tg:
            for url in urls:
                tg.start_soon(one, url, limiter, ok)
        return len(ok)

base_fds = len(os.listdir("/proc/self/fd"))
base_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
thread = threading.Thread(target=sample, daemon=True)
thread.start()
cpu0, t0 = time.process_time(), time.perf_counter()
ok = anyio.run(main)
wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
done.set()
thread.join()
print(json.dumps({"ok": ok, "wall_s": wall, "cpu_ms": (cpu - sampler_cpu[0]) * 1000.0, "setup_ms": setup_ms,
                  "base_fds": base_fds, "peak_fds": peak[0], "base_rss_kib": base_rss_kib}))
'''


def _child(argv: list[str], env: dict[str, str] | None = None) -> tuple[str, str, float, float]:
    """Run ``argv``; its stdout, stderr, peak RSS (MiB) and CPU seconds (user + system), from ``os.wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode not in (0,):
        raise RuntimeError(f"{argv[1:3]} exited {proc.returncode}: {stderr[-2000:]}")
    return stdout, stderr, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def side(kind: str, n: int, cap: int, which: str, urls: list[str]) -> dict[str, Any]:
    spec = json.dumps({"kind": kind, "n": n, "cap": cap, "side": which, "urls": urls})
    stdout, _, rss_mib, _ = _child([sys.executable, "-c", CHILD, spec])
    row = json.loads(stdout)
    if row["ok"] != n:
        raise RuntimeError(f"{which} {kind} N={n}: {row['ok']} of {n} ok")
    return {"wall_s": row["wall_s"], "cpu_ms_per_probe": row["cpu_ms"] / n, "peak_rss_mib": rss_mib,
            "peak_fds_added": row["peak_fds"] - row["base_fds"], "setup_ms": row["setup_ms"]}


def cli_side(path: Path, n: int, cap: int) -> dict[str, Any]:
    """The whole CLI on a targets file of N endpoints: wall, CPU per probe (the process's, imports included)."""
    import time

    exe = str(Path(sys.executable).parent / "ingest-probe")
    started = time.perf_counter()
    stdout, _, rss_mib, cpu_s = _child([exe, "report", "--no-env", "--targets", str(path), "--connectivity",
                                        "-f", "json", "--concurrency", str(cap), "-t", "30s"])
    wall = time.perf_counter() - started
    results = json.loads(stdout)["connectivity"]
    if sum(r["status"] == "ok" for r in results) != n:
        raise RuntimeError(f"cli: not every one of {n} targets ok")
    return {"wall_s": wall, "cpu_ms_per_probe": cpu_s * 1000.0 / n, "peak_rss_mib": rss_mib}


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: round(statistics.median(r[k] for r in rows), 3) if rows[0][k] is not None else None for k in rows[0]}


def measure(*, runs: int = 3, cap: int = 100) -> dict[str, Any]:
    from live.postgres import PostgresServer
    from live.redis import RedisServer

    out: dict[str, Any] = {"concurrency": cap, "runs": runs, "redis": [], "timescale": []}
    pg = PostgresServer.start(name="pg-scale", conf={"max_connections": "200"})
    try:
        with RedisServer.start() as redis, tempfile.TemporaryDirectory(prefix="ingest-probe-scale-") as tmp:
            for kind, ns in (("redis", REDIS_NS), ("timescale", PG_NS)):
                for n in ns:
                    if kind == "redis":
                        urls = [f"redis://127.0.0.1:{redis.port}/{i % 16}" for i in range(n)]
                    else:
                        urls = [f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{pg.port}/{pg.database}"] * n
                    lib, raw = [], []
                    for _ in range(runs):
                        lib.append(side(kind, n, cap, "lib", urls))
                        raw.append(side(kind, n, cap, "raw", urls))
                    row: dict[str, Any] = {"n": n, "lib": _median(lib), "raw": _median(raw)}
                    if kind == "redis" and n == max(REDIS_NS):
                        path = Path(tmp) / "targets.yaml"
                        path.write_text("targets:\n" + "".join(
                            f"  r{i}:\n    kind: redis\n    url: {url}\n" for i, url in enumerate(urls)))
                        row["cli"] = _median([cli_side(path, n, cap) for _ in range(runs)])
                    out[kind].append(row)
    finally:
        pg.close()
    return out


def table(result: dict[str, Any]) -> list[str]:
    lines = [f"cap {result['concurrency']}, medians of {result['runs']} runs; lib / raw, ratio",
             "kind       N     wall ms lib/raw (x)          CPU ms/probe lib/raw (x)   peak RSS MiB lib/raw  "
             "peak fds lib/raw  setup ms"]
    for kind in ("redis", "timescale"):
        for row in result[kind]:
            lib, raw = row["lib"], row["raw"]
            cpu, raw_cpu = lib["cpu_ms_per_probe"], raw["cpu_ms_per_probe"]
            lines.append(
                f"{kind:<9} {row['n']:>5}  {lib['wall_s'] * 1000:8.1f} / {raw['wall_s'] * 1000:8.1f}"
                f" ({lib['wall_s'] / raw['wall_s']:4.2f})   {cpu:6.2f} / {raw_cpu:6.2f}"
                f" ({cpu / raw_cpu:4.2f})   {lib['peak_rss_mib']:6.1f} /"
                f" {raw['peak_rss_mib']:6.1f}      {lib['peak_fds_added']:5d} / {raw['peak_fds_added']:5d}"
                f"   {lib['setup_ms']:7.1f}")
            if "cli" in row:
                cli = row["cli"]
                lines.append(f"{'  cli':<9} {row['n']:>5}  {cli['wall_s'] * 1000:8.1f} (whole process: report"
                             f" --targets FILE)   {cli['cpu_ms_per_probe']:6.2f} ms CPU/probe incl. start-up;"
                             f" {cli['peak_rss_mib']:.1f} MiB")
    return lines


def verdicts(result: dict[str, Any]) -> list[str]:
    out = []

    def line(ok: bool, text: str) -> None:
        out.append(f"{'PASS' if ok else 'MISS'}  {text}")

    big = result["redis"][-1]
    line(big["lib"]["wall_s"] < GOAL_WALL_S,
         f"{big['n']} Redis targets, engine run: {big['lib']['wall_s']:.2f} s (goal < {GOAL_WALL_S:g} s)")
    if "cli" in big:
        line(big["cli"]["wall_s"] < GOAL_WALL_S,
             f"{big['n']} Redis targets, whole CLI process: {big['cli']['wall_s']:.2f} s (goal < {GOAL_WALL_S:g} s)")
    for kind in ("redis", "timescale"):
        rows = result[kind]
        top = rows[-1]
        ratio = top["lib"]["cpu_ms_per_probe"] / top["raw"]["cpu_ms_per_probe"]
        line(ratio <= GOAL_CPU_RATIO, f"{kind} N={top['n']}: CPU per probe {top['lib']['cpu_ms_per_probe']:.2f} ms ="
                                      f" {ratio:.2f}x raw (goal <= {GOAL_CPU_RATIO:g}x)")
        rss = max(r["lib"]["peak_rss_mib"] for r in rows)
        line(rss <= GOAL_RSS_MIB, f"{kind}: peak RSS {rss:.1f} MiB (goal <= {GOAL_RSS_MIB:g} MiB)")
        before = rows[-2]
        linear = top["lib"]["cpu_ms_per_probe"] / before["lib"]["cpu_ms_per_probe"]
        line(linear <= GOAL_LINEARITY, f"{kind}: CPU per probe at N={top['n']} / at N={before['n']} = {linear:.2f}"
                                       f" (linear: <= {GOAL_LINEARITY:g})")
        fds = top["lib"]["peak_fds_added"]
        bound = min(top["n"], result["concurrency"]) * SOCKETS[kind] + LOOP_FDS
        line(fds <= bound, f"{kind} N={top['n']}: peak descriptors added {fds} (raw {top['raw']['peak_fds_added']};"
                           f" bound {bound}: {SOCKETS[kind]} per probe in flight, plus the event loop's {LOOP_FDS})")
    return out


def main(runs: int = 3, cap: int = 100) -> int:
    result = measure(runs=runs, cap=cap)
    print(json.dumps({"scale": result}, indent=2))
    print()
    for text in (*table(result), "", *verdicts(result)):
        print(text)
    return 0
