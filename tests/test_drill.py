"""The failover drill: dimension vocabulary, the old judgement rules, rehearsal, snapshot, Markdown, CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from fakes import assert_golden, help_in_a_fresh_interpreter
from live.net import free_port

from ingest_probe.commands.cli import main
from ingest_probe.commands.oneshot import run_readiness
from ingest_probe.errors import ConfigError
from ingest_probe.readiness import drill
from ingest_probe.renderers import get_renderer
from ingest_probe.report.builder import build_report
from ingest_probe.results import ProbeResult, Status
from ingest_probe.settings.service import Settings, load_settings

GOLDEN = Path(__file__).parent / "golden"
NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)
CANARY = "CANARY-drill-51f0"
STANDBY = "postgresql://ingest:pw@standby.example.com:5432/market"


def entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rows_written": 120, "symbols": ["AAPL", "MSFT"], "start_ts": "2026-11-24T00:00:00Z",
        "end_ts": "2026-11-25T00:00:00+00:00", "ingest_duration_seconds": 4.5, "freshness_seconds": 3600,
        "source": "yahoo",
    }
    return base | overrides


def parse(data: object) -> drill.IngestResults:
    return drill.parse_ingest_results(json.dumps(data), path="r.json")


def settings(**env: str | None) -> Settings:
    base = {"TIMESCALE_FAILOVER_DRILL": "true", "TIMESCALE_SYMBOLS": "AAPL,MSFT",
            "TIMESCALEDB_FAILOVER_URL": STANDBY}
    return load_settings(environ={k: v for k, v in (base | env).items() if v is not None})


def standby(status: Status = Status.OK, in_recovery: bool | None = False, **kw: Any) -> ProbeResult:
    details = {} if in_recovery is None else {"in_recovery": in_recovery, "server_version": "15.19"}
    return ProbeResult(name="timescale_failover", configured=True, status=status, latency_ms=3.25,
                       endpoint="standby.example.com:5432", details=details, **kw)


def snapshot(data: object, s: Settings | None = None, fallback: ProbeResult | None = None,
             dimensions: tuple[str, ...] = ()) -> drill.DrillSnapshot:
    s = s or settings()
    a = drill.assess(s, parse(data), dimensions=dimensions)
    if a.fallback_target is not None and fallback is None:
        fallback = standby()
    return drill.conclude(a, s, fallback=fallback if a.fallback_target else None, scenario=None, now=NOW)


# ------------------------------------------------------------------------------------------ vocabulary


def notes(doc: dict[str, Any]) -> dict[str, str]:
    """The vocabulary notes of a snapshot dict, code -> message."""
    return {n["code"]: n["message"] for n in doc["health_report"]["vocabulary"]["notes"]}


def test_vocabulary_mismatch_is_spelled_out():
    """Required-but-absent, present-but-not-required and not-planned names are listed, with a did-you-mean hint."""
    s = settings(TIMESCALE_FAILOVER_DRILL_DIMENSIONS="dayly")
    section = snapshot({"daily": entry(), "intraday": entry()}, s)
    snap = section.to_dict()
    vocab = snap["health_report"]["vocabulary"]
    assert vocab["required"] == ["dayly"]
    assert vocab["required_source"].startswith(drill.DIMENSIONS_KEY)
    assert vocab["planned"] == ["daily"]
    assert vocab["required_absent"] == ["dayly"]
    assert vocab["present_not_required"] == ["daily", "intraday"]
    assert vocab["required_not_planned"] == ["dayly"]
    assert vocab["matches"] is False
    found = notes(snap)
    assert "'dayly'" in found["required_absent"]
    assert "did you mean 'daily'?" in found["required_absent"]
    assert "daily, intraday" in found["present_not_required"]
    assert "ingest dimensions are daily" in found["required_not_planned"]
    dayly = snap["health_report"]["dimensions"][0]
    assert (dayly["name"], dayly["status"], dayly["rows_written"]) == ("dayly", "error", None)
    assert snap["failover_decision"]["should_failover"] is True
    assert "[required_absent]" in snap["reason"]
    markdown = get_renderer("markdown")(build_report(s, drill=section, now=NOW))
    assert "Required but absent: dayly" in markdown
    assert "Present but not required: daily, intraday" in markdown
    assert "- note [required_not_planned]: 1 required dimension (TIMESCALE_FAILOVER_DRILL_DIMENSIONS" in markdown


#: Macro planned: enabled, with a window of events (without events or a window the service plans no macro slice).
MACRO_PLANNED = {"TIMESCALE_ENABLE_MACRO": "true", "TIMESCALE_MACRO_START": "2026-01-01",
                 "TIMESCALE_MACRO_END": "2026-02-01"}


def test_dimensions_flag_overrides_and_says_so():
    """--dimensions (repeatable, comma-separated) wins over the key, and the difference is noted."""
    s = settings(**MACRO_PLANNED)
    snap = snapshot({"daily": entry(), "macro": entry()}, s, dimensions=("daily,macro", "macro")).to_dict()
    vocab = snap["health_report"]["vocabulary"]
    assert vocab["required"] == ["daily", "macro"]
    assert vocab["required_source"] == "--dimensions"
    assert vocab["matches"] is True
    assert "--dimensions (daily, macro) differs from" in notes(snap)["dimensions_flag_differs"]
    with pytest.raises(ConfigError, match="empty dimension name"):
        drill.required_dimensions(settings(), ["a,,b"])


def test_matching_vocabulary_has_no_notes():
    """When results, required names and the ingest plan agree in the report's names, there are no notes."""
    snap = snapshot({"daily": entry()}, settings(TIMESCALE_FAILOVER_DRILL_DIMENSIONS="daily")).to_dict()
    vocab = snap["health_report"]["vocabulary"]
    assert vocab["matches"] is True
    assert vocab["notes"] == []
    assert vocab["legacy_names"] == []
    assert snap["reason"] == "no failover needed: every dimension healthy"


