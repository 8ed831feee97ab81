"""The Prometheus test harness (tests/live/prometheus.py) against the real promtool and Prometheus binaries."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from live.net import free_port
from live.prometheus import (
    PrometheusServer,
    Promtool,
    StaticExporter,
    check_loopback,
    find_prometheus,
    probe_job,
    static_job,
)

TESTS = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent

GOOD = """\
# HELP demo_requests_total Requests served.
# TYPE demo_requests_total counter
demo_requests_total{code="200"} 7
# HELP demo_temperature_celsius A reading.
# TYPE demo_temperature_celsius gauge
demo_temperature_celsius{room="a"} 21.5
demo_temperature_celsius{room="b"} -3
"""


def test_check_metrics_accepts_a_clean_exposition(promtool: Promtool) -> None:
    """promtool check metrics finds nothing in a well-formed exposition with HELP, TYPE and _total counters."""
    assert promtool.check_metrics(GOOD) == []


def test_check_metrics_reports_a_counter_without_total(promtool: Promtool) -> None:
    """A counter named without _total is a lint problem naming the metric."""
    bad = GOOD.replace("demo_requests_total", "demo_requests")
    assert promtool.check_metrics(bad) == ['demo_requests counter metrics should have "_total" suffix']


def test_check_metrics_reports_a_malformed_line(promtool: Promtool) -> None:
    """An unterminated label value is a parse error, reported with its line number."""
    problems = promtool.check_metrics(GOOD + 'demo_temperature_celsius{room="c} 1\n')
    assert len(problems) == 1
    assert "text format parsing error in line 8" in problems[0]


def test_check_rules_reports_a_bad_expression_and_duplicates(promtool: Promtool, tmp_path: Path) -> None:
    """check_rules: clean for a valid file; a parse error names file and rule; a duplicate rule is a problem."""
    rule = "  - alert: Down\n    expr: up == 0\n    for: 2m\n"
    good, bad, twice = tmp_path / "good.yml", tmp_path / "bad.yml", tmp_path / "twice.yml"
    good.write_text("groups:\n- name: g\n  rules:\n" + rule)
    bad.write_text("groups:\n- name: g\n  rules:\n" + rule.replace("up == 0", "up =="))
    twice.write_text("groups:\n- name: g\n  rules:\n" + rule + rule)
    assert promtool.check_rules(good) == []
    [problem] = promtool.check_rules(bad)
    assert problem.startswith(f'{bad}: 5:11: group "g", rule 1, "Down": could not parse expression')
    [problem] = promtool.check_rules(twice)
    assert problem.startswith("lint error 1 duplicate rule(s) found.")


def test_check_loopback_refuses_targets_off_loopback() -> None:
    """The harness refuses, before starting anything, a job that could scrape beyond 127.0.0.0/8 and ::1."""
    check_loopback([static_job("a", ["127.0.0.1:9", "[::1]:9"]), probe_job("b", ["redis"], prober="127.0.0.2:9")])
    refused = [
        static_job("a", ["127.0.0.1:9", "10.0.0.1:9"]),
        static_job("a", ["localhost:9"]),  # a name: resolved by the system's resolver
        probe_job("a", ["127.0.0.1:9"], prober="192.168.1.1:9"),
        {**static_job("a", ["127.0.0.1:9"]), "dns_sd_configs": [{"names": ["x"]}]},
        {**static_job("a", ["127.0.0.1:9"]), "proxy_url": "http://127.0.0.1:3128"},
        {**static_job("a", ["127.0.0.1:9"]),
         "relabel_configs": [{"source_labels": ["x"], "target_label": "__address__"}]},
        {**static_job("a", ["127.0.0.1:9"]), "relabel_configs": [{"action": "labelmap", "regex": "(.*)"}]},
    ]  # fmt: skip
    for job in refused:
        with pytest.raises(ValueError, match="job a:"):
            check_loopback([job])


@dataclass
class Scraped:
    """One real Prometheus scraping two loopback exporters: ``metrics`` as a static job, ``prober`` through the
    blackbox-style relabelling (shared by the tests below: each Prometheus waits ~5 s before its first scrape)."""

    prom: PrometheusServer
    metrics: StaticExporter
    prober: StaticExporter


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    find_prometheus()
    with (
        StaticExporter(GOOD) as metrics,
        StaticExporter("# TYPE probe_success gauge\nprobe_success 1\n") as prober,
        PrometheusServer.start(
            [static_job("demo", [metrics.address], labels={"env": "test"}),
             probe_job("probe", ["timescale", "redis"], prober=prober.address)],
            workdir=tmp_path_factory.mktemp("prometheus"),
        ) as prom,
    ):  # fmt: skip
        yield Scraped(prom, metrics, prober)


@pytest.mark.live
def test_prometheus_scrapes_a_loopback_exporter(scraped: Scraped) -> None:
    """End to end: a real Prometheus scrapes a loopback exporter and the query API returns both labelled values."""
    prom, exporter = scraped.prom, scraped.metrics
    samples = prom.wait_for("demo_temperature_celsius", lambda s: len(s) == 2)
    values = {s.labels["room"]: s.value for s in samples}
    assert values == {"a": 21.5, "b": -3.0}
    assert {(s.labels["job"], s.labels["instance"], s.labels["env"]) for s in samples} == {
        ("demo", exporter.address, "test")
    }
    assert set(exporter.requests) == {"/metrics"}
    [up] = prom.query('up{job="demo"}')
    assert up.value == 1


@pytest.mark.live
def test_blackbox_relabelling_scrapes_probe_with_target_names(scraped: Scraped) -> None:
    """probe_job: every target name is scraped as /probe?target=NAME at the prober's address, labelled
    instance=NAME."""
    prom, exporter = scraped.prom, scraped.prober
    samples = prom.wait_for('probe_success{job="probe"}', lambda s: len(s) == 2)
    assert sorted(s.labels["instance"] for s in samples) == ["redis", "timescale"]
    assert set(exporter.requests) == {"/probe?target=timescale", "/probe?target=redis"}
    urls = {t["labels"]["instance"]: t["scrapeUrl"] for t in prom.targets() if t["labels"]["job"] == "probe"}
    assert urls == {name: f"http://{exporter.address}/probe?target={name}" for name in ("timescale", "redis")}


@pytest.mark.live
def test_query_errors_and_stop(
    prometheus_server: Callable[..., PrometheusServer], static_exporter: Callable[[str], StaticExporter]
) -> None:
    """A bad PromQL expression raises with Prometheus's message; stop() ends the process and frees its port."""
    prom = prometheus_server([static_job("demo", [static_exporter(GOOD).address])])
    with pytest.raises(RuntimeError, match="bad_data: .*parse error"):
        prom.query("sum(")
    assert prom.query("1 + 1")[0].value == 2
    prom.stop()
    assert not prom.running
    with pytest.raises(urllib.error.URLError, match="Connection refused"):  # nothing listens any more
        prom.query("1")


