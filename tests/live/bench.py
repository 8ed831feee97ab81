"""Benchmarks against a throwaway local stack, reported as ratios against baselines run in the same invocation.

    scripts/bench [--runs N]

(a) cold `ingest-probe report --connectivity` vs an inline asyncio script making the same three raw client
    calls concurrently (both whole processes, alternated);
(b) manifest-only `report` wall time, and which client libraries it imported (none expected);
(c) one black-holed Redis with --timeout 1: wall time vs probing the same connectors one after another;
(d) every connector behind ~100 ms of injected latency per chunk: concurrent vs sequential probing;
(e) a warm embedded `Prober.check()` vs the same raw round trips on warm clients (see bench_prober.py);
(f) `serve`: /readyz under 200 concurrent clients vs a trivial ASGI app on the same server, backend sessions
    during the load, RSS idle and after 10,000 requests (see bench_serve.py).
Medians over N runs. Numbers are for this machine, this minute: compare the ratios, not the seconds.

    scripts/bench --soak [--cycles 1000] [--soak-timeout 0.1]

runs only the soak instead (see bench_soak.py): the watch loop for 1,000 cycles against healthy, refused and
black-holed targets of every kind, RSS and fds at cycles 10 and 1,000, with a verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # as a script: import `live.*` as under pytest; never shadow `redis`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from live.net import BlackHole, DelayProxy  # noqa: E402
from live.stack import TOPICS, LocalStack, local_stack  # noqa: E402

RAW_BASELINE = """
import asyncio, sys
import asyncpg, redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient

async def pg():
    conn = await asyncpg.connect(host="127.0.0.1", port={pg_port}, user="{pg_user}", password="{pg_password}",
                                 database="postgres", timeout=5)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()

async def rd():
    client = aioredis.Redis(host="127.0.0.1", port={redis_port}, protocol=2)
    try:
        await client.ping()
    finally:
        await client.aclose()

