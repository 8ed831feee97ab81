"""The ingest results file: the old drill's shapes accepted, unknowns kept unknown, every problem in one error."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from live.kafka import wait_until
from live.net import BlackHole

from ingest_probe.commands.cli import main
from ingest_probe.errors import ConfigError
from ingest_probe.readiness import drill

FULL: dict[str, Any] = {
    "rows_written": 120, "symbols": ["AAPL", "MSFT"], "start_ts": "2026-11-24T00:00:00Z",
    "end_ts": "2026-11-25T00:00:00+00:00", "ingest_duration_seconds": 4.5, "freshness_seconds": 3600,
    "source": "yahoo",
}
OPTIONAL = ("start_ts", "end_ts", "ingest_duration_seconds", "freshness_seconds", "source")


def entry(**overrides: Any) -> dict[str, Any]:
    return FULL | overrides


def parse(data: object) -> drill.IngestResults:
    return drill.parse_ingest_results(json.dumps(data), path="r.json")


def problem(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse(data)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == 3
    return message


# ------------------------------------------------------------------------------------------------ shapes


def test_valid_mapping_is_read_with_utc_timestamps(tmp_path):
    """A valid file loads in file order, timestamps aware and normalised to UTC, no notes."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"daily_bars": entry(start_ts="2026-11-24T01:00:00+01:00"), "macro": entry()}))
    results = drill.load_ingest_results(path)
    assert list(results.dimensions) == ["daily_bars", "macro"]
    daily = results.dimensions["daily_bars"]
    assert daily.start_ts == dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.UTC)
    assert (daily.symbols, daily.rows_written, daily.source) == (("AAPL", "MSFT"), 120, "yahoo")
    assert results.notes == ()


def test_as_dict_mapping_with_its_dimension_field_is_read():
    """`TimescaleIngestResult.as_dict()` under its own name: the `dimension` field inside is accepted."""
    results = parse({"daily_bars": entry(dimension="daily_bars"), "intraday_trades": entry(dimension=None)})
    assert list(results.dimensions) == ["daily_bars", "intraday_trades"]
    assert results.dimensions["daily_bars"].name == "daily_bars"


def test_dimension_field_differing_from_its_key_names_both():
    """`{"daily_bars": {"dimension": "intraday_trades"}}` is ambiguous: an error naming the key and the field."""
    message = problem({"daily_bars": entry(dimension="intraday_trades")})
    assert "daily_bars.dimension" in message
    assert '"intraday_trades"' in message
    assert '"daily_bars"' in message


def test_list_of_results_is_read():
    """A list of results, each naming its dimension (the old drill's list shape), in list order."""
    results = parse([entry(dimension="daily_bars"), entry(dimension="intraday_trades", rows_written=3)])
    assert list(results.dimensions) == ["daily_bars", "intraday_trades"]
    assert results.dimensions["intraday_trades"].rows_written == 3


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ([entry()], ["entry 1.dimension", "missing"]),
        ([entry(dimension="")], ["entry 1.dimension", "non-empty string"]),
        ([entry(dimension="daily"), "x"], ["entry 2", "expected an object", "got a string"]),
        ([entry(dimension="daily"), entry(dimension="daily")], ["daily", "entries 1 and 2"]),
    ],
)
def test_bad_list_entries_are_named_by_position(data, needles):
    """A list entry without a dimension (the old drill called it `timescale`), not an object, or repeated."""
    message = problem(data)
    assert all(n in message for n in needles), message


def test_single_result_object_is_read():
    """A single result object with a `dimension` field (the old drill's third shape), minimal fields."""
    results = parse({"dimension": "daily_bars", "rows_written": 10, "symbols": ["EURUSD"]})
    [(name, result)] = results.dimensions.items()
    assert (name, result.rows_written, result.symbols) == ("daily_bars", 10, ("EURUSD",))
    assert (result.start_ts, result.end_ts, result.freshness_seconds, result.source) == (None, None, None, None)


