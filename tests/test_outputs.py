"""Operator outputs without servers: the exit policy, the terminal view, the Nagios line (its perfdata parsed
strictly), Markdown order and width, duration flags, help, completion, the default format and progress."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from fakes import FakeProbe, jobs, make_settings
from plugin_output import parse_perfdata, parse_plugin_output

from ingest_probe.commands.cli import main
from ingest_probe.connectors.kafka.topic_specs import TopicSpec
from ingest_probe.engine.supervisor import RunInfo, TaskSupervisor
from ingest_probe.renderers import FORMATS, get_renderer, render
from ingest_probe.renderers.markdown_blocks import item
from ingest_probe.renderers.text import cells, fit
from ingest_probe.report.builder import build_report
from ingest_probe.report.policy import exit_code, ready
from ingest_probe.results import ProbeResult, Recorder, Status
from ingest_probe.settings.service import load_settings
from ingest_probe.topics.plan import Action, ProvisioningSection, TopicPlan, TopicState, compare

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)
SGR = re.compile(r"\x1b\[[0-9;]*m")
LONG_ERROR = ("connection refused by cache-primary.eu-west-1.internal.example.com:6380: is the server running on"
              " that port? " + "and a server that says far more than one line should " * 3)


def result(name: str, status: Status, *, error: str | None = None, kind: str | None = None,
           endpoint: str | None = "127.0.0.1:5432", latency: float | None = 12.0, **kw: Any) -> ProbeResult:
    return ProbeResult(name=name, configured=status is not Status.SKIPPED, status=status, error=error,
                       error_kind=kind, endpoint=endpoint, latency_ms=latency, **kw)


def incident() -> list[ProbeResult]:
    """One target down with a long error, one degraded, one ok, one skipped: the incident shapes."""
    return [
        result("timescale", Status.OK, endpoint="db-primary.prod.eu-west-1.rds.amazonaws.example.com:5432"),
        result("redis", Status.DOWN, error=LONG_ERROR, kind="refused", latency=1.04,
               endpoint="cache-primary.eu-west-1.internal.example.com:6380"),
        result("kafka", Status.DEGRADED, error="topics missing on the cluster: ingest.bars.daily — create them",
               kind="missing_topic", endpoint="k1.example.com:9092,k2.example.com:9092,k3.example.com:9092",
               latency=2400.0),
        result("shard-with-a-rather-long-target-name-7", Status.SKIPPED, endpoint=None, latency=None),
    ]


def report_of(results: list[ProbeResult] | None, **kw: Any) -> Any:
    run = RunInfo(timeout_s=5.0, jitter=0.1, seed=1, concurrency=100, duration_ms=2410.0) if results else None
    return build_report(make_settings(KAFKA_BROKERS="k1:9092"), results=results, run=run, now=NOW,
                        probed_from="probe-01", **kw)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


# ------------------------------------------------------------------------------------------ exit policy


@pytest.mark.parametrize(("statuses", "degraded", "down"), [
    ([Status.OK, Status.SKIPPED], 0, 0),
    ([Status.OK, Status.DEGRADED], 1, 0),
    ([Status.STARTING, Status.OK], 1, 0),
    ([Status.DOWN, Status.DEGRADED], 2, 2),
    ([Status.SKIPPED], 3, 3),
])
def test_fail_on_turns_only_warnings_into_success(statuses: list[Status], degraded: int, down: int) -> None:
    """--fail-on degraded keeps today's codes; --fail-on down makes a WARNING exit 0 and leaves CRITICAL and
    UNKNOWN alone; ready() agrees with the exit code, for a report and for bare results."""
    results = [result(f"t{i}", s) for i, s in enumerate(statuses)]
    report = report_of(results)
    assert (exit_code(report, "degraded"), exit_code(report, "down")) == (degraded, down)
    assert (ready(report, "degraded"), ready(report, "down")) == (degraded == 0, down == 0)
    assert (ready(results, "degraded"), ready(results, "down")) == (degraded == 0, down == 0)


def test_fail_on_down_keeps_an_internal_error_and_topic_failures_failing() -> None:
    """An internal result (exit 3) and a failed topic creation (exit 2) fail under --fail-on down too; drift
    (1) does not."""
    internal = [result("redis", Status.DOWN, kind="internal", error="bug")]
    assert exit_code(report_of(internal), "down") == 3
    plans = (TopicPlan(spec=TopicSpec(name="t", dimensions=("daily",)), action=Action.DRIFT),)
    drift = ProvisioningSection(dry_run=False, before=plans, after=plans)
    assert exit_code(report_of(None, topics=drift), "down") == 0
    failed = ProvisioningSection(dry_run=False, before=plans, after=plans, failed={"t": "boom"})
    assert exit_code(report_of(None, topics=failed), "down") == 2
    with pytest.raises(Exception, match="--fail-on must be one of"):
        exit_code(report_of(internal), "sometimes")


# -------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(("value", "seconds"), [
    ("2s", 2.0), ("500ms", 0.5), ("1m", 60.0), ("1.5", 1.5), ("0.25s", 0.25), ("1h", 3600.0), ("2 s", 2.0),
])
def test_timeout_takes_units(capsys: pytest.CaptureFixture[str], value: str, seconds: float) -> None:
    """--timeout/-t takes 2s, 500ms, 1m (a plain number is seconds): the run block records the seconds."""
    code, out, _ = cli(capsys, "report", "--no-env", "--connectivity", "-t", value, "-f", "json")
    assert code == 3  # nothing configured: every target skipped
    assert json.loads(out)["run"]["timeout_s"] == seconds


@pytest.mark.parametrize(("flag", "value"), [
    ("--timeout", "nan"), ("--timeout", "infs"), ("--timeout", "1e300ms"), ("--timeout", "0ms"),
    ("--timeout", "2x"), ("--timeout", "-1s"), ("--timeout", "61m"), ("--timeout", "٣s"), ("--timeout", "s"),
    ("--splay", "2d"), ("--jitter", "5ms"), ("--cert-warn-days", "2s"),
])
def test_bad_durations_are_usage_errors(capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    """Units keep the bounds and the NaN/inf refusal; fractions and day counts take no unit: exit 3, one line."""
    code, out, err = cli(capsys, "report", "--no-env", "--connectivity", flag, value)
    assert (code, out) == (3, "")
    assert err.count("\n") == 1
    assert flag in err


def test_watch_interval_takes_units(capsys: pytest.CaptureFixture[str]) -> None:
    """The shared type serves every command: watch --interval 31d is the bound, 32d is refused."""
    code, _, err = cli(capsys, "watch", "--no-env", "--interval", "32d", "--once")
    assert code == 3
    assert "--interval" in err


# ------------------------------------------------------------------------------------- the terminal view


@pytest.mark.parametrize("width", [40, 60, 80, 100, 200])
def test_text_rows_never_exceed_the_width(width: int) -> None:
    """One line per target plus a summary; no line wider than the terminal, whatever the names, endpoints
    and errors; the columns line up."""
    text = get_renderer("text")  # default width 80
    lines = render("text", report_of(incident()), width=width).splitlines()
    assert len(lines) == 5
    assert max(cells(line) for line in lines) <= width
    assert [line.split()[0] for line in lines[:4]] == ["ok", "down", "degraded", "skipped"]
    for line in lines[:4]:  # status, latency right-aligned, name (cut at 20), endpoint: same columns in every row
        assert re.fullmatch(r"\d+(\.\d)? (ms|s)|—", line[9:16].strip()), line
        assert (line[8], line[16:18]) == (" ", "  "), line
        if width >= 80:
            assert line[38:40] == "  ", line
    assert lines[-1].endswith("; exit 2")  # the exit code survives any cut
    if width >= 80:
        assert lines[-1].startswith("down: 1 down (redis), 1 degraded (kafka), 1 ok, 1 skipped in 2.4 s")
    assert text(report_of(incident())) == render("text", report_of(incident()), width=80)


def test_text_keeps_the_ends_of_an_endpoint_and_cuts_the_error() -> None:
    """The endpoint keeps its head and port (middle cut), the error its start ("[refused] connection …")."""
    line = render("text", report_of(incident()), width=80).splitlines()[1]
    assert "[refused] connection" in line
    assert line.endswith("…")
    endpoint = line.split()[4]
    assert endpoint.startswith("cache-")
    assert endpoint.endswith(":6380")
    assert "…" in endpoint


def test_text_colour_only_when_asked_and_alignment_unchanged() -> None:
    """color=True wraps the status word in SGR codes; stripped of them the lines are the uncoloured ones."""
    plain = render("text", report_of(incident()), width=80)
    coloured = render("text", report_of(incident()), width=80, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[31mdown" in coloured
    assert "\x1b[32mok" in coloured
    assert SGR.sub("", coloured) == plain


def test_text_counts_wide_characters_as_two_columns() -> None:
    """A server's error in CJK is cut by terminal columns, not characters."""
    r = [result("redis", Status.DOWN, kind="query", error="エラー" * 40)]
    lines = render("text", report_of(r), width=60).splitlines()
    assert max(cells(line) for line in lines) <= 60
    assert cells("東京") == 4
    assert fit("東京東京", 5) == "東京…"
    assert fit("abcdefghij", 7, middle=True) == "abc…hij"


