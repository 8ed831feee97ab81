"""The deployment examples in deploy/: each file parsed and checked, with real promtool, Prometheus, /bin/sh and
(when present) systemd-analyze where they can judge it."""

from __future__ import annotations

import configparser
import copy
import json
import math
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import loopback_guard
import pytest
import yaml
from live.net import free_port
from live.prometheus import PrometheusServer, Promtool, Sample, StaticExporter
from live.redis import RedisServer, make_tls_files
from live.serve import ServeProcess
from plugin_output import parse_plugin_output
from test_cli_live import stack_env

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
VENV_BIN = Path(sys.executable).parent

ALERTS = ("IngestProbeTargetDown", "IngestProbeStale", "IngestProbeAbsent", "IngestProbeRunFailed",
          "IngestProbeCertExpiringSoon")  # fmt: skip


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def load_all(path: Path) -> list[Any]:
    with path.open() as f:
        return list(yaml.safe_load_all(f))


def test_every_yaml_file_parses() -> None:
    """Every YAML file in deploy/ loads with yaml.safe_load_all, each document a non-empty mapping."""
    assert len(yaml_files()) == 6
    for path in yaml_files():
        docs = load_all(path)
        assert docs, path
        assert all(isinstance(doc, dict) and doc for doc in docs), path


# ------------------------------------------------------------------------------------------ inline secrets

#: A key or variable whose value would be a credential (camelCase split: secretName is a name, not a secret).
SECRET_NAME = re.compile(r"(^|_)(password|passwd|pass|token|secret|api_?key|private_?key|credentials?)$", re.I)
#: A password in a URL (user:password@host) or an assignment of a secret-named variable.
SECRET_TEXT = re.compile(r"://[^/\s:@]+:[^/\s@]+@|\b[A-Z_]*(PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY)[A-Z_]*=\S")


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key)


def inline_secrets(doc: Any, where: str = "") -> Iterator[str]:
    """Where a YAML document carries a credential inline: a secret-named key or env var with a value, or a
    Secret object with data."""
    if isinstance(doc, dict):
        if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
            yield f"{where}: a Secret with inline data"
        name = doc.get("name")
        if isinstance(name, str) and SECRET_NAME.search(name) and doc.get("value") not in (None, ""):
            yield f"{where}/{name}: an inline value"
        for key, value in doc.items():
            if SECRET_NAME.search(_snake(str(key))) and type(value) in (str, int, float) and value != "":
                yield f"{where}/{key}: an inline value"
            yield from inline_secrets(value, f"{where}/{key}")
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            yield from inline_secrets(item, f"{where}[{i}]")


def test_the_secret_scan_finds_planted_secrets() -> None:
    """The scan below can fail: an env var with a password, a Secret with data, a token key, a URL password."""
    planted = yaml.safe_load("""
        kind: Secret
        data: {pw: aHVudGVyMg==}
        spec:
          env: [{name: REDIS_PASSWORD, value: hunter2}, {name: REDIS_HOST, value: redis}]
          auth: {bearerToken: abc}
          secretName: not-a-secret
          automountServiceAccountToken: false
    """)
    assert set(inline_secrets(planted)) == {": a Secret with inline data", "/spec/auth/bearerToken: an inline value",
                                            "/spec/env[0]/REDIS_PASSWORD: an inline value"}  # fmt: skip
    assert SECRET_TEXT.search("--extra TIMESCALEDB_URL=postgresql://probe:hunter2@db/x")
    assert SECRET_TEXT.search("Environment=REDIS_PASSWORD=hunter2")
    assert not SECRET_TEXT.search("--env-file /etc/ingest-probe/ingest-probe.env (REDIS_PASSWORD, ...)")


def test_no_deploy_file_carries_a_secret() -> None:
    """No file in deploy/ holds a credential: secrets come from mounted files, credentials or env files."""
    files = sorted(p for p in DEPLOY.rglob("*") if p.is_file())
    assert len(files) >= 10
    for path in files:
        assert not SECRET_TEXT.search(path.read_text()), path
    for path in yaml_files():
        for doc in load_all(path):
            assert list(inline_secrets(doc)) == [], path


# -------------------------------------------------------------------------------------------- Prometheus


def test_alert_rules_pass_promtool_check(promtool: Promtool) -> None:
    """promtool check rules (duplicates linted) accepts alerts.yml."""
    assert promtool.check_rules(PROMETHEUS_DIR / "alerts.yml") == []