def test_default_dimensions_key_adds_no_note(capsys, tmp_path):
    """The tool's own default TIMESCALE_FAILOVER_DRILL_DIMENSIONS (daily_bars) is `daily` without a vocabulary
    note: a healthy `daily` result is ok with nothing to say, in the snapshot and through the CLI."""
    snap = snapshot({"daily": entry()})
    doc = snap.to_dict()
    assert (doc["status"], snap.exit_code) == ("ok", 0)
    vocab = doc["health_report"]["vocabulary"]
    assert (vocab["required"], vocab["required_source"]) == (["daily"], f"{drill.DIMENSIONS_KEY} [default]")
    assert (vocab["matches"], vocab["legacy_names"], vocab["notes"]) == (True, [], [])
    assert doc["reason"] == "no failover needed: every dimension healthy"
    assert doc["components"][0]["metadata"]["vocabulary_notes"] == []
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"daily": entry()}))
    with pytest.raises(SystemExit) as info:
        main(["readiness", "--no-env", "--extra", "TIMESCALE_SYMBOLS=AAPL,MSFT", "--extra",
              "TIMESCALE_FAILOVER_DRILL=true", "--ingest-results", str(path), "--format", "markdown"])
    out, err = capsys.readouterr()
    assert (info.value.code, err) == (0, "")
    assert "- Status: ok" in out
    assert "legacy" not in out


def test_operator_set_legacy_key_is_noted():
    """TIMESCALE_FAILOVER_DRILL_DIMENSIONS=daily_bars set by the operator is read as daily, and says so."""
    doc = snapshot({"daily": entry()}, settings(TIMESCALE_FAILOVER_DRILL_DIMENSIONS="daily_bars")).to_dict()
    assert doc["status"] == "ok"
    vocab = doc["health_report"]["vocabulary"]
    assert vocab["legacy_names"] == [{"name": "daily_bars", "read_as": "daily", "in": drill.DIMENSIONS_KEY}]
    assert notes(doc) == {"legacy_dimension_names": "the ingest service's dimension names read as this report's:"
                                                     f" daily_bars -> daily ({drill.DIMENSIONS_KEY})"}
    assert "[legacy_dimension_names] daily_bars read as daily" in doc["reason"]


def test_ingest_service_names_in_results_and_flag_are_the_report_dimensions():
    """The ingest service's names (daily_bars, intraday_trades, macro_events) in a results file are read as
    daily/intraday/macro without a note (they are what the service writes); in --dimensions they are noted."""
    s = settings(TIMESCALE_FAILOVER_DRILL_DIMENSIONS="daily,intraday", TIMESCALE_ENABLE_INTRADAY="true")
    data = {"daily_bars": entry(), "intraday_trades": entry(rows_written=0), "macro_events": entry(symbols=[])}
    section = snapshot(data, s, dimensions=("daily_bars,intraday",))
    doc = section.to_dict()
    vocab = doc["health_report"]["vocabulary"]
    assert vocab["required"] == ["daily", "intraday"]
    assert vocab["in_results"] == ["daily", "intraday", "macro"]
    assert [(a["name"], a["in"]) for a in vocab["legacy_names"]] == [
        ("daily_bars", "--dimensions"), ("daily_bars", "ingest results"), ("intraday_trades", "ingest results"),
        ("macro_events", "ingest results")]
    assert "daily_bars -> daily (--dimensions)" in notes(doc)["legacy_dimension_names"]
    assert "intraday_trades" not in notes(doc)["legacy_dimension_names"]
    assert "dimensions_flag_differs" not in notes(doc)  # the same dimensions, once normalised
    dims = {d["name"]: d for d in doc["health_report"]["dimensions"]}
    assert dims["intraday"]["name_in_results"] == "intraday_trades"
    assert doc["failover_decision"]["triggered_dimensions"] == ["intraday"]
    markdown = get_renderer("markdown")(build_report(s, drill=section, now=NOW))
    assert "| intraday (as intraday_trades) | yes | error |" in markdown


