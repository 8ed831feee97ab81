"""TLS certificate expiry: the DER walk that reads notAfter, and, against real TLS servers with short-lived
certificates made by openssl, details.tls_cert_*, the cert_expiry degradation and the Prometheus series."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import assert_failed, jobs, pg_settings, run_once
from live import missing
from live.kafka import TlsKafka, require_tansu
from live.postgres import PostgresServer, _server_fixture
from live.prometheus import Promtool
from live.redis import RedisServer, make_tls_files
from test_probe_kafka import kafka_settings, unique

from ingest_probe.connectors._net import cert_expiry, certificate_not_after
from ingest_probe.connectors.kafka.probe import KafkaProbe
from ingest_probe.connectors.redis.probe import RedisProbe
from ingest_probe.connectors.timescale.probe import TimescaleProbe
from ingest_probe.engine.supervisor import TaskSupervisor
from ingest_probe.renderers import get_renderer
from ingest_probe.report.builder import build_report
from ingest_probe.results import ProbeResult, Recorder, Status
from ingest_probe.settings.service import load_settings

DAY = 86400.0


# ------------------------------------------------------------------------------------------- the DER walk


def openssl(directory: Path, *args: str) -> None:
    if shutil.which("openssl") is None:
        missing("openssl not found: cannot make test certificates")
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)


def make_cert(directory: Path, name: str, days: int, *, v1: bool = False) -> Path:
    """A self-signed certificate ``name.crt`` valid for ``days`` (-1: expired yesterday): X.509 v3 from
    ``openssl req -x509``, or v1 (no version field) from ``openssl x509 -req``, which also takes -1."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
           "-keyout", f"{name}.key"]
    if not v1:
        openssl(directory, "req", "-x509", *key, "-days", str(days), "-out", f"{name}.crt")
    else:
        openssl(directory, "req", *key, "-out", f"{name}.csr")
        openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-signkey", f"{name}.key", "-days", str(days),
                "-out", f"{name}.crt")
    return directory / f"{name}.crt"


def reference_not_after(path: Path) -> float:
    """notAfter as the ssl module's own decoder reads it (private, but a reference from outside our code)."""
    return float(ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(str(path))["notAfter"]))  # type: ignore[attr-defined]


def first_in_tbs(der: bytes) -> int:
    """Where the first field of tbsCertificate starts (past two DER headers)."""

    def header(pos: int) -> int:
        return 2 + (der[pos + 1] & 0x7F if der[pos + 1] & 0x80 else 0)

    return header(0) + header(header(0))


@pytest.mark.parametrize(("days", "v1"), [(3, False), (30, False), (10000, False), (5, True), (-1, True)])
def test_not_after_matches_the_ssl_module(tmp_path: Path, days: int, v1: bool) -> None:
    """For openssl-made certificates (UTCTime; GeneralizedTime past 2049; X.509 v1 without the optional version
    field; already expired) the DER walk reads the same notAfter as the ssl module does."""
    path = make_cert(tmp_path, "c", days, v1=v1)
    der = ssl.PEM_cert_to_DER_cert(path.read_text())
    assert (der[first_in_tbs(der)] == 0xA0) is not v1  # the [0] version field leads tbsCertificate only in v3
    assert certificate_not_after(der) == reference_not_after(path)
    assert certificate_not_after(der) == pytest.approx(time.time() + days * DAY, abs=120)


def test_malformed_der_is_a_value_error(tmp_path: Path) -> None:
    """Truncated, indefinite-length, wrong-tag or garbage input is a ValueError, never an IndexError or a hang."""
    der = ssl.PEM_cert_to_DER_cert(make_cert(tmp_path, "c", 3).read_text())
    bad = [b"", b"\x30", b"\x30\x80\x00\x00", b"\x31\x03\x02\x01\x00", b"\x30\x84\xff\xff\xff\xff", b"junk" * 50]
    bad += [der[:n] for n in range(0, len(der), 7)]
    for data in bad:
        with pytest.raises(ValueError):  # noqa: PT011 -- any reason; the point is the type
            certificate_not_after(data)


def test_expiry_policy() -> None:
    """Within warn_days → a reason naming the days left; expired → 'expired … verification is off'; else None."""
    rec = Recorder(endpoint="db:5432")
    assert cert_expiry(rec, 14) is None  # no TLS
    now = 1_800_000_000.0
    rec.tls_not_after = now + 3 * DAY
    rec.details["tls_cert_not_after"] = "2027-01-18T08:00:00Z"
    assert cert_expiry(rec, 14, now=now) == ("the TLS certificate of db:5432 expires in 3.0 days"
                                              " (2027-01-18T08:00:00Z), within --cert-warn-days 14: renew it")
    assert cert_expiry(rec, 2, now=now) is None
    rec.tls_not_after = now - 2 * DAY
    reason = cert_expiry(rec, 0, now=now)
    assert reason is not None
    assert reason.startswith("the TLS certificate of db:5432 expired 2.0 days ago")
    assert "verification is off" in reason


