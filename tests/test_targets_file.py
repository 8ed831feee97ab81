"""Targets from flags and files: --target services, a --targets YAML file, --label, and their one-line errors."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import make_settings
from prometheus_client.parser import text_string_to_metric_families

from ingest_probe import errors
from ingest_probe.renderers.prometheus import render, render_failed_run
from ingest_probe.report.builder import build_report
from ingest_probe.results import ProbeResult, Status
from ingest_probe.settings.targets import shared_labels
from ingest_probe.settings.targets_file import build_targets, check_label, parse_label, read_targets_file

SECRET = "hunter2-c4n4ry"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingest_probe", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env, check=False)  # fmt: skip


def test_a_targets_file_gives_endpoints_and_services_in_file_order(tmp_path):
    """kind + url, kind + url_env (from the environment given) and env_file (relative to the file's directory):
    names, kinds, labels and endpoints in file order; a service's targets are NAME/KIND with service=NAME."""
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf" / "staging.env", "REDIS_URL=redis://stage.test:6380/1\nKAFKA_BROKERS=k.test:9092\n")
    path = write(tmp_path / "conf" / "targets.yaml", """\
targets:
  cache-1:
    kind: redis
    url: redis://cache1.test:6379/3
    labels: {shard: "1"}
  db.main:
    kind: timescale
    url_env: MAIN_DB_URL
  staging:
    env_file: staging.env
    labels:
      env: staging
""")
    targets, warnings = read_targets_file(path, {"MAIN_DB_URL": "postgresql://u@db.test:5433/app"})
    assert warnings == ()
    assert [(t.name, t.kind, dict(t.labels), t.settings.endpoint) for t in targets] == [
        ("cache-1", "redis", {"shard": "1"}, "cache1.test:6379"),
        ("db.main", "timescale", {}, "db.test:5433"),
        ("staging/redis", "redis", {"service": "staging", "env": "staging"}, "stage.test:6380"),
        ("staging/kafka", "kafka", {"service": "staging", "env": "staging"}, "k.test:9092"),
    ]


@pytest.mark.parametrize(("body", "message"), [
    ("targets:\n  a:\n    kind: redis\n    url: redis://x.test\n    urll: y\n",
     "t.yaml:5: target 'a': unknown field 'urll' (expected env_file, kind, url, url_env, labels, options)"),
    ("target:\n  a: {}\n", "t.yaml:1: unknown top-level key 'target' (expected targets:)"),
    ("targets:\n  a:\n    kind: redis\n    url: redis://x.test\n  a:\n    kind: redis\n    url: redis://y.test\n",
     "t.yaml:5: target 'a' is given twice (first on line 2)"),
    ("targets:\n  a:\n    kind: memcached\n    url: x\n", "t.yaml:3: target 'a': kind 'memcached' is not one of"),
    ("targets:\n  a:\n    kind: redis\n", "t.yaml:3: target 'a': give exactly one of url: and url_env:"),
    ("targets:\n  a:\n    kind: redis\n    url_env: NOT_SET_ANYWHERE\n",
     "t.yaml:4: target 'a': url_env NOT_SET_ANYWHERE is not set in the environment"),
    ("targets:\n  a:\n    env_file: s.env\n    url: redis://x.test\n", "t.yaml:3: target 'a': env_file: is a whole"),
    ("targets:\n  a b:\n    kind: redis\n    url: redis://x.test\n", "t.yaml:2: 'a b' is not a target name"),
    ("targets:\n  a:\n    kind: redis\n    url: redis://x.test\n    labels: {target: x}\n",
     "t.yaml:5: target 'a': label 'target' is reserved"),
    ("targets: {}\n", "t.yaml: targets: expected a mapping"),
    ("- a\n", "t.yaml: expected a mapping with a top-level targets: key, got a list"),
])
def test_a_bad_targets_file_is_one_line_naming_file_and_line(tmp_path, body, message):
    path = write(tmp_path / "t.yaml", body)
    with pytest.raises(errors.ConfigError) as caught:
        read_targets_file(path, {})
    assert str(caught.value).startswith(f"{tmp_path}/{message}"), str(caught.value)


def test_a_bad_url_names_file_line_and_target_never_the_url(tmp_path):
    path = write(tmp_path / "t.yaml", f"targets:\n  a:\n    kind: redis\n    url: redis://:{SECRET}@x.test:bad/0\n")
    with pytest.raises(errors.ConfigError) as caught:
        read_targets_file(path, {})
    assert f"{path}:4: target 'a': port is not an integer" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_an_inline_password_is_accepted_with_a_warning_that_never_shows_it(tmp_path):
    path = write(tmp_path / "t.yaml", f"targets:\n  a:\n    kind: redis\n    url: redis://:{SECRET}@x.test/0\n")
    targets, warnings = read_targets_file(path, {})
    assert [t.name for t in targets] == ["a"]
    assert len(warnings) == 1
    assert "t.yaml:4: target 'a': the url holds a password written in the file; prefer url_env" in warnings[0]
    assert SECRET not in warnings[0]
    proc = cli("report", "--no-env", "--targets", str(path), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "warning:" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout


def test_url_env_with_no_env_is_an_error_naming_target_and_variable(tmp_path):
    path = write(tmp_path / "t.yaml", "targets:\n  a:\n    kind: redis\n    url_env: CACHE_URL\n")
    proc = cli("report", "--no-env", "--targets", str(path), env={"CACHE_URL": "redis://x.test"})
    assert proc.returncode == 3
    assert proc.stderr == f"ingest-probe: error: {path}:4: target 'a': url_env CACHE_URL cannot be read with --no-env\n"
    proc = cli("report", "--targets", str(path), "-f", "json", env={"CACHE_URL": "redis://x.test", "PATH": ""})
    assert proc.returncode == 0, proc.stderr


def test_url_env_reads_the_env_files_over_the_environment(tmp_path):
    """url_env is looked up in the --env-files (a later one winning) over the environment, also under --no-env:
    a Secret or systemd credential mounted as an env file holds the URLs (deploy/targets.yaml); a password in
    such a URL is never shown."""
    path = write(tmp_path / "t.yaml", "targets:\n  a:\n    kind: redis\n    url_env: CACHE_URL\n")
    one = write(tmp_path / "1.env", "CACHE_URL=redis://one.test:1/0\n")
    two = write(tmp_path / "2.env", f"CACHE_URL=redis://:{SECRET}@two.test:2/0\n")
    environ = {"CACHE_URL": "redis://env.test:3/0"}
    for env_files, want in (((), "env.test:3"), ((one,), "one.test:1"), ((one, two), "two.test:2")):
        [target], _ = build_targets(make_settings(), targets_file=path, environ=environ, env_files=env_files)
        assert target.settings.endpoint == want
    [target], _ = build_targets(make_settings(), targets_file=path, environ=None, env_files=[one])
    assert target.settings.endpoint == "one.test:1"
    proc = cli("report", "--no-env", "--targets", str(path), "--env-file", str(two), "-f", "json",
               env={"CACHE_URL": "redis://env.test:3/0", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert '"host": "two.test"' in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
    other = write(tmp_path / "3.env", "OTHER_URL=redis://one.test:1/0\n")
    proc = cli("report", "--no-env", "--targets", str(path), "--env-file", str(other), env={"PATH": ""})
    assert proc.returncode == 3
    assert "url_env CACHE_URL is not set in the environment or an env file" in proc.stderr


def test_services_are_read_each_on_its_own_not_merged(tmp_path):
    """Two env files: each service has only its own connectors (no later-wins merge), label service=NAME;
    the classic targets are not probed; --label goes on every target; the target's own label wins."""
    a = write(tmp_path / "a.env", "REDIS_URL=redis://a.test/0\n")
    b = write(tmp_path / "b.env", "TIMESCALEDB_URL=postgresql://u@b.test/db\nREDIS_URL=redis://b.test/0\n")
    settings = make_settings(REDIS_URL="redis://classic.test/0")
    targets, _ = build_targets(settings, services=[("a", a), ("b", b)], labels={"env": "prod", "service": "x"})
    assert [(t.name, t.settings.endpoint, dict(t.labels)) for t in targets] == [
        ("a/redis", "a.test:6379", {"env": "prod", "service": "a"}),
        ("b/timescale", "b.test:5432", {"env": "prod", "service": "b"}),
        ("b/redis", "b.test:6379", {"env": "prod", "service": "b"}),
    ]
    only, _ = build_targets(settings, services=[("a", a), ("b", b)], only=["b/*"], skip=["timescale"])
    assert [t.name for t in only] == ["b/redis"]
    classic, _ = build_targets(settings, labels={"env": "prod"})
    assert [(t.name, dict(t.labels)) for t in classic] == [
        ("timescale", {"env": "prod"}), ("redis", {"env": "prod"}), ("kafka", {"env": "prod"})]


def test_duplicate_names_and_empty_services_are_errors(tmp_path):
    a = write(tmp_path / "a.env", "REDIS_URL=redis://a.test/0\n")
    empty = write(tmp_path / "empty.env", "# nothing\n")
    with pytest.raises(errors.ConfigError, match="target name 'a/redis' is given twice"):
        build_targets(make_settings(), services=[("a", a), ("a", a)])
    with pytest.raises(errors.ConfigError, match=r"--target e: .*empty.env configures no connector"):
        build_targets(make_settings(), services=[("e", empty)])


@pytest.mark.parametrize(("flag", "message"), [
    ("--label=env", "--label: expected KEY=VALUE"),
    ("--label=1env=x", "--label: '1env' is not a label name"),
    ("--label=__name__=x", "--label: '__name__' is not a label name"),
    ("--label=connector=x", "--label: label 'connector' is reserved"),
    ("--target=noequals", "expected NAME=ENV_FILE"),
    ("--only=nothing-like-this", "selector 'nothing-like-this' matches no target name or kind"),
])
def test_bad_target_flags_exit_3_with_one_line(tmp_path, flag, message):
    proc = cli("report", "--no-env", "--extra", "REDIS_URL=redis://x.test/0", flag)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert message in proc.stderr


def test_label_names_follow_prometheus():
    assert parse_label("env=prod") == ("env", "prod")
    assert parse_label("_x=a=b") == ("_x", "a=b")
    assert check_label("service", "--label") == "service"
    with pytest.raises(errors.UsageError, match="one line"):
        parse_label("env=a\nb")


def result(name, kind, labels, status=Status.OK):
    return ProbeResult(name=name, kind=kind, labels=labels, configured=True, status=status, latency_ms=1.0,
                       phases={"connect": 0.5})


def series(*texts):
    """Every (name, labels) sample of the expositions, as node_exporter's textfile collector merges them."""
    out = []
    for text in texts:
        for family in text_string_to_metric_families(text):
            out += [(s.name, tuple(sorted(s.labels.items()))) for s in family.samples]
    return out


def textfile(settings, results):
    from ingest_probe.settings.targets import Target

    targets = [Target(name=r.name, kind=r.kind, settings=settings.redis, labels=r.labels) for r in results]
    return render(build_report(settings, targets=targets, results=results))


def test_two_environments_textfiles_never_share_a_series():
    """The same targets with --label env=staging and env=prod: no series in common, the run's series carry
    env too. Without labels they would collide (the control)."""
    settings = make_settings(REDIS_URL="redis://x.test/0")
    staging = textfile(settings, [result("redis", "redis", {"env": "staging"})])
    prod = textfile(settings, [result("redis", "redis", {"env": "prod"}, Status.DOWN)])
    merged = series(staging, prod)
    assert len(merged) == len(set(merged))
    assert ("ingest_probe_run_success", (("env", "prod"),)) in merged
    assert ("ingest_probe_up", (("connector", "redis"), ("env", "staging"), ("target", "redis"))) in merged
    plain = textfile(settings, [result("redis", "redis", {})])
    control = series(plain, plain)
    assert len(control) > len(set(control))


def test_run_labels_are_those_every_target_shares():
    assert shared_labels([{"env": "p", "service": "a"}, {"env": "p", "service": "b"}]) == {"env": "p"}
    assert shared_labels([]) == {}
    assert 'ingest_probe_run_success{env="p"} 0' in render_failed_run(dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                                                                      {"env": "p"})