@pytest.mark.parametrize("field", OPTIONAL)
@pytest.mark.parametrize("how", ["null", "missing"])
def test_null_or_missing_optional_field_is_unknown(field, how):
    """freshness_seconds, source, ingest_duration_seconds, start_ts, end_ts: null or absent read as unknown."""
    data = entry(**{field: None}) if how == "null" else {k: v for k, v in entry().items() if k != field}
    result = parse({"daily_bars": data}).dimensions["daily_bars"]
    assert getattr(result, field) is None


@pytest.mark.parametrize("field", ["rows_written", "symbols"])
def test_rows_and_symbols_are_required(field):
    """rows_written and symbols decide the judgement: missing or null is a problem, never read as 0 or []."""
    assert f"daily_bars.{field}: missing" in problem({"daily_bars": {k: v for k, v in entry().items() if k != field}})
    assert f"daily_bars.{field}:" in problem({"daily_bars": entry(**{field: None})})


def test_naive_timestamps_read_as_utc_with_one_note():
    """Timestamps without an offset (and bare dates) read as UTC, all listed in a single note."""
    results = parse({"daily_bars": entry(start_ts="2026-11-24T00:00:00", end_ts="2026-11-25"),
                     "intraday_trades": entry(start_ts="2026-11-24T06:00:00")})
    daily = results.dimensions["daily_bars"]
    assert daily.start_ts == dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    assert daily.end_ts == dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    [note] = results.notes
    assert note.code == "naive_timestamps_read_as_utc"
    assert "3 timestamps without a UTC offset read as UTC" in note.message
    assert "daily_bars.start_ts, daily_bars.end_ts, intraday_trades.start_ts" in note.message


@pytest.mark.parametrize("data", [{}, []])
def test_no_results_is_a_problem(data):
    """An empty object or list holds no results (as the old drill said): exit 3, not a drill of nothing."""
    assert "holds no ingest results" in problem(data)


# ----------------------------------------------------------------------------------------------- problems


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("rows_written", -1, "must be >= 0, got -1"),
        ("rows_written", "10", "whole number"),
        ("rows_written", True, "whole number"),
        ("rows_written", 1.5, "whole number"),
        ("symbols", "AAPL", "not a string"),
        ("symbols", {"AAPL": 1}, "list of symbols"),
        ("symbols", ["AAPL", 7], "non-empty strings"),
        ("symbols", [""], "non-empty strings"),
        ("start_ts", "yesterday", "not an ISO-8601 timestamp"),
        ("start_ts", 0, "ISO-8601 string"),
        ("start_ts", 1732492800, "ISO-8601 string"),
        ("start_ts", "", "not an ISO-8601 timestamp"),
        ("end_ts", "2026-11-23T00:00:00Z", "is before start_ts"),
        ("ingest_duration_seconds", "fast", "number of seconds"),
        ("ingest_duration_seconds", -0.5, ">= 0"),
        ("freshness_seconds", -5, ">= 0"),
        ("freshness_seconds", False, "number of seconds"),
        ("source", "", "non-empty string"),
        ("source", 7, "non-empty string"),
    ],
)
def test_bad_field_is_named_by_dimension_and_field(field, value, needle):
    """Each invalid field is a ConfigError naming the file and `dimension.field` (never a 1970 date)."""
    message = problem({"daily_bars": entry(**{field: value})})
    assert message.startswith("ingest results r.json: 1 problem: ")
    assert f"daily_bars.{field}: " in message
    assert needle in message


def test_every_problem_of_a_file_is_in_one_line():
    """All problems of a bad file, across dimensions and fields, in one line (the old drill stopped at the first)."""
    message = problem({"daily_bars": entry(rows_written=-1, start_ts="soon"), "macro": entry(rows=1),
                       "intraday": "ok"})
    assert message.startswith("ingest results r.json: 4 problems: ")
    for needle in ("daily_bars.rows_written: must be >= 0", "daily_bars.start_ts: not an ISO-8601",
                   "macro.rows: unknown field", "intraday: expected an object"):
        assert needle in message, message
    assert message.index("daily_bars.rows_written") < message.index("macro.rows") < message.index("intraday:")