def test_results_file_names_alone_add_no_note():
    """An old-shaped results file under the default key: daily_bars read as daily, ok, no vocabulary note."""
    doc = snapshot({"daily_bars": entry()}).to_dict()
    assert (doc["status"], doc["health_report"]["vocabulary"]["notes"]) == ("ok", [])
    assert doc["health_report"]["dimensions"][0]["name_in_results"] == "daily_bars"


def test_intraday_bars_is_not_an_alias():
    """`intraday_bars` never existed in the replaced code: it is a dimension of its own, and a required
    `intraday` absent beside it gets a did-you-mean hint instead of a silent rename."""
    s = settings(TIMESCALE_FAILOVER_DRILL_DIMENSIONS="intraday", TIMESCALE_ENABLE_INTRADAY="true")
    doc = snapshot({"intraday_bars": entry()}, s).to_dict()
    vocab = doc["health_report"]["vocabulary"]
    assert (vocab["in_results"], vocab["required_absent"]) == (["intraday_bars"], ["intraday"])
    assert "did you mean 'intraday_bars'?" in notes(doc)["required_absent"]


def test_both_names_of_one_dimension_is_config_error():
    """A results file with `daily` and `daily_bars` is ambiguous: a ConfigError naming both (exit 3)."""
    with pytest.raises(ConfigError, match="'daily_bars' and 'daily' are the same dimension") as info:
        drill.assess(settings(), parse({"daily_bars": entry(), "daily": entry(rows_written=0)}))
    assert info.value.exit_code == 3


def test_required_dimension_outside_the_ingest_plan_is_noted():
    """A drill dimension the configuration does not ingest is named, with the plan's dimensions, in the reason."""
    doc = snapshot({"equities": entry(), "daily": entry()},
                   settings(TIMESCALE_FAILOVER_DRILL_DIMENSIONS="equities")).to_dict()
    assert doc["status"] == "ok"  # a note never changes a status
    message = notes(doc)["required_not_planned"]
    assert "equities" in message
    assert "ingest dimensions are daily (from TIMESCALE_SYMBOLS" in message
    assert "[required_not_planned]" in doc["reason"]
    assert doc["health_report"]["vocabulary"]["matches"] is False
    bare = snapshot({"daily": entry()}, settings(TIMESCALE_SYMBOLS=None)).to_dict()
    assert "plans no ingest dimensions" in notes(bare)["required_not_planned"]


# --------------------------------------------------------------------------------- health and decision




@pytest.mark.parametrize(
    ("data", "env", "fallback", "status", "components", "needle"),
    [
        ({"daily_bars": entry()}, {}, None, "ok", ("ok", "ok", "skipped"), "every dimension healthy"),
        ({"daily_bars": entry(), "macro": entry(rows_written=0)}, MACRO_PLANNED, None, "warn",
         ("warn", "ok", "skipped"), "not every dimension"),
        ({"daily_bars": entry(freshness_seconds=90000)}, {}, None, "warn", ("warn", "ok", "skipped"), "stale"),
        ({"daily_bars": entry(symbols=["AAPL"])}, {}, None, "ok", ("fail", "warn", "ok"),
         "daily: missing 1 expected symbol of TIMESCALE_SYMBOLS: MSFT"),
        ({"daily_bars": entry(rows_written=0)}, {"TIMESCALEDB_FAILOVER_URL": None}, None, "warn",
         ("fail", "warn", "warn"), "no standby configured"),
        ({"daily_bars": entry(rows_written=0)}, {"TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK": "false"}, None, "warn",
         ("fail", "warn", "warn"), "TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK is false"),
        ({"daily_bars": entry(rows_written=0)}, {}, standby(), "ok", ("fail", "warn", "ok"),
         "reachable and writable"),
        ({"macro": entry()}, {}, standby(), "ok", ("fail", "warn", "ok"), "healthy failover target"),
        ({"daily_bars": entry(rows_written=0)}, {}, standby(in_recovery=True), "fail", ("fail", "warn", "fail"),
         "still in recovery"),
        ({"daily_bars": entry(rows_written=0)}, {},
         standby(Status.DOWN, None, error="connection refused by standby", error_kind="refused"), "fail",
         ("fail", "warn", "fail"), "unreachable (refused)"),
        ({"daily_bars": entry(rows_written=0)}, {},
         standby(Status.STARTING, None, error="not accepting connections yet", error_kind="starting"), "fail",
         ("fail", "warn", "fail"), "unreachable (starting)"),
        ({"daily_bars": entry(rows_written=0)}, {},
         standby(Status.DEGRADED, None, error="SQLite rehearsal backend", error_kind="rehearsal"), "fail",
         ("fail", "warn", "fail"), "not a writable PostgreSQL"),
        ({"daily_bars": entry()}, {"TIMESCALE_FAILOVER_DRILL_DIMENSIONS": ","}, None, "warn",
         ("ok", "ok", "skipped"), "no required dimensions"),
    ],
)
def test_decision_and_drill_status(data, env, fallback, status, components, needle):
    """Failover only for a required dimension's trigger; ok needs a promoted standby; warns and fails as
    specified."""
    snap = snapshot(data, settings(**env), fallback=fallback)
    doc = snap.to_dict()
    assert doc["status"] == status
    assert tuple(c["status"] for c in doc["components"]) == components
    assert [c["name"] for c in doc["components"]] == ["health", "failover", "fallback"]
    assert needle in json.dumps(doc)
    assert snap.exit_code == {"ok": 0, "warn": 1, "fail": 2}[status]


