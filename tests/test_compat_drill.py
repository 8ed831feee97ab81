"""Drop-in for the replaced readiness and drill tools: their results files and drill keys, end to end (CLI)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fakes import help_in_a_fresh_interpreter
from live.net import free_port

from ingest_probe.commands.cli import main

COMPAT = Path(__file__).parent / "fixtures" / "compat"
RESULTS = COMPAT / "results"
ENV = COMPAT / "drill.env"
#: The ingest service's env template: its drill keys under names its own code never read (TIMESCALE_FAILOVER_*).
TEMPLATE = COMPAT / "institutional_ingest.env"
#: Every shape the old drill read, and what `readiness` makes of it with the template's drill keys (symbols
#: EURUSD, GBPUSD; intraday planned; TIMESCALE_FAILOVER_DRILL_DIMENSIONS=daily_bars): drill status, and the
#: reasons of the `daily` row. None of them fails over: daily has its rows and symbols.
SHAPES = {
    "results_asdict.json": ("warn", ["freshness unknown: the results give no freshness_seconds"]),
    "results_intraday.json": ("ok", []),
    "results_list.json": ("warn", ["freshness unknown: the results give no freshness_seconds"]),
    "results_minimal.json": ("warn", ["freshness unknown: the results give no freshness_seconds"]),
    "results_naive.json": ("warn", []),
    "results_nullfresh.json": ("warn", ["freshness unknown: the results give no freshness_seconds"]),
    "results_single.json": ("warn", ["freshness unknown: the results give no freshness_seconds"]),
}
NAIVE = {"results_list.json", "results_naive.json"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return int(info.value.code or 0), out, err


def drill_of(out: str) -> dict[str, Any]:
    return json.loads(out)["failover_drill"]


def rows(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in snapshot["health_report"]["dimensions"]}


def test_fixtures_cover_every_shape():
    """The fixtures are the seven shapes of the compatibility reference, each valid JSON."""
    assert sorted(p.name for p in RESULTS.glob("*.json")) == sorted(SHAPES)
    for path in RESULTS.glob("*.json"):
        json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_readiness_judges_every_old_shape(capsys, name):
    """`readiness --results FILE` (the alias of --ingest-results) reads each old shape with the template's drill
    keys: judged, never refused, no warning about a key, the service's names shown as the report's."""
    code, out, err = run(capsys, "readiness", "--no-env", "--env-file", str(ENV), "--results", str(RESULTS / name))
    snapshot = drill_of(out)
    status, daily_reasons = SHAPES[name]
    assert (snapshot["status"], code) == (status, {"ok": 0, "warn": 1}[status]), err
    assert snapshot["scenario"] == "staged_timescale_outage"
    assert snapshot["simulated_outage"] == []
    assert json.loads(out)["connectivity"] is None  # readiness probes the connectors only with --connectivity
    daily = rows(snapshot)["daily"]
    assert (daily["name_in_results"], daily["rows_written"], daily["missing_symbols"]) == ("daily_bars", 42, [])
    assert daily["reasons"] == daily_reasons
    assert snapshot["failover_decision"]["should_failover"] is False
    intraday = rows(snapshot)["intraday"]
    if name == "results_intraday.json":
        assert (intraday["name_in_results"], intraday["status"]) == ("intraday_trades", "ok")
    else:
        assert intraday["reasons"] == ["planned but absent from the ingest results"]
        assert snapshot["failover_decision"]["optional_triggers"] == ["intraday"]
    notes = [n["code"] for n in snapshot["health_report"]["notes"]]
    assert notes == (["naive_timestamps_read_as_utc"] if name in NAIVE else [])
    assert "warning" not in err
    assert err == ("" if status == "ok" else f"ingest-probe: failover drill warn: {snapshot['reason']}\n")


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_drill_rehearses_every_old_shape(capsys, name):
    """`drill --results FILE` (the old run_failover_drill): the required daily's outage is simulated, failover
    is decided, and the verdict is the standby's; no standby configured is a warning (exit 1)."""
    code, out, err = run(capsys, "drill", "--no-env", "--env-file", str(ENV), "--results", str(RESULTS / name))
    doc = json.loads(out)
    snapshot = doc["failover_drill"]
    assert (code, snapshot["status"]) == (1, "warn"), err
    assert snapshot["scenario"] == "timescale_failover"  # the old command's default, not the key's label
    assert snapshot["simulated_outage"] == ["daily"]
    assert snapshot["failover_decision"]["should_failover"] is True
    assert snapshot["failover_decision"]["triggered_dimensions"] == ["daily"]
    assert rows(snapshot)["daily"]["simulated"] is True
    assert [c["status"] for c in snapshot["components"]] == ["fail", "warn", "warn"]
    assert "no standby configured" in snapshot["reason"]
    assert (doc["connectivity"], doc["status"]) == (None, None)  # no connector probed
    assert "warning" not in err