# --------------------------------------------------------------------------------------------- live: PG


@pytest.fixture(scope="module")
def pg_short_cert() -> Iterator[PostgresServer]:
    """PostgreSQL (TLS required) whose server certificate is valid for 3 days."""
    yield from _server_fixture(name="pg-3d", tls=True, tls_days=3)


@pytest.fixture(scope="module")
def pg_expired_cert() -> Iterator[PostgresServer]:
    """PostgreSQL (TLS required) whose server certificate expired yesterday."""
    yield from _server_fixture(name="pg-expired", tls=True, tls_days=-1)


def assert_expiry_details(result: ProbeResult, days: float) -> None:
    left = result.details["tls_cert_days_left"]
    assert days - 0.05 < left <= days, result.details
    when = dt.datetime.fromisoformat(result.details["tls_cert_not_after"].replace("Z", "+00:00"))
    assert result.tls_not_after == when.timestamp()
    assert when.timestamp() == pytest.approx(time.time() + days * DAY, abs=300)


@pytest.mark.live
@pytest.mark.parametrize("sslmode", ["require", "verify-full"])
async def test_pg_thirty_day_certificate_is_ok(pg_tls_server: PostgresServer, sslmode: str) -> None:
    """A 30-day certificate: ok, with its notAfter and days left in details (verified or not)."""
    root = str(pg_tls_server.tls.ca) if sslmode == "verify-full" and pg_tls_server.tls else None
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_tls_server, sslmode=sslmode, sslrootcert=root)), 5.0)
    assert result.status is Status.OK, result.error
    assert_expiry_details(result, 30)


@pytest.mark.live
@pytest.mark.parametrize("sslmode", ["require", "verify-full"])
async def test_pg_three_day_certificate_is_degraded(pg_short_cert: PostgresServer, sslmode: str) -> None:
    """A 3-day certificate (verified, or with verification off: getpeercert() is empty then, DER is not):
    degraded, cert_expiry, the error says when and what to do."""
    assert pg_short_cert.tls is not None
    root = str(pg_short_cert.tls.ca) if sslmode == "verify-full" else None
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_short_cert, sslmode=sslmode, sslrootcert=root)), 5.0)
    assert_failed(result, "cert_expiry", "expires in 3.0 days", "--cert-warn-days 14", "renew it",
                  f"127.0.0.1:{pg_short_cert.port}", status=Status.DEGRADED)
    assert_expiry_details(result, 3)
    assert result.details["server_version"]  # the check itself ran


@pytest.mark.live
async def test_cert_warn_days_zero_accepts_a_short_certificate(pg_short_cert: PostgresServer) -> None:
    """--cert-warn-days 0: a valid certificate, however short, is ok (the facts stay in details)."""
    probe = TimescaleProbe(pg_settings(pg_short_cert, sslmode="require"))
    [result] = await TaskSupervisor(timeout=5.0, jitter=0.0, cert_warn_days=0).run(jobs([probe]))
    assert result.status is Status.OK, result.error
    assert_expiry_details(result, 3)


@pytest.mark.live
async def test_pg_expired_certificate(pg_expired_cert: PostgresServer) -> None:
    """An expired certificate: down/tls when verified (the handshake fails); degraded/cert_expiry 'expired'
    when verification is off (sslmode=require without a root certificate)."""
    assert pg_expired_cert.tls is not None
    verified = pg_settings(pg_expired_cert, sslmode="verify-full", sslrootcert=str(pg_expired_cert.tls.ca))
    result, _ = await run_once(TimescaleProbe(verified), 5.0)
    assert_failed(result, "tls", "certificate has expired")
    unverified, _ = await run_once(TimescaleProbe(pg_settings(pg_expired_cert, sslmode="require")), 5.0)
    assert_failed(unverified, "cert_expiry", "expired 1.0 days ago", "verification is off", status=Status.DEGRADED)
    assert_expiry_details(unverified, -1)


@pytest.mark.live
async def test_plaintext_has_no_certificate_facts(pg_server: PostgresServer) -> None:
    """Without TLS nothing is recorded: no details, no series."""
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_server, sslmode="disable")), 5.0)
    assert result.status is Status.OK
    assert "tls_cert_not_after" not in result.details
    assert result.tls_not_after is None