def test_text_manifest_only_and_fail_on_down() -> None:
    """Manifest only: a line per target and 'not probed'; --fail-on down is named when it changed the code."""
    lines = render("text", report_of(None), width=80).splitlines()
    assert lines[-1].startswith("not probed (manifest only: add --connectivity)")
    degraded = [result("kafka", Status.DEGRADED, kind="missing_topic", error="topics missing")]
    assert render("text", report_of(degraded), fail_on="down").splitlines()[-1].endswith("; exit 0 (--fail-on down)")


def test_topics_plan_reads_like_a_plan() -> None:
    """topics plan --format text: '+ create NAME (partitions=3, rf=1, retention.ms=…)', '~ drift NAME: …'."""
    new = TopicSpec(name="ingest.bars.daily", dimensions=("daily",), partitions=3, configs={"retention.ms": "864"})
    old = TopicSpec(name="ingest.bars.intraday", dimensions=("intraday",), partitions=6)
    same = TopicSpec(name="ingest.macro", dimensions=("macro",))
    plans = (compare(new, TopicState(name=new.name, exists=False)),
             compare(old, TopicState(name=old.name, exists=True, partitions=3, replication_factor=1, configs={})),
             compare(same, TopicState(name=same.name, exists=True, partitions=1, replication_factor=1,
                                      configs={})))
    section = ProvisioningSection(dry_run=True, before=plans, after=plans)
    lines = render("text", report_of(None, topics=section), width=100).splitlines()
    assert lines[:3] == [
        "+ create ingest.bars.daily (partitions=3, rf=1, retention.ms=864)",
        "~ drift ingest.bars.intraday: partitions 3 → 6 (fixable)",
        "= in sync ingest.macro (partitions=1, rf=1)",
    ]
    assert lines[-1] == "topics: 1 to create, 1 drifting, 1 in sync (dry run: nothing changed); exit 1"