def test_drill_probes_the_standby_and_fails_when_it_is_down(capsys):
    """The standby is the point of a drill: one that refuses connections makes the drill fail (exit 2)."""
    standby = f"postgresql://drill:pw@127.0.0.1:{free_port()}/market"
    code, out, err = run(capsys, "drill", "--no-env", "--env-file", str(ENV), "--results",
                         str(RESULTS / "results_intraday.json"), "--extra", f"TIMESCALEDB_FAILOVER_URL={standby}",
                         "--timeout", "2")
    snapshot = drill_of(out)
    assert (code, snapshot["status"]) == (2, "fail"), err
    fallback = snapshot["components"][2]
    assert (fallback["status"], fallback["metadata"]["error_kind"]) == ("fail", "refused")
    assert "ingest-probe-timescale_failover" in json.loads(out)["run"]["deadlines_s"]
    assert "pw@" not in out + err


def test_drill_runs_without_the_enabling_key_on_every_dimension_of_the_results(capsys):
    """As the old run_failover_drill: no TIMESCALE_FAILOVER_DRILL needed, and without the dimensions key the
    drill targets every dimension of the results; nothing on stderr but the verdict."""
    code, out, err = run(capsys, "drill", "--no-env", "--extra", "TIMESCALE_SYMBOLS=EURUSD,GBPUSD",
                         "--results", str(RESULTS / "results_intraday.json"))
    snapshot = drill_of(out)
    assert code == 1
    assert snapshot["simulated_outage"] == ["daily", "intraday"]
    assert snapshot["health_report"]["vocabulary"]["required_source"].startswith("every dimension of the ingest")
    assert snapshot["health_report"]["vocabulary"]["notes"] == [{
        "code": "required_not_planned",
        "message": "1 required dimension (every dimension of the ingest results (TIMESCALE_FAILOVER_DRILL is off"
                   " and TIMESCALE_FAILOVER_DRILL_DIMENSIONS unset)) not in the ingest plan: intraday; this"
                   " configuration's ingest dimensions are daily (from TIMESCALE_SYMBOLS, TIMESCALE_ENABLE_INTRADAY,"
                   " TIMESCALE_ENABLE_MACRO)"}]
    assert snapshot["scenario"] == "timescale_failover"
    assert err == f"ingest-probe: failover drill warn: {snapshot['reason']}\n"


@pytest.mark.parametrize(("extra", "state"), [([], "unset"), (["--extra", "TIMESCALE_FAILOVER_DRILL=false"], "false")])
def test_readiness_says_on_stderr_when_the_drill_is_not_enabled(capsys, extra, state):
    """A results file without TIMESCALE_FAILOVER_DRILL: checked, not judged, and one stderr line says so."""
    results = RESULTS / "results_minimal.json"
    code, out, err = run(capsys, "readiness", "--no-env", *extra, "--ingest-results", str(results))
    assert (code, drill_of(out)["status"]) == (0, "not_run")
    assert f"TIMESCALE_FAILOVER_DRILL is {state}" in drill_of(out)["reason"]
    assert err == (f"ingest-probe: warning: the failover drill is not enabled (TIMESCALE_FAILOVER_DRILL is {state}):"
                   f" {results} was checked but not judged; set TIMESCALE_FAILOVER_DRILL=true, or run"
                   " `ingest-probe drill --results FILE`\n")


