"""Soak benchmark: one long `watch` loop against healthy, refused and black-holed targets; memory and fds stay flat.

    scripts/bench --soak [--cycles 1000] [--soak-timeout 0.1]

Nine targets — PostgreSQL, Redis and Kafka each healthy (a throwaway local stack), refused (a free port) and
black-holed (a listener that never accepts) — probed by the watch loop itself (``WatchLoop``: one Prober, warm
clients, the JSON report and the Prometheus textfile replaced every cycle) with ``--interval`` ~0, in this
process. Reported at cycles 10, 100, 500 and the last: the process's RSS (``VmRSS``) and open descriptors
(``/proc/self/fd``); plus the slowest cycle against its bound (the deadline plus the close budget) and
whether every cycle reported every target (down ones as down). Not a test: numbers and a verdict.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

#: Verdict thresholds: descriptors must not grow at all; RSS may grow this much from cycle 10 (allocator noise,
#: caches that fill once), beyond which it counts as a leak.
RSS_GROWTH_LIMIT_MIB = 8.0
SAMPLES = (10, 100, 500)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _soak(env: dict[str, str], *, cycles: int, deadline: float, workdir: Path) -> dict[str, Any]:
    from ingest_probe import load_settings, target_from_url
    from ingest_probe.commands.watch_loop import QUIET, WatchLoop, WatchOptions
    from ingest_probe.defaults import CLOSE_BUDGET
    from live.net import Unaccepted, free_port

    with Unaccepted() as hole:
        urls = {
            "timescale": (f"postgresql://{env['TIMESCALEDB_USER']}:{env['TIMESCALEDB_PASSWORD']}@127.0.0.1:"
                          f"{env['TIMESCALEDB_PORT']}/{env['TIMESCALEDB_DB']}",
                          f"postgresql://u:p@127.0.0.1:{free_port()}/db", f"postgresql://u:p@127.0.0.1:{hole.port}/db"),
            "redis": (env["REDIS_URL"], f"redis://127.0.0.1:{free_port()}/0", f"redis://127.0.0.1:{hole.port}/0"),
            "kafka": (env["KAFKA_BROKERS"], f"127.0.0.1:{free_port()}", f"127.0.0.1:{hole.port}"),
        }
        targets = [target_from_url(kind, url, name=f"{kind}-{state}")[0]
                   for kind, trio in urls.items() for state, url in zip(("ok", "refused", "hole"), trio, strict=True)]
        expected = {t.name: "ok" if t.name.endswith("-ok") else "down" for t in targets}
        out, prom = workdir / "report.json", workdir / "ingest.prom"
        samples: dict[int, dict[str, float]] = {}
        slowest = 0.0
        missing: list[int] = []  # cycles whose report lacks a target
        not_down: list[tuple[int, str, str]] = []  # a refused or black-holed target not reported down
        slow_healthy: list[tuple[int, str, str | None, str | None]] = []  # a healthy target not ok
        started = time.monotonic()
        scope = anyio.CancelScope()

        async def sleep(delay: float) -> None:
            nonlocal slowest
            report = json.loads(out.read_text())
            cycle = report["run"]["check"]
            slowest = max(slowest, report["run"]["duration_ms"] / 1000.0)
            results = {r["name"]: r for r in report["connectivity"]}
            if set(results) != set(expected):
                missing.append(cycle)
            for name, want in expected.items():
                got = results.get(name)
                if got is None or got["status"] == want:
                    continue
                if want == "down":
                    not_down.append((cycle, name, got["status"]))
                else:
                    slow_healthy.append((cycle, name, got["error_kind"], got["error"]))
            if cycle in SAMPLES or cycle == cycles:
                samples[cycle] = {"rss_mib": round(rss_mib(), 2), "fds": fd_count(),
                                  "elapsed_s": round(time.monotonic() - started, 1)}
                print(f"  soak: cycle {cycle}: {samples[cycle]}", file=sys.stderr, flush=True)
            if cycle >= cycles:
                scope.cancel()
            await anyio.sleep(delay)

        options = WatchOptions(interval=0.001, timeout=deadline, jitter=0.0, output=out, prometheus_file=prom,
                               handle_signals=False, verbosity=QUIET)
        loop = WatchLoop(load_settings(environ={}), options, targets=targets, sleep=sleep)
        with scope:
            await loop.main()
    first, last = samples[min(samples)], samples[max(samples)]
    bound = deadline + CLOSE_BUDGET
    return {
        "targets": sorted(expected), "cycles": max(samples), "timeout_s": deadline, "samples": samples,
        "rss_growth_mib": round(last["rss_mib"] - first["rss_mib"], 2), "fd_growth": last["fds"] - first["fds"],
        "slowest_cycle_s": round(slowest, 3), "cycle_bound_s": bound,
        "cycles_missing_a_target": len(missing), "dead_target_not_down": not_down[:5],
        "healthy_target_not_ok": slow_healthy[:10], "healthy_target_not_ok_count": len(slow_healthy),
    }


def soak(env: dict[str, str], *, cycles: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ingest-probe-soak-") as tmp:
        result: dict[str, Any] = anyio.run(lambda: _soak(env, cycles=cycles, deadline=timeout, workdir=Path(tmp)))
    return result


def verdicts(r: dict[str, Any]) -> list[str]:
    first, last = min(r["samples"]), max(r["samples"])
    a, b = r["samples"][first], r["samples"][last]
    ok_fds = r["fd_growth"] == 0
    ok_rss = r["rss_growth_mib"] <= RSS_GROWTH_LIMIT_MIB
    ok_pace = r["slowest_cycle_s"] <= r["cycle_bound_s"]
    ok_reports = r["cycles_missing_a_target"] == 0 and not r["dead_target_not_down"]
    return [
        f"{'MET ' if ok_fds else 'MISS'}  soak fds: {a['fds']} at cycle {first}, {b['fds']} at cycle {last}"
        " (target: no growth)",
        f"{'MET ' if ok_rss else 'MISS'}  soak RSS: {a['rss_mib']:.1f} MiB at cycle {first}, {b['rss_mib']:.1f} MiB"
        f" at cycle {last} (+{r['rss_growth_mib']:.2f} MiB; target <= +{RSS_GROWTH_LIMIT_MIB} MiB)",
        f"{'MET ' if ok_pace else 'MISS'}  soak pace: slowest cycle {r['slowest_cycle_s']:.3f} s (target <= deadline"
        f" {r['timeout_s']} s + close budget = {r['cycle_bound_s']} s)",
        f"{'MET ' if ok_reports else 'MISS'}  soak reports: {r['cycles_missing_a_target']} of {r['cycles']} cycles"
        f" with a target missing, {len(r['dead_target_not_down'])} with a refused or black-holed target not down"
        " (target: 0 and 0)",
        f"INFO  soak: a healthy target was not ok {r['healthy_target_not_ok_count']} time(s) in {r['cycles']} cycles"
        f" (with its error kind; a {r['timeout_s']} s deadline on a loaded machine times out now and then)"
        + (f": {r['healthy_target_not_ok'][:3]}" if r["healthy_target_not_ok"] else ""),
    ]
