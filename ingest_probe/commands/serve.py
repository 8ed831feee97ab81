"""The ``serve`` command: flags in, the HTTP server (``serve_loop``) until SIGTERM, its exit code out."""

from __future__ import annotations

import functools
import ipaddress
import sys
from pathlib import Path

import click

from ingest_probe.commands.options import (
    Number,
    TargetFlags,
    config_options,
    jitter_option,
    load_targets,
    target_options,
    timeout_option,
)
from ingest_probe.commands.signals import Interrupted
from ingest_probe.defaults import EXIT_OK, FAIL_ON_CHOICES, SERVE_GRACE, SERVE_INTERVAL, SERVE_LISTEN

SERVE_EXIT_CODES = """\b
Routes: GET /livez, /readyz[?only=SELECTOR], /metrics, /probe?target=NAME, /report
Signals: SIGTERM/SIGINT stop accepting, finish in-flight requests (--grace), close every
client and exit 0; SIGHUP re-reads the configuration (a bad one is refused, the old one kept).
Exit codes:
  0  stopped by SIGTERM/SIGINT (clients closed)
  3  usage or configuration error (bad flag, nothing configured, the address is in use)
  130/143  a second SIGINT/SIGTERM while closing cut it short"""


def parse_listen(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """``HOST:PORT`` with an IP address (``[::1]:PORT`` for IPv6); port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    try:
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or (":" in host and not bracketed):
            raise ValueError
        ipaddress.ip_address(host)
    except ValueError:
        raise click.BadParameter(f"{value[:60]!r} is not IP:PORT (e.g. 127.0.0.1:9464, 0.0.0.0:9464, [::1]:9464)",
                                 ctx=ctx, param=param) from None
    return host, int(port)


@click.command(epilog=SERVE_EXIT_CODES, short_help="Health and metrics over HTTP (Kubernetes, Prometheus).")
@config_options
@target_options
@click.option("--listen", default=SERVE_LISTEN, show_default=True, metavar="IP:PORT", callback=parse_listen,
              help="Address to serve on (loopback by default; 0.0.0.0:9464 in a container).")
@click.option("--interval", type=Number(0, 86400, low_open=True), default=SERVE_INTERVAL, show_default=True,
              metavar="SECONDS", help="Check every target in the background this long after the last check.")
@click.option("--max-age", type=Number(0, 86400), default=None, metavar="SECONDS",
              help="A result older than this is checked again on demand [default: 2 x --interval].")
@click.option("--fail-on", type=click.Choice(FAIL_ON_CHOICES), default="down", show_default=True,
              help="/readyz is 503 when a target is down (down), or anything but ok (degraded).")
@timeout_option()
@jitter_option
@click.option("--seed", type=int, default=None, help="Seed the deadline jitter.")
@click.option("--grace", type=Number(0, 300), default=SERVE_GRACE, show_default=True, metavar="SECONDS",
              help="After SIGTERM, in-flight requests get this long to finish.")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One stderr line per request (method, route, status, time; never a query value that is not"
                   " a configured target's name).")
def serve(config_file: Path | None, no_env: bool, env_files: tuple[Path, ...], extras: tuple[str, ...],
          targets: TargetFlags, listen: tuple[str, int], interval: float, max_age: float | None, fail_on: str,
          timeout: float, jitter: float, seed: int | None, grace: float, access_log: bool) -> None:
    """Serve /livez, /readyz, /metrics, /probe?target=NAME and /report over HTTP, from background checks
    every --interval on warm clients (one connection per target, whatever the request rate)."""
    from ingest_probe.commands.serve_loop import ServeOptions, run_serve, stamped

    options = ServeOptions(host=listen[0], port=listen[1], interval=interval, max_age=max_age, fail_on=fail_on,
                           timeout=timeout, jitter=jitter, seed=seed, concurrency=targets.concurrency, grace=grace,
                           access_log=access_log)
    try:
        code = run_serve(functools.partial(load_targets, config_file, no_env, env_files, extras, targets), options)
    except Interrupted as exc:  # before the server ran (loading drivers): stopped all the same, exit 0
        if exc.forced:
            raise
        click.echo(stamped(f"stopped by {exc.name}; clients closed"), err=True)
        code = EXIT_OK
    sys.exit(code)
