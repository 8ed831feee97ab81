"""The ``topics`` commands: ``plan`` (read-only) and ``apply`` the declared Kafka topics, with drift detection."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ingest_probe.commands.options import (
    color_option,
    config_options,
    epilog,
    examples,
    fail_on_option,
    finish,
    format_option,
    load,
    options,
    output_option,
    require_stdout,
    sections_option,
    timeout_option,
)
from ingest_probe.renderers import FORMATS

if TYPE_CHECKING:
    from ingest_probe.commands.terminal import View
    from ingest_probe.settings.service import Settings

TOPICS_EXIT_CODES = """\b
Exit codes:
  0  every declared topic exists as declared (or was just created)
  1  drift remains, or (plan) a topic would be created (0 with --fail-on down)
  2  a creation failed, a topic could not be read, or the broker is
     unreachable
  3  usage or configuration error (e.g. a _CONFIG value that is not a JSON
     object), or an internal error"""

topic_options = options(
    timeout_option("Deadline of the whole run (connect, read, create, fix, re-read): 500ms, 2s, 1m (a plain number"
                   " is seconds); closing is bounded on top."),
    format_option(*FORMATS),
    color_option,
    sections_option,
    output_option(),
    fail_on_option,
)
PLAN_EXAMPLES = examples(
    "ingest-probe topics plan --env-file prod.env",
    "ingest-probe topics plan --env-file prod.env -f markdown -o plan.md",
)
APPLY_EXAMPLES = examples(
    "ingest-probe topics apply --env-file prod.env",
    "ingest-probe topics apply --env-file prod.env --fix-drift -t 30s",
)


@click.group(short_help="Plan or create the declared Kafka topics.",
             epilog=examples("ingest-probe topics plan --env-file prod.env",
                             "ingest-probe topics apply --env-file prod.env"))
def topics() -> None:
    """Plan or create the declared Kafka topics, with drift detection.

    Declared topics: KAFKA_INGEST_TOPICS, KAFKA_INGEST_TOPIC_<DIM>, KAFKA_INGEST_DEFAULT_TOPIC,
    KAFKA_INGEST_HEALTH_TOPIC/_METRICS_/_QUALITY_ and KAFKA_INGEST_CONSUMER_TOPICS, each with _PARTITIONS,
    _REPLICATION_FACTOR and _CONFIG (defaults 1, 1, {}). A KAFKA_INGEST_TOPIC_<DIM> found only in the process
    environment is never created (set it in an env file, the YAML file or --extra). Drift compares partitions,
    replication factor and the declared configs only: broker defaults never drift.
    """


@topics.command("plan", epilog=epilog(TOPICS_EXIT_CODES, PLAN_EXAMPLES),
                short_help="Read-only plan: declared topics vs the broker.")
@config_options
@topic_options
@click.option("--validate-on-broker", is_flag=True,
              help="Also send CreateTopics with validate_only for the topics to create. Only for brokers"
                   " known to honour validate_only: some (Tansu 0.6) create the topic anyway; the report says"
                   " so.")
def topics_plan(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
                timeout: float, fmt: str | None, no_color: bool, sections: tuple[str, ...] | None,
                output: Path | None, fail_on: str, validate_on_broker: bool) -> None:
    """Compare the declared topics with the broker, read-only; nothing is changed.

    Sends Metadata (auto-creation off) and DescribeConfigs only, unless --validate-on-broker is given.
    """
    from ingest_probe.commands.terminal import view

    require_stdout(output)
    shown = view(fmt, output, no_color=no_color, fail_on=fail_on, sections=sections)
    _topics_report(load(config_file, no_env, env_files, extras), shown, output, dry_run=True, fix_drift=False,
                   validate_on_broker=validate_on_broker, timeout=timeout)


@topics.command("apply", epilog=epilog(TOPICS_EXIT_CODES, APPLY_EXAMPLES),
                short_help="Create missing topics (--fix-drift: fix drift).")
@config_options
@topic_options
@click.option("--fix-drift", is_flag=True,
              help="Also fix fixable drift: add partitions, set the declared configs (incrementally, other"
                   " overrides kept). Never decreases partitions or changes the replication factor.")
def topics_apply(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
                 timeout: float, fmt: str | None, no_color: bool, sections: tuple[str, ...] | None,
                 output: Path | None, fail_on: str, fix_drift: bool) -> None:
    """Create the missing topics, then re-read and report what exists. Never deletes a topic."""
    from ingest_probe.commands.terminal import view

    require_stdout(output)
    shown = view(fmt, output, no_color=no_color, fail_on=fail_on, sections=sections)
    _topics_report(load(config_file, no_env, env_files, extras), shown, output, dry_run=False,
                   fix_drift=fix_drift, validate_on_broker=False, timeout=timeout)


def _topics_report(settings: Settings, shown: View, output: Path | None, **kw: Any) -> None:
    from ingest_probe.commands.oneshot import provision_topics, run_report

    section = provision_topics(settings.kafka, **kw)
    finish(run_report(settings, connectivity=False, topics=section), shown, output)