def test_alert_rules_pass_their_unit_tests(promtool: Promtool) -> None:
    """promtool test rules: every expectation in alerts_test.yml holds."""
    assert promtool.test_rules(PROMETHEUS_DIR / "alerts_test.yml") == []


def alert_rules() -> dict[str, dict[str, Any]]:
    [doc] = load_all(PROMETHEUS_DIR / "alerts.yml")
    return {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"]}


def test_alert_rules_say_what_and_how_bad() -> None:
    """The five alerts exist with the documented expressions, a severity and a summary/description."""
    rules = alert_rules()
    assert tuple(rules) == ALERTS
    assert rules["IngestProbeTargetDown"]["expr"] == "ingest_probe_up == 0"
    assert rules["IngestProbeTargetDown"]["for"] == "2m"
    assert "absent(ingest_probe_last_run_timestamp_seconds)" in rules["IngestProbeAbsent"]["expr"]
    assert rules["IngestProbeCertExpiringSoon"]["expr"].endswith("< 14 * 86400")
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert set(rule["annotations"]) == {"summary", "description"}
        assert "sum" not in rule["expr"]
        assert " by " not in rule["expr"]


#: Per alert: an expression that never fires and one that fires for every series (labels kept).
MUTANTS = {
    "IngestProbeTargetDown": ("ingest_probe_up == 2", "ingest_probe_up >= 0"),
    "IngestProbeStale": ("time() - ingest_probe_last_run_timestamp_seconds > 1e9",
                         "time() - ingest_probe_last_run_timestamp_seconds >= 0"),
    "IngestProbeAbsent": ("absent(vector(1))", "vector(1)"),
    "IngestProbeRunFailed": ("ingest_probe_run_success == 2", "ingest_probe_run_success >= 0"),
    "IngestProbeCertExpiringSoon": ("ingest_probe_tls_cert_not_after_timestamp_seconds - time() < 0",
                                    "ingest_probe_tls_cert_not_after_timestamp_seconds - time() < 1e12"),
}  # fmt: skip


@pytest.mark.parametrize("alert", ALERTS)
def test_unit_tests_cover_firing_and_not_firing(promtool: Promtool, tmp_path: Path, alert: str) -> None:
    """alerts_test.yml fails for an alert that never fires and for one that always fires: both cases of every
    alert are pinned by an expectation."""
    [doc] = load_all(PROMETHEUS_DIR / "alerts.yml")
    shutil.copy(PROMETHEUS_DIR / "alerts_test.yml", tmp_path)
    for expr in MUTANTS[alert]:
        mutant = copy.deepcopy(doc)
        for rule in mutant["groups"][0]["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
        (tmp_path / "alerts.yml").write_text(yaml.safe_dump(mutant))
        problems = promtool.test_rules(tmp_path / "alerts_test.yml")
        assert any(f"alertname: {alert}," in p for p in problems), (expr, problems)


def scrape_jobs() -> dict[str, dict[str, Any]]:
    [doc] = load_all(PROMETHEUS_DIR / "scrape.yml")
    return {job["job_name"]: job for job in doc["scrape_configs"]}


def test_scrape_config_passes_promtool_check(promtool: Promtool) -> None:
    """promtool check config accepts scrape.yml together with the rule file it names."""
    [doc] = load_all(PROMETHEUS_DIR / "scrape.yml")
    assert doc["rule_files"] == ["alerts.yml"]
    assert promtool.check_config(PROMETHEUS_DIR / "scrape.yml") == []


def test_scrape_config_jobs() -> None:
    """A /metrics job, and a /probe job over target *names* relabelled blackbox-style onto the prober."""
    jobs = scrape_jobs()
    assert jobs["ingest-probe"]["metrics_path"] == "/metrics"
    probe = jobs["ingest-probe-targets"]
    assert probe["metrics_path"] == "/probe"
    names = [t for group in probe["static_configs"] for t in group["targets"]]
    assert names == ["timescale", "redis"]  # names from --targets, never URLs
    assert [(r.get("source_labels"), r["target_label"]) for r in probe["relabel_configs"]] == [
        (["__address__"], "__param_target"), (["__param_target"], "instance"), (None, "__address__")]
    assert probe["relabel_configs"][2]["replacement"] == jobs["ingest-probe"]["static_configs"][0]["targets"][0]


def on_loopback(address: str) -> list[dict[str, Any]]:
    """scrape.yml's jobs with the prober's address replaced by ``address`` and 1 s scrapes."""
    jobs = copy.deepcopy(list(scrape_jobs().values()))
    for job in jobs:
        job.update(scrape_interval="1s", scrape_timeout="1s")
        if "relabel_configs" in job:
            job["relabel_configs"][-1]["replacement"] = address
        else:
            job["static_configs"] = [{"targets": [address]}]
    return jobs


TARGETS = DEPLOY / "targets.yaml"


def test_the_targets_file_holds_names_not_secrets() -> None:
    """deploy/targets.yaml names timescale and redis, each URL from a variable (url_env, no url:), and they are
    the names scrape.yml's /probe job asks for."""
    [doc] = load_all(TARGETS)
    assert doc["targets"] == {"timescale": {"kind": "timescale", "url_env": "TIMESCALEDB_URL"},
                              "redis": {"kind": "redis", "url_env": "REDIS_URL"}}  # fmt: skip
    probe = scrape_jobs()["ingest-probe-targets"]
    assert [t for group in probe["static_configs"] for t in group["targets"]] == list(doc["targets"])


def served_files(tmp_path: Path, redis_url: str | None = None) -> tuple[str, str]:
    """For `serve`: a copy of deploy/targets.yaml, as it is, and an env file with the loopback URLs its url_env
    variables name: timescale a SQLite rehearsal (degraded: up), Redis ``redis_url`` or a closed port (down)."""
    database = tmp_path / "rehearsal.db"
    sqlite3.connect(database).close()
    targets = tmp_path / "targets.yaml"
    shutil.copyfile(TARGETS, targets)
    path = tmp_path / "ingest-probe.env"
    path.write_text(f"TIMESCALEDB_URL=sqlite:///{database}\n"
                    f"REDIS_URL={redis_url or f'redis://127.0.0.1:{free_port()}/0'}\n")
    return str(targets), str(path)


@pytest.mark.live
def test_real_prometheus_runs_the_shipped_config_and_rules(
    tmp_path: Path, prometheus_server: Callable[..., PrometheusServer], serve_process: Callable[..., ServeProcess]
) -> None:
    """A real Prometheus with scrape.yml (the prober's address moved to a real `serve` on loopback) and
    alerts.yml: /metrics and /probe?target=NAME are scraped with the right instance labels, and
    IngestProbeTargetDown (alone) goes pending for the down target, in both jobs."""
    targets, env = served_files(tmp_path)
    server = serve_process(["--no-env", "--targets", targets, "--env-file", env, "--timeout", "2"])
    prom = prometheus_server(on_loopback(server.address), rule_files=[PROMETHEUS_DIR / "alerts.yml"])
    up = prom.wait_for("up", lambda s: len(s) == 3 and all(x.value == 1 for x in s))
    assert {(s.labels["job"], s.labels["instance"]) for s in up} == {
        ("ingest-probe", server.address), ("ingest-probe-targets", "timescale"), ("ingest-probe-targets", "redis")
    }
    assert {s.labels.get("env") for s in up if s.labels["job"] == "ingest-probe-targets"} == {"prod"}
    for route in ("/metrics", "/probe?target=timescale", "/probe?target=redis"):
        assert f'"GET {route}" 200' in server.stderr

    def only_target_down(samples: list[Sample]) -> bool:
        return len(samples) == 2 and {s.labels["alertname"] for s in samples} == {"IngestProbeTargetDown"}

    pending = prom.wait_for('ALERTS{alertstate="pending"}', only_target_down)
    assert {(s.labels["job"], s.labels["target"], s.labels["connector"]) for s in pending} == {
        ("ingest-probe", "redis", "redis"), ("ingest-probe-targets", "redis", "redis")}
    assert {s.labels["severity"] for s in pending} == {"critical"}


def serve_argv(args: list[str], targets: str, env_file: str) -> list[str]:
    """A deployment example's `serve` arguments made runnable here, as written but for paths: its --listen left
    out (ServeProcess picks a free loopback port), its --targets and --env-file replaced, no environment."""
    out, it = ["--no-env"], iter(args[1:])
    for arg in it:
        if arg in ("--listen", "--targets", "--env-file"):
            next(it)
            out += {"--listen": [], "--targets": [arg, targets], "--env-file": [arg, env_file]}[arg]
        else:
            out.append(arg)
    return out


def serve_flags() -> set[str]:
    from ingest_probe.commands.serve import serve

    return {opt for param in serve.params for opt in (*param.opts, *param.secondary_opts)}


@pytest.mark.live
@pytest.mark.parametrize("example", ["kubernetes", "systemd"])
def test_deployment_examples_run_serve_with_real_flags(
    tmp_path: Path, example: str, serve_process: Callable[..., ServeProcess], redis_server: RedisServer
) -> None:
    """Every flag the Kubernetes Deployment and the systemd unit pass to `serve` is one it takes, and `serve`
    started with those arguments (a copy of deploy/targets.yaml, an env file of loopback URLs) answers the
    httpGet probes: /livez 200, /readyz 503 while redis is down; the env file fixed and SIGHUP (the unit's
    ExecReload), 200 with timescale only degraded."""
    if example == "kubernetes":
        [container] = load_all(DEPLOY / "kubernetes" / "deployment.yaml")[0]["spec"]["template"]["spec"]["containers"]
        args = container["args"]
    else:
        args = shlex.split(unit()["Service"]["ExecStart"])[1:]
    assert args[0] == "serve"
    flags = [a for a in args if a.startswith("--")]
    assert [f for f in flags if f not in serve_flags()] == []
    assert {"--targets", "--env-file"} <= set(flags)
    targets, env = served_files(tmp_path)
    server = serve_process(serve_argv(args, targets, env))
    assert server.get("/livez")[:1] == (200,)
    status, _, body = server.get("/readyz")
    assert status == 503
    assert [(t["name"], t["status"]) for t in json.loads(body)["targets"]] == [("timescale", "degraded"),
                                                                                ("redis", "down")]
    served_files(tmp_path, redis_url=f"redis://127.0.0.1:{redis_server.port}/0")
    mark = len(server.lines)
    server.send_signal(signal.SIGHUP)
    server.wait_for_line("reloaded: timescale, redis", start=mark)
    status, _, body = server.get("/readyz")
    assert status == 200, body  # the rehearsal is degraded: not down
    assert [(t["name"], t["status"]) for t in json.loads(body)["targets"]] == [("timescale", "degraded"),
                                                                                ("redis", "ok")]


def test_stop_timeouts_leave_serve_its_grace_and_close_budget() -> None:
    """Kubernetes' terminationGracePeriodSeconds and systemd's TimeoutStopSec cover serve's SIGTERM path:
    the grace for in-flight requests plus the close budget, with a margin."""
    from ingest_probe.defaults import CLOSE_BUDGET, SERVE_GRACE

    pod = load_all(DEPLOY / "kubernetes" / "deployment.yaml")[0]["spec"]["template"]["spec"]
    needed = SERVE_GRACE + CLOSE_BUDGET + 2
    assert pod["terminationGracePeriodSeconds"] >= needed
    assert seconds(unit()["Service"]["TimeoutStopSec"]) >= needed


# -------------------------------------------------------------------------------------------- Kubernetes


def test_kubernetes_deployment_and_service() -> None:
    """serve on 0.0.0.0:9464 with httpGet /livez and /readyz on the named port, timeouts that fit, files
    mounted from a ConfigMap and a Secret, resources, non-root, and a Service that keeps publishing it."""
    deployment, service = load_all(DEPLOY / "kubernetes" / "deployment.yaml")
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[0] == "serve"
    assert args[args.index("--listen") + 1] == "0.0.0.0:9464"
    assert args[args.index("--targets") + 1] == "/etc/ingest-probe/targets.yaml"
    [port] = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 9464)
    assert service["spec"]["ports"] == [{"name": "http", "port": 9464, "targetPort": "http"}]
    assert service["spec"]["publishNotReadyAddresses"] is True  # /metrics stays reachable while a backend is down

    probes = {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {k: p["httpGet"] for k, p in probes.items()} == {
        "startupProbe": {"path": "/livez", "port": "http"},
        "livenessProbe": {"path": "/livez", "port": "http"},
        "readinessProbe": {"path": "/readyz", "port": "http"},
    }
    for probe in probes.values():
        assert probe["timeoutSeconds"] <= probe["periodSeconds"]
    assert probes["readinessProbe"]["timeoutSeconds"] > 5  # above an on-demand check's default 5 s deadline
    assert probes["startupProbe"]["periodSeconds"] * probes["startupProbe"]["failureThreshold"] >= 10

    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts.keys() == volumes.keys()
    assert all(m["readOnly"] for name, m in mounts.items() if name != "tmp")
    assert mounts["config"]["mountPath"] == "/etc/ingest-probe"
    assert "configMap" in volumes["config"]
    secret_dir = mounts["credentials"]["mountPath"]
    assert "secret" in volumes["credentials"]
    assert args[args.index("--env-file") + 1].startswith(secret_dir + "/")
    assert volumes["credentials"]["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"]

    resources = container["resources"]
    assert resources["requests"].keys() == resources["limits"].keys() == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["terminationGracePeriodSeconds"] >= 10


def seconds(duration: str) -> float:
    """``2s``, ``500ms``, ``1m`` or a plain number of seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", duration)
    assert match, duration
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[match[2]]


#: Measured start-up of a check process (issue #13: 0.4-1.3 s) plus a margin.
START_UP = 1.5


def test_kubernetes_exec_probe_fits_start_up_and_deadline() -> None:
    """The exec readiness probe runs report --connectivity --fail-on down; its timeout covers start-up plus
    the probe deadline, and its period is longer than its timeout."""
    [container] = load_all(DEPLOY / "kubernetes" / "exec-probe.yaml")
    probe = container["readinessProbe"]
    command = probe["exec"]["command"]
    assert command[:3] == ["ingest-probe", "report", "--connectivity"]
    assert command[command.index("--fail-on") + 1] == "down"
    deadline = seconds(command[command.index("--timeout") + 1])
    assert probe["timeoutSeconds"] >= math.ceil(deadline + START_UP)
    assert probe["periodSeconds"] > probe["timeoutSeconds"]
    assert probe["failureThreshold"] >= 2


# ---------------------------------------------------------------------------------------------- systemd

UNIT = DEPLOY / "systemd" / "ingest-probe.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_unit_keys() -> None:
    """serve under a dynamic user with the sandbox options, restarted on failure, stopped by SIGTERM in time."""
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].startswith("/")
    assert argv[1] == "serve"
    assert argv[argv.index("--listen") + 1] == "127.0.0.1:9464"
    assert argv[argv.index("--env-file") + 1] == "%d/ingest-probe.env"  # the credential, not the file in /etc
    assert service["LoadCredential"] == "ingest-probe.env:/etc/ingest-probe/ingest-probe.env"
    expected = {"DynamicUser": "yes", "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                "Restart": "on-failure", "KillSignal": "SIGTERM", "CapabilityBoundingSet": "",
                "ExecReload": "/bin/kill -HUP $MAINPID",
                "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX"}  # fmt: skip
    assert {key: service.get(key) for key in expected} == expected
    assert 5 <= seconds(service["TimeoutStopSec"]) <= 30
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:  # not a binary the suite requires: skipped in CI too
        pytest.skip("systemd-analyze not found (optional: the keys are still checked by test_systemd_unit_keys)")
    return path


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's ingest-probe (verify checks that the binary exists)."""
    path = tmp_path / UNIT.name
    path.write_text(UNIT.read_text().replace("/opt/ingest-probe/bin/ingest-probe", str(VENV_BIN / "ingest-probe")))
    return path


def test_systemd_analyze_verify(installed_unit: Path) -> None:
    """systemd-analyze verify loads the unit without a warning (an unknown key only warns: any output fails)."""
    proc = subprocess.run([systemd_analyze(), "verify", str(installed_unit)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_systemd_analyze_security_exposure(installed_unit: Path) -> None:
    """systemd-analyze security rates the sandbox at most 2.0 ("OK") on its 0-10 exposure scale."""
    proc = subprocess.run([systemd_analyze(), "security", "--offline=yes", "--threshold=20", "--no-pager",
                           str(installed_unit)], capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-400:] + proc.stderr
    assert re.search(r"Overall exposure level for ingest-probe\.service: [0-9.]+ OK", proc.stdout), proc.stdout


# ------------------------------------------------------------------------------------------------- cron

CRON = DEPLOY / "cron" / "ingest-probe.cron"
FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def cron_field_ok(field: str, low: int, high: int) -> bool:
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if base == "*":
            continue
        bounds = base.split("-")
        if len(bounds) > 2 or not all(b.isdigit() and low <= int(b) <= high for b in bounds):
            return False
    return True


def cron_jobs(text: str) -> list[tuple[list[str], str, str]]:
    """/etc/cron.d lines: (five time fields, user, command); environment lines and comments skipped."""
    jobs = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, f"not 5 time fields + user + command: {line!r}"
        jobs.append((fields[:5], fields[5], fields[6]))
    return jobs


def test_cron_line_syntax() -> None:
    """One /etc/cron.d job: valid time fields, a user, a command without an unescaped % (cron's newline)."""
    text = CRON.read_text()
    assert text.endswith("\n")  # cron ignores a last line without one
    [(times, user, command)] = cron_jobs(text)
    assert all(cron_field_ok(f, lo, hi) for f, (lo, hi) in zip(times, FIELD_RANGES, strict=True)), times
    assert not cron_field_ok("61", 0, 59)
    assert not cron_field_ok("*/0", 0, 59)
    assert user == "ingest-probe"
    assert "%" not in command.replace("\\%", "")
    argv = shlex.split(command)
    assert argv[:3] == ["ingest-probe", "report", "--connectivity"]
    assert argv[argv.index("--format") + 1] == "prometheus"
    assert argv[argv.index("--output") + 1] == "/var/lib/node_exporter/textfile/ingest_probe.prom"
    assert seconds(argv[argv.index("--splay") + 1]) + seconds(argv[argv.index("--timeout") + 1]) < 45


@pytest.mark.live
def test_cron_line_runs_today(tmp_path: Path, promtool: Promtool) -> None:
    """The cron command, run by /bin/sh with its paths moved to a temp dir and no splay, writes a textfile
    that promtool accepts, with the connector down and no secret in it."""
    [(_, _, command)] = cron_jobs(CRON.read_text())
    (tmp_path / "ingest-probe.yaml").write_text(f"REDIS_URL: redis://127.0.0.1:{free_port()}\n")
    (tmp_path / "ingest-probe.env").write_text("REDIS_PASSWORD=canary-pw-5d1e\n")
    command = (command.replace("/etc/ingest-probe/", f"{tmp_path}/")
               .replace("/var/lib/node_exporter/textfile/", f"{tmp_path}/").replace("--splay 30s", "--splay 0"))
    # cron's sparse environment, plus what keeps the loopback guard in the child (tests/guard/)
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "PYTHONPATH": os.environ["PYTHONPATH"],
           loopback_guard.ENV_FILE: os.environ[loopback_guard.ENV_FILE]}  # fmt: skip
    proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=60, check=False,
                          env=env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # CRITICAL: redis down
    assert proc.stdout == ""
    textfile = (tmp_path / "ingest_probe.prom").read_text()
    assert 'ingest_probe_up{target="redis",connector="redis"} 0' in textfile
    assert "canary-pw-5d1e" not in textfile + proc.stderr
    assert promtool.check_metrics(textfile) == []


# ----------------------------------------------------------------------------------------- Nagios, Docker


def nagios_objects(text: str) -> list[tuple[str, dict[str, str]]]:
    """``define TYPE { directive value ... }`` blocks; anything else outside comments fails."""
    objects: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if current is None:
            match = re.fullmatch(r"define\s+(\w+)\s*\{", line)
            assert match, f"expected 'define TYPE {{': {line!r}"
            current = {}
            objects.append((match[1], current))
        elif line == "}":
            current = None
        else:
            key, _, value = line.partition(" ")
            assert value.strip(), line
            assert key not in current, line
            current[key] = value.strip()
    assert current is None, "unclosed define block"
    return objects


def test_nagios_command_definition() -> None:
    """A check_ingest_probe command running report --connectivity --format nagios with $ARGn$ macros, and a
    service whose check_command passes exactly that many arguments."""
    objects = nagios_objects((DEPLOY / "nagios" / "ingest-probe.cfg").read_text())
    [command] = [o for kind, o in objects if kind == "command"]
    [service] = [o for kind, o in objects if kind == "service"]
    assert command["command_name"] == "check_ingest_probe"
    argv = shlex.split(command["command_line"])
    assert argv[0].startswith("/")
    assert argv[1:3] == ["report", "--connectivity"]
    assert argv[argv.index("--format") + 1] == "nagios"
    macros = re.findall(r"\$(\w+)\$", command["command_line"])
    assert macros == [f"ARG{i}" for i in range(1, len(macros) + 1)]
    name, *values = service["check_command"].split("!")
    assert name == "check_ingest_probe"
    assert len(values) == len(macros)
    assert seconds(values[macros.index("ARG1")]) > 0  # --timeout
    assert {"host_name", "service_description", "check_interval"} <= service.keys()


HEALTHCHECK = DEPLOY / "docker" / "Dockerfile.healthcheck"


def healthcheck() -> tuple[dict[str, str], str]:
    """The HEALTHCHECK instruction of the fragment: its options and its shell-form command."""
    text = re.sub(r"\\\n\s*", " ", HEALTHCHECK.read_text())
    [line] = [line for line in text.splitlines() if line.startswith("HEALTHCHECK ")]
    head, sep, command = line.partition(" CMD ")
    assert sep, line
    options = dict(opt.removeprefix("--").split("=", 1) for opt in head.split()[1:])
    return options, command


def test_docker_healthcheck_options() -> None:
    """--fail-on down with a probe deadline inside Docker's timeout, interval longer than the timeout."""
    options, command = healthcheck()
    assert options.keys() == {"interval", "timeout", "start-period", "retries"}
    argv = shlex.split(command)
    assert argv[:3] == ["ingest-probe", "report", "--connectivity"]
    assert argv[argv.index("--fail-on") + 1] == "down"
    assert seconds(options["timeout"]) >= seconds(argv[argv.index("--timeout") + 1]) + START_UP
    assert seconds(options["interval"]) > seconds(options["timeout"])


@pytest.mark.parametrize(("code", "health"), [(0, 0), (1, 1), (2, 1), (3, 1), (143, 1)])
def test_docker_healthcheck_never_exits_2(tmp_path: Path, code: int, health: int) -> None:
    """Run by /bin/sh as Docker does, the command maps ingest-probe's exit codes to 0 (healthy) or 1, never
    Docker's reserved 2."""
    _, command = healthcheck()
    stub = tmp_path / "ingest-probe"
    stub.write_text(f"#!/bin/sh\nexit {code}\n")
    stub.chmod(0o755)
    proc = subprocess.run(["/bin/sh", "-c", command], env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, timeout=30,
                          check=False)  # fmt: skip
    assert proc.returncode == health


# ---------------------------------------------------------------- the recipes, run against live servers


def recipe_env(pg_server: Any, redis_server: Any, kafka_broker: Any, **overrides: str) -> dict[str, str]:
    """A sparse environment (as cron, Docker or the kubelet give) with the live stack's configuration as
    environment variables, plus what keeps the loopback guard in the child (tests/guard/)."""
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "PYTHONPATH": os.environ["PYTHONPATH"],
            loopback_guard.ENV_FILE: os.environ[loopback_guard.ENV_FILE],
            **stack_env(pg_server, redis_server, kafka_broker, **overrides)}  # fmt: skip


def missing_topic() -> str:
    return f"daily:never-created-{os.urandom(4).hex()}"


@pytest.mark.live
def test_exec_probe_command_runs(pg_server: Any, redis_server: Any, kafka_broker: Any) -> None:
    """The exec readiness probe's command, as the kubelet runs it: ready (0) with a topic missing (kafka
    degraded: --fail-on down), not ready (2) with Redis down; nothing on stdout (--output /dev/null)."""
    [container] = load_all(DEPLOY / "kubernetes" / "exec-probe.yaml")
    command = container["readinessProbe"]["exec"]["command"]
    degraded = recipe_env(pg_server, redis_server, kafka_broker, KAFKA_INGEST_TOPICS=missing_topic())
    proc = subprocess.run(command, env=degraded, capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    assert "kafka degraded [missing_topic]" in proc.stderr  # reported, not failing
    down = recipe_env(pg_server, redis_server, kafka_broker, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    proc = subprocess.run(command, env=down, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "redis down [refused]" in proc.stderr


@pytest.mark.live
def test_docker_healthcheck_runs(pg_server: Any, redis_server: Any, kafka_broker: Any) -> None:
    """The HEALTHCHECK command through /bin/sh with the real ingest-probe: healthy (0) with a topic missing,
    unhealthy (1, never Docker's reserved 2) with Redis down."""
    _, command = healthcheck()
    for overrides, health in (({"KAFKA_INGEST_TOPICS": missing_topic()}, 0),
                              ({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, 1)):
        env = recipe_env(pg_server, redis_server, kafka_broker, **overrides)
        proc = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60,
                              check=False)  # fmt: skip
        assert proc.returncode == health, (overrides, proc.stderr)


@pytest.mark.live
def test_nagios_command_line_runs(tmp_path: Path, pg_server: Any, redis_server: Any, kafka_broker: Any) -> None:
    """The command definition with the service's arguments ($ARG1$ 5s, a YAML file, an env file with the
    password), Redis down: CRITICAL, exit 2, a status line naming redis first, perfdata that parses strictly,
    a long-output line per target, and no password anywhere."""
    objects = nagios_objects((DEPLOY / "nagios" / "ingest-probe.cfg").read_text())
    [command] = [o for kind, o in objects if kind == "command"]
    [service] = [o for kind, o in objects if kind == "service"]
    values = recipe_env(pg_server, redis_server, kafka_broker, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    secret = values.pop("TIMESCALEDB_PASSWORD")
    config = {k: v for k, v in values.items() if k.startswith(("TIMESCALE", "REDIS", "KAFKA"))}
    _, timeout, yaml_path, env_path = service["check_command"].split("!")
    args = {"ARG1": timeout, "ARG2": str(tmp_path / Path(yaml_path).name), "ARG3": str(tmp_path / Path(env_path).name)}
    Path(args["ARG2"]).write_text(yaml.safe_dump(config))
    Path(args["ARG3"]).write_text(f"TIMESCALEDB_PASSWORD={secret}\n")
    line = re.sub(r"\$(ARG\d)\$", lambda m: args[m[1]], command["command_line"])
    argv = shlex.split(line.replace("/opt/ingest-probe/bin/ingest-probe", str(VENV_BIN / "ingest-probe")))
    env = {k: v for k, v in values.items() if k not in config}  # the configuration only from the files
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    output = parse_plugin_output(proc.stdout)
    assert (output.service, output.state) == ("INGEST-PROBE", "CRITICAL")
    assert output.text == "redis down (refused), timescale ok, kafka ok"
    assert {p.label for p in output.perfdata} >= {"timescale_latency", "redis_latency", "kafka_latency",
                                                  "targets_down"}
    assert [line.split(":")[0] for line in output.long_output] == ["timescale", "redis", "kafka"]
    assert secret not in proc.stdout + proc.stderr


RECIPE = re.compile(r"<!-- recipe: (?P<path>\S+) -->\n```[a-z]*\n(?P<block>.*?)\n```", re.DOTALL)


def test_readme_recipes_are_the_deploy_files() -> None:
    """Every recipe the README shows is a verbatim piece of the deploy/ file it names, the one these tests run:
    the exec probe, the HEALTHCHECK, the cron line, the Nagios command and the alert rules."""
    recipes = RECIPE.findall((ROOT / "README.md").read_text())
    assert sorted({path for path, _ in recipes}) == [
        "deploy/cron/ingest-probe.cron", "deploy/docker/Dockerfile.healthcheck", "deploy/kubernetes/exec-probe.yaml",
        "deploy/nagios/ingest-probe.cfg", "deploy/prometheus/alerts.yml"]
    for path, block in recipes:
        assert block in (ROOT / path).read_text(), path
    shown = "\n".join(block for _, block in recipes)
    for needle in ("--fail-on down", "|| exit 1", "--format prometheus", "--format nagios", "ingest_probe_up == 0",
                   "ingest_probe_last_run_timestamp_seconds", "ingest_probe_tls_cert_not_after_timestamp_seconds"):
        assert needle in shown, needle


@pytest.mark.live
def test_cert_expiry_alert_goes_pending_on_a_real_textfile(
    tmp_path: Path, redis_server_factory: Callable[..., RedisServer], promtool: Promtool,
    prometheus_server: Callable[..., PrometheusServer], static_exporter: Callable[[str], StaticExporter],
) -> None:
    """A Redis with a 3-day certificate: `report --format prometheus` exports
    ingest_probe_tls_cert_not_after_timestamp_seconds{target="redis"} (promtool accepts the textfile), and a real
    Prometheus with alerts.yml takes IngestProbeCertExpiringSoon to pending for that target."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found")  # the live stack's certificates need it (CI installs it)
    tls = make_tls_files(tmp_path / "tls", days=3)
    server = redis_server_factory(tls=tls)
    proc = subprocess.run(
        [str(VENV_BIN / "ingest-probe"), "report", "--no-env", "--connectivity", "-f", "prometheus", "-t", "5s",
         "--extra", f"REDIS_URL=rediss://127.0.0.1:{server.port}/0", "--extra", f"REDIS_SSL_CA_CERTS={tls.ca_cert}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # degraded: cert_expiry
    assert "redis degraded [cert_expiry]" in proc.stderr
    assert 'ingest_probe_tls_cert_not_after_timestamp_seconds{target="redis",connector="redis"} ' in proc.stdout
    assert promtool.check_metrics(proc.stdout) == []
    exporter = static_exporter(proc.stdout)
    job = {"job_name": "textfile", "scrape_interval": "1s", "scrape_timeout": "1s",
           "static_configs": [{"targets": [exporter.address]}]}
    prom = prometheus_server([job], rule_files=[PROMETHEUS_DIR / "alerts.yml"])
    pending = prom.wait_for('ALERTS{alertname="IngestProbeCertExpiringSoon", alertstate="pending"}')
    assert [s.labels["target"] for s in pending] == ["redis"]