# ------------------------------------------------------------------------------------------------ Nagios


def test_nagios_status_line_and_perfdata_parse() -> None:
    """The status line names the problems first ('redis down (refused), kafka degraded …, timescale ok'); the
    perfdata passes the strict parser: latency in seconds per probed target, then the counts."""
    out = render("nagios", report_of(incident()))
    parsed = parse_plugin_output(out)
    assert (parsed.service, parsed.state) == ("INGEST-PROBE", "CRITICAL")
    assert parsed.text == "redis down (refused), kafka degraded (missing_topic), timescale ok"
    perf = {p.label: p for p in parsed.perfdata}
    assert (perf["redis_latency"].value, perf["redis_latency"].uom, perf["redis_latency"].min) == (0.00104, "s", 0)
    assert perf["kafka_latency"].value == 2.4
    assert "shard-with-a-rather-long-target-name-7_latency" not in perf  # skipped: nothing measured
    assert {k: v.value for k, v in perf.items() if k.startswith("targets_")} == {
        "targets_ok": 1, "targets_degraded": 1, "targets_starting": 0, "targets_down": 1, "targets_skipped": 1}
    assert all(p.max == 4 for k, p in perf.items() if k.startswith("targets_"))
    assert len(parsed.long_output) == 4
    assert parsed.long_output[1].startswith("redis: down, 1.0 ms at cache-primary")


@pytest.mark.parametrize(("statuses", "fail_on", "state"), [
    ([Status.OK], "degraded", "OK"), ([Status.DEGRADED], "degraded", "WARNING"), ([Status.DEGRADED], "down", "OK"),
    ([Status.DOWN], "down", "CRITICAL"), ([Status.SKIPPED], "degraded", "UNKNOWN"),
])
def test_nagios_state_is_the_exit_codes(statuses: list[Status], fail_on: str, state: str) -> None:
    """The state word is the exit code's under --fail-on: the two never disagree."""
    report = report_of([result(f"t{i}", s, kind="k", error="e") for i, s in enumerate(statuses)])
    parsed = parse_plugin_output(render("nagios", report, fail_on=fail_on))
    assert parsed.state == state
    assert ("OK", "WARNING", "CRITICAL", "UNKNOWN").index(state) == exit_code(report, fail_on)