# ------------------------------------------------------------------------------------------ live: Redis


@pytest.fixture
def redis_tls_days(redis_server_factory: Callable[..., RedisServer], tmp_path: Path) -> Callable[[int], RedisServer]:
    """A TLS-only Redis whose certificate is valid for the given days."""
    if shutil.which("openssl") is None:
        missing("openssl not found: cannot make test certificates")

    def start(days: int) -> RedisServer:
        return redis_server_factory(tls=make_tls_files(tmp_path / f"tls{days}", days=days))

    return start


@pytest.mark.live
@pytest.mark.parametrize(("days", "status"), [(30, Status.OK), (3, Status.DEGRADED)])
async def test_redis_tls_certificate_expiry(redis_tls_days: Callable[[int], RedisServer], days: int,
                                            status: Status) -> None:
    """Redis over TLS: a 30-day certificate is ok, a 3-day one degraded (cert_expiry); both with the facts."""
    server = redis_tls_days(days)
    result, _ = await run_once(RedisProbe(server.settings()), 5.0)
    assert result.status is status, result.error
    assert_expiry_details(result, days)
    if status is Status.DEGRADED:
        assert_failed(result, "cert_expiry", "expires in 3.0 days", "renew it", status=Status.DEGRADED)
        assert result.details["redis_version"]


@pytest.mark.live
async def test_redis_expired_certificate_is_down(redis_tls_days: Callable[[int], RedisServer]) -> None:
    """Redis verifies the certificate (REDIS_SSL_CA_CERTS): an expired one fails the handshake, down/tls."""
    result, _ = await run_once(RedisProbe(redis_tls_days(-1).settings()), 5.0)
    assert_failed(result, "tls", "certificate has expired")


# ------------------------------------------------------------------------------------------ live: Kafka


@pytest.fixture
def kafka_tls_days() -> Iterator[Callable[[int], TlsKafka]]:
    """Tansu behind the TLS proxy with a certificate valid for the given days."""
    require_tansu()
    if shutil.which("openssl") is None:
        missing("openssl is not installed: cannot make a throwaway CA")
    started: list[TlsKafka] = []

    def start(days: int) -> TlsKafka:
        started.append(TlsKafka(days=days))
        return started[-1]

    yield start
    for stack in started:
        stack.close()


@pytest.mark.live
@pytest.mark.parametrize(("days", "status"), [(30, Status.OK), (3, Status.DEGRADED)])
async def test_kafka_ssl_certificate_expiry(kafka_tls_days: Callable[[int], TlsKafka], days: int,
                                            status: Status) -> None:
    """Kafka SSL through a real TLS listener: 30 days ok, 3 days degraded (cert_expiry), facts in details."""
    stack = kafka_tls_days(days)
    topic = unique("tls-expiry")
    stack.create_topic(topic)
    settings = kafka_settings(stack.bootstrap, (topic,), security_protocol="SSL", ssl_cafile=str(stack.files.ca))
    result, _ = await run_once(KafkaProbe(settings), 5.0)
    assert result.status is status, result.error
    assert_expiry_details(result, days)
    assert result.details["topics_present"] == [topic]
    if status is Status.DEGRADED:
        assert_failed(result, "cert_expiry", "expires in 3.0 days", status=Status.DEGRADED)


@pytest.mark.live
async def test_kafka_expired_certificate_is_down(kafka_tls_days: Callable[[int], TlsKafka]) -> None:
    """An expired broker certificate fails verification: down/tls."""
    stack = kafka_tls_days(-1)
    settings = kafka_settings(stack.bootstrap, security_protocol="SSL", ssl_cafile=str(stack.files.ca))
    result, _ = await run_once(KafkaProbe(settings), 5.0)
    assert result.status is Status.DOWN, result
    assert result.error_kind == "tls", result.error


# ----------------------------------------------------------------------------------------- the series


@pytest.mark.live
async def test_prometheus_series_from_a_live_probe(pg_short_cert: PostgresServer, promtool: Promtool) -> None:
    """ingest_probe_tls_cert_not_after_timestamp_seconds{target} carries the certificate's notAfter; promtool
    accepts the textfile."""
    result, _ = await run_once(TimescaleProbe(pg_settings(pg_short_cert, sslmode="require")), 5.0)
    report = build_report(load_settings(environ={}), results=[result])
    text = get_renderer("prometheus")(report)
    assert result.tls_not_after is not None
    labels = '{target="timescale",connector="timescale"}'
    line = f"ingest_probe_tls_cert_not_after_timestamp_seconds{labels} {int(result.tls_not_after)}"
    assert line in text.splitlines()
    assert promtool.check_metrics(text) == []