def test_many_problems_are_capped():
    """A file with many problems shows the first ten and counts the rest, still one line."""
    message = problem({f"d{i}": entry(rows_written=-1) for i in range(14)})
    assert message.startswith("ingest results r.json: 14 problems: ")
    assert "d9.rows_written" in message
    assert "d10.rows_written" not in message
    assert message.endswith("; and 4 more")


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ("daily_bars", ["expected a JSON object or list of results", "got a string"]),
        ({"daily_bars": "ok"}, ["daily_bars: expected an object", "got a string"]),
        ({"daily_bars": [1]}, ["daily_bars: expected an object", "got a list"]),
        ({"daily_bars": entry(rows=1)}, ["daily_bars.rows: unknown field"]),
        ({" ": entry()}, ["a dimension name is empty"]),
        ({"daily_bars": entry(), "intraday_bars": entry()}, []),  # not the old code's name: just a dimension
    ],
)
def test_bad_shape_is_named(data, needles):
    """A non-object file or entry, a misspelt field, an empty name: a precise problem."""
    if not needles:
        assert "intraday_bars" in parse(data).dimensions
        return
    message = problem(data)
    assert all(n in message for n in needles), message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"daily_bars": {', "not valid JSON"),
        ('{"a": {"rows_written": 1}, "a": {}}', "key 'a' appears twice"),
        ('{"daily_bars": {"freshness_seconds": NaN}}', "NaN is not valid JSON"),
    ],
)
def test_bad_json_is_config_error(text, needle):
    """Broken JSON, duplicate keys and NaN/Infinity are refused with the file named."""
    with pytest.raises(ConfigError, match=needle) as info:
        drill.parse_ingest_results(text, path="r.json")
    assert str(info.value).startswith("ingest results r.json: ")


def test_unreadable_file_is_config_error(tmp_path):
    """A missing results file is a ConfigError naming the path."""
    with pytest.raises(ConfigError, match="cannot read the file"):
        drill.load_ingest_results(tmp_path / "nope.json")


def test_bad_source_value_is_not_echoed_in_the_error():
    """A non-string `source` is refused by type alone: its value (it may be a credential) is not echoed."""
    canary = "CANARY-results-9c1e"
    message = problem({"daily": entry(source={"password": canary})})
    assert "daily.source: must be a non-empty string, got an object" in message
    assert canary not in message


@pytest.mark.parametrize("command", ["readiness", "drill"])
def test_cli_bad_results_file_exits_3_before_probing(capsys, tmp_path, command):
    """`readiness` and `drill` with an invalid results file: exit 3, one stderr line naming every problem, no
    report, nothing contacted (connectors, standby and topic provisioning point at a listener that counts)."""
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"daily_bars": entry(start_ts=0, rows_written=-2)}))
    with BlackHole() as hole:
        target = f"127.0.0.1:{hole.port}"
        argv = [command, "--no-env", "--results", str(bad), "--timeout", "1",
                "--extra", "TIMESCALE_FAILOVER_DRILL=true",
                "--extra", f"TIMESCALEDB_FAILOVER_URL=postgresql://u:pw@{target}/x",
                "--extra", "TIMESCALEDB_HOST=127.0.0.1", "--extra", f"TIMESCALEDB_PORT={hole.port}",
                "--extra", f"REDIS_URL=redis://{target}/0", "--extra", f"KAFKA_BROKERS={target}",
                "--extra", "KAFKA_INGEST_TOPICS=daily:ingest.daily"]
        if command == "readiness":
            argv += ["--connectivity", "--ensure-topics"]
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert not wait_until(lambda: hole.accepted > 0, timeout=0.3)
    out, err = capsys.readouterr()
    assert hole.accepted == 0
    assert info.value.code == 3
    assert out == ""
    assert err.count("\n") == 1
    assert "2 problems: daily_bars.rows_written" in err
    assert "daily_bars.start_ts" in err