def test_nagios_text_never_breaks_the_format() -> None:
    """A '|' or a newline in a server's error, a quote or '=' in a target name: still one status line, still
    parseable perfdata."""
    r = [result("it's=odd", Status.DOWN, kind="protocol", error="a | b\nc"),
         result("t2", Status.OK, tls_not_after=NOW.timestamp() + 3 * 86400)]
    parsed = parse_plugin_output(render("nagios", report_of(r)))
    labels = {p.label: p for p in parsed.perfdata}
    assert "it_s_odd_latency" in labels
    cert = labels["t2_tls_cert_days_left"]
    assert (cert.value, cert.warn, cert.crit) == (3.0, "14:", "0:")
    assert parsed.long_output[0] == "it's=odd: down, 12.0 ms at 127.0.0.1:5432 [protocol] a / b c"


def test_nagios_many_targets_counts_the_ok_ones() -> None:
    """Beyond eight targets the status names only those not ok and counts the rest."""
    many = [result(f"shard-{i}", Status.OK) for i in range(20)] + [result("shard-x", Status.DOWN, kind="timeout")]
    parsed = parse_plugin_output(render("nagios", report_of(many)))
    assert parsed.text == "shard-x down (timeout), 20 of 21 targets ok"


@pytest.mark.parametrize("bad", [
    "'a'=1;;;0; b=2", "a b=1", "'a'=1x", "'a'=1;;;0;;;", "'a'=1,5", "'a'=1;1:2:3", "'a=1", "'a'='1'", "=1",
    "'a'=1;;;zero", "'a'=1  'b'=2",
])
def test_the_perfdata_parser_is_strict(bad: str) -> None:
    """The parser that checks our output rejects what the guidelines do not allow (it can fail)."""
    if bad == "'a'=1;;;0; b=2":  # the control: valid
        assert [p.label for p in parse_perfdata(bad)] == ["a", "b"]
        return
    with pytest.raises(ValueError):  # noqa: PT011 -- the message varies by rule
        parse_perfdata(bad)


# ---------------------------------------------------------------------------------------------- Markdown


def test_markdown_puts_the_incident_first_and_stays_narrow() -> None:
    """Connectivity table first, details next, configuration last; no line over 160 characters even with a
    240-character error, a long broker list and long topics (bullets wrap, table cells are cut)."""
    topic = "ingest.bars.daily.with-a-long-name-for-a-long-table-" + "y" * 20
    spec = TopicSpec(name=topic, dimensions=("daily",), partitions=12, configs={"retention.ms": "1" * 30})
    plan = compare(spec, TopicState(name=topic, exists=True, partitions=3, replication_factor=1, configs={}))
    section = ProvisioningSection(dry_run=True, before=(plan,), after=(plan,))
    text = get_renderer("markdown")(report_of(incident(), topics=section))
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:5] == ["## Connectivity", "## Run", "## Kafka topic provisioning", "## Ingest gating",
                            "## Connectors"]
    assert text.index("### redis: probe details") < text.index("## Ingest gating") < text.index("## Manifest")
    assert max(len(line) for line in text.splitlines()) <= 160
    assert LONG_ERROR[:90] in " ".join(text.split())  # the full error is there, wrapped in the details


def test_markdown_sections_pick_what_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """--sections connectivity,details: the verdict, the table and the details only; an unknown name or a
    non-Markdown format is a usage error."""
    text = get_renderer("markdown")
    shown = render("markdown", report_of(incident()), sections=("connectivity", "details"))
    assert [line for line in shown.splitlines() if line.startswith("## ")] == ["## Connectivity"]
    assert "### kafka: probe details" in shown
    assert shown != text(report_of(incident()))
    code, _, err = cli(capsys, "report", "--no-env", "-f", "markdown", "--sections", "connectivity,bogus")
    assert code == 3
    assert "bogus is not a section" in err
    code, _, err = cli(capsys, "report", "--no-env", "-f", "json", "--sections", "connectivity")
    assert code == 3
    assert "--sections applies to --format markdown" in err