def dims(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in doc["health_report"]["dimensions"]}


def test_optional_trigger_never_fails_over():
    """A planned but not required dimension with zero rows warns and is an optional trigger, never a failover."""
    doc = snapshot({"daily_bars": entry(), "macro": entry(rows_written=0)}, settings(**MACRO_PLANNED)).to_dict()
    decision = doc["failover_decision"]
    assert (decision["should_failover"], decision["triggered_dimensions"]) == (False, [])
    assert (decision["optional_triggers"], decision["warning_dimensions"]) == (["macro"], ["macro"])
    assert "macro: no rows written" in decision["reason"]


def test_error_outside_required_and_planned_dimensions_does_not_fail_over():
    """Deliberate difference: the old "overall status=error" catch-all failed over for a dimension nobody
    required or planned; here only the required dimensions decide (the error still warns)."""
    doc = snapshot({"daily_bars": entry(), "intraday": entry(symbols=["EURUSD"])}).to_dict()
    assert dims(doc)["intraday"]["status"] == "error"
    assert "all 2 expected symbols of TIMESCALE_SYMBOLS missing: AAPL, MSFT" in dims(doc)["intraday"]["reasons"]
    decision = doc["failover_decision"]
    assert (decision["should_failover"], decision["optional_triggers"]) == (False, [])
    assert "overall status" not in decision["reason"]
    assert doc["status"] == "warn"


def test_required_reason_names_dimensions_and_why():
    """The failover reason names each required dimension that triggered and every reason for it."""
    data = {"daily_bars": entry(rows_written=0, symbols=["AAPL"]), "intraday_trades": entry(freshness_seconds=1e6)}
    decision = snapshot(data, dimensions=("daily_bars", "intraday_trades", "macro")).to_dict()["failover_decision"]
    assert decision["triggered_dimensions"] == ["daily", "macro"]
    assert "daily: no rows written, missing 1 expected symbol of TIMESCALE_SYMBOLS: MSFT" in decision["reason"]
    assert "macro: required but absent from the ingest results" in decision["reason"]
    assert "intraday: stale" in decision["reason"]


def test_missing_symbols_on_a_required_dimension_fail_over():
    """The old fail_on_missing_symbols rule: a required dimension missing an expected symbol fails over, while
    its health is only warn (some missing) or error (all missing)."""
    some = snapshot({"daily": entry(symbols=["AAPL"])}).to_dict()
    assert (dims(some)["daily"]["status"], some["failover_decision"]["should_failover"]) == ("warn", True)
    assert some["failover_decision"]["triggered_dimensions"] == ["daily"]
    none = snapshot({"daily": entry(symbols=["EURUSD"])}).to_dict()
    assert (dims(none)["daily"]["status"], none["failover_decision"]["should_failover"]) == ("error", True)


@pytest.mark.parametrize(
    ("name", "freshness", "status"),
    [
        ("daily", 86400, "ok"), ("daily", 86400.5, "warn"),
        ("intraday", 900, "ok"), ("intraday", 901, "warn"),
        ("macro", 604800, "ok"), ("macro", 604801, "warn"),
        ("fx_rates", 86400, "ok"), ("fx_rates", 86401, "warn"),
    ],
)
def test_freshness_limit_per_dimension(name, freshness, status):
    """The old per-dimension freshness limits: daily 1 day, intraday 15 min, macro 7 days (others 1 day);
    data exactly at its limit is fresh, a stale intraday feed is flagged."""
    symbols = ["AAPL", "MSFT"] if name in ("daily", "intraday") else []
    doc = snapshot({name: entry(symbols=symbols, freshness_seconds=freshness)}, settings(TIMESCALE_SYMBOLS=None),
                   dimensions=(name,)).to_dict()
    [dim] = doc["health_report"]["dimensions"]
    assert dim["status"] == status, dim["reasons"]
    if status == "warn":
        [reason] = dim["reasons"]
        assert reason.startswith(f"stale: freshness {freshness:g} s is over the {dim['freshness_sla_seconds']} s")


