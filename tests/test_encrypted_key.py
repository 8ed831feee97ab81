"""An encrypted client key without a passphrase never makes OpenSSL prompt: it is a `tls` error naming the key."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from live.net import free_port

PASSPHRASE = "hunter2-canary"
PROMPT = "pass phrase"


@pytest.fixture(scope="module")
def encrypted_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed client certificate and its key, encrypted with a passphrase (made by openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found on PATH: cannot make an encrypted key")
    d = tmp_path_factory.mktemp("encrypted-key")
    cert, key = d / "client.crt", d / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-days", "1", "-subj", "/CN=probe", "-keyout", str(key), "-out", str(cert),
                    "-passout", f"pass:{PASSPHRASE}"], check=True, capture_output=True)  # fmt: skip
    assert "ENCRYPTED" in key.read_text()
    return cert, key


def run_on_a_terminal(args: list[str], *, timeout: float = 30.0) -> tuple[int, str]:
    """``python -m ingest_probe *args`` with a pseudo-terminal as its controlling terminal and stdio, so an
    OpenSSL pass-phrase prompt would appear (and wait). A prompt is answered by killing the process."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its session's terminal is the pty
        os.execv(sys.executable, [sys.executable, "-m", "ingest_probe", *args])
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal (it exited)
                    break
                if not chunk:
                    break
                output += chunk
                if PROMPT in output.decode(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
                    break
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


CASES = {
    "timescale": lambda cert, key: {"TIMESCALEDB_HOST": "127.0.0.1", "TIMESCALEDB_PORT": str(free_port()),
                                    "TIMESCALEDB_USER": "probe", "TIMESCALEDB_SSLMODE": "require",
                                    "TIMESCALEDB_SSLCERT": str(cert), "TIMESCALEDB_SSLKEY": str(key)},
    "kafka": lambda cert, key: {"KAFKA_BROKERS": f"127.0.0.1:{free_port()}", "KAFKA_SECURITY_PROTOCOL": "SSL",
                                "KAFKA_SSL_CERTFILE": str(cert), "KAFKA_SSL_KEYFILE": str(key)},
    "redis": lambda cert, key: {"REDIS_URL": f"rediss://127.0.0.1:{free_port()}/0",
                                "REDIS_SSL_CERTFILE": str(cert), "REDIS_SSL_KEYFILE": str(key)},
}  # fmt: skip


@pytest.mark.parametrize("connector", sorted(CASES))
def test_encrypted_key_without_passphrase_is_a_tls_error_not_a_prompt(
    connector: str, encrypted_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """On a terminal, no pass-phrase prompt: the connector is down/tls, the message names the key file (never
    its content), exit 2."""
    cert, key = encrypted_pair
    values = CASES[connector](cert, key)
    output = tmp_path / "report.json"
    extras = [arg for k, v in values.items() for arg in ("--extra", f"{k}={v}")]
    code, terminal = run_on_a_terminal(["report", "--no-env", "--connectivity", "--timeout", "3",
                                        "--output", str(output), *extras])  # fmt: skip
    assert PROMPT not in terminal, terminal
    assert code == 2, terminal
    [result] = [r for r in json.loads(output.read_text())["connectivity"] if r["name"] == connector]
    assert (result["status"], result["error_kind"]) == ("down", "tls"), result
    assert str(key) in result["error"]
    assert "encrypted" in result["error"]
    assert "BEGIN" not in terminal + output.read_text()
    assert PASSPHRASE not in terminal + output.read_text()


def test_timescale_sslpassword_decrypts_the_key_and_a_wrong_one_is_named(encrypted_pair: tuple[Path, Path]) -> None:
    """With sslpassword the encrypted key loads; a wrong one is a tls error naming the key, never the secret."""
    from ingest_probe import errors
    from ingest_probe.connectors.timescale.connect import ssl_context
    from ingest_probe.connectors.timescale.settings import TimescaleSettings
    from ingest_probe.secret import Secret

    cert, key = encrypted_pair

    def settings(password: str) -> TimescaleSettings:
        return TimescaleSettings(configured=True, backend="postgresql", url_source_key=None, host="127.0.0.1",
                                 sslmode="require", sslcert=str(cert), sslkey=str(key),
                                 sslpassword=Secret(password))  # fmt: skip

    assert ssl_context(settings(PASSPHRASE), "require") is not None
    with pytest.raises(errors.TlsError) as info:
        ssl_context(settings("wrong-" + PASSPHRASE), "require")
    assert str(key) in str(info.value)
    assert "does not decrypt it" in str(info.value)
    assert PASSPHRASE not in str(info.value)