async def kf():
    admin = AIOKafkaAdminClient(bootstrap_servers="{kafka}", request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.describe_cluster()
    finally:
        await admin.close()

async def main():
    await asyncio.gather(pg(), rd(), kf())

asyncio.run(main())
print("ok")
"""


def _timed(cmd: list[str], *, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - started, proc


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest_probe", *args]


def cold_cli_vs_raw(stack: LocalStack, env_file: Path, runs: int) -> dict[str, Any]:
    pg = stack.postgres
    script = RAW_BASELINE.format(pg_port=pg.port, pg_user=pg.user, pg_password=pg.password,
                                 redis_port=stack.redis.port, kafka=stack.kafka.bootstrap)
    ours, raw = [], []
    for _ in range(runs):
        t, proc = _timed(_cli("report", "--no-env", "--env-file", str(env_file), "--connectivity"))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["status"] == "ok"
        ours.append(t)
        t, proc = _timed([sys.executable, "-c", script])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "ok"
        raw.append(t)
    return {"ingest_probe_s": statistics.median(ours), "raw_clients_s": statistics.median(raw),
            "ratio": statistics.median(ours) / statistics.median(raw), "target": "<= 1.15"}


def manifest_only(env_file: Path, runs: int) -> dict[str, Any]:
    probe = (
        "import runpy, sys, io, contextlib\n"
        f"sys.argv = ['ingest-probe', 'report', '--no-env', '--env-file', {str(env_file)!r}]\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n        runpy.run_module('ingest_probe', run_name='__main__')\n"
        "    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('asyncpg', 'redis', 'aiokafka') if m in sys.modules))\n"
    )
    _, proc = _timed([sys.executable, "-c", probe])
    times = [_timed(_cli("report", "--no-env", "--env-file", str(env_file)))[0] for _ in range(runs)]
    baseline = [_timed([sys.executable, "-c", "pass"])[0] for _ in range(runs)]
    return {"report_s": statistics.median(times), "bare_python_s": statistics.median(baseline),
            "ratio_to_bare_python": statistics.median(times) / statistics.median(baseline),
            "client_libraries_imported": proc.stdout.strip()}


async def _probe_each(env: dict[str, str], deadline: float, *, concurrent: bool) -> float:
    from ingest_probe.engine.run import jobs, preload_drivers
    from ingest_probe.engine.supervisor import TaskSupervisor
    from ingest_probe.settings.service import load_settings
    from ingest_probe.settings.targets import classic_targets

    targets = classic_targets(load_settings(environ=env))
    preload_drivers(targets)
    work = jobs(targets)
    started = time.perf_counter()
    if concurrent:
        await TaskSupervisor(timeout=deadline, jitter=0.0).run(work)
    else:
        for job in work:  # the predecessor's shape: one probe after another
            await TaskSupervisor(timeout=deadline, jitter=0.0).run([job])
    return time.perf_counter() - started


def black_hole(stack: LocalStack, env_file: Path, runs: int) -> dict[str, Any]:
    with BlackHole() as hole:
        env = {**stack.env(), "REDIS_URL": f"redis://127.0.0.1:{hole.port}/0"}
        walls = []
        for _ in range(runs):
            t, proc = _timed(_cli("report", "--no-env", "--env-file", str(env_file), "--extra",
                                  f"REDIS_URL={env['REDIS_URL']}", "--connectivity", "--timeout", "1"))
            assert proc.returncode == 2, (proc.returncode, proc.stderr)
            walls.append(t)
        all_holes = {**env, "TIMESCALEDB_PORT": str(hole.port), "KAFKA_BROKERS": f"127.0.0.1:{hole.port}"}
        sequential = statistics.median(
            [asyncio.run(_probe_each(all_holes, 1.0, concurrent=False)) for _ in range(max(1, runs // 3))]
        )
        concurrent = statistics.median(
            [asyncio.run(_probe_each(all_holes, 1.0, concurrent=True)) for _ in range(max(1, runs // 3))]
        )
    return {"cli_wall_s_one_black_holed_redis": statistics.median(walls), "target": "<= 1.3 s",
            "all_three_black_holed_sequential_s": sequential, "all_three_black_holed_concurrent_s": concurrent,
            "sequential_over_concurrent": sequential / concurrent}


def injected_latency(stack: LocalStack, runs: int, delay: float = 0.1) -> dict[str, Any]:
    """Every byte of all three connectors behind a proxy that delays each chunk by ``delay`` each way.

    Kafka needs its own broker advertising the proxy's port, or the client would bypass the proxy after
    bootstrap. Concurrent time is the slowest probe; sequential time is the sum of all three.
    """
    from live.kafka import TansuBroker

    with DelayProxy(stack.postgres.port, delay) as pg, DelayProxy(stack.redis.port, delay) as rd, \
            DelayProxy(0, delay) as kf:
        with TansuBroker.start(advertised_port=kf.port) as broker:
            kf.target = broker.port
            broker.create_topic(next(iter(TOPICS.values())))
            env = {**stack.env(), "TIMESCALEDB_PORT": str(pg.port), "REDIS_URL": f"redis://127.0.0.1:{rd.port}/0",
                   "KAFKA_BROKERS": f"127.0.0.1:{kf.port}",
                   "KAFKA_INGEST_TOPICS": f"daily:{next(iter(TOPICS.values()))}"}
            seq = [asyncio.run(_probe_each(env, 10.0, concurrent=False)) for _ in range(runs)]
            conc = [asyncio.run(_probe_each(env, 10.0, concurrent=True)) for _ in range(runs)]
            per_probe = asyncio.run(_per_probe_ms(env))
    return {"delay_per_chunk_each_way_s": delay, "sequential_s": statistics.median(seq),
            "concurrent_s": statistics.median(conc),
            "speedup": statistics.median(seq) / statistics.median(conc), "target": ">= 2.5",
            "per_probe_ms": per_probe,
            "bound": "concurrent >= slowest probe, sequential = sum: speedup <= sum/max of per_probe_ms"}


async def _per_probe_ms(env: dict[str, str]) -> dict[str, float]:
    from ingest_probe.engine.run import jobs
    from ingest_probe.engine.supervisor import TaskSupervisor
    from ingest_probe.settings.service import load_settings
    from ingest_probe.settings.targets import classic_targets

    targets = classic_targets(load_settings(environ=env))
    results = await TaskSupervisor(timeout=10.0, jitter=0.0).run(jobs(targets))
    return {r.name: round(r.latency_ms or 0.0, 1) for r in results}


def warm_prober(stack: LocalStack, runs: int) -> dict[str, Any]:
    try:
        from live.bench_prober import measure
    except ImportError as exc:
        return {"skipped": f"bench_prober unavailable: {exc}"}
    result: dict[str, Any] = asyncio.run(measure(stack.env()))
    return result


def serve(stack: LocalStack, env_file: Path, runs: int) -> dict[str, Any]:
    from live.bench_serve import measure

    return measure(stack, env_file, runs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--soak", action="store_true", help="run the soak benchmark only")
    parser.add_argument("--cycles", type=int, default=1000, help="soak: cycles to run (at least 10)")
    parser.add_argument("--soak-timeout", type=float, default=0.1, help="soak: per-probe deadline in seconds")
    parser.add_argument("--scale", action="store_true", help="run the scale benchmark only (bench_scale.py)")
    parser.add_argument("--concurrency", type=int, default=100, help="scale: the cap of probes in flight")
    args = parser.parse_args(argv)
    if args.scale:
        from live.bench_scale import main as scale

        return scale(runs=args.runs if "--runs" in argv else 3, cap=args.concurrency)
    if args.soak:
        from live.bench_soak import soak, verdicts

        with local_stack(topics=False) as stack:
            result = soak(stack.env(), cycles=max(10, args.cycles), timeout=args.soak_timeout)
        print(json.dumps({"soak": result}, indent=2))
        print()
        for line in verdicts(result):
            print(line)
        return 0
    with local_stack() as stack, tempfile.TemporaryDirectory(prefix="ingest-probe-bench-") as tmp:
        env_file = stack.env_file(Path(tmp))
        results = {
            "a_cold_cli_vs_raw_clients": cold_cli_vs_raw(stack, env_file, args.runs),
            "b_manifest_only": manifest_only(env_file, args.runs),
            "c_black_holed_redis_timeout_1s": black_hole(stack, env_file, max(3, args.runs // 2)),
            "d_injected_latency_100ms": injected_latency(stack, max(3, args.runs // 2)),
            "e_warm_prober_vs_raw_warm_clients": warm_prober(stack, args.runs),
            "f_serve_200_clients": serve(stack, env_file, max(3, args.runs // 2)),
        }
    print(json.dumps(_rounded(results), indent=2))
    print()
    for line in _verdicts(results):
        print(line)
    return 0


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _verdicts(r: dict[str, Any]) -> list[str]:
    """One line per benchmark: the measured ratio against its target, and whether it was met."""
    def line(name: str, value: float, target: float, lower_is_better: bool, unit: str = "x") -> str:
        met = value <= target if lower_is_better else value >= target
        op = "<=" if lower_is_better else ">="
        return f"{'MET ' if met else 'MISS'}  {name}: {value:.2f}{unit} (target {op} {target}{unit})"

    a, b, c, d = (r["a_cold_cli_vs_raw_clients"], r["b_manifest_only"], r["c_black_holed_redis_timeout_1s"],
                  r["d_injected_latency_100ms"])
    out = [
        line("(a) cold CLI / raw clients", a["ratio"], 1.15, True),
        f"INFO  (b) manifest-only report {b['report_s']:.3f} s ({b['ratio_to_bare_python']:.1f}x a bare python"
        f" start); client libraries imported: {b['client_libraries_imported']}",
        line("(c) one black-holed Redis, --timeout 1, wall", c["cli_wall_s_one_black_holed_redis"], 1.3, True, " s"),
        f"INFO  (c) all three black-holed: sequential / concurrent = {c['sequential_over_concurrent']:.2f}x",
        line("(d) 100 ms latency: sequential / concurrent", d["speedup"], 2.5, False),
    ]
    per = d["per_probe_ms"]
    out.append(f"INFO  (d) bound sum/max of per-probe latencies = {sum(per.values()) / max(per.values()):.2f}x {per}")
    e = r["e_warm_prober_vs_raw_warm_clients"]
    if "ratio" in e:
        out.append(line("(e) warm Prober.check() / raw warm round trips", e["ratio"], 1.3, True))
    f = r["f_serve_200_clients"]
    out.append(f"INFO  (f) serve /readyz, 200 clients: p50 {f['readyz_p50_ms']:.1f} ms, p99 {f['readyz_p99_ms']:.1f} ms"
               f" = {f['ratio_p50']:.2f}x / {f['ratio_p99']:.2f}x a trivial ASGI app on the same server"
               f" ({f['trivial_asgi_p50_ms']:.1f} / {f['trivial_asgi_p99_ms']:.1f} ms)")
    out.append(f"INFO  (f) backend sessions during the load (pg, redis): {f['backend_sessions_peak_pg_redis']};"
               f" RSS idle {f['rss_idle_kib'] / 1024:.1f} MiB, after 10,000 /readyz"
               f" {f['rss_after_10k_readyz_kib'] / 1024:.1f} MiB, after {f['requests_served_at_end']} requests"
               f" {f['rss_at_end_kib'] / 1024:.1f} MiB")
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
