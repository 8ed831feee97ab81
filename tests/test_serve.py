"""The `serve` command's shell: its help (lazy imports), --listen parsing, flags refused before anything runs."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from ingest_probe.commands.cli import main
from ingest_probe.commands.serve import parse_listen

HEAVY = ("uvicorn", "h11", "prometheus_client", "anyio", "asyncpg", "redis", "aiokafka", "yaml", "ingest_probe.asgi")


def test_help_documents_routes_and_signals_and_imports_no_heavy_module():
    """`serve --help` names the routes, signals and exit codes, and imports neither uvicorn nor
    prometheus_client nor any client library."""
    code = (
        "import sys\n"
        "from ingest_probe.commands.cli import main\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    text, _, imported = proc.stdout.rstrip("\n").rpartition("\n")
    assert imported == "[]"
    for needle in ("/livez", "/readyz", "/metrics", "/probe?target=NAME", "/report", "SIGHUP", "--listen",
                   "127.0.0.1:9464", "--interval", "--max-age", "--fail-on", "--grace", "--access-log"):
        assert needle in text, needle


@pytest.mark.parametrize(("value", "parsed"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:9464", ("::1", 9464)),
])  # fmt: skip
def test_listen_takes_an_ip_and_a_port(value, parsed):
    """--listen IP:PORT (IPv6 in brackets); port 0 picks a free one."""
    assert parse_listen(click.Context(click.Command("serve")), click.Option(["--listen"]), value) == parsed


@pytest.mark.parametrize("value", ["localhost:9464", "127.0.0.1", "127.0.0.1:65536", ":9464", "127.0.0.1:x",
                                   "::1:9464", "[127.0.0.1:9464", "127.0.0.1:-1"])
def test_listen_refuses_names_and_malformed_addresses(value):
    """A host name (it would need a lookup), a missing or bad port, unbracketed IPv6: a usage error."""
    with pytest.raises(click.BadParameter, match="is not IP:PORT"):
        parse_listen(click.Context(click.Command("serve")), click.Option(["--listen"]), value)


def test_bad_flags_are_usage_errors_before_anything_runs(capsys):
    """--fail-on, --interval and --listen are checked by the parser: exit 3, one line, nothing started."""
    for args in (["--fail-on", "sometimes"], ["--interval", "0"], ["--max-age", "nan"], ["--listen", "[::1]"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--no-env", *args])
        assert exit_info.value.code == 3, args
        err = capsys.readouterr().err
        assert err.startswith("ingest-probe: error: ")
        assert len(err.splitlines()) == 1
