"""Benchmarks against a throwaway local stack, reported as ratios against baselines run in the same invocation.

    scripts/bench [--runs N] [--quick]

The table of issue 15 ("faster than the raw clients"), one row each, with its verdict:

cold loopback   cold `ingest-probe report --connectivity` / an inline asyncio script making the same three raw
                client calls concurrently (both whole processes, alternated; medians);
cold 50 ms      the same two processes with every hop delayed 50 ms each way (PostgreSQL, Redis and a Tansu
                broker that advertises its delaying proxy, so every Kafka connection is delayed);
round trips     per connector, counted by a TCP proxy (hook: ``round_trips``; "n/a" until it is wired);
warm 50 ms      a warm embedded `Prober.check()` / the same raw round trips on warm clients, 50 ms hops
                (bench_prober.py);
warm loopback   the same on loopback: the check's median in ms (the raw calls' median beside it);
--help          `ingest-probe --help` / a bare `python -c pass` (processes alternated; medians);
manifest-only   `ingest-probe report` (no probe) / a bare `python -c pass`.

and more, without --quick:
(c) one black-holed Redis with --timeout 1: wall time vs probing the same connectors one after another;
(d) every connector behind 100 ms of injected latency each way: concurrent vs sequential probing;
(f) `serve`: /readyz under 200 concurrent clients vs a trivial ASGI app on the same server, backend sessions
    during the load, RSS idle and after 10,000 requests (see bench_serve.py).
Medians over N runs. Numbers are for this machine, this minute: compare the ratios, not the seconds.
It prints the JSON of every measurement, then the table.

    scripts/bench --soak [--cycles 1000] [--soak-timeout 0.1]

runs only the soak instead (see bench_soak.py): the watch loop for 1,000 cycles against healthy, refused and
black-holed targets of every kind, RSS and fds at cycles 10 and 1,000, with a verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # as a script: import `live.*` as under pytest; never shadow `redis`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from live.counting import TARGETS as COUNTED  # noqa: E402
from live.counting import round_trip_counts  # noqa: E402
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
    """Cold ``report --connectivity`` vs the raw script on loopback."""
    pg = stack.postgres
    return _cold_pairs(env_file, RAW_BASELINE.format(pg_port=pg.port, pg_user=pg.user, pg_password=pg.password,
                                                     redis_port=stack.redis.port, kafka=stack.kafka.bootstrap), runs)


def _cold_pairs(env_file: Path, script: str, runs: int) -> dict[str, Any]:
    """Both whole processes, alternated ``runs`` times; the ratio of their medians (and the median of the
    pairs' ratios beside it, less sensitive to the machine's drift during the run)."""
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
            "ratio": statistics.median(ours) / statistics.median(raw),
            "median_pair_ratio": statistics.median(o / r for o, r in zip(ours, raw, strict=True))}


@contextlib.contextmanager
def delayed_stack(stack: LocalStack, delay: float) -> Iterator[dict[str, Any]]:
    """Every hop of every connector ``delay`` seconds each way: PostgreSQL and Redis behind ``DelayProxy``, and
    a Tansu broker of its own that advertises its proxy's port (else the client would reach the broker
    directly after bootstrap). Yields the configuration and the raw script for it."""
    from live.kafka import TansuBroker

    with DelayProxy(stack.postgres.port, delay) as pg, DelayProxy(stack.redis.port, delay) as rd, \
            DelayProxy(0, delay) as kf, TansuBroker.start(advertised_port=kf.port) as broker:
        kf.target = broker.port
        for topic in TOPICS.values():
            broker.create_topic(topic)
        kafka = f"127.0.0.1:{kf.port}"
        env = {**stack.env(), "TIMESCALEDB_PORT": str(pg.port), "REDIS_URL": f"redis://127.0.0.1:{rd.port}/0",
               "KAFKA_BROKERS": kafka}
        p = stack.postgres
        script = RAW_BASELINE.format(pg_port=pg.port, pg_user=p.user, pg_password=p.password,
                                     redis_port=rd.port, kafka=kafka)
        yield {"env": env, "raw_script": script}


def cold_delayed(delayed: dict[str, Any], directory: Path, runs: int) -> dict[str, Any]:
    """Cold ``report --connectivity`` vs the raw script, every hop delayed."""
    env_file = directory / "delayed.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(delayed["env"].items())))
    env_file.chmod(0o600)
    return _cold_pairs(env_file, delayed["raw_script"], runs)


def start_up(env_file: Path, runs: int) -> dict[str, Any]:
    """``--help`` and a manifest-only ``report`` vs a bare ``python -c pass``, the three alternated."""
    commands = {"bare_python": [sys.executable, "-c", "pass"], "help": _cli("--help"),
                "manifest_only": _cli("report", "--no-env", "--env-file", str(env_file))}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(max(runs, 11)):  # short processes: a few more runs are cheap
        for name, cmd in commands.items():
            t, proc = _timed(cmd)
            assert proc.returncode == 0, proc.stderr
            times[name].append(t)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    return {"bare_python_s": median["bare_python"], "help_s": median["help"],
            "manifest_only_s": median["manifest_only"],
            "help_ratio": median["help"] / median["bare_python"],
            "manifest_only_ratio": median["manifest_only"] / median["bare_python"]}


def round_trips(stack: LocalStack) -> dict[str, Any]:
    """Round trips (and connections) of each probe, cold and warm, counted by a loopback proxy that logs every
    write (``live.counting``; ``tests/test_round_trips.py`` asserts the same counts)."""
    counts = round_trip_counts(stack.postgres, stack.redis)
    return {"counts": {kind: {phase: {"round_trips": n, "connections": c} for phase, (n, c) in by_phase.items()}
                       for kind, by_phase in counts.items()}}


#: Issue 15's targets: (round trips, connections) per connector, cold (``live.counting.TARGETS``).
ROUND_TRIP_TARGETS = {kind: by_phase["cold"] for kind, by_phase in COUNTED.items()}


def manifest_only_imports(env_file: Path) -> str:
    """Which client libraries a manifest-only ``report`` imported (none expected)."""
    probe = (
        "import runpy, sys, io, contextlib\n"
        f"sys.argv = ['ingest-probe', 'report', '--no-env', '--env-file', {str(env_file)!r}]\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n        runpy.run_module('ingest_probe', run_name='__main__')\n"
        "    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('asyncpg', 'redis', 'aiokafka') if m in sys.modules))\n"
    )
    _, proc = _timed([sys.executable, "-W", "default", "-c", probe])  # -W: the entry returns, no quick exit
    return proc.stdout.strip()


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


def warm_prober(env: dict[str, str], *, iterations: int = 200, warmup: int = 10) -> dict[str, Any]:
    try:
        from live.bench_prober import measure
    except ImportError as exc:
        return {"skipped": f"bench_prober unavailable: {exc}"}
    result: dict[str, Any] = asyncio.run(measure(env, iterations=iterations, warmup=warmup))
    return result


def serve(stack: LocalStack, env_file: Path, runs: int) -> dict[str, Any]:
    from live.bench_serve import measure

    return measure(stack, env_file, runs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="only the table of issue 15, fewer runs (~1 min)")
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
    runs = min(args.runs, 5) if args.quick else args.runs
    with local_stack() as stack, tempfile.TemporaryDirectory(prefix="ingest-probe-bench-") as tmp:
        env_file = stack.env_file(Path(tmp))
        results: dict[str, Any] = {
            "cold_loopback": cold_cli_vs_raw(stack, env_file, max(runs, 11)),  # ~0.5 s a pair: a few more
            "start_up": start_up(env_file, runs),
            "manifest_only_client_libraries_imported": manifest_only_imports(env_file),
            "round_trips": round_trips(stack),
            "warm_loopback": warm_prober(stack.env(), iterations=100 if args.quick else 200),
        }
        with delayed_stack(stack, HOP_DELAY) as delayed:
            results["cold_50ms"] = cold_delayed(delayed, Path(tmp), runs)
            results["warm_50ms"] = warm_prober(delayed["env"], iterations=10 if args.quick else 20, warmup=2)
        if not args.quick:
            results["c_black_holed_redis_timeout_1s"] = black_hole(stack, env_file, max(3, runs // 2))
            results["d_injected_latency_100ms"] = injected_latency(stack, max(3, runs // 2))
            results["f_serve_200_clients"] = serve(stack, env_file, max(3, runs // 2))
    print(json.dumps(_rounded(results), indent=2))
    print()
    for line in [*_table(results), *_verdicts(results)]:
        print(line)
    return 0


#: Each hop's one-way delay in the "50 ms hops" rows.
HOP_DELAY = 0.05


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _table(r: dict[str, Any]) -> list[str]:
    """Issue 15's table: each row measured against its baseline in this run, its target and verdict."""
    def verdict(value: float | None, target: float) -> str:
        return "n/a" if value is None else "MET" if value <= target else "MISS"

    cold, slow, up = r["cold_loopback"], r["cold_50ms"], r["start_up"]
    warm, warm_slow = r["warm_loopback"], r["warm_50ms"]
    rows: list[tuple[str, str, str, str, str, str]] = [
        ("cold report --connectivity, loopback", f"{cold['ingest_probe_s']:.3f} s",
         f"raw script {cold['raw_clients_s']:.3f} s", f"{cold['ratio']:.2f}x (pairs {cold['median_pair_ratio']:.2f}x)",
         "<= 1.0x", verdict(cold["ratio"], 1.0)),
        (f"cold, every hop {HOP_DELAY * 1000:.0f} ms each way", f"{slow['ingest_probe_s']:.3f} s",
         f"raw script {slow['raw_clients_s']:.3f} s", f"{slow['ratio']:.2f}x (pairs {slow['median_pair_ratio']:.2f}x)",
         "<= 0.9x", verdict(slow["ratio"], 0.9)),
    ]
    counts = r["round_trips"].get("counts")
    target = " / ".join(f"{n} ({c})" if c and k != "redis" else f"{n}" for k, (n, c) in ROUND_TRIP_TARGETS.items())
    if counts is None:
        rows.append(("round trips PostgreSQL / Redis / Kafka", "n/a", "", "", target, "n/a"))
    else:
        cold_counts = {k: counts[k]["cold"] for k in ROUND_TRIP_TARGETS}
        measured = " / ".join(f"{c['round_trips']} ({c['connections']})" for c in cold_counts.values())
        warm_counts = " / ".join(str(counts[k]["warm"]["round_trips"]) for k in ROUND_TRIP_TARGETS)
        met = all(cold_counts[k]["round_trips"] <= n and cold_counts[k]["connections"] <= c
                  for k, (n, c) in ROUND_TRIP_TARGETS.items())
        rows.append(("round trips PostgreSQL / Redis / Kafka", measured, f"warm {warm_counts}", "", target,
                     "MET" if met else "MISS"))
    for label, w, target_ratio in ((f"warm Prober.check(), {HOP_DELAY * 1000:.0f} ms hops", warm_slow, 1.1),):
        if "ratio" in w:
            rows.append((label, f"{w['prober_median_ms']:.1f} ms", f"raw warm calls {w['raw_median_ms']:.1f} ms",
                         f"{w['ratio']:.2f}x", f"<= {target_ratio}x", verdict(w["ratio"], target_ratio)))
    if "prober_median_ms" in warm:
        rows.append(("warm Prober.check(), loopback", f"{warm['prober_median_ms']:.2f} ms",
                     f"raw warm calls {warm['raw_median_ms']:.2f} ms", f"{warm['ratio']:.2f}x", "<= 4 ms",
                     verdict(warm["prober_median_ms"], 4.0)))
    bare = f"python -c pass {up['bare_python_s'] * 1000:.0f} ms"
    rows += [
        ("--help", f"{up['help_s'] * 1000:.0f} ms", bare, f"{up['help_ratio']:.2f}x", "<= 2.2x",
         verdict(up["help_ratio"], 2.2)),
        ("manifest-only report", f"{up['manifest_only_s'] * 1000:.0f} ms", bare, f"{up['manifest_only_ratio']:.2f}x",
         "<= 3.0x", verdict(up["manifest_only_ratio"], 3.0)),
    ]
    head = ("row", "measured", "baseline (same run)", "ratio", "target", "verdict")
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in (head, tuple("-" * w for w in widths), *rows)]