def test_readiness_probes_the_connectors_only_with_connectivity(capsys):
    """As the old readiness: --connectivity probes the connectors (a refused Redis is down, exit 2); without it
    the connectors are not contacted and the report holds the manifest and the drill."""
    argv = ["readiness", "--no-env", "--env-file", str(ENV), "--results", str(RESULTS / "results_intraday.json"),
            "--extra", f"REDIS_URL=redis://127.0.0.1:{free_port()}/0", "--timeout", "2"]
    code, out, _ = run(capsys, *argv)
    doc = json.loads(out)
    assert (code, doc["status"], doc["connectivity"], doc["run"]) == (0, None, None, None)
    assert doc["manifest"][1]["configured"] is True
    code, out, err = run(capsys, *argv, "--connectivity")
    doc = json.loads(out)
    assert (code, doc["status"]) == (2, "down")
    assert [r["status"] for r in doc["connectivity"]] == ["skipped", "down", "skipped"]
    assert "ingest-probe: redis down [refused]" in err


def test_drill_markdown_is_titled_and_names_the_simulated_outage(capsys):
    """`drill --format markdown`: a failover drill document naming the simulated dimensions."""
    code, out, _ = run(capsys, "drill", "--no-env", "--env-file", str(ENV), "--results",
                       str(RESULTS / "results_single.json"), "--format", "markdown")
    assert code == 1
    assert out.startswith("# ingest-probe failover drill\n")
    assert "- Simulated outage: daily\n" in out
    assert "| daily (as daily_bars) | yes | error | 0 |" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["drill", "--no-env"], "Missing option '--results'"),
        (["drill", "--no-env", "--results", "/nonexistent/r.json"], "/nonexistent/r.json"),
        (["drill", "--no-env", "--results", str(RESULTS / "results_single.json"), "--format", "prometheus"],
         "--format"),
        (["drill", "--no-env", "--results", str(RESULTS / "results_single.json"), "--dimensions", "a,,b"],
         "empty dimension name"),
    ],
)
def test_drill_usage_errors_exit_3_with_one_line(capsys, argv, needle):
    """A missing or unreadable results file, a bad flag: exit 3, one stderr line, no report."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (3, "")
    assert err.count("\n") == 1
    assert needle in err


def test_drill_help_documents_flags_and_imports_no_client_library():
    """`drill --help` lists its flags and exit codes and imports none of the client libraries."""
    text, imported = help_in_a_fresh_interpreter("drill")
    assert imported == "[]"
    for needle in ("--results", "--dimensions", "--scenario", "timescale_failover", "--timeout", "CRITICAL",
                   "TIMESCALE_FAILOVER_DRILL", "not probed"):
        assert needle in text, needle


def test_readiness_help_says_what_connectivity_and_results_do():
    """`readiness --help` documents --connectivity as the switch for connector probes and the --results alias."""
    text, imported = help_in_a_fresh_interpreter("readiness")
    assert imported == "[]"
    for needle in ("--ingest-results, --results", "--connectivity", "with --connectivity", "drill fail"):
        assert needle in text, needle


def test_readiness_reads_the_env_template_drill_keys_under_their_template_names(capsys):
    """The env template's TIMESCALE_FAILOVER_ENABLED/_DIMENSIONS/_LABEL/_RUN_FALLBACK (names its code never read)
    enable the drill, require daily and intraday and name the scenario, as the template means; stderr: the one
    note naming them, then the verdict."""
    code, out, err = run(capsys, "readiness", "--no-env", "--env-file", str(TEMPLATE), "--results",
                         str(RESULTS / "results_intraday.json"))
    snapshot = drill_of(out)
    vocabulary = snapshot["health_report"]["vocabulary"]
    assert (code, snapshot["status"], snapshot["scenario"]) == (1, "warn", "staged_timescale_outage")
    assert (vocabulary["required"], vocabulary["planned"], vocabulary["notes"]) == (["daily", "intraday"],
                                                                                   ["daily", "intraday"], [])
    assert vocabulary["required_source"] == f"TIMESCALE_FAILOVER_DRILL_DIMENSIONS [{TEMPLATE}:30]"
    # USDJPY is expected (TIMESCALE_SYMBOLS) but absent: the old missing-symbols rule decides a failover.
    assert snapshot["failover_decision"]["triggered_dimensions"] == ["daily", "intraday"]
    note, verdict = err.splitlines()
    assert note.startswith("ingest-probe: warning: names from the ingest service's env template")
    assert f"TIMESCALE_FAILOVER_ENABLED ({TEMPLATE}:29) as TIMESCALE_FAILOVER_DRILL" in note
    assert verdict == f"ingest-probe: failover drill warn: {snapshot['reason']}"
    assert "unknown key" not in err


def test_drill_rehearses_the_env_template_dimensions(capsys):
    """`drill` with the env template: its TIMESCALE_FAILOVER_DIMENSIONS are the simulated outage; the scenario
    is the old command's default; no unknown-key warning."""
    code, out, err = run(capsys, "drill", "--no-env", "--env-file", str(TEMPLATE), "--results",
                         str(RESULTS / "results_list.json"))
    snapshot = drill_of(out)
    assert (code, snapshot["scenario"], snapshot["simulated_outage"]) == (1, "timescale_failover",
                                                                          ["daily", "intraday"])
    assert snapshot["failover_decision"]["should_failover"] is True
    assert "unknown key" not in err


