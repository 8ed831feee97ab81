"""The CLI shell: exit codes, one-line errors, atomic output, lazy imports, and no secret in any output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import help_in_a_fresh_interpreter

from ingest_probe.commands.cli import main

CANARY = "CANARY-cli-9c2e"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_help_lists_exit_codes_and_imports_no_client_library():
    """--help documents the exit codes and imports none of asyncpg, redis, aiokafka, yaml."""
    text, imported = help_in_a_fresh_interpreter("report")
    assert imported == "[]"
    assert "CRITICAL" in text
    assert "UNKNOWN" in text


def test_manifest_only_run_imports_no_client_library(tmp_path):
    """A manifest-only report never imports a client library (fast start, no side effects)."""
    env = write(tmp_path, "a.env", "REDIS_URL=redis://r:6379/0\nKAFKA_BROKERS=k:9092\nTIMESCALEDB_HOST=db\n")
    code = (
        "import sys, io, contextlib\n"
        "from ingest_probe.commands.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try:\n        main(['report', '--no-env', '--env-file', {env!r}])\n"
        "    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "print(sorted(m for m in ('asyncpg', 'redis', 'aiokafka') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert proc.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == [tmp_path / "a.env"]  # no stray files (the old tool made ./data/)


#: Modules a command that contacts nothing has no use for: the event loop, logging, sockets, hashing.
NOT_FOR_A_MANIFEST = ("asyncio", "hashlib", "logging", "socket", "ssl")


@pytest.mark.parametrize("argv", [["--help"], ["report", "--no-env", "--env-file", "{env}"]],
                         ids=["--help", "manifest-only report"])
def test_a_run_that_contacts_nothing_loads_no_event_loop_logging_or_sockets(tmp_path, argv):
    """`--help` and a manifest-only report load none of asyncio, logging, socket, ssl, hashlib; `--help` not
    even the settings and results dataclasses (start-up time, see scripts/bench)."""
    env = write(tmp_path, "a.env", "REDIS_URL=redis://r:6379/0\nKAFKA_BROKERS=k:9092\nTIMESCALEDB_HOST=db\n")
    code = (
        "import sys, io, contextlib\n"
        "from ingest_probe.commands.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try:\n        main({[a.format(env=env) for a in argv]!r})\n"
        "    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        f"print(sorted(m for m in {NOT_FOR_A_MANIFEST + ('dataclasses',)!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ("[]" if argv == ["--help"] else "['dataclasses']")


def test_python_dash_m_works():
    """`python -m ingest_probe` runs the same CLI."""
    proc = subprocess.run([sys.executable, "-m", "ingest_probe", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "ingest-probe" in proc.stdout


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["report", "--topics-dry-run"], "--topics-dry-run needs --ensure-topics"),
        (["readiness", "--topics-dry-run"], "--topics-dry-run needs --ensure-topics"),
        (["report", "--fix-drift"], "--fix-drift needs --ensure-topics"),
        (["readiness", "--no-env", "--ingest-results", "/nonexistent/r.json", "--ensure-topics"], "r.json"),
        (["report", "--bogus"], "No such option"),
        (["report", "--timeout", "0"], "--timeout"),
        (["report", "--format", "xml"], "--format"),
        (["report", "--no-env", "--extra", "TIMESCALEDB_PORT=abc"], "TIMESCALEDB_PORT='abc' from --extra"),
        (["report", "--no-env", "--config", "/nonexistent/x.yaml"], "/nonexistent/x.yaml"),
        (["nosuchcommand"], "No such command"),
        ([], "missing command"),
        (["report", "--splay", "5"], "--splay needs --connectivity or --ensure-topics"),
        (["readiness", "--no-env", "--splay", "5"], "--splay needs --connectivity or --ensure-topics"),
        (["readiness", "--no-env", "--splay", "5", "--results", "r.json"],  # without --connectivity: no standby probe
         "--splay needs --connectivity or --ensure-topics"),
    ],
)
def test_usage_and_config_errors_exit_3_with_one_line(capsys, argv, needle):
    """Usage and configuration errors: exit 3, one `ingest-probe: error:` line on stderr, no traceback."""
    code, out, err = run(capsys, *argv)
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("ingest-probe: error: ")
    assert needle in err
    assert "Traceback" not in err


def test_output_is_written_atomically_with_parents(capsys, tmp_path):
    """--output creates parent directories, writes the whole report, leaves no temp file, prints nothing."""
    target = tmp_path / "deep" / "dir" / "report.json"
    code, out, err = run(capsys, "report", "--no-env", "--extra", "REDIS_HOST=r", "--output", str(target))
    assert (code, out, err) == (0, "", "")
    assert json.loads(target.read_text())["manifest"][1]["configured"] is True
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_output_error_is_one_line(capsys, tmp_path):
    """An unwritable --output is a one-line error with exit 3."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "report", "--no-env", "--output", str(blocker / "r.json"))
    assert code == 3
    assert err.startswith("ingest-probe: error: ")
    assert err.count("\n") == 1