def test_freshness_keys_override_the_per_dimension_defaults():
    """TIMESCALE_FRESHNESS_SLA_SECONDS, when set, is the limit of every dimension; a per-dimension key wins over
    it; the reason names the key that set the limit."""
    data = {"daily": entry(freshness_seconds=1000), "intraday": entry(freshness_seconds=1000)}
    default = dims(snapshot(data, dimensions=("daily", "intraday")).to_dict())
    assert (default["daily"]["status"], default["intraday"]["status"]) == ("ok", "warn")
    assert "(default for intraday; set TIMESCALE_FRESHNESS_SLA_INTRADAY_SECONDS)" in default["intraday"]["reasons"][0]
    overall = dims(snapshot(data, settings(TIMESCALE_FRESHNESS_SLA_SECONDS="600"),
                            dimensions=("daily", "intraday")).to_dict())
    assert (overall["daily"]["status"], overall["intraday"]["status"]) == ("warn", "warn")
    assert "over the 600 s limit (TIMESCALE_FRESHNESS_SLA_SECONDS)" in overall["daily"]["reasons"][0]
    per_dim = dims(snapshot(data, settings(TIMESCALE_FRESHNESS_SLA_SECONDS="600",
                                           TIMESCALE_FRESHNESS_SLA_INTRADAY_SECONDS="3600"),
                            dimensions=("daily", "intraday")).to_dict())
    assert (per_dim["daily"]["status"], per_dim["intraday"]["status"]) == ("warn", "ok")
    assert per_dim["intraday"]["freshness_sla_seconds"] == 3600


def test_unknown_freshness_warns_for_planned_or_required_dimensions():
    """freshness_seconds null: "freshness unknown" warns for a required or planned dimension (as the old
    "Freshness metric unavailable"), and is no finding for any other dimension."""
    doc = snapshot({"daily": entry(freshness_seconds=None), "fx": entry(symbols=[], freshness_seconds=None)}
                   ).to_dict()
    assert dims(doc)["daily"]["reasons"] == ["freshness unknown: the results give no freshness_seconds"]
    assert (dims(doc)["daily"]["status"], dims(doc)["fx"]["status"]) == ("warn", "ok")
    assert doc["failover_decision"]["should_failover"] is False


@pytest.mark.parametrize(
    ("name", "env", "status", "reason"),
    [
        ("daily", {"TIMESCALE_SYMBOLS": None}, "warn", "rows below the minimum (0 < 1)"),  # not planned
        ("intraday", {}, "warn", "rows below the minimum (0 < 1)"),
        ("macro", {}, "ok", None),  # minimum 0: a window without macro events is normal
        ("macro", MACRO_PLANNED, "warn", "no rows written"),  # planned, no symbols expected: a warning
        ("intraday", {"TIMESCALE_ENABLE_INTRADAY": "true"}, "error", "no rows written"),  # symbols expected
    ],
)
def test_zero_rows_of_a_dimension_that_is_not_required(name, env, status, reason):
    """The old row rules: zero rows of a planned slice is an error when symbols are expected, else a warning;
    outside the plan the minimum rows apply (daily 1, intraday 1, macro 0)."""
    s = settings(TIMESCALE_FAILOVER_DRILL_DIMENSIONS="other", **env)
    doc = snapshot({"other": entry(symbols=[]), name: entry(rows_written=0)}, s).to_dict()
    dim = dims(doc)[name]
    assert dim["status"] == status
    assert dim["reasons"][:1] == ([] if reason is None else [reason])
    assert doc["failover_decision"]["should_failover"] is False


def test_zero_rows_of_a_required_dimension_without_symbols_fails_over():
    """A required macro with zero rows is only a warning in health (no symbols expected) but fails over."""
    doc = snapshot({"daily": entry(), "macro": entry(symbols=[], rows_written=0)}, settings(**MACRO_PLANNED),
                   dimensions=("macro",)).to_dict()
    assert dims(doc)["macro"]["status"] == "warn"
    assert doc["failover_decision"]["triggered_dimensions"] == ["macro"]


@pytest.mark.parametrize("name", ["macro", "macro_events", "fx_rates"])
def test_dimension_without_symbols_is_judged_on_rows_and_freshness_only(name):
    """macro (or any non-symbol dimension) with no symbols is ok; TIMESCALE_SYMBOLS is not expected of it."""
    doc = snapshot({"daily_bars": entry(), name: entry(symbols=[])}, dimensions=("daily", name)).to_dict()
    other = dims(doc)[drill.canonical_dimension(name)]
    assert (other["status"], other["reasons"], other["missing_symbols"]) == ("ok", [], [])
    assert doc["status"] == "ok"
    assert "TIMESCALE_SYMBOLS:" not in json.dumps(doc)
    stale = snapshot({name: entry(symbols=[], freshness_seconds=1e6)}, dimensions=(name,)).to_dict()
    assert stale["health_report"]["dimensions"][0]["reasons"][0].startswith("stale")


