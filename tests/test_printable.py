"""Server-controlled text never drives the terminal: control characters escaped in every human output, JSON exact."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from typing import Any

import pytest
from fakes import FakeProbe, make_settings, target_of
from live.net import JunkServer

from ingest_probe import errors
from ingest_probe.commands.watch_loop import WatchOptions, watch
from ingest_probe.connectors.kafka.topic_specs import TopicSpec
from ingest_probe.renderers import get_renderer
from ingest_probe.renderers.printable import json_text, printable
from ingest_probe.report.builder import build_report
from ingest_probe.results import ProbeResult, Status
from ingest_probe.topics.plan import Action, Note, ProvisioningSection, TopicPlan

#: What a hostile server puts in its strings: clear screen, window title, C1 CSI, a bidi override, newlines.
HOSTILE = "a\x1b[2J\x1b]0;pwned\x07b\x9b31mc\u202eevil\x7fd\ne"
NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)
#: Any raw character the escaping must have removed (newline allowed only where asked).
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_printable_escapes_every_control_visibly() -> None:
    """C0, DEL, C1 and bidi controls become \\x.. / \\u.... escapes; ordinary text (and non-ASCII) stays."""
    assert printable(HOSTILE) == "a\\x1b[2J\\x1b]0;pwned\\x07b\\x9b31mc\\u202eevil\\x7fd\\ne"
    assert printable("a\nb\tc", keep="\n") == "a\nb\\tc"
    assert printable("Zürich – ok | 東京") == "Zürich – ok | 東京"


def test_json_text_escapes_what_json_dumps_leaves_raw_and_decodes_exactly() -> None:
    """C1, DEL and bidi controls become \\u escapes in JSON text; the decoded value is exactly the original."""
    text = json_text(json.dumps({"k": HOSTILE}, ensure_ascii=False))
    assert not RAW.search(text)
    assert json.loads(text) == {"k": HOSTILE}


def _hostile_report() -> Any:
    results = [
        ProbeResult(name="redis", configured=True, status=Status.DOWN, endpoint="127.0.0.1:1",
                    error=f"Redis at 127.0.0.1:1 answered with an error: {HOSTILE}", error_kind="query",
                    details={"redis_version": HOSTILE, HOSTILE: "key from the server"}),
        ProbeResult(name="kafka", configured=True, status=Status.OK, endpoint="127.0.0.1:2",
                    details={"brokers": [f"{HOSTILE}:9092"]}),
    ]
    spec = TopicSpec(name="ingest.daily", dimensions=("daily",), configs={f"retention.ms{HOSTILE}": "1"})
    plan = TopicPlan(spec=spec, action=Action.DRIFT,
                     drift={f"config:{HOSTILE}": {"want": "1", "have": HOSTILE, "classification": "fixable"}},
                     message=HOSTILE)
    section = ProvisioningSection(dry_run=True, before=(plan,), after=(plan,), notes=(Note("x", HOSTILE),),
                                  error=HOSTILE, error_kind="protocol", failed={"ingest.daily": HOSTILE})
    return build_report(make_settings(), results=results, topics=section, now=NOW)


def test_markdown_escapes_controls_and_keeps_tables_whole() -> None:
    """Errors, details (keys too), topic names, config keys, notes: no raw control, one line per table row."""
    text = get_renderer("markdown")(_hostile_report())
    assert not RAW.search(text)
    assert "\\x1b[2J" in text
    assert "\\u202e" in text
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith("|"), line
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        cells = {len(re.split(r"(?<!\\)\|", row)) for row in rows}
        assert len(cells) <= 1, rows  # every row of a table has as many cells as its header


@pytest.mark.parametrize("fmt", ["text", "nagios"])
def test_terminal_and_plugin_formats_escape_controls(fmt: str) -> None:
    """The text view (a terminal) and the Nagios line (a web UI, a pager) show a server's controls as escapes."""
    text = get_renderer(fmt)(_hostile_report())
    assert not RAW.search(text.replace("\n", ""))
    assert "\\x1b[2J" in text


def test_json_keeps_every_value_exact_and_nothing_raw() -> None:
    """The JSON report decodes to exactly the document (controls included), with none of them raw."""
    report = _hostile_report()
    text = get_renderer("json")(report)
    assert not RAW.search(text)
    assert json.loads(text) == json.loads(json.dumps(report.to_dict()))


def test_stderr_problem_lines_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """The one-line-per-problem stderr summary shows the server's controls as escapes."""
    from ingest_probe.commands.options import finish
    from ingest_probe.commands.terminal import View

    with pytest.raises(SystemExit):
        finish(_hostile_report(), View(fmt="json"), None)
    err = capsys.readouterr().err
    assert not RAW.search(err.replace("\n", ""))
    assert "redis down [query]: Redis at 127.0.0.1:1 answered with an error: a\\x1b[2J" in err
    assert all(line.startswith("ingest-probe: ") for line in err.splitlines())


def test_error_line_is_escaped(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`ingest-probe: error: ...` shows controls in an error message as escapes."""
    from ingest_probe.commands import cli, report

    def bad(*args: Any) -> Any:
        raise errors.ConfigError(f"bad value {HOSTILE}")

    monkeypatch.setattr(report, "load_targets", bad)
    with pytest.raises(SystemExit):
        cli.main(["report", "--no-env"])
    err = capsys.readouterr().err
    # One line first (a newline in a message becomes a space), then every control shown as an escape.
    assert err == "ingest-probe: error: bad value " + printable(" ".join(HOSTILE.split())) + "\n"


async def test_watch_log_lines_are_escaped() -> None:
    """A status transition's log line carries the server's error with its controls escaped, on one line."""
    calls = []

    async def hostile(rec: Any) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise errors.RefusedError(f"refused: {HOSTILE}")

    lines: list[str] = []
    options = WatchOptions(interval=60.0, jitter_seconds=0.0, max_failures=1, handle_signals=False)

    async def no_sleep(delay: float) -> None:
        pass

    probe = FakeProbe("redis", hostile)
    code = await watch(make_settings(), options, log=lines.append, targets=[target_of(probe)],
                       probes={"redis": probe}, sleep=no_sleep)
    assert code == 2  # stopped after the failing cycle
    transition = next(line for line in lines if "ok -> down" in line)
    assert not RAW.search("".join(lines))
    assert "refused: a\\x1b[2J" in transition


@pytest.mark.live
def test_cli_against_a_redis_that_answers_with_escapes(tmp_path: Any) -> None:
    """End to end: a Redis peer whose error reply carries ESC sequences; Markdown and stderr show escapes,
    the JSON report keeps the exact text."""
    with JunkServer("-ERR \x1b]0;pwned\x07\x1b[2J\x9b31m\r\n".encode()) as peer:
        base = [sys.executable, "-m", "ingest_probe", "report", "--no-env", "--connectivity", "--timeout", "2",
                "--extra", f"REDIS_URL=redis://127.0.0.1:{peer.port}/0"]  # fmt: skip
        md = subprocess.run([*base, "--format", "markdown"], capture_output=True, text=True, timeout=30)
        js = subprocess.run(base, capture_output=True, text=True, timeout=30)
    assert md.returncode == 2, md.stderr
    for text in (md.stdout, md.stderr):
        assert not RAW.search(text.replace("\n", "")), text
        assert "\\x1b]0;pwned\\x07" in text
    error = json.loads(js.stdout)["connectivity"][1]["error"]
    assert "\x1b]0;pwned\x07\x1b[2J\x9b31m" in error
    assert not RAW.search(js.stdout.replace("\n", ""))