def test_connectivity_with_nothing_configured_is_unknown(capsys):
    """Nothing configured: every connector skipped, status unknown, exit 3 (UNKNOWN) and a line on stderr."""
    code, out, err = run(capsys, "report", "--no-env", "--connectivity")
    doc = json.loads(out)
    assert code == 3
    assert doc["status"] == "unknown"
    assert [c["status"] for c in doc["connectivity"]] == ["skipped"] * 3
    assert all(c["healthy"] is None for c in doc["connectivity"])
    assert err.startswith("ingest-probe: nothing to probe: no connector is configured (TIMESCALEDB_URL")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("blocker/r.json", None, "is not a directory"),
    ("adir", "dir", "is a directory"),
])
def test_unwritable_output_is_refused_before_anything_runs(capsys, tmp_path, name, content, needle):
    """--output is checked up front: a usage error (exit 3) naming the problem, before any probing."""
    (tmp_path / "blocker").write_text("x")
    (tmp_path / "adir").mkdir()
    code, out, err = run(capsys, "report", "--no-env", "--connectivity", "--output", str(tmp_path / name))
    assert code == 3
    assert out == ""
    assert needle in err
    assert err.count("\n") == 1


def test_config_command_shows_sources(capsys, tmp_path):
    """`config` prints each effective value with where it came from."""
    env = write(tmp_path, "p.env", "# comment\nexport REDIS_HOST='cache'\n")
    code, out, _ = run(capsys, "config", "--no-env", "--env-file", env, "--extra", "REDIS_PORT=6390",
                       "--format", "json")
    rows = {r["key"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["REDIS_HOST"]["value"] == "cache"
    assert rows["REDIS_HOST"]["source"] == f"{env}:2"
    assert rows["REDIS_PORT"]["source"] == "--extra"
    assert rows["REDIS_DB"]["source"] == "default"


def test_no_env_flag_reads_nothing_from_the_environment(capsys, monkeypatch):
    """`--no-env`: a key set in the process environment is not used; without the flag it is."""
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", "6390")
    for flags, expected in (([], ("6390", "env")), (["--no-env"], ("6379", "default"))):
        code, out, _ = run(capsys, "config", *flags, "--format", "json")
        rows = {r["key"]: r for r in json.loads(out)}
        assert code == 0
        assert (rows["REDIS_PORT"]["value"], rows["REDIS_PORT"]["source"]) == expected, flags


def test_canary_secret_appears_in_no_output(capsys, tmp_path, monkeypatch):
    """A canary planted in every secret-bearing key and source never shows in any format, warning or error."""
    yaml_file = write(tmp_path, "c.yaml", f"system_config:\n  KAFKA_PASSWORD: {CANARY}\n  KAFKA_USERNAME: u\n")
    env_file = write(
        tmp_path, "s.env",
        f"TIMESCALEDB_URL=postgresql://u:{CANARY}@db:5432/x?sslpassword={CANARY}\n"
        f"REDIS_URL=redis://cache:6379/0?password={CANARY}\n"
        f"KAFKA_URL=SASL_SSL://ku:{CANARY}@broker:9093\n"
        f"TIMESCALEDB_FAILOVER_URL=postgresql://u:{CANARY}@standby:5432/x\n"
        "TIMESCALE_FAILOVER_DRILL=true\n"
        f"REDIS_PASSWROD={CANARY}\n",  # misspelt: warned about, value never echoed
    )
    monkeypatch.setenv("REDIS_PASSWORD", CANARY)
    monkeypatch.setenv("TIMESCALEDB_SSLPASSWORD", CANARY)
    common = ["--config", yaml_file, "--env-file", env_file, "--extra", f"KAFKA_PASS={CANARY}"]
    outputs = []
    for argv in (
        ["report", *common],
        ["report", *common, "--format", "markdown"],
        ["config", *common],
        ["config", *common, "--format", "json"],
        ["report", *common, "--extra", f"TIMESCALEDB_URL=postgresql://u:{CANARY}@db:notaport/x"],  # an error
        # A ',' in a Kafka URL password: neither half may surface as a host or a user.
        ["report", *common, "--extra", f"KAFKA_URL=sasl_plaintext://ku:{CANARY},{CANARY}@broker:9093,b2"],
        ["config", *common, "--extra", f"KAFKA_URL=sasl_plaintext://ku:{CANARY},{CANARY}@broker:9093,b2"],
    ):
        code, out, err = run(capsys, *argv)
        outputs.append((argv, code, out, err))
        assert CANARY not in out, argv
        assert CANARY not in err, argv
    assert "REDIS_PASSWROD" in outputs[0][3]  # the warning was emitted
    assert outputs[4][1] == 3
    assert "broker:9093,b2:9092" in outputs[-1][2]
    # Malformed input that holds the canary: an env-file line in YAML syntax or with a space in its key, a
    # YAML alias or control character next to it, an --extra with a space in its key. Each is exit 3.
    bad_env = write(tmp_path, "bad.env", f"REDIS_HOST=r\nTIMESCALEDB_URL: postgresql://u:{CANARY}@db/x\n")
    spaced_env = write(tmp_path, "spaced.env", f"REDIS_PASSWORD {CANARY}=x\n")
    alias_yaml = write(tmp_path, "alias.yaml", f"REDIS_PASSWORD: *{CANARY}\n")
    control_yaml = write(tmp_path, "control.yaml", f"REDIS_PASSWORD: {CANARY}\x01\n")
    for argv in (["config", "--env-file", bad_env], ["config", "--env-file", spaced_env],
                 ["report", "--config", alias_yaml], ["report", "--config", control_yaml],
                 ["config", "--extra", f"REDIS_PASSWORD {CANARY}=x"]):
        code, out, err = run(capsys, *argv)
        assert code == 3, (argv, err)
        assert CANARY not in out + err, argv
        assert len(err.splitlines()) == 1, err


def test_debug_adds_a_traceback_but_keeps_the_exit_code(capsys):
    """--debug (before or after the command) prints the traceback and still exits with the mapped code."""
    for argv in (["--debug", "report", "--no-env", "--extra", "REDIS_PORT=x"],
                 ["report", "--debug", "--no-env", "--extra", "REDIS_PORT=x"]):
        code, out, err = run(capsys, *argv)
        assert code == 3
        assert out == ""
        assert "Traceback" in err
        assert err.rstrip().splitlines()[-1].startswith("ingest-probe: error: REDIS_PORT='x'")


def test_a_resolver_stuck_past_the_deadline_does_not_hold_the_exit():
    """A DNS lookup that never returns cannot keep `report --timeout 1` alive: the run reports the timeout and
    exits while the lookup is still stuck (no wall-clock bound: a run that waited for the lookup thread would
    never exit, and the subprocess timeout fails the test)."""
    code = (
        "import socket, threading\n"
        "real = socket.getaddrinfo\n"
        "def stuck(host, *a, **k):\n"
        "    if host in ('stuck.example', b'stuck.example'):\n"
        "        threading.Event().wait()  # forever\n"
        "    return real(host, *a, **k)\n"
        "socket.getaddrinfo = stuck\n"
        "from ingest_probe.commands.cli import main\n"
        "main(['report', '--no-env', '--connectivity', '--timeout', '1', '--extra', 'REDIS_HOST=stuck.example'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["connectivity"][1]["error_kind"] == "timeout"