@pytest.mark.parametrize("name", ["daily", "daily_bars", "intraday", "intraday_trades"])
def test_symbol_dimensions_still_expect_every_symbol(name):
    """daily and intraday (and the ingest service's names for them) warn for each missing TIMESCALE_SYMBOLS."""
    doc = snapshot({name: entry(symbols=["AAPL"])}, dimensions=(name,)).to_dict()
    dim = doc["health_report"]["dimensions"][0]
    assert (dim["status"], dim["missing_symbols"]) == ("warn", ["MSFT"])


def test_naive_timestamps_are_one_note_of_the_report():
    """Timestamps read as UTC for want of an offset: one note in the health report and its Markdown."""
    s = settings()
    section = snapshot({"daily_bars": entry(start_ts="2026-11-24T00:00:00", end_ts="2026-11-25T00:00:00")}, s)
    doc = section.to_dict()
    assert doc["status"] == "ok"
    [note] = doc["health_report"]["notes"]
    assert note == {"code": "naive_timestamps_read_as_utc", "message": "2 timestamps without a UTC offset read as"
                    " UTC: daily_bars.start_ts, daily_bars.end_ts"}
    markdown = get_renderer("markdown")(build_report(s, drill=section, now=NOW))
    assert markdown.count("naive_timestamps_read_as_utc") == 1


def test_rehearsal_simulates_the_outage_of_the_required_dimensions():
    """`drill` (rehearse=True): the required dimensions' results are replaced by empty ones, as the old drill
    did, so failover is decided and the standby probed even for healthy results; other dimensions are judged
    as written."""
    s = settings(**MACRO_PLANNED)
    results = parse({"daily_bars": entry(), "macro": entry(symbols=[], freshness_seconds=1e7)})
    a = drill.assess(s, results, rehearse=True)
    assert a.decision.should_failover is True
    assert a.fallback_target is not None
    doc = drill.conclude(a, s, fallback=standby(), scenario=None, now=NOW).to_dict()
    assert (doc["status"], doc["simulated_outage"]) == ("ok", ["daily"])
    daily = dims(doc)["daily"]
    assert (daily["status"], daily["rows_written"], daily["source"], daily["simulated"]) == ("error", 0, "yahoo", True)
    assert daily["reasons"] == ["simulated outage: the result is replaced by an empty one", "no rows written",
                                "all 2 expected symbols of TIMESCALE_SYMBOLS missing: AAPL, MSFT"]
    assert daily["triggers"] == ["zero rows", "missing symbols", "status error"]
    assert dims(doc)["macro"]["simulated"] is False
    assert dims(doc)["macro"]["reasons"][0].startswith("stale")
    assert drill.assess(s, results).decision.should_failover is False  # readiness judges the file as written


def test_fallback_is_planned_only_when_failover_is_decided():
    """The standby is probed only for a decided failover with the fallback enabled, a standby set, and servers
    to be contacted (`readiness --connectivity`)."""
    ok, failing = parse({"daily_bars": entry()}), parse({"daily_bars": entry(rows_written=0)})
    assert drill.assess(settings(), ok).fallback_target is None
    assert drill.assess(settings(), failing, probe_standby=False).fallback_target is None
    assert drill.assess(settings(TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK="false"), failing).fallback_target is None
    assert drill.assess(settings(TIMESCALEDB_FAILOVER_URL=None), failing).fallback_target is None
    target = drill.assess(settings(), failing).fallback_target
    assert target is not None
    assert target.endpoint == "standby.example.com:5432"


def test_url_source_loses_credentials():
    """A results-file `source` that is a URL is shown without userinfo or query."""
    assert drill.safe_source("https://u:tok@vendor.example/v1/bars?key=abc#x") == "https://vendor.example/v1/bars"
    assert drill.safe_source("s3://bucket?sig=1") == "s3://bucket"
    assert drill.safe_source("yahoo") == "yahoo"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("yahoo", "yahoo"),
        ("vendor/bars-2026.csv", "vendor/bars-2026.csv"),
        ("polygon:v2", "polygon:v2"),
        ("HTTPS://U:p@Vendor.Example:8443/v1/bars;k=1?t=2", None),
        ("https://u:p@vendor.example:8443/v1/bars?t=2", "https://vendor.example:8443/v1/bars"),
        ("postgresql://u:p@[::1]:5432/market", "postgresql://[::1]:5432/market"),
        ("file:///var/data/bars.csv", "file:///var/data/bars.csv"),
        (f"host=db password={CANARY}", None),
        (f"postgresql://db/x password={CANARY}", None),
        (f"'{CANARY}'", None),
        (f'"{CANARY}"', None),
        (f"user@{CANARY}", None),
        (f"https://u:{CANARY}/x@vendor.example/bars", None),  # a raw '/' in the password
        (f"https://u:12?{CANARY}@vendor.example/bars", None),  # a raw '?' in the password
        (f"https://u:{CANARY}#x@vendor.example/bars", None),  # a raw '#' in the password
        ("https://vendor.example/a%3Dpassword", None),
        ("x" * 121, None),
        ("not a url://at all", None),
    ],
)
def test_source_is_rendered_by_allow_list(source, shown):
    """URLs keep scheme, host, port, path; bare identifiers stay; anything else is a fixed placeholder."""
    assert drill.safe_source(source) == (drill.SOURCE_WITHHELD if shown is None else shown)