@pytest.mark.live
def test_real_textfile_passes_promtool(promtool: Promtool) -> None:
    """Today's `report --format prometheus` output (a connector down) is clean for promtool check metrics."""
    proc = subprocess.run(
        [str(VENV_BIN / "ingest-probe"), "report", "--no-env", "--connectivity", "--format", "prometheus",
         "--timeout", "2", "--extra", f"REDIS_URL=redis://127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # redis down
    assert 'ingest_probe_up{target="redis",connector="redis"} 0' in proc.stdout
    assert promtool.check_metrics(proc.stdout) == []


INNER = """
def test_promtool(promtool):
    assert promtool.path

def test_prometheus(prometheus_server):
    assert prometheus_server
"""


@pytest.mark.parametrize("ci", [False, True])
def test_missing_binaries_skip_locally_and_fail_in_ci(tmp_path: Path, ci: bool) -> None:
    """Without promtool/prometheus the fixtures skip with the install hint; with CI=true they fail the run."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["live.prometheus"]\n')
    (tmp_path / "test_inner.py").write_text(INNER)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(INGEST_PROBE_TEST_PROMTOOL=str(tmp_path / "no-promtool"),
               INGEST_PROBE_TEST_PROMETHEUS=str(tmp_path / "no-prometheus"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), str(TESTS / "guard"), env.get("PYTHONPATH")])))
    if ci:
        env["CI"] = "true"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rsE", "--rootdir", str(tmp_path),
         str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == (1 if ci else 0), out + proc.stderr
    assert ("2 errors" if ci else "2 skipped") in out, out
    assert "no-promtool not found on PATH (set INGEST_PROBE_TEST_PROMTOOL; apt-get install prometheus" in out
    assert "no-prometheus not found on PATH (set INGEST_PROBE_TEST_PROMETHEUS; apt-get install prometheus" in out