@pytest.mark.live
def test_env_template_against_real_servers_is_ready(capsys, tmp_path, pg_server, redis_server, kafka_broker):
    """The env template pointed at real servers (every other line as shipped) and Tier-1: `readiness
    --connectivity --ensure-topics` creates its topic, every connector is ok, the drill decides a failover and
    the standby (a promoted server) makes it ok: exit 0."""
    text = TEMPLATE.read_text()
    for old, new in {"postgresql+psycopg2://emp:empchangeme@localhost:5433/emp_market": pg_server.dsn(),
                     "redis://localhost:6380/0": f"redis://127.0.0.1:{redis_server.port}/0",
                     "localhost:9094": kafka_broker.bootstrap,
                     "telemetry.ingest": f"telemetry.{uuid.uuid4().hex[:8]}"}.items():
        assert old in text
        text = text.replace(old, new)
    env = tmp_path / TEMPLATE.name
    env.write_text(text)
    code, out, err = run(capsys, "readiness", "--no-env", "--env-file", str(env), "--connectivity",
                         "--ensure-topics", "--results", str(RESULTS / "results_intraday.json"), "--extra",
                         "EMP_TIER=tier_1", "--extra", f"TIMESCALEDB_FAILOVER_URL={pg_server.dsn()}",
                         "--timeout", "10")
    doc = json.loads(out)
    assert (code, doc["status"], doc["should_run"]) == (0, "ok", True), err
    assert [r["status"] for r in doc["connectivity"]] == ["ok", "ok", "ok"]
    assert (doc["failover_drill"]["status"], doc["failover_drill"]["components"][2]["status"]) == ("ok", "ok")
    timescale = {m["name"]: m["metadata"] for m in doc["manifest"]}["timescale"]
    assert timescale["application_name"] == "emp_institutional_ingest"
    assert doc["connectivity"][0]["details"]["application_name"] == "emp_institutional_ingest"
    assert "unknown key" not in err
