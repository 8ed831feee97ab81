"""Throwaway PostgreSQL servers on loopback (initdb + pg_ctl), usable from pytest, the demo and the benchmark.

    with PostgresServer.start() as pg:             # scram password auth for a probe user over TCP
        print(pg.dsn())
    with PostgresServer.start(tls=True) as pg:     # hostssl only: TLS required, cert signed by pg.tls.ca

Every server lives in its own temp dir (data dir, unix socket, log, TLS files) on a free 127.0.0.1 port and
never touches the machine's own instances. When the process is root, initdb/pg_ctl run as the ``postgres``
OS user (``runuser``) and the temp dir is handed to that user. The superuser ``postgres`` is reached over the
private unix socket with ``trust`` (for ``psql()`` and the connection counters); TCP needs scram passwords.

Replication hook (for the failover drill): every instance listens for ``replication`` connections from the
superuser over TCP and has ``wal_level=replica``; a replica is another ``PostgresServer`` whose data dir is
filled by ``pg_basebackup -R`` from the primary instead of ``initdb`` (see ``_create_cluster``), then
configured and started with the same ``_configure()``/``_pg_ctl("start")``; ``promote()`` already exists.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from live import missing, stop_process
from live.net import free_port

SUPERUSER = "postgres"
#: A role that authenticates with a client certificate (pg_hba ``cert``) on TLS instances.
CERT_USER = "certuser"


def find_bindir() -> Path:
    """The bin dir of the highest installed PostgreSQL (``INGEST_PROBE_PG_BINDIR`` overrides the glob)."""
    override = os.environ.get("INGEST_PROBE_PG_BINDIR")
    if override:
        if not os.path.exists(f"{override}/pg_ctl"):
            raise FileNotFoundError(f"no PostgreSQL server binaries in INGEST_PROBE_PG_BINDIR={override}")
        return Path(override)

    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"postgresql/([\d.]+)/bin", path)
        return tuple(int(p) for p in m.group(1).split(".")) if m else (0,)

    candidates = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(f"{p}/pg_ctl")]
    if candidates:
        return Path(max(candidates, key=version))
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise FileNotFoundError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin or on PATH")


def _as_owner() -> list[str]:
    """Prefix that runs server tools as the ``postgres`` OS user when we are root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _chown_tree(path: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam("postgres")
    uid, gid = entry.pw_uid, entry.pw_gid
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)