def test_wrapped_bullets_never_start_a_new_block() -> None:
    """A wrapped bullet's continuation that would read as a list item or heading has its marker escaped."""
    lines = item("- error: " + "word " * 17 + "- 1. # > x " + "z " * 30)
    assert all(len(line) <= 100 for line in lines)
    assert all(not re.match(r"\s*([-+*>#]|\d+\.)\s", line) for line in lines[1:]), lines


# ------------------------------------------------------------------------------- help, completion, flags


COMMANDS = [[], ["report"], ["readiness"], ["drill"], ["config"], ["topics"], ["topics", "plan"],
            ["topics", "apply"], ["watch"], ["wait"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ingest-probe")
def test_help_fits_80_columns_and_ends_with_examples(command: list[str]) -> None:
    """Every --help at an 80-column terminal: no line over 80 (the exit-code epilog included), and the last
    block is two or three examples of the command."""
    proc = subprocess.run([sys.executable, "-m", "ingest_probe", *command, "--help"], capture_output=True,
                          text=True, timeout=30, env={**os.environ, "COLUMNS": "80"}, check=True)
    lines = proc.stdout.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    examples = lines[next(i for i, line in enumerate(lines) if line.strip() == "Examples:") + 1:]
    assert 2 <= len(examples) <= 3
    assert all(line.startswith("    ") for line in examples)
    assert any(" ".join(["ingest-probe", *command]) in line for line in examples) or not command


def test_short_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """-o, -f and -t are --output, --format and --timeout."""
    path = tmp_path / "r.md"
    code, out, _ = cli(capsys, "report", "--no-env", "--connectivity", "-t", "1s", "-f", "markdown", "-o", str(path))
    assert (code, out) == (3, "")
    assert path.read_text().startswith("# ingest-probe report")


@pytest.mark.parametrize(("shell", "needle"), [
    ("bash_source", "complete -o nosort -F _ingest_probe_completion ingest-probe"),
    ("zsh_source", "#compdef ingest-probe"),
    ("fish_source", "complete --no-files --command ingest-probe"),
])
def test_shell_completion_script(shell: str, needle: str) -> None:
    """_INGEST_PROBE_COMPLETE=bash_source ingest-probe prints the completion script (exit 0), not the usage
    error a bare `ingest-probe` gets."""
    env = {**os.environ, "_INGEST_PROBE_COMPLETE": shell}
    proc = subprocess.run([sys.executable, "-m", "ingest_probe"], capture_output=True, text=True, env=env,
                          timeout=30)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert needle in proc.stdout


def test_shell_completion_completes_commands_and_flags() -> None:
    """The completion protocol answers with the commands (loaded lazily) and a command's flags."""
    def complete(words: str) -> list[str]:
        env = {**os.environ, "_INGEST_PROBE_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - 1)}
        proc = subprocess.run([sys.executable, "-m", "ingest_probe"], capture_output=True, text=True, env=env,
                              timeout=30, check=True)
        return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]

    assert complete("ingest-probe rep") == ["report"]
    assert "--fail-on" in complete("ingest-probe report --fa")
    assert set(complete("ingest-probe report --format n")) == {"nagios"}


def test_nagios_needs_something_probed(capsys: pytest.CaptureFixture[str]) -> None:
    """`report -f nagios` without --connectivity (or --ensure-topics) would be OK forever: a usage error."""
    code, out, err = cli(capsys, "report", "--no-env", "-f", "nagios")
    assert (code, out) == (3, "")
    assert "--format nagios needs --connectivity" in err


def test_bare_command_is_still_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Without the completion variable, no arguments stays exit 3 with one line."""
    code, _, err = cli(capsys)
    assert code == 3
    assert "missing command" in err


def test_config_changed_shows_only_what_a_source_set(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """config --changed: the keys a file, the environment or --extra set (or a URL supplied), no defaults."""
    env = tmp_path / "p.env"
    env.write_text("REDIS_URL=redis://cache:6380/1\n")
    code, out, _ = cli(capsys, "config", "--no-env", "--env-file", str(env), "--extra", "EMP_TIER=tier_1",
                       "--changed", "-f", "json")
    rows = {r["key"]: r["source"] for r in json.loads(out)}
    assert code == 0
    assert rows["REDIS_URL"] == f"{env}:1"
    assert rows["EMP_TIER"] == "--extra"
    assert rows["REDIS_PORT"].startswith("REDIS_URL")  # supplied by the URL: set, not a default
    assert not [source for source in rows.values() if source.startswith("default")]
    code, everything, _ = cli(capsys, "config", "--no-env", "-f", "json")
    assert "default" in {r["source"] for r in json.loads(everything)}


def test_report_says_where_from_and_which_sources(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """probed_from is the host name; config_sources the files read (names, not contents), lowest first."""
    import socket

    yaml_file, env = tmp_path / "i.yaml", tmp_path / "s.env"
    yaml_file.write_text("REDIS_HOST: r\n")
    env.write_text("REDIS_PASSWORD=secret-canary-3f\n")
    code, out, _ = cli(capsys, "report", "--config", str(yaml_file), "--env-file", str(env), "--extra",
                       "EMP_TIER=tier_1", "-f", "json")
    doc = json.loads(out)
    assert code == 0
    assert doc["probed_from"] == socket.gethostname()
    assert doc["config_sources"] == [str(yaml_file), "environment", str(env), "--extra"]
    assert "secret-canary-3f" not in out


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_every_report_shape(fmt: str) -> None:
    """Manifest only, an incident, topics only: every format renders each without error, ending in a newline."""
    plans = (TopicPlan(spec=TopicSpec(name="t", dimensions=("daily",)), action=Action.CREATE),)
    section = ProvisioningSection(dry_run=True, before=plans, after=plans)
    for report in (report_of(None), report_of(incident()), report_of(None, topics=section)):
        assert get_renderer(fmt)(report).endswith("\n")


# ------------------------------------------------------------------------------------ default, progress


def test_default_format_is_json_when_stdout_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """Piped (as under pytest), the default stays JSON; an explicit --format wins."""
    code, out, _ = cli(capsys, "report", "--no-env")
    assert code == 0
    assert json.loads(out)["status"] is None
    code, out, _ = cli(capsys, "report", "--no-env", "--format", "text")
    assert out.splitlines()[-1].startswith("not probed")


async def test_on_result_reports_each_target_as_soon_as_it_is_known() -> None:
    """The engine calls on_result with each result as it completes: the slow probe waits for the fast one's
    callback, so a callback made only at the end would deadlock into a timeout."""
    fast_done = anyio.Event()

    async def slow(rec: Recorder) -> None:
        await fast_done.wait()

    seen: list[str] = []

    def on_result(r: ProbeResult) -> None:
        seen.append(f"{r.name}:{r.status.value}")
        if r.name == "fast":
            fast_done.set()

    probes = [FakeProbe("slow", slow), FakeProbe("fast"), FakeProbe("off", configured=False)]
    results = await TaskSupervisor(timeout=2.0, jitter=0.0).run(jobs(probes), on_result=on_result)
    assert [r.status for r in results] == [Status.OK, Status.OK, Status.SKIPPED]
    assert seen == ["off:skipped", "fast:ok", "slow:ok"]


def test_nothing_configured_reports_unknown_in_every_format() -> None:
    """A run where every target was skipped: 'nothing configured to probe', UNKNOWN, exit 3."""
    report = build_report(load_settings(environ={}), results=[result("redis", Status.SKIPPED)], now=NOW)
    parsed = parse_plugin_output(render("nagios", report))
    assert (parsed.state, parsed.text) == ("UNKNOWN", "nothing configured to probe")
    assert render("text", report).splitlines()[-1].endswith("exit 3")


def test_drill_reports_in_the_terminal_and_plugin_formats() -> None:
    """A drill report (no connector probed): a line per drill component and the verdict in text; in Nagios the
    drill's state (CRITICAL for a standby in recovery) and no 'manifest only' claim."""
    from test_drill import entry, settings, snapshot, standby

    s = settings(TIMESCALE_ENABLE_INTRADAY="true", TIMESCALEDB_URL="postgresql://ingest:pw@db.example.com/market")
    section = snapshot({"daily_bars": entry(rows_written=0, symbols=["AAPL"])}, s,
                       fallback=standby(in_recovery=True), dimensions=("daily_bars",))
    report = build_report(s, drill=section, now=NOW)
    lines = render("text", report, width=80).splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == ["drill health", "drill failover", "drill fallback"]
    assert lines[-1].startswith("failover drill fail: ")
    assert lines[-1].endswith("; exit 2")
    parsed = parse_plugin_output(render("nagios", report))
    assert (parsed.state, parsed.text) == ("CRITICAL", "failover drill fail")
    assert "pw" not in render("text", report) + render("nagios", report)
