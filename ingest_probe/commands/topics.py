"""The ``topics`` commands: ``plan`` (read-only) and ``apply`` the declared Kafka topics, with drift detection."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ingest_probe.commands.options import (
    config_options,
    finish,
    format_option,
    load,
    options,
    output_option,
    require_stdout,
    timeout_option,
)

if TYPE_CHECKING:
    from ingest_probe.settings.service import Settings

TOPICS_EXIT_CODES = """\b
Exit codes:
  0  every declared topic exists as declared (or was just created)
  1  drift remains, or (plan) a topic would be created
  2  a creation failed, a topic could not be read, or the broker is unreachable
  3  usage or configuration error (e.g. a _CONFIG value that is not a JSON object), or an internal error"""

topic_options = options(
    timeout_option("Deadline of the whole run (connect, read, create, fix, re-read) in seconds; closing is bounded"
                   " on top."),
    format_option("json", "markdown"),
    output_option(),
)


@click.group(short_help="Plan or create the declared Kafka topics.")
def topics() -> None:
    """Plan or create the declared Kafka topics, with drift detection.

    Declared topics: KAFKA_INGEST_TOPICS, KAFKA_INGEST_TOPIC_<DIM>, KAFKA_INGEST_DEFAULT_TOPIC,
    KAFKA_INGEST_HEALTH_TOPIC/_METRICS_/_QUALITY_ and KAFKA_INGEST_CONSUMER_TOPICS, each with _PARTITIONS,
    _REPLICATION_FACTOR and _CONFIG (defaults 1, 1, {}). A KAFKA_INGEST_TOPIC_<DIM> found only in the process
    environment is never created (set it in an env file, the YAML file or --extra). Drift compares partitions,
    replication factor and the declared configs only: broker defaults never drift.
    """


@topics.command("plan", epilog=TOPICS_EXIT_CODES, short_help="Read-only plan: declared topics vs the broker.")
@config_options
@topic_options
@click.option("--validate-on-broker", is_flag=True,
              help="Also send CreateTopics with validate_only for the topics to create. Only for brokers"
                   " known to honour validate_only: some (Tansu 0.6) create the topic anyway; the report says"
                   " so.")
def topics_plan(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
                timeout: float, fmt: str, output: Path | None, validate_on_broker: bool) -> None:
    """Compare the declared topics with the broker, read-only; nothing is changed.

    Sends Metadata (auto-creation off) and DescribeConfigs only, unless --validate-on-broker is given.
    """
    require_stdout(output)
    _topics_report(load(config_file, no_env, env_files, extras), fmt, output, dry_run=True, fix_drift=False,
                   validate_on_broker=validate_on_broker, timeout=timeout)


@topics.command("apply", epilog=TOPICS_EXIT_CODES, short_help="Create missing topics (--fix-drift: fix drift).")
@config_options
@topic_options
@click.option("--fix-drift", is_flag=True,
              help="Also fix fixable drift: add partitions, set the declared configs (incrementally, other"
                   " overrides kept). Never decreases partitions or changes the replication factor.")
def topics_apply(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
                 timeout: float, fmt: str, output: Path | None, fix_drift: bool) -> None:
    """Create the missing topics, then re-read and report what exists. Never deletes a topic."""
    require_stdout(output)
    _topics_report(load(config_file, no_env, env_files, extras), fmt, output, dry_run=False,
                   fix_drift=fix_drift, validate_on_broker=False, timeout=timeout)


def _topics_report(settings: Settings, fmt: str, output: Path | None, **kw: Any) -> None:
    from ingest_probe.commands.oneshot import provision_topics, run_report

    section = provision_topics(settings.kafka, **kw)
    finish(run_report(settings, connectivity=False, topics=section), fmt, output)