# ------------------------------------------------------------------------------------------ snapshot


def test_snapshot_shape_and_redaction():
    """Exactly the snapshot fields; the standby appears only as its redacted URL, no manifest copy."""
    s = settings(TIMESCALEDB_FAILOVER_URL=f"postgresql://ingest:{CANARY}@standby.example.com:5432/market")
    doc = snapshot({"daily_bars": entry(rows_written=0)}, s, fallback=standby()).to_dict()
    assert set(doc) == {"status", "generated_at", "scenario", "reason", "components", "health_report",
                        "failover_decision", "simulated_outage"}
    assert doc["generated_at"] == "2026-11-25T12:00:00Z"
    assert doc["scenario"] == "required_timescale_failover"
    assert all(set(c) == {"name", "status", "summary", "metadata"} for c in doc["components"])
    text = json.dumps(doc)
    assert CANARY not in text
    assert "manifest" not in text
    assert doc["components"][2]["metadata"]["target"] == "postgresql://ingest:***@standby.example.com:5432/market"


def test_not_run_without_results_still_probes_connectivity():
    """Without --ingest-results the report has connectivity and a not_run drill that says why."""
    report = run_readiness(load_settings(environ={}), ingest_results=None, now=NOW, scenario="dr-2026")
    doc = report.to_dict()
    assert [c["status"] for c in doc["connectivity"]] == ["skipped"] * 3
    assert doc["run"] is not None
    drill_doc = doc["failover_drill"]
    assert (drill_doc["status"], drill_doc["scenario"]) == ("not_run", "dr-2026")
    assert report.exit_code == 3  # nothing configured and no drill: nothing was checked (UNKNOWN)
    assert "no --ingest-results" in drill_doc["reason"]
    assert drill_doc["components"] == []


def test_readiness_without_connectivity_contacts_nothing(tmp_path):
    """Without --connectivity readiness contacts no server, as the old readiness: a decided failover's standby
    (standby.example.com, which the loopback guard would refuse to resolve) is not probed, there is no `run`
    block, and the fallback warns naming --connectivity (drill warn, exit 1)."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"daily_bars": entry(rows_written=0)}))
    report = run_readiness(settings(), ingest_results=path, connectivity=False, now=NOW)
    doc = report.to_dict()
    assert (doc["connectivity"], doc["run"]) == (None, None)
    snap = doc["failover_drill"]
    assert (snap["status"], snap["failover_decision"]["should_failover"]) == ("warn", True)
    assert [(c["name"], c["status"]) for c in snap["components"]][2] == ("fallback", "warn")
    assert snap["components"][2]["summary"].startswith("standby not probed: readiness contacts no server without"
                                                       " --connectivity")
    assert report.exit_code == 1


def test_disabled_drill_is_not_run_but_file_is_validated(tmp_path):
    """TIMESCALE_FAILOVER_DRILL=false: the drill is not run (and says so); a bad file is still exit 3."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"daily_bars": entry(rows_written=0)}))
    report = run_readiness(settings(TIMESCALE_FAILOVER_DRILL="false"), ingest_results=path, now=NOW)
    assert report.to_dict()["failover_drill"]["status"] == "not_run"
    assert "TIMESCALE_FAILOVER_DRILL is false" in report.to_dict()["failover_drill"]["reason"]
    path.write_text("[]")
    with pytest.raises(ConfigError):
        run_readiness(settings(TIMESCALE_FAILOVER_DRILL="false"), ingest_results=path, now=NOW)