def _verdicts(r: dict[str, Any]) -> list[str]:
    """One line per benchmark beyond the table (not with --quick): the measured value against its target."""
    def line(name: str, value: float, target: float, lower_is_better: bool, unit: str = "x") -> str:
        met = value <= target if lower_is_better else value >= target
        op = "<=" if lower_is_better else ">="
        return f"{'MET ' if met else 'MISS'}  {name}: {value:.2f}{unit} (target {op} {target}{unit})"

    out = ["", f"INFO  manifest-only report: client libraries imported: {r['manifest_only_client_libraries_imported']}"]
    if "c_black_holed_redis_timeout_1s" not in r:
        return out
    c, d = r["c_black_holed_redis_timeout_1s"], r["d_injected_latency_100ms"]
    out += [
        line("(c) one black-holed Redis, --timeout 1, wall", c["cli_wall_s_one_black_holed_redis"], 1.3, True, " s"),
        f"INFO  (c) all three black-holed: sequential / concurrent = {c['sequential_over_concurrent']:.2f}x",
        line("(d) 100 ms latency: sequential / concurrent", d["speedup"], 2.5, False),
    ]
    per = d["per_probe_ms"]
    out.append(f"INFO  (d) bound sum/max of per-probe latencies = {sum(per.values()) / max(per.values()):.2f}x {per}")
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
