"""End to end at a terminal and as a monitoring check: `ingest-probe` in a pseudo-terminal of 80 columns against
real servers (text by default, colour, progress lines as results arrive), the Nagios line of a real run parsed,
and `--fail-on down` with a missing topic."""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import subprocess
import sys
import termios
import uuid
from pathlib import Path
from typing import Any

import pytest
from live.net import free_port
from plugin_output import parse_plugin_output
from test_cli_live import env_file, stack_env

from ingest_probe.renderers.text import cells

pytestmark = pytest.mark.live

SGR = re.compile(r"\x1b\[[0-9;]*m")


def in_terminal(*args: str, columns: int = 80, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`python -m ingest_probe ARGS` with stdin, stdout and stderr on a pseudo-terminal ``columns`` wide: the
    exit code and everything the terminal showed (CRLF turned into LF)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "TERM")}
    environ.update(TERM="xterm", **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "ingest_probe", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=environ, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal has gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=60)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.fixture
def one_down(tmp_path: Path, pg_server: Any, redis_server: Any, kafka_broker: Any) -> str:
    """An env file for the live stack with Redis pointed at a closed port."""
    return env_file(tmp_path, stack_env(pg_server, redis_server, kafka_broker,
                                        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))


def test_terminal_report_with_one_target_down_fits_80_columns(one_down: str) -> None:
    """At an 80-column terminal `report --connectivity` is text by default: 'probing 3 targets (timeout 5s)…'
    first, then each target's line as its result arrives, then one line per target (coloured status, none
    wider than 80 columns) and the summary; exit 2."""
    code, screen = in_terminal("report", "--no-env", "--env-file", one_down, "--connectivity")
    assert code == 2, screen
    lines = screen.rstrip("\n").split("\n")
    assert lines[0] == "ingest-probe: probing 3 targets (timeout 5s)…"
    progress = lines[1:4]
    assert sorted(line.split()[1] for line in progress) == ["kafka", "redis", "timescale"]
    assert any(line.startswith("ingest-probe: redis down [refused]: connection refused") for line in progress)
    report = lines[4:]
    assert len(report) == 4, screen
    assert "\x1b[31mdown" in report[1]
    plain = [SGR.sub("", line) for line in report]
    assert [line.split()[0] for line in plain[:3]] == ["ok", "down", "ok"]
    assert "[refused] connection refused" in plain[1]
    assert max(cells(line) for line in plain) <= 80
    assert plain[3].startswith("down: 1 down (redis), 2 ok in ")
    assert plain[3].endswith("; exit 2")


def test_terminal_width_and_no_color(one_down: str) -> None:
    """A 120-column terminal gets wider rows (more of the error); NO_COLOR=1 and --no-color drop the colour;
    an explicit --format json wins on a terminal."""
    _, wide = in_terminal("report", "--no-env", "--env-file", one_down, "--connectivity", columns=120)
    redis = next(SGR.sub("", line) for line in wide.splitlines() if " redis " in line and "[refused]" in line
                 and not line.startswith("ingest-probe"))
    assert 80 < cells(redis) <= 120
    for extra, env in (([], {"NO_COLOR": "1"}), (["--no-color"], {})):
        _, screen = in_terminal("report", "--no-env", "--env-file", one_down, "--connectivity", *extra, env=env)
        assert "\x1b[" not in screen
    code, screen = in_terminal("report", "--no-env", "--env-file", one_down, "--connectivity", "-f", "json")
    assert code == 2
    assert json.loads(screen[screen.index("{"):screen.rindex("}") + 1])["status"] == "down"


def test_manifest_only_hint_on_a_terminal_only(one_down: str) -> None:
    """`report` without --connectivity: at a terminal one stderr hint; piped, stderr stays empty (cron)."""
    code, screen = in_terminal("report", "--no-env", "--env-file", one_down)
    assert code == 0
    assert screen.rstrip("\n").split("\n")[-1] == "ingest-probe: manifest only: add --connectivity to probe"
    proc = subprocess.run([sys.executable, "-m", "ingest_probe", "report", "--no-env", "--env-file", one_down],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout)["status"] is None  # piped: JSON


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingest_probe", *args], capture_output=True, text=True, timeout=60)


def test_nagios_line_of_a_real_run(tmp_path: Path, pg_server: Any, redis_server: Any, kafka_broker: Any) -> None:
    """`--format nagios` against the live stack: a missing topic is WARNING (exit 1), OK (exit 0) with
    --fail-on down; the output parses strictly, with a latency per target."""
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    path = env_file(tmp_path, stack_env(pg_server, redis_server, kafka_broker, KAFKA_INGEST_TOPICS=f"daily:{topic}"))
    for fail_on, code, state in (("degraded", 1, "WARNING"), ("down", 0, "OK")):
        proc = run("report", "--no-env", "--env-file", path, "--connectivity", "-f", "nagios", "--fail-on", fail_on)
        assert proc.returncode == code, proc.stderr
        output = parse_plugin_output(proc.stdout)
        assert output.state == state
        assert output.text == "kafka degraded (missing_topic), timescale ok, redis ok"
        latency = {p.label: p for p in output.perfdata if p.label.endswith("_latency")}
        assert set(latency) == {"timescale_latency", "redis_latency", "kafka_latency"}
        assert all(p.uom == "s" and p.value is not None and 0 < p.value < 5 for p in latency.values())
        assert topic in output.long_output[2]


def test_fail_on_down_with_a_missing_topic_exits_0(tmp_path: Path, pg_server: Any, redis_server: Any,
                                                   kafka_broker: Any) -> None:
    """--fail-on down: kafka degraded (missing_topic) is reported in full and on stderr, and exits 0; the same
    run without it exits 1."""
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    path = env_file(tmp_path, stack_env(pg_server, redis_server, kafka_broker, KAFKA_INGEST_TOPICS=f"daily:{topic}"))
    down = run("report", "--no-env", "--env-file", path, "--connectivity", "--fail-on", "down")
    doc = json.loads(down.stdout)
    kafka = doc["connectivity"][2]
    assert down.returncode == 0, down.stderr
    assert (doc["status"], kafka["status"], kafka["error_kind"]) == ("degraded", "degraded", "missing_topic")
    assert "kafka degraded [missing_topic]" in down.stderr
    assert run("report", "--no-env", "--env-file", path, "--connectivity").returncode == 1


def test_topics_plan_would_create_on_stderr(tmp_path: Path, kafka_broker: Any) -> None:
    """`topics plan -f text` reads like a plan ('+ create NAME (partitions=3, rf=1, …)'), and the topic that would
    be created gets a stderr line; exit 1."""
    topic = f"plan-view-{uuid.uuid4().hex[:8]}"
    proc = run("topics", "plan", "--no-env", "-f", "text", "--extra", f"KAFKA_BROKERS={kafka_broker.bootstrap}",
               "--extra", f"KAFKA_INGEST_TOPICS=daily:{topic}", "--extra", "KAFKA_INGEST_TOPIC_PARTITIONS=3",
               "--extra", 'KAFKA_INGEST_TOPIC_CONFIG={"retention.ms": "86400000"}')
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[0] == f"+ create {topic} (partitions=3, rf=1, retention.ms=86400000)"
    assert proc.stdout.splitlines()[-1] == "topics: 1 to create (dry run: nothing changed); exit 1"
    assert f"ingest-probe: kafka topics would be created: {topic} (dry run: nothing changed;" in proc.stderr
    assert topic not in kafka_broker.list_topics()