def _clean_env() -> dict[str, str]:
    """The environment without PG* variables, so a stray PGHOST/PGSSLMODE cannot redirect our tools."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run(cmd: list[str], *, cwd: Path | None = None, timeout: float = 60.0, check: bool = True) -> str:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
        )
    return proc.stdout


# ------------------------------------------------------------------------------------------------ TLS files


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A test CA, a server cert it signed (SAN localhost + 127.0.0.1), a client cert, and an unrelated CA."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: A second, self-signed CA that signed nothing we serve: trusting only it must fail verification.
    other_ca: Path

    @classmethod
    def make(cls, directory: Path, *, client_cn: str = CERT_USER, days: int = 30) -> TlsFiles:
        """The files in ``directory``; the server certificate is valid for ``days`` (-1: expired yesterday)."""
        directory.mkdir(parents=True, exist_ok=True)
        d = directory
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ca_ext = [
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
        for name, cn in (("ca", "ingest-probe test CA"), ("other_ca", "unrelated test CA")):
            _run(["openssl", "req", "-x509", *ec, "-days", "30", "-subj", f"/CN={cn}", *ca_ext,
                  "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.crt")])  # fmt: skip
        leaf = {
            "server": (
                "localhost",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            "client": (client_cn, "extendedKeyUsage=clientAuth\n"),
        }
        for name, (cn, ext) in leaf.items():
            (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n" + ext)
            _run(["openssl", "req", *ec, "-subj", f"/CN={cn}",
                  "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr")])  # fmt: skip
            valid = days if name == "server" else 30
            _run(["openssl", "x509", "-req", "-in", str(d / f"{name}.csr"), "-days", str(valid),
                  "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"), "-CAcreateserial",
                  "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.crt")])  # fmt: skip
        for key in d.glob("*.key"):
            key.chmod(0o600)
        return cls(
            ca=d / "ca.crt",
            ca_key=d / "ca.key",
            server_cert=d / "server.crt",
            server_key=d / "server.key",
            client_cert=d / "client.crt",
            client_key=d / "client.key",
            other_ca=d / "other_ca.crt",
        )


# ------------------------------------------------------------------------------------------------- server


class PostgresServer:
    """One throwaway cluster: build it with ``start()``; ``close()`` (or ``with``) stops and deletes it.

    Connection parts for clients: ``host``, ``port``, ``user``, ``password``, ``database`` (the probe role,
    scram over TCP). Test levers: ``stop()``/``restart()``, ``freeze()``/``thaw()`` (SIGSTOP/SIGCONT of the
    postmaster and its children), ``client_backends()``/``count_connections()`` (asked of the server itself).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        base: Path,
        *,
        port: int,
        user: str,
        password: str,
        database: str = "postgres",
        tls: TlsFiles | None = None,
        bindir: Path | None = None,
    ) -> None:
        self.base = base
        self.datadir = base / "data"
        self.socket_dir = base / "sock"
        self.log_path = base / "server.log"
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
        self.bindir = bindir or find_bindir()
        self._frozen: list[int] = []
        self._closed = False
        #: The superuser's TCP password, set by the first ``start_replica_of(self)`` (replication is scram).
        self.replication_password: str | None = None

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def start(
        cls,
        *,
        tls: bool = False,
        user: str = "probe",
        password: str | None = None,
        standby: bool = False,
        hot_standby: bool = True,
        conf: dict[str, str] | None = None,
        name: str = "pg",
        tls_days: int = 30,
    ) -> PostgresServer:
        """initdb a fresh cluster in a temp dir, configure it, start it and create the probe role.

        ``tls=True``: ``ssl=on`` and pg_hba ``hostssl`` only (TLS required), plus a ``certuser`` role that
        logs in with the client certificate; its server certificate is valid for ``tls_days``. ``standby=True``
        starts it in standby mode with no primary to follow (``standby.signal``); with ``hot_standby=False`` it
        then refuses every connection with SQLSTATE 57P03 ("the database system is ..."), which is how the suite
        produces a server that is "starting".
        """
        base = Path(tempfile.mkdtemp(prefix=f"ingest-probe-{name}-"))
        server = cls(
            base,
            port=free_port(),
            user=user,
            password=password or secrets.token_urlsafe(12),
            tls=TlsFiles.make(base / "tls", days=tls_days) if tls else None,
        )
        atexit.register(server.close)  # a crashed pytest/demo must not leave a postmaster behind
        try:
            server.socket_dir.mkdir()
            server._create_cluster()
            server._configure(standby=standby, hot_standby=hot_standby, extra=conf or {})
            _chown_tree(base)
            server._pg_ctl("start", "-w", "-t", "30", "-l", str(server.log_path))
            if not standby:
                server._create_roles()
        except BaseException:
            server.close()
            raise
        return server

    @classmethod
    def start_replica_of(cls, primary: PostgresServer, *, name: str = "pg-replica") -> PostgresServer:
        """A streaming replica of ``primary``: ``pg_basebackup -R -X stream`` over TCP, started as a hot standby.

        It serves the primary's roles (``user``/``password`` are the primary's) read-only and stays in
        recovery, following the primary, until ``promote()``. The first call gives the primary's superuser a
        password, since replication connections over TCP use scram. Plain (non-TLS) primaries only.
        """
        if primary.tls is not None:
            raise ValueError("start_replica_of() supports plain primaries only")
        if primary.replication_password is None:
            primary.replication_password = secrets.token_urlsafe(12)
            primary.psql(f"ALTER ROLE {SUPERUSER} PASSWORD '{primary.replication_password}'")
        base = Path(tempfile.mkdtemp(prefix=f"ingest-probe-{name}-"))
        server = cls(base, port=free_port(), user=primary.user, password=primary.password,
                     database=primary.database, bindir=primary.bindir)
        atexit.register(server.close)
        try:
            server.socket_dir.mkdir()
            _chown_tree(base)
            conninfo = (f"host={primary.host} port={primary.port} user={SUPERUSER}"
                        f" password={primary.replication_password} application_name={name}")
            _run([*_as_owner(), str(server.bindir / "pg_basebackup"), "-D", str(server.datadir), "-d", conninfo,
                  "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"], cwd=base)  # fmt: skip
            # The copied postgresql.conf carries the primary's port and socket dir; ours are appended after.
            server._configure(standby=True, hot_standby=True, extra={})
            _chown_tree(base)
            server._pg_ctl("start", "-w", "-t", "30", "-l", str(server.log_path))
        except BaseException:
            server.close()
            raise
        return server

    def _create_cluster(self) -> None:
        """initdb (a replica would run ``pg_basebackup -R -D datadir`` against its primary here instead)."""
        _chown_tree(self.base)
        _run(
            [*_as_owner(), str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER,
             "--no-sync", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"],
            cwd=self.base,
        )  # fmt: skip

    def _configure(self, *, standby: bool, hot_standby: bool, extra: dict[str, str]) -> None:
        settings: dict[str, str] = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "30",
            "shared_buffers": "16MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "replica",
            "password_encryption": "'scram-sha-256'",
            "hot_standby": "on" if hot_standby else "off",
            "log_connections": "on",
            "log_disconnections": "on",
        }
        ssl_kw = "host"
        if self.tls is not None:
            ssl_kw = "hostssl"
            settings |= {
                "ssl": "on",
                "ssl_cert_file": f"'{self.tls.server_cert}'",
                "ssl_key_file": f"'{self.tls.server_key}'",
                "ssl_ca_file": f"'{self.tls.ca}'",
            }
        settings |= extra
        with (self.datadir / "postgresql.conf").open("a") as f:
            f.write("\n# ingest-probe live test settings\n")
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        hba = ["local all all trust"]
        if self.tls is not None:
            hba.append(f"hostssl all {CERT_USER} 127.0.0.1/32 cert")
        hba += [
            f"{ssl_kw} all all 127.0.0.1/32 scram-sha-256",
            f"{ssl_kw} replication {SUPERUSER} 127.0.0.1/32 scram-sha-256",
        ]
        (self.datadir / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        if standby:
            (self.datadir / "standby.signal").touch()

    def _create_roles(self) -> None:
        pw = self.password.replace("'", "''")
        sql = f"CREATE ROLE {self.user} LOGIN PASSWORD '{pw}';"
        if self.tls is not None:
            sql += f" CREATE ROLE {CERT_USER} LOGIN;"
        self.psql(sql)

    # --------------------------------------------------------------------------------------- client side

    def dsn(self, *, user: str | None = None, password: str | None = None, sslmode: str | None = None) -> str:
        query = f"?sslmode={sslmode}" if sslmode else ""
        pw = self.password if password is None else password
        return f"postgresql://{user or self.user}:{pw}@{self.host}:{self.port}/{self.database}{query}"

    def psql(self, sql: str, *, timeout: float = 10.0) -> str:
        """Run SQL as the superuser over the private unix socket; returns unaligned, tuples-only output."""
        return _run(
            [str(self.bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres", "-c", sql],
            timeout=timeout,
        ).strip()  # fmt: skip

    def client_backends(self) -> list[dict[str, Any]]:
        """Client connections the server holds right now, except the one asking."""
        out = self.psql(
            "SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), coalesce(state, '')"
            " FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        rows = [line.split("|") for line in out.splitlines() if line]
        return [{"pid": int(r[0]), "user": r[1], "application_name": r[2], "state": r[3]} for r in rows]

    def count_connections(self, application_name: str | None = None) -> int:
        """Client connections with that application_name (all client connections when None)."""
        rows = self.client_backends()
        return sum(1 for r in rows if application_name is None or r["application_name"] == application_name)

    def tcp_backends(self) -> list[tuple[int, str]]:
        """(pid, process title) of every backend serving a TCP client, *including* ones still in the
        handshake or authentication, which pg_stat_activity does not list yet. Read from /proc."""
        found = []
        for pid in self._process_tree()[1:]:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            # Freshly forked backends still carry the postmaster's command line; later ones say
            # "postgres: user db 127.0.0.1(port) <state>". Auxiliary processes and [local] clients do not.
            if "127.0.0.1(" in title or not title.startswith("postgres:"):
                found.append((pid, title))
        return found

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------------------------------------ levers

    def _pg_ctl(self, *args: str, timeout: float = 60.0) -> str:
        return _run([*_as_owner(), str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args],
                    cwd=self.base, timeout=timeout)  # fmt: skip

    @property
    def postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _process_tree(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, walwriter, ...)."""
        root = self.postmaster_pid
        if root is None:
            return []
        children: list[int] = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == root:
                children.append(int(stat.split("/")[2]))
        return [root, *children]

    def freeze(self) -> None:
        """SIGSTOP the postmaster, then its children: TCP still connects (kernel backlog), nothing answers.

        Each is stopped on return; the children are listed once the postmaster is, so none forked meanwhile
        is missed."""
        root = self.postmaster_pid
        if root is None:
            return
        with contextlib.suppress(ProcessLookupError):
            stop_process(root)
        self._frozen = [root]
        for pid in self._process_tree()[1:]:
            with contextlib.suppress(ProcessLookupError):
                stop_process(pid)
            self._frozen.append(pid)

    def thaw(self) -> None:
        for pid in reversed(self._frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen = []

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def stop(self, mode: str = "fast") -> None:
        self.thaw()
        if self.postmaster_pid is not None:
            self._pg_ctl("stop", "-w", "-t", "30", "-m", mode)

    def restart(self) -> None:
        """Fast restart on the same port: every existing connection is cut."""
        self.thaw()
        self._pg_ctl("restart", "-w", "-t", "30", "-m", "fast", "-l", str(self.log_path))

    def promote(self) -> None:
        """End recovery on a standby (for the failover drill)."""
        self._pg_ctl("promote", "-w", "-t", "30")

    def close(self) -> None:
        """Stop the server (immediate, then SIGKILL if it will not go) and delete its temp dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.thaw()
            pid = self.postmaster_pid
            if pid is not None:
                try:
                    self._pg_ctl("stop", "-w", "-t", "15", "-m", "immediate", timeout=20)
                except (RuntimeError, subprocess.TimeoutExpired):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    time.sleep(0.2)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            atexit.unregister(self.close)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresServer({self.host}:{self.port}, tls={self.tls is not None}, base={self.base})"


# -------------------------------------------------------------------------------------- pytest fixtures


def require_postgres() -> None:
    """Skip (fail in CI) when there are no PostgreSQL server binaries."""
    try:
        find_bindir()
    except FileNotFoundError as exc:
        missing(str(exc))


def _server_fixture(**kwargs: Any) -> Iterator[PostgresServer]:
    require_postgres()
    server = PostgresServer.start(**kwargs)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A plain PostgreSQL: scram-sha-256 over TCP for ``pg.user``/``pg.password``, TLS not offered."""
    yield from _server_fixture(name="pg")


@pytest.fixture(scope="session")
def pg_tls_server() -> Iterator[PostgresServer]:
    """PostgreSQL with ssl=on and hostssl-only pg_hba (TLS required); its cert is signed by ``pg.tls.ca``."""
    yield from _server_fixture(name="pg-tls", tls=True)


@pytest.fixture(scope="session")
def pg_starting_server() -> Iterator[PostgresServer]:
    """A standby with no primary and ``hot_standby=off``: every connection gets 57P03 (not accepting yet)."""
    yield from _server_fixture(name="pg-standby", standby=True, hot_standby=False)
