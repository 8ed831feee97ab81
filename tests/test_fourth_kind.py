"""A fourth connector kind, registered from here through the public API only: its keys configure it in the classic
configuration, it has a manifest row and a probe, runs in a report (JSON, Markdown, the exit code) and as a target
built from a URL in a Prober. No package file knows it."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

import ingest_probe

SECRET_TOKEN = "tok-4th-kind-canary"


@dataclass(frozen=True, slots=True, kw_only=True)
class EchoSettings:
    """An echo server: a line-protocol peer that answers ``PING <token>`` with ``PONG``."""

    configured: bool
    host: str | None = None
    port: int = 7
    token: Any = field(default=None, repr=False)  # an ingest_probe Secret

    @property
    def endpoint(self) -> str | None:
        return None if self.host is None else f"{self.host}:{self.port}"

    def secrets(self) -> tuple[Any, ...]:
        return () if self.token is None else (self.token,)


class EchoProbe:
    """Connect, send ``PING <token>``, expect ``PONG``; a fresh connection per check (no warm client)."""

    phase_names = ("connect", "query")

    def __init__(self, settings: EchoSettings) -> None:
        self.settings = settings

    async def check(self, rec: ingest_probe.Recorder) -> None:
        s = self.settings
        assert s.host is not None
        with rec.phase("connect"):
            try:
                stream = await anyio.connect_tcp(s.host, s.port)
            except OSError as exc:
                raise ingest_probe.ProbeError(f"echo at {s.endpoint} refused the connection") from exc
        async with stream:
            with rec.phase("query"):
                token = s.token.reveal() if s.token is not None else ""
                await stream.send(f"PING {token}\n".encode())
                reply = (await stream.receive()).decode().strip()
        rec.details["reply"] = reply
        if reply != "PONG":
            raise ingest_probe.ProbeError(f"echo at {s.endpoint} answered {reply!r}, not PONG")

    async def aclose(self) -> None:
        """Nothing stays open between checks."""


def shown(value: str) -> str:
    """ECHO_URL rebuilt from its parts: the scheme, host and port only."""
    parts = urlsplit(value)
    return f"echo://{parts.hostname}:{parts.port}"


class EchoConnector:
    """The ``echo`` kind: two keys, a settings type, a manifest row, a probe."""

    kind = "echo"
    url_key = "ECHO_URL"
    keys = ingest_probe.KeySet(
        prefixes=("ECHO_",),
        specs=(
            ingest_probe.KeySpec(name="ECHO_URL", kind="url", default=None, description="echo://host:port",
                                 section="Echo", secret=True, shown=shown),
            ingest_probe.KeySpec(name="ECHO_TOKEN", kind="str", default=None, description="sent with PING",
                                 section="Echo", secret=True),
        ),
    )

    def from_config(self, r: Any) -> EchoSettings:
        url = r.text("ECHO_URL")
        if url is None:
            return EchoSettings(configured=False)
        parts = urlsplit(url)
        return EchoSettings(configured=True, host=parts.hostname, port=parts.port or 7, token=r.secret("ECHO_TOKEN"))

    def manifest(self, s: EchoSettings) -> dict[str, Any]:
        if not s.configured:
            return {"summary": "Echo not configured (set ECHO_URL)"}
        return {"summary": f"Echo endpoint {s.endpoint}", "host": s.host, "port": s.port}

    def drivers(self, s: EchoSettings) -> tuple[str, ...]:
        return ()

    def probe(self, s: EchoSettings) -> EchoProbe:
        return EchoProbe(s)


class _EchoHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().decode().strip()
        self.server.seen.append(line)  # type: ignore[attr-defined]
        self.wfile.write(b"PONG\n" if self.server.healthy else b"NOPE\n")  # type: ignore[attr-defined]


@pytest.fixture
def echo_server() -> Iterator[Any]:
    """A line-protocol server on loopback, in a thread (it serves the CLI's own event loop too)."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    server.healthy, server.seen = True, []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def echo_kind() -> Iterator[EchoConnector]:
    """The fourth kind, registered for one test (registration is process-wide)."""
    connector = EchoConnector()
    ingest_probe.register_connector(connector)
    try:
        yield connector
    finally:
        ingest_probe.unregister_connector("echo")


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from ingest_probe.commands.cli import main

    with pytest.raises(SystemExit) as done:
        main(["report", "--no-env", *args])
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_a_fourth_kind_runs_in_the_classic_report(echo_kind: EchoConnector, echo_server: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Configured by its own keys, the echo kind is a fourth classic target: probed, in the JSON (kind, manifest
    row) and the Markdown, counted in the exit code (down: 2); its token never shows."""
    host, port = echo_server.server_address
    keys = ["--extra", f"ECHO_URL=echo://{host}:{port}", "--extra", f"ECHO_TOKEN={SECRET_TOKEN}"]
    code, out, err = report(capsys, "--connectivity", *keys)
    doc = json.loads(out)
    assert code == 0, err
    echo = doc["connectivity"][3]
    assert (echo["name"], echo["kind"], echo["status"], echo["details"]) == ("echo", "echo", "ok", {"reply": "PONG"})
    assert [c["name"] for c in doc["connectivity"]] == ["timescale", "redis", "kafka", "echo"]
    assert doc["manifest"][3] == {"name": "echo", "kind": "echo", "labels": {}, "configured": True,
                                  "supervised": True, "metadata": {"summary": f"Echo endpoint {host}:{port}",
                                                                   "host": host, "port": port}}
    assert "ingest-probe-echo" in doc["run"]["deadlines_s"]
    assert echo_server.seen == [f"PING {SECRET_TOKEN}"]

    echo_server.healthy = False
    code, out, err = report(capsys, "--connectivity", "--format", "markdown", *keys)
    assert code == 2
    assert "| echo | down | " in out
    assert f"| echo | yes | yes | Echo endpoint {host}:{port} |" in out
    assert f"ingest-probe: echo down [probe]: echo at {host}:{port} answered 'NOPE', not PONG" in err
    assert SECRET_TOKEN not in out + err


def test_a_fourth_kinds_keys_join_the_configuration(echo_kind: EchoConnector,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Its keys are known (shown redacted by `config`, their source named), and a near miss is warned about."""
    from ingest_probe.commands.cli import main

    with pytest.raises(SystemExit) as done:
        main(["config", "--no-env", "--extra", "ECHO_URL=echo://127.0.0.1:7", "--extra", f"ECHO_TOKEN={SECRET_TOKEN}",
              "--extra", "ECHO_URLL=x"])
    out, err = capsys.readouterr()
    assert done.value.code in (0, None)
    assert "echo://127.0.0.1:7  [--extra]" in out
    assert "ECHO_TOKEN" in out
    assert SECRET_TOKEN not in out
    assert "unknown key ECHO_URLL from --extra is ignored; did you mean ECHO_URL?" in err
    code, out, _ = report(capsys)  # manifest only: unconfigured, the fourth row says how to configure it
    assert json.loads(out)["manifest"][3]["metadata"] == {"summary": "Echo not configured (set ECHO_URL)"}


async def test_a_fourth_kind_as_a_url_target_in_a_prober(echo_kind: EchoConnector, echo_server: Any) -> None:
    """Through the library: a target of the new kind built from a URL, checked by a Prober, named and labelled."""
    host, port = echo_server.server_address
    target, warnings = ingest_probe.target_from_url("echo", f"echo://{host}:{port}", name="edge",
                                                    labels={"site": "a"}, options={"ECHO_TOKEN": SECRET_TOKEN})
    assert warnings == ()
    started = time.monotonic()
    async with ingest_probe.Prober([target], timeout=2.0) as prober:
        [result] = await prober.check(only=["echo"])
        report = await prober.report()
    assert (result.name, result.kind, dict(result.labels), result.status) == ("edge", "echo", {"site": "a"},
                                                                             ingest_probe.Status.OK)
    assert [m.name for m in report.manifest] == ["edge"]
    assert time.monotonic() - started < 2.0
    assert echo_server.seen == [f"PING {SECRET_TOKEN}"] * 2


def test_unregistering_restores_the_three_kinds(echo_kind: EchoConnector) -> None:
    """Registration is undone by unregister_connector; a built-in kind cannot be removed or registered twice."""
    assert [t.name for t in ingest_probe.classic_targets(ingest_probe.load_settings())] == [
        "timescale", "redis", "kafka", "echo"]
    with pytest.raises(ingest_probe.ConfigError, match="already registered"):
        ingest_probe.register_connector(EchoConnector())
    with pytest.raises(ingest_probe.ConfigError, match="cannot be unregistered"):
        ingest_probe.unregister_connector("redis")
    ingest_probe.unregister_connector("echo")
    assert [t.name for t in ingest_probe.classic_targets(ingest_probe.load_settings())] == [
        "timescale", "redis", "kafka"]
    ingest_probe.register_connector(echo_kind)  # for the fixture's own unregistering
