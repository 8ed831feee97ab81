"""Real ``promtool`` and ``prometheus`` (Debian's ``prometheus`` package) for the tests: lint expositions, rule and
config files, and run a throwaway Prometheus on a free loopback port that scrapes loopback targets.

Usable outside pytest::

    with StaticExporter(BODY) as exporter, PrometheusServer.start([static_job("app", [exporter.address])]) as prom:
        prom.wait_for('up{job="app"}', lambda samples: samples[0].value == 1)

Each server listens on 127.0.0.1 only, keeps its TSDB in its own temp dir, scrapes every second, and is stopped
(SIGTERM, then SIGKILL) when its block ends. The loopback guard (tests/guard/) cannot see inside a Go binary, so
before starting, ``check_loopback`` refuses a scrape config whose targets could leave loopback: static targets
only, each on a loopback IP literal, or a blackbox-style ``__address__`` replacement that is one.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loopback_guard
import pytest
import yaml

from live import missing
from live.net import free_port

PROMTOOL = os.environ.get("INGEST_PROBE_TEST_PROMTOOL", "promtool")
PROMETHEUS = os.environ.get("INGEST_PROBE_TEST_PROMETHEUS", "prometheus")
INSTALL_HINT = "apt-get install prometheus: Debian's package ships /usr/bin/prometheus and /usr/bin/promtool"

#: No proxy from the environment (http_proxy would send a loopback request elsewhere).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -------------------------------------------------------------------------------------------------- promtool


class Promtool:
    """``promtool`` run as a subprocess; each check returns the problems it reported (empty: clean).

    A non-zero exit never reads as clean: without a parseable problem its whole output is the problem, and an
    exit code promtool does not document for the check raises.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, *args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.path, *args], input=stdin, capture_output=True, text=True, timeout=60,
                              cwd=cwd, check=False)  # fmt: skip

    def check_metrics(self, exposition: str) -> list[str]:
        """Lint a text exposition (stdin): one problem per line (exit 3), or the parse error (exit 1)."""
        proc = self.run("check", "metrics", stdin=exposition)
        return _problems(proc, proc.stderr.splitlines(), codes=(0, 1, 3))

    def check_rules(self, *files: str | Path) -> list[str]:
        """Validate rule files, duplicate rules included (``--lint=all --lint-fatal``)."""
        proc = self.run("check", "rules", "--lint=all", "--lint-fatal", *map(str, files))
        return _problems(proc, _failed_sections(proc.stderr), codes=(0, 1, 3))

    def check_config(self, *files: str | Path) -> list[str]:
        """Validate Prometheus configuration files and the rule files they name."""
        proc = self.run("check", "config", "--lint=all", "--lint-fatal", *map(str, files))
        return _problems(proc, _failed_sections(proc.stderr), codes=(0, 1, 3))

    def test_rules(self, *files: str | Path) -> list[str]:
        """Run rule unit tests (``promtool test rules``): one problem per failed expectation."""
        proc = self.run("test", "rules", *map(str, files))
        return _problems(proc, _failed_sections(proc.stderr), codes=(0, 1))


def _failed_sections(stderr: str) -> list[str]:
    """promtool's ``FAILED:`` sections (the message may follow on the same line or on the next ones)."""
    sections = re.split(r"^\s*FAILED:", stderr, flags=re.MULTILINE)[1:]
    return [text for part in sections if (text := "\n".join(line.strip() for line in part.strip().splitlines()))]


def _problems(proc: subprocess.CompletedProcess[str], found: list[str], *, codes: tuple[int, ...]) -> list[str]:
    if proc.returncode not in codes:
        raise RuntimeError(f"{' '.join(map(str, proc.args))} exited {proc.returncode}: {proc.stderr or proc.stdout}")
    if proc.returncode == 0:
        return []
    return [line for line in found if line.strip()] or [f"exit {proc.returncode}: {proc.stderr}{proc.stdout}"]


