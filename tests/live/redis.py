"""Throwaway ``redis-server`` instances on free loopback ports, plus their session-scoped pytest fixtures.

Usable outside pytest (demo, benchmark)::

    with RedisServer.start(password="s3cret") as server:
        print(server.port, server.client_list())

Every server runs from a temp dir with persistence off, on 127.0.0.1 only, and is stopped (even when
frozen) when its context ends. TLS servers (``tls=make_tls_files(dir)``) listen on the TLS port only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ingest_probe.connectors.redis.settings import RedisSettings
from ingest_probe.secret import Secret
from live import missing, stop_process
from live.net import free_port

REDIS_SERVER = os.environ.get("INGEST_PROBE_TEST_REDIS_SERVER", "redis-server")

#: Rules of the full-access ACL user the auth server creates next to ``requirepass``.
FULL_ACCESS = ("on", "~*", "&*", "+@all")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A self-signed CA, a server certificate it signed (localhost, 127.0.0.1) and an unrelated CA."""

    ca_cert: str
    server_cert: str
    server_key: str
    other_ca_cert: str


def make_tls_files(directory: Path, *, days: int = 30) -> TlsFiles:
    """Create a CA, a server cert for ``localhost``/``127.0.0.1`` signed by it (valid ``days``; -1: expired
    yesterday), and a second, unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "30",
                "-subj", f"/CN=ingest-probe test {ca}")  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", str(days), "-extfile", "san.cnf")  # fmt: skip
    return TlsFiles(
        ca_cert=str(directory / "ca.crt"),
        server_cert=str(directory / "server.crt"),
        server_key=str(directory / "server.key"),
        other_ca_cert=str(directory / "other-ca.crt"),
    )


class RedisServer:
    """One ``redis-server`` process on a free loopback port: start, stop, restart, freeze, inspect."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
        users: Mapping[str, Sequence[str]] | None = None,
        tls: TlsFiles | None = None,
        rdb: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        #: ACL users: name -> rules, e.g. ``{"probe": ("on", ">pw", "~*", "&*", "+@all")}``.
        self.users = dict(users or {})
        self.tls = tls
        self.rdb = rdb
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False
        self.log_path = workdir / "redis.log"

    # -------------------------------------------------------------------------------------- lifecycle

    @classmethod
    @contextlib.contextmanager
    def start(
        cls, *, workdir: Path | None = None, wait_loaded: bool = True, **kwargs: Any
    ) -> Iterator[RedisServer]:
        """Start a server (in a fresh temp dir unless ``workdir`` is given); stop it when the block ends."""
        with contextlib.ExitStack() as stack:
            if workdir is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ingest-probe-redis-")))
            workdir.mkdir(parents=True, exist_ok=True)
            server = cls(workdir=workdir, **kwargs)
            stack.callback(server.stop)
            server.launch(wait_loaded=wait_loaded)
            yield server

    def argv(self) -> list[str]:
        args = [REDIS_SERVER, "--bind", self.host, "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--dbfilename", "dump.rdb", "--daemonize", "no",
                "--loglevel", "notice", "--logfile", ""]  # fmt: skip
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls.server_cert,
                     "--tls-key-file", self.tls.server_key, "--tls-ca-cert-file", self.tls.ca_cert,
                     "--tls-auth-clients", "no"]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        for name, rules in self.users.items():
            args += ["--user", name, *rules]
        return [*args, *self.extra_args]

    def launch(self, *, wait_loaded: bool = True, timeout: float = 15.0) -> None:
        """Start the process and wait until it answers (or, with ``wait_loaded=False``, until it listens)."""
        if self.rdb is not None:
            shutil.copyfile(self.rdb, self.workdir / "dump.rdb")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self._frozen = False
        self._wait_ready(wait_loaded=wait_loaded, timeout=timeout)

    def _wait_ready(self, *, wait_loaded: bool, timeout: float) -> None:
        import redis
        from redis.exceptions import BusyLoadingError

        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"redis-server exited at start-up: {self.log_tail()}")
            try:
                with self.admin(socket_timeout=1.0, verify=False) as admin:
                    admin.ping()
                    return
            except BusyLoadingError:
                if not wait_loaded:
                    return
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server not ready after {timeout}s: {self.log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the process (thawing it first if frozen); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._frozen:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
            self._frozen = False
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        """Stop, then start again on the same port (existing client connections are dropped)."""
        self.stop()
        self.launch()

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, the server answers nothing."""
        assert self._proc is not None
        stop_process(self._proc.pid)  # every thread stopped on return
        self._frozen = True

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)
        self._frozen = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------ inspection

    def admin(self, *, socket_timeout: float = 5.0, verify: bool = True) -> Any:
        """A short-lived synchronous redis-py client as the default user (use it as a context manager);
        ``verify=False``: the server's certificate is not checked (a server that serves an expired one)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: redis-py would otherwise retry LOADING/connection errors and hide a loading server.
        kwargs: dict[str, Any] = {"retry": Retry(NoBackoff(), 0)}
        if self.tls is not None:
            kwargs.update(ssl=True, ssl_ca_certs=self.tls.ca_cert)
            if not verify:
                kwargs.update(ssl_cert_reqs="none", ssl_check_hostname=False)
        return redis.Redis(
            host=self.host, port=self.port, password=self.password, client_name="live-admin",
            socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, protocol=2,
            decode_responses=True, **kwargs,
        )  # fmt: skip

    def client_list(self, name: str | None = None) -> list[dict[str, Any]]:
        """Connections the server sees (``CLIENT LIST``), without this call's own; only ``name`` if given."""
        with self.admin() as admin:
            clients: list[dict[str, Any]] = admin.client_list()
            own = admin.client_id()
        return [c for c in clients if int(c["id"]) != own and (name is None or c.get("name") == name)]

    def info(self) -> dict[str, Any]:
        with self.admin() as admin:
            info: dict[str, Any] = admin.info()
        return info

    # ---------------------------------------------------------------------------------- probe inputs

    def settings(self, **overrides: Any) -> RedisSettings:
        """``RedisSettings`` pointing at this server (default user, its password, its TLS CA)."""
        values: dict[str, Any] = {
            "configured": True,
            "host": self.host,
            "port": self.port,
            "password": Secret(self.password) if self.password is not None else None,
            "tls": self.tls is not None,
            "ssl_ca_certs": self.tls.ca_cert if self.tls is not None else None,
        }
        values.update(overrides)
        return RedisSettings(**values)


def make_rdb(path: Path, *, keys: int) -> Path:
    """Write an RDB file holding ``keys`` small keys (for a server that takes a while to load it)."""
    with RedisServer.start(extra_args=["--enable-debug-command", "yes"]) as server:
        with server.admin() as admin:
            admin.execute_command("DEBUG", "POPULATE", keys)
            admin.save()
        shutil.copyfile(server.workdir / "dump.rdb", path)
    return path


# ------------------------------------------------------------------------------------------- fixtures


def _require_redis_server() -> None:
    if shutil.which(REDIS_SERVER) is None:
        missing(f"{REDIS_SERVER} not found on PATH (set INGEST_PROBE_TEST_REDIS_SERVER)")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """An open Redis (no password, no TLS) for the whole session."""
    _require_redis_server()
    with RedisServer.start(workdir=tmp_path_factory.mktemp("redis-open")) as server:
        yield server


#: Passwords of the auth server: the default user's (``requirepass``) and the ACL users'.
AUTH_PASSWORD = "default-pw-7c1e"
PROBE_USER, PROBE_PASSWORD = "probe", "probe-pw-2b9d"
LIMITED_USER, LIMITED_PASSWORD = "limited", "limited-pw-41af"


@pytest.fixture(scope="session")
def redis_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Redis with ``requirepass`` (AUTH_PASSWORD), a full ACL user ``probe`` and a ``limited`` user.

    ``limited`` may only PING and name its connection (no INFO, no SELECT).
    """
    _require_redis_server()
    users = {
        PROBE_USER: (*FULL_ACCESS, f">{PROBE_PASSWORD}"),
        LIMITED_USER: ("on", f">{LIMITED_PASSWORD}", "-@all", "+ping", "+client|setname"),
    }
    workdir = tmp_path_factory.mktemp("redis-auth")
    with RedisServer.start(workdir=workdir, password=AUTH_PASSWORD, users=users) as server:
        yield server


@pytest.fixture(scope="session")
def redis_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """CA, server certificate/key (localhost, 127.0.0.1) and an unrelated second CA."""
    _require_redis_server()
    if shutil.which("openssl") is None:
        missing("openssl not found on PATH: cannot make test certificates")
    return make_tls_files(tmp_path_factory.mktemp("redis-tls-files"))


@pytest.fixture(scope="session")
def redis_tls_server(
    tmp_path_factory: pytest.TempPathFactory, redis_tls_files: TlsFiles
) -> Iterator[RedisServer]:
    """A TLS-only Redis (``--port 0 --tls-port``); ``server.tls`` holds the CA and the unrelated CA."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(
                RedisServer.start(workdir=tmp_path_factory.mktemp("redis-tls"), tls=redis_tls_files)
            )
        except RuntimeError as exc:
            # A build without TLS rejects the tls-* directives at start-up ("Bad directive ...").
            if "Bad directive" in str(exc):
                missing(f"this redis-server build has no TLS support: {exc}")
            raise
        yield server


@pytest.fixture(scope="session")
def redis_loading_rdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RDB with 20k keys: with ``--key-load-delay`` a server takes ~1-2 s to load it."""
    _require_redis_server()
    return make_rdb(tmp_path_factory.mktemp("redis-rdb") / "dump.rdb", keys=20_000)


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start throwaway servers for destructive tests (freeze, restart, loading); all stopped at teardown."""
    _require_redis_server()
    started: list[RedisServer] = []

    def start(*, wait_loaded: bool = True, **kwargs: Any) -> RedisServer:
        server = RedisServer(workdir=tmp_path / f"redis-{len(started)}", **kwargs)
        server.workdir.mkdir(parents=True)
        started.append(server)
        server.launch(wait_loaded=wait_loaded)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
