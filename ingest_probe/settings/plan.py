"""The general keys of a service (ingest gating, schedule, failover drill) and the settings read from them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from ingest_probe.config.keys import KeySet, KeySpec, key, service_key
from ingest_probe.config.reader import Reader, bad

if TYPE_CHECKING:
    from ingest_probe.connectors.timescale.settings import TimescaleSettings

_G, _S, _F = "Gating", "Schedule", "Failover drill"
_SV = "Ingest service settings (not used by ingest-probe)"

KEYS = KeySet(
    prefixes=("INGEST_PROBE_",),
    notes={_SV: "Keys the ingest service reads that ingest-probe does not use: known (never an unknown-key "
                "warning), shown by `ingest-probe config` (secrets as `***`), not validated."},
    specs=(
        key("DATA_BACKBONE_MODE", "choice", None, "inferred `institutional` when unset and Redis or Kafka "
            "is configured, else `bootstrap`", section=_G, choices=("bootstrap", "institutional")),
        KeySpec(name="EMP_TIER", kind="choice", default="tier_0", description="gating tier (`tier-1` spelling "
                "accepted)", section=_G, choices=("tier_0", "tier_1", "tier_2"),
                spellings={"tier-0": "tier_0", "tier-1": "tier_1", "tier-2": "tier_2"}, yaml_names=("tier",)),
        key("TIMESCALE_SYMBOLS", "csv", None, "symbols to ingest; enables the `daily` dimension", section=_G),
        key("TIMESCALE_LOOKBACK_DAYS", "int", "60", "daily lookback in days", section=_G, minimum=1, maximum=36500),
        key("TIMESCALE_ENABLE_INTRADAY", "bool", "false", "with `TIMESCALE_SYMBOLS`, enables the `intraday` "
            "dimension (without symbols it has no effect, with a warning)", section=_G),
        key("TIMESCALE_INTRADAY_INTERVAL", "str", "1m", "intraday bar interval", section=_G),
        key("TIMESCALE_INTRADAY_LOOKBACK_DAYS", "int", "2", "intraday lookback in days", section=_G, minimum=1,
            maximum=36500),
        key("TIMESCALE_ENABLE_MACRO", "bool", "false", "with macro events or a macro window (the keys below), "
            "enables the `macro` dimension (without them it has no effect, with a warning)", section=_G),
        key("TIMESCALE_MACRO_EVENTS", "str", None, "macro events, an inline JSON list (an empty list is no "
            "events)", section=_G),
        key("TIMESCALE_MACRO_EVENTS_FILE", "str", None, "file of macro events (used when TIMESCALE_MACRO_EVENTS "
            "is unset; ingest-probe does not read it)", section=_G),
        key("TIMESCALE_MACRO_START", "str", None, "start of the macro window (with TIMESCALE_MACRO_END)",
            section=_G),
        key("TIMESCALE_MACRO_END", "str", None, "end of the macro window (with TIMESCALE_MACRO_START)", section=_G),
        key("TIMESCALE_INGEST_SCHEDULE", "bool", "false", "ingest runs on a schedule", section=_S),
        key("TIMESCALE_INGEST_INTERVAL_SECONDS", "int", "3600", "schedule interval (60 s to 31 days)", section=_S,
            minimum=60, maximum=31 * 86400, clamp=True),
        key("TIMESCALE_INGEST_JITTER_SECONDS", "int", "120", "schedule jitter (at most a day)", section=_S, minimum=0,
            maximum=86400, clamp=True),
        key("TIMESCALE_INGEST_MAX_FAILURES", "int", "3", "consecutive failures before the schedule stops "
            "(0 = never stop)", section=_S, minimum=0, clamp=True),
        key("TIMESCALE_FAILOVER_DRILL", "bool", "false", "failover drill enabled", section=_F,
            legacy=("TIMESCALE_FAILOVER_ENABLED",)),
        key("TIMESCALE_FAILOVER_DRILL_DIMENSIONS", "csv", "daily_bars", "dimensions the drill requires",
            section=_F, legacy=("TIMESCALE_FAILOVER_DIMENSIONS",)),
        key("TIMESCALE_FAILOVER_DRILL_LABEL", "str", "required_timescale_failover", "drill scenario label",
            section=_F, legacy=("TIMESCALE_FAILOVER_LABEL",)),
        key("TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK", "bool", "true", "probe the standby when failover is decided",
            section=_F, legacy=("TIMESCALE_FAILOVER_RUN_FALLBACK",)),
        key("TIMESCALE_FRESHNESS_SLA_SECONDS", "int", "86400", "seconds of `freshness_seconds` after which a "
            "dimension is stale. Unset, each dimension has its own limit (the keys below; any other dimension "
            "86400); set, it is the limit of every dimension without its own key set", section=_F, minimum=0),
        key("TIMESCALE_FRESHNESS_SLA_DAILY_SECONDS", "int", "86400", "freshness limit of `daily` (`daily_bars`)",
            section=_F, minimum=0),
        key("TIMESCALE_FRESHNESS_SLA_INTRADAY_SECONDS", "int", "900", "freshness limit of `intraday` "
            "(`intraday_trades`)", section=_F, minimum=0),
        key("TIMESCALE_FRESHNESS_SLA_MACRO_SECONDS", "int", "604800", "freshness limit of `macro` "
            "(`macro_events`)", section=_F, minimum=0),
        service_key("RUN_MODE", "mock/paper/live", section=_SV, service_default="paper"),
        service_key("EMP_ENVIRONMENT", "demo/staging/production", section=_SV, yaml_names=("environment",),
                    service_default="demo"),
        service_key("CONFIRM_LIVE", "bool", section=_SV, service_default="false"),
        service_key("CONNECTION_PROTOCOL", "bootstrap/paper/fix", section=_SV, service_default="bootstrap"),
        service_key("EMP_KILL_SWITCH", "kill-switch file", section=_SV, yaml_names=("kill_switch_path",)),
        service_key("TIMESCALE_MACRO_CALENDARS", "macro calendars, CSV", section=_SV),
        service_key("ALPHA_VANTAGE_API_KEY", "Alpha Vantage API key", section=_SV, secret=True,
                    aliases=("ALPHAVANTAGE_API_KEY",)),
        service_key("FRED_API_KEY", "FRED API key", section=_SV, secret=True),
        service_key("NEWS_API_KEY", "News API key", section=_SV, secret=True, aliases=("NEWSAPI_KEY",)),
        service_key("OPERATIONS_ALERT_ROUTES", "alert routes, a JSON object (webhook URLs hold tokens)",
                    section=_SV, secret=True, aliases=("TIMESCALE_ALERT_ROUTES",)),
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanSettings:
    """Gating and ingest-plan inputs (DATA_BACKBONE_MODE, EMP_TIER, TIMESCALE_SYMBOLS, ...)."""

    mode: Literal["bootstrap", "institutional"]
    mode_inferred: bool
    tier: Literal["tier_0", "tier_1", "tier_2"]
    symbols: tuple[str, ...]
    lookback_days: int
    intraday_enabled: bool
    intraday_interval: str
    intraday_lookback_days: int
    macro_enabled: bool
    #: Where the macro slice's events come from (the ingest service's ``macro_mode``): ``events`` (inline or a
    #: file), ``window`` (start and end), else ``disabled``.
    macro_mode: Literal["events", "window", "disabled"] = "disabled"

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Ingest slices in a stable order, by the ingest service's rules: daily (symbols set), intraday (enabled,
        with symbols), macro (enabled, with events or a window)."""
        dims: list[str] = []
        if self.symbols:
            dims.append("daily")
            if self.intraday_enabled:
                dims.append("intraday")
        if self.macro_enabled and self.macro_mode != "disabled":
            dims.append("macro")
        return tuple(dims)

    def to_dict(self) -> dict[str, Any]:
        """The report's ``configuration`` block."""
        return {
            "mode": self.mode,
            "mode_inferred": self.mode_inferred,
            "tier": self.tier,
            "symbols": list(self.symbols),
            "lookback_days": self.lookback_days,
            "intraday": {
                "enabled": self.intraday_enabled,
                "interval": self.intraday_interval,
                "lookback_days": self.intraday_lookback_days,
            },
            "macro": self.macro_enabled,
            "macro_mode": self.macro_mode,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSettings:
    enabled: bool
    interval_seconds: int
    jitter_seconds: int
    max_failures: int

    def to_dict(self) -> dict[str, Any]:
        """The report's ``schedule`` block (when the schedule is enabled)."""
        return {"interval_seconds": self.interval_seconds, "jitter_seconds": self.jitter_seconds,
                "max_failures": self.max_failures}


#: The replaced system's freshness limits per ingest dimension, in seconds (any other dimension: 86400).
FRESHNESS_SLA_DEFAULTS: Mapping[str, int] = {"daily": 86400, "intraday": 900, "macro": 604800}


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverSettings:
    enabled: bool
    dimensions: tuple[str, ...]
    label: str
    run_fallback: bool
    #: TIMESCALE_FRESHNESS_SLA_SECONDS: the limit of a dimension without one of its own.
    freshness_sla_seconds: int
    #: The limits of daily, intraday, macro: TIMESCALE_FRESHNESS_SLA_<DIM>_SECONDS, else
    #: TIMESCALE_FRESHNESS_SLA_SECONDS when set, else ``FRESHNESS_SLA_DEFAULTS``.
    freshness_sla_by_dimension: Mapping[str, int]
    #: The standby database (TIMESCALEDB_FAILOVER_URL or composed from TIMESCALEDB_FAILOVER_HOST/...).
    target: TimescaleSettings | None = None


def plan(r: Reader, connectors: Mapping[str, Any]) -> PlanSettings:
    """The gating inputs; the mode is inferred ``institutional`` when Redis or Kafka is configured. An enabled
    slice the ingest service would not run (intraday without symbols, macro without events or a window) is
    warned about."""
    mode = r.choice("DATA_BACKBONE_MODE")
    inferred = mode is None
    if mode is None:
        configured = any(getattr(connectors.get(kind), "configured", False) for kind in ("redis", "kafka"))
        mode = "institutional" if configured else "bootstrap"
    settings = PlanSettings(
        mode=cast(Literal["bootstrap", "institutional"], mode), mode_inferred=inferred,
        tier=cast(Literal["tier_0", "tier_1", "tier_2"], r.choice("EMP_TIER")),
        symbols=r.csv("TIMESCALE_SYMBOLS"), lookback_days=cast(int, r.integer("TIMESCALE_LOOKBACK_DAYS")),
        intraday_enabled=r.flag("TIMESCALE_ENABLE_INTRADAY"),
        intraday_interval=cast(str, r.text("TIMESCALE_INTRADAY_INTERVAL")),
        intraday_lookback_days=cast(int, r.integer("TIMESCALE_INTRADAY_LOOKBACK_DAYS")),
        macro_enabled=r.flag("TIMESCALE_ENABLE_MACRO"), macro_mode=macro_mode(r),
    )
    if settings.intraday_enabled and not settings.symbols:
        _no_effect(r, "TIMESCALE_ENABLE_INTRADAY", "the intraday slice needs TIMESCALE_SYMBOLS")
    if settings.macro_enabled and settings.macro_mode == "disabled":
        _no_effect(r, "TIMESCALE_ENABLE_MACRO", "the macro slice needs TIMESCALE_MACRO_EVENTS,"
                   " TIMESCALE_MACRO_EVENTS_FILE or TIMESCALE_MACRO_START and TIMESCALE_MACRO_END")
    return settings


def macro_mode(r: Reader) -> Literal["events", "window", "disabled"]:
    """``events`` from a non-empty TIMESCALE_MACRO_EVENTS list (else TIMESCALE_MACRO_EVENTS_FILE), ``window``
    from TIMESCALE_MACRO_START and _END, else ``disabled`` (the ingest service's order)."""
    events = r.pick("TIMESCALE_MACRO_EVENTS")
    if events is not None:
        try:
            data = json.loads(events.value)
        except ValueError:
            raise bad(events, "expected a JSON list of macro events") from None
        if not isinstance(data, list):
            raise bad(events, f"expected a JSON list of macro events, got {type(data).__name__}")
        if data:
            return "events"
    if r.text("TIMESCALE_MACRO_EVENTS_FILE"):
        return "events"
    if r.text("TIMESCALE_MACRO_START") and r.text("TIMESCALE_MACRO_END"):
        return "window"
    return "disabled"


def _no_effect(r: Reader, name: str, why: str) -> None:
    raw = r.pick(name, explicit=True)
    where = f" from {raw.origin.location}" if raw is not None else ""
    r.warnings.append(f"{name}=true{where} has no effect: {why} (as in the ingest service)")
    r.notes[raw.key if raw is not None else name] = f"no effect: {why}"


def schedule(r: Reader) -> ScheduleSettings:
    return ScheduleSettings(
        enabled=r.flag("TIMESCALE_INGEST_SCHEDULE"),
        interval_seconds=cast(int, r.integer("TIMESCALE_INGEST_INTERVAL_SECONDS")),
        jitter_seconds=cast(int, r.integer("TIMESCALE_INGEST_JITTER_SECONDS")),
        max_failures=cast(int, r.integer("TIMESCALE_INGEST_MAX_FAILURES")),
    )


def failover(r: Reader, target: TimescaleSettings | None) -> FailoverSettings:
    """The drill's settings; ``target`` is the standby, read by the Timescale connector."""
    return FailoverSettings(
        enabled=r.flag("TIMESCALE_FAILOVER_DRILL"), dimensions=r.csv("TIMESCALE_FAILOVER_DRILL_DIMENSIONS"),
        label=cast(str, r.text("TIMESCALE_FAILOVER_DRILL_LABEL")),
        run_fallback=bool(r.boolean("TIMESCALE_FAILOVER_DRILL_RUN_FALLBACK")),
        freshness_sla_seconds=cast(int, r.integer("TIMESCALE_FRESHNESS_SLA_SECONDS")),
        freshness_sla_by_dimension=freshness_limits(r),
        target=target,
    )


def freshness_limits(r: Reader) -> dict[str, int]:
    """Per dimension: its own key, else TIMESCALE_FRESHNESS_SLA_SECONDS if set, else the old default (``config``
    shows a per-dimension key the overall one decides with that key as its source)."""
    overall_raw = r.pick("TIMESCALE_FRESHNESS_SLA_SECONDS", explicit=True)
    overall = None if overall_raw is None else r.integer(overall_raw.key)
    limits = {}
    for dim, default in FRESHNESS_SLA_DEFAULTS.items():
        key = f"TIMESCALE_FRESHNESS_SLA_{dim.upper()}_SECONDS"
        own = r.integer(key, explicit=True)
        if own is None and overall_raw is not None and overall is not None:
            r.supply(key, overall, overall_raw)
        limits[dim] = own if own is not None else overall if overall is not None else default
    return limits