def find_promtool() -> Promtool:
    """The promtool binary, or a skip (locally) / failure (CI=true) saying how to install it."""
    path = shutil.which(PROMTOOL)
    if path is None:
        missing(f"{PROMTOOL} not found on PATH (set INGEST_PROBE_TEST_PROMTOOL; {INSTALL_HINT})")
    return Promtool(path)


# ------------------------------------------------------------------------------------------- scrape configs


def static_job(name: str, targets: Sequence[str], *, path: str = "/metrics",
               labels: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """A scrape job over static ``host:port`` targets."""
    group: dict[str, Any] = {"targets": list(targets)}
    if labels:
        group["labels"] = dict(labels)
    return {"job_name": name, "metrics_path": path, "static_configs": [group]}


def probe_job(name: str, targets: Sequence[str], *, prober: str, path: str = "/probe",
              labels: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """A blackbox-style job: each target *name* becomes ``?target=NAME`` and the ``instance`` label, and every
    scrape goes to ``prober`` (``host:port``)."""
    job = static_job(name, targets, path=path, labels=labels)
    job["relabel_configs"] = [
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"source_labels": ["__param_target"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": prober},
    ]
    return job


def check_loopback(scrape_configs: Iterable[Mapping[str, Any]]) -> None:
    """Raise ValueError unless every address these jobs can scrape is a loopback IP literal.

    Only shapes whose final address is known without running Prometheus pass: static targets, optionally with
    one literal ``__address__`` replacement (the blackbox pattern). Service discovery, proxies and any other
    rewrite of ``__address__`` are refused.
    """
    for job in scrape_configs:
        name = job.get("job_name", "?")
        if extra := sorted(k for k in job if k.endswith("_sd_configs") or k.startswith("proxy")):
            raise ValueError(f"job {name}: {', '.join(extra)} not allowed in tests (static loopback targets only)")
        addresses = [t for group in job.get("static_configs", ()) for t in group.get("targets", ())]
        for rule in job.get("relabel_configs", ()):
            action = rule.get("action", "replace")
            if action == "labelmap":
                raise ValueError(f"job {name}: labelmap could rewrite __address__; not allowed in tests")
            if rule.get("target_label") != "__address__":
                continue
            replacement = str(rule.get("replacement", "$1"))
            if action != "replace" or rule.get("source_labels") or "$" in replacement:
                raise ValueError(f"job {name}: __address__ must be replaced by a literal address in tests")
            addresses = [replacement]
        for address in addresses:
            host = address.rpartition(":")[0] if ":" in address else address
            if not loopback_guard.loopback_ip(host):
                raise ValueError(f"job {name}: target {address!r} is not a loopback IP literal (tests stay on "
                                 "127.0.0.0/8 and ::1, and resolve no names)")  # fmt: skip


# ------------------------------------------------------------------------------------------------ the server


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant-query result."""

    labels: dict[str, str]
    value: float


class PrometheusServer:
    """One ``prometheus`` process on a free loopback port, scraping ``scrape_configs`` every ``interval`` s."""

    host = "127.0.0.1"

    def __init__(
        self,
        scrape_configs: Sequence[Mapping[str, Any]],
        *,
        workdir: Path,
        rule_files: Sequence[str | Path] = (),
        interval: float = 1.0,
    ) -> None:
        check_loopback(scrape_configs)
        self.workdir = workdir
        self.scrape_configs = [{"follow_redirects": False, **job} for job in scrape_configs]
        self.rule_files = [str(Path(f).resolve()) for f in rule_files]
        self.interval = interval
        self.port = 0
        self.log_path = workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def start(cls, scrape_configs: Sequence[Mapping[str, Any]], *, workdir: Path | None = None,
              **kwargs: Any) -> Iterator[PrometheusServer]:  # fmt: skip
        """Start a server (in a fresh temp dir unless ``workdir`` is given); stop it when the block ends."""
        with contextlib.ExitStack() as stack:
            if workdir is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ingest-probe-prom-")))
            server = cls(scrape_configs, workdir=workdir, **kwargs)
            stack.callback(server.stop)
            server.launch()
            yield server

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def config(self) -> dict[str, Any]:
        every = f"{int(self.interval * 1000)}ms"
        return {
            "global": {"scrape_interval": every, "scrape_timeout": every, "evaluation_interval": every},
            "rule_files": self.rule_files,
            "scrape_configs": self.scrape_configs,
        }

    def launch(self, *, timeout: float = 30.0) -> None:
        """Write the config, start the process, wait until ``/-/ready`` answers 200 (a new port if taken)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        for _ in range(3):
            self.port = free_port()
            argv = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address={self.host}:{self.port}", "--log.level=info"]  # fmt: skip
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                              stdin=subprocess.DEVNULL)  # fmt: skip
            if self._wait_ready(timeout):
                return
            if "address already in use" not in self.log_tail():
                break
        raise RuntimeError(f"prometheus did not start: {self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._proc = None
                return False
            try:
                with _OPENER.open(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return True
            except urllib.error.HTTPError as exc:  # 503 while it starts
                exc.close()
            except OSError:  # refused before it listens
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (Prometheus shuts down cleanly), SIGKILL after 10 s; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------- HTTP API

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``: its ``data``; a RuntimeError with Prometheus's message on an error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with _OPENER.open(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            with exc:
                body = json.load(exc)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[Sample]:
        """An instant query: one Sample per series (a scalar is one Sample without labels)."""
        data = self.api("query", query=expr)
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return [Sample({}, float(result[1]))]
        if kind != "vector":
            raise ValueError(f"{expr!r} gives a {kind}, not an instant vector or scalar")
        return [Sample(item["metric"], float(item["value"][1])) for item in result]

    def targets(self) -> list[dict[str, Any]]:
        """The active targets: ``labels``, ``scrapeUrl``, ``health``, ``lastError`` … as the API gives them."""
        return list(self.api("targets", state="active")["activeTargets"])

    def wait_for(self, expr: str, predicate: Callable[[list[Sample]], bool] = bool, *,
                 timeout: float = 20.0) -> list[Sample]:  # fmt: skip
        """Query ``expr`` until ``predicate`` holds for its result (default: not empty); that result.

        On timeout the error shows the last result and each target's health and last scrape error.
        """
        deadline = time.monotonic() + timeout
        while True:
            samples = self.query(expr)
            if predicate(samples):
                return samples
            if time.monotonic() > deadline:
                health = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in self.targets()]
                raise TimeoutError(f"{expr!r}: still {samples} after {timeout}s; targets: {health}")
            time.sleep(0.1)


def find_prometheus() -> None:
    """Skip (locally) / fail (CI=true) when the prometheus binary is absent."""
    if shutil.which(PROMETHEUS) is None:
        missing(f"{PROMETHEUS} not found on PATH (set INGEST_PROBE_TEST_PROMETHEUS; {INSTALL_HINT})")


# --------------------------------------------------------------------------------- a target for the harness


class StaticExporter:
    """A tiny HTTP server on 127.0.0.1 (standard library, own thread) answering every GET with ``body`` as a
    Prometheus text exposition; ``requests`` records each request's path and query string."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.requests: list[str] = []
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                exporter.requests.append(self.path)
                payload = exporter.body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="static-exporter", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StaticExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def promtool() -> Promtool:
    """Debian's promtool (skipped locally / failing in CI when absent)."""
    return find_promtool()


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Start real Prometheus servers: ``prometheus_server(scrape_configs, rule_files=(), interval=1.0)``; all
    stopped at teardown."""
    find_prometheus()
    started: list[PrometheusServer] = []

    def start(scrape_configs: Sequence[Mapping[str, Any]], **kwargs: Any) -> PrometheusServer:
        server = PrometheusServer(scrape_configs, workdir=tmp_path / f"prometheus-{len(started)}", **kwargs)
        started.append(server)
        server.launch()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def static_exporter() -> Iterator[Callable[[str], StaticExporter]]:
    """Start StaticExporters serving a given exposition; all closed at teardown."""
    started: list[StaticExporter] = []

    def start(body: str) -> StaticExporter:
        started.append(StaticExporter(body))
        return started[-1]

    try:
        yield start
    finally:
        for exporter in started:
            exporter.close()