def test_markdown_golden():
    """The readiness Markdown matches the reviewed golden file (regenerate with INGEST_PROBE_REGEN_GOLDEN=1)."""
    s = settings(TIMESCALE_ENABLE_INTRADAY="true", TIMESCALEDB_URL="postgresql://ingest:pw@db.example.com/market")
    data = {"daily_bars": entry(rows_written=0, symbols=["AAPL"], source="https://u:tok@vendor.example/bars?k=1"),
            "intraday": entry(freshness_seconds=90000.5), "macro_events": entry(symbols=[], source="host=db pw=x")}
    section = snapshot(data, s, fallback=standby(in_recovery=True),
                       dimensions=("daily_bars", "intraday_trades", "equity"))
    results = [ProbeResult(name="timescale", configured=True, status=Status.OK, latency_ms=2.5,
                           endpoint="db.example.com:5432", details={"in_recovery": False}, deadline_s=5.0),
               ProbeResult(name="redis", configured=False, status=Status.SKIPPED),
               ProbeResult(name="kafka", configured=False, status=Status.SKIPPED)]
    report = build_report(s, results=results, drill=section, now=NOW, probed_from="probe-01.example")
    assert report.exit_code == 2
    text = get_renderer("markdown")(report)
    assert_golden(GOLDEN / "readiness.md", text)
    assert "tok" not in text
    assert "pw=x" not in text
    assert "True" not in text
    assert "None" not in text


def test_canary_secret_appears_in_no_readiness_output(capsys, tmp_path):
    """A canary in every secret of the config or results `source` never shows in readiness JSON/Markdown (with
    --connectivity: the connectors and the standby probed, every one refused)."""
    from live.net import free_port

    closed = free_port()
    results = tmp_path / "r.json"
    results.write_text(json.dumps({
        "daily_bars": entry(rows_written=0, source=f"host=db password={CANARY}"),
        "intraday": entry(source=f"https://u:{CANARY}@vendor.example/bars?token={CANARY}"),
        "macro_events": entry(source=f"https://u:{CANARY}/x@vendor.example/bars"),
        "fx": entry(source=f'"{CANARY}"'),
    }))
    env = tmp_path / "s.env"
    env.write_text(
        f"TIMESCALEDB_URL=postgresql://u:{CANARY}@127.0.0.1:{closed}/x?sslpassword={CANARY}\n"
        f"REDIS_URL=redis://:{CANARY}@127.0.0.1:{closed}/0\n"
        f"TIMESCALEDB_FAILOVER_URL=postgresql://u:{CANARY}@127.0.0.1:{closed}/x?sslmode=disable\n"
        f"TIMESCALEDB_FAILOVER_SSLPASSWORD={CANARY}\n"
        "TIMESCALE_FAILOVER_DRILL=true\n"
    )
    for fmt in ("json", "markdown"):
        with pytest.raises(SystemExit) as info:
            main(["readiness", "--no-env", "--env-file", str(env), "--ingest-results", str(results),
                  "--format", fmt, "--timeout", "2", "--connectivity"])
        out, err = capsys.readouterr()
        assert info.value.code == 2, err
        assert CANARY not in out
        assert CANARY not in err
        assert "failover" in out.lower()
        assert drill.SOURCE_WITHHELD in out
        assert "https://vendor.example/bars" in out
    doc_drill = json.loads(_json_once(capsys, env, results))["failover_drill"]
    assert doc_drill["status"] == "fail"
    sources = {d["name"]: d["source"] for d in doc_drill["health_report"]["dimensions"]}
    assert sources == {"daily": drill.SOURCE_WITHHELD, "intraday": "https://vendor.example/bars",
                       "macro": drill.SOURCE_WITHHELD, "fx": drill.SOURCE_WITHHELD}
    assert doc_drill["components"][2]["metadata"]["error_kind"] == "refused"


def test_drill_warning_never_hides_a_down_connector(capsys, tmp_path):
    """A drill that only warns (stale data, no failover) beside a down Redis: exit 2, the worst of the two, and
    one stderr line for each."""
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"daily": entry(freshness_seconds=10**6)}))
    with pytest.raises(SystemExit) as info:
        main(["readiness", "--no-env", "--extra", "TIMESCALE_SYMBOLS=AAPL,MSFT",
              "--extra", "TIMESCALE_FAILOVER_DRILL=true", "--extra", f"REDIS_URL=redis://127.0.0.1:{free_port()}/0",
              "--ingest-results", str(results), "--timeout", "2", "--connectivity"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert (doc["failover_drill"]["status"], doc["status"]) == ("warn", "down")
    assert info.value.code == 2, err
    assert "ingest-probe: redis down [refused]" in err
    assert "ingest-probe: failover drill warn: no failover needed, but not every dimension is healthy" in err


def _json_once(capsys, env: Path, results: Path) -> str:
    with pytest.raises(SystemExit):
        main(["readiness", "--no-env", "--env-file", str(env), "--ingest-results", str(results), "--timeout", "2",
              "--connectivity"])
    return capsys.readouterr().out


def test_readiness_help_documents_flags_and_imports_no_client_library():
    """`readiness --help` lists the drill flags and exit codes and imports none of the client libraries."""
    text, imported = help_in_a_fresh_interpreter("readiness")
    assert imported == "[]"
    for needle in ("--ingest-results", "--dimensions", "--scenario", "drill fail", "CRITICAL"):
        assert needle in text
