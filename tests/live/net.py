"""Loopback network helpers: free ports, black-hole (accepting or not) and junk-answering listeners,
latency-injecting and connection-resetting TCP proxies."""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import struct
import threading
import time
from typing import Self


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def _dial(client: socket.socket, target: int) -> socket.socket | None:
    """A connection to ``127.0.0.1:target`` to forward ``client`` to; None (and ``client`` closed) if refused."""
    try:
        return socket.create_connection(("127.0.0.1", target))
    except OSError:
        client.close()
        return None


class _Listener:
    """Listens on ``127.0.0.1:port`` (default a free one); an accept thread hands each connection to
    ``_serve``. ``close()`` closes the listener and every socket in ``_conns``."""

    def __init__(self, port: int = 0) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name=type(self).__name__.lower(), daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        """Called on the accept thread for each new connection; by default it is just held open."""
        self._conns.append(conn)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        # The accept thread ends first: a connection it accepted just before the listener closed (a client's
        # connect completes in the kernel backlog, long before a loaded machine runs this thread) is in
        # ``_conns`` only once ``_serve`` returned; closed before that, it would leak ("unclosed socket").
        self._thread.join(timeout=2)
        for conn in self._conns:
            # shutdown() first: close() alone sends no FIN while a pump thread is blocked in recv() on the
            # socket (the kernel keeps it open until that call returns), so the peer would never see the end.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlackHole(_Listener):
    """Accepts TCP connections and never sends a byte (a hung server, a silent middlebox); ``accepted`` counts
    the connections it took."""

    accepted = 0

    def _serve(self, conn: socket.socket) -> None:
        self.accepted += 1
        super()._serve(conn)


class Unaccepted:
    """A black hole that holds one descriptor however many clients try: a listening socket (backlog 0) that
    never accepts. The kernel completes the first handshake, which then hears nothing; later connections hang
    in the handshake itself (their SYNs are dropped). For long runs (soak), where ``BlackHole`` would keep every
    accepted socket open."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DelayProxy(_Listener):
    """Forwards TCP to ``127.0.0.1:target``, each chunk ``delay`` seconds after it arrived, both directions: a
    link of that one-way latency (chunks sent back to back arrive back to back, not one delay apart)."""

    def __init__(self, target: int, delay: float) -> None:
        self.target = target
        self.delay = delay
        super().__init__()

    def _serve(self, client: socket.socket) -> None:
        if (upstream := _dial(client, self.target)) is None:
            return
        self._conns += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            line: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
            threading.Thread(target=self._receive, args=(src, line), daemon=True).start()
            threading.Thread(target=self._deliver, args=(line, dst), daemon=True).start()

    def _receive(self, src: socket.socket, line: queue.SimpleQueue[tuple[float, bytes] | None]) -> None:
        try:
            while data := src.recv(65536):
                line.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        finally:
            line.put(None)

    def _deliver(self, line: queue.SimpleQueue[tuple[float, bytes] | None], dst: socket.socket) -> None:
        try:
            while (item := line.get()) is not None:
                due, data = item
                time.sleep(max(0.0, due - time.monotonic()))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


class _Pumped:
    """One ResetProxy connection: the events its pump thread watches (reset now, expire) and sets (done), and
    how many select rounds it has completed."""

    def __init__(self) -> None:
        self.reset, self.expire, self.done = threading.Event(), threading.Event(), threading.Event()
        self.rounds = 0


class ResetProxy(_Listener):
    """Forwards TCP to ``127.0.0.1:target`` and drops idle connections the way a middlebox does.

    ``reset_clients()``: every open connection gets an RST now. ``expire_clients()``: what a load
    balancer or NAT gateway does to a connection idle past its timeout — it forgets it (the upstream side
    is closed, the server sees its client go) and answers the client's next packet with an RST, so the
    client's socket looks open until it sends. New connections are forwarded normally. ``freeze()``: the
    peer of every connection looks frozen (SIGSTOP): the kernel still takes the client's bytes, nothing is
    forwarded and nothing comes back, until ``thaw()``. ``port``: listen there (a broker may have to
    advertise it); default a free one.
    """

    def __init__(self, target: int, *, port: int | None = None) -> None:
        self.target = target
        self.accepted = 0
        self.resets = 0
        self._frozen = threading.Event()
        self._lock = threading.Lock()
        #: Per open connection, what its pump thread watches and reports. Its sockets stay out of ``_conns``:
        #: only the pump thread touches them.
        self._events: list[_Pumped] = []
        super().__init__(port or 0)

    def _serve(self, client: socket.socket) -> None:
        if (upstream := _dial(client, self.target)) is None:
            return
        self.accepted += 1
        events = _Pumped()
        with self._lock:
            self._events.append(events)
        threading.Thread(target=self._pump, args=(client, upstream, events), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket, events: _Pumped) -> None:
        """One thread per connection, both directions, so only this thread ever touches the two sockets."""
        reset, expire, done = events.reset, events.expire, events.done
        peer = {client: upstream, upstream: client}
        rst = False
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ)
            sel.register(upstream, selectors.EVENT_READ)
            try:
                while not self._closed:
                    if reset.is_set():
                        rst = True
                        break
                    if self._frozen.is_set():
                        time.sleep(0.02)
                        events.rounds += 1  # frozen: nothing is read, so nothing more to wait for
                        continue
                    if expire.is_set() and upstream in peer:
                        sel.unregister(upstream)  # forgotten: the server sees its client go
                        upstream.close()
                        del peer[upstream]
                    for key, _ in sel.select(timeout=0.02):
                        src: socket.socket = key.fileobj  # type: ignore[assignment]
                        if src is client and upstream not in peer:
                            rst = True  # the client spoke on a forgotten connection: RST
                            break
                        data = src.recv(65536)
                        if not data:
                            raise ConnectionAbortedError  # one side closed: close both
                        peer[src].sendall(data)
                    if rst:
                        break
                    events.rounds += 1
            except OSError:
                pass
        if rst:  # linger 0: close() sends an RST instead of a FIN
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.resets += 1
        client.close()
        upstream.close()
        done.set()

    def _open(self) -> list[_Pumped]:
        """The connections open now. A client that hung up before this call is not counted, however late a
        loaded machine runs its pump thread: each pump first finishes a select round begun after the call (its
        select then sees the FIN the kernel already holds, and the pump ends), or ends."""
        with self._lock:
            conns = list(self._events)
        started = [(e, e.rounds) for e in conns]
        deadline = time.monotonic() + 5
        while any(not e.done.is_set() and e.rounds < r + 2 for e, r in started) and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            self._events = [e for e in self._events if not e.done.is_set()]
            return list(self._events)

    def reset_clients(self) -> int:
        """RST every open client connection now (returns once they are all reset); how many there were."""
        conns = self._open()
        for e in conns:
            e.reset.set()
        for e in conns:
            e.done.wait(5)
        return len(conns)

    def expire_clients(self) -> int:
        """Forget every open connection: closed upstream now, RST to the client when it next sends."""
        conns = self._open()
        for e in conns:
            e.expire.set()
        time.sleep(0.1)  # the pump threads close the upstream sides (select timeout 0.02 s)
        return len(conns)

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def close(self) -> None:
        self.thaw()
        super().close()
        for e in self._open():
            e.done.wait(5)


class JunkServer(_Listener):
    """Accepts TCP connections and answers every read with a garbage frame (a wrong service on the port).

    Each time the client sends something, the server replies with ``frame`` (default: a Kafka-style
    length-prefixed frame of 0xff bytes whose first four bytes echo the request's correlation id, so a
    Kafka client takes it as the answer to its request and then fails to parse it). ``greeting`` is sent
    right after accepting, for protocols where the server speaks first.
    """

    def __init__(self, frame: bytes | None = None, *, greeting: bytes = b"") -> None:
        self.frame = frame
        self.greeting = greeting
        self.accepted = 0
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        self.accepted += 1
        super()._serve(conn)
        threading.Thread(target=self._answer, args=(conn,), name="junkserver-conn", daemon=True).start()

    def _reply(self, request: bytes) -> bytes:
        if self.frame is not None:
            return self.frame
        # Kafka framing: int32 length, then (for a request) int16 api key, int16 version, int32
        # correlation id. Echo the correlation id, follow it with bytes no Kafka response contains.
        correlation = request[8:12] if len(request) >= 12 else b"\x00\x00\x00\x00"
        payload = correlation + b"\x00\x23" + b"\xff" * 10
        return len(payload).to_bytes(4, "big") + payload

    def _answer(self, conn: socket.socket) -> None:
        try:
            if self.greeting:
                conn.sendall(self.greeting)
            while data := conn.recv(65536):
                conn.sendall(self._reply(data))
        except OSError:
            pass


class ScramPeer(_Listener):
    """A hostile PostgreSQL peer: answers the startup with SCRAM-SHA-256 and asks for ``iterations`` rounds.

    It speaks just enough protocol for a client to start hashing the password: an SSLRequest gets ``N``,
    the StartupMessage gets AuthenticationSASL, the client-first message gets AuthenticationSASLContinue
    with ``i=<iterations>``; then it waits. ``asked`` is set as that challenge goes on the wire.
    """

    def __init__(self, iterations: int) -> None:
        self.iterations = iterations
        self.asked = threading.Event()
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        super()._serve(conn)
        threading.Thread(target=self._talk, args=(conn,), name="scrampeer-conn", daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionAbortedError
            data += chunk
        return data

    def _talk(self, conn: socket.socket) -> None:
        try:
            while True:  # SSLRequest / GSSENCRequest (refused with N), then the StartupMessage
                length, code = struct.unpack("!ii", self._read(conn, 8))
                self._read(conn, length - 8)
                if code not in (80877103, 80877104):
                    break
                conn.sendall(b"N")
            mechanisms = b"SCRAM-SHA-256\x00\x00"
            conn.sendall(b"R" + struct.pack("!ii", 4 + 4 + len(mechanisms), 10) + mechanisms)
            _, length = struct.unpack("!ci", self._read(conn, 5))  # SASLInitialResponse ('p')
            body = self._read(conn, length - 4)
            first = body[body.index(b"\x00") + 1 + 4 :]  # mechanism name, int32 length, client-first
            nonce = first.split(b"r=", 1)[1].split(b",", 1)[0]
            challenge = b"r=" + nonce + b"srv,s=c2FsdHNhbHQ=,i=" + str(self.iterations).encode()
            # Set first: once the bytes are out, the client may read them, refuse and let its test check ``asked``
            # before this thread gets the GIL back from ``sendall``.
            self.asked.set()
            conn.sendall(b"R" + struct.pack("!ii", 4 + 4 + len(challenge), 11) + challenge)
            while conn.recv(65536):  # whatever comes next (a proof, if the client computed one): ignored
                pass
        except OSError:
            pass


class KafkaSaslPlainPeer(_Listener):
    """A Kafka peer that offers SASL PLAIN and rejects every login (for what a client sends and logs).

    It answers ApiVersions v0 (ApiVersions, SaslHandshake v0-1, SaslAuthenticate v0-1), SaslHandshake with
    PLAIN enabled, and SaslAuthenticate with SASL_AUTHENTICATION_FAILED; ``tokens`` collects the
    authentication bytes it received (PLAIN: ``authzid\\x00user\\x00password``).
    """

    _API_KEYS = ((18, 0, 0), (17, 0, 1), (36, 0, 1))

    def __init__(self) -> None:
        self.tokens: list[bytes] = []
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        super()._serve(conn)
        threading.Thread(target=self._talk, args=(conn,), name="kafkasaslpeer-conn", daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        try:
            while True:
                (size,) = struct.unpack("!i", ScramPeer._read(conn, 4))
                request = ScramPeer._read(conn, size)
                key, version, correlation = struct.unpack("!hhi", request[:8])
                (client_id_len,) = struct.unpack("!h", request[8:10])
                body = request[10 + max(client_id_len, 0) :]
                if key == 18:  # ApiVersions v0
                    reply = struct.pack("!hi", 0, len(self._API_KEYS))
                    reply += b"".join(struct.pack("!hhh", *entry) for entry in self._API_KEYS)
                elif key == 17:  # SaslHandshake: PLAIN is enabled
                    reply = struct.pack("!hih", 0, 1, 5) + b"PLAIN"
                elif key == 36:  # SaslAuthenticate: remember the token, reject it
                    (length,) = struct.unpack("!i", body[:4])
                    self.tokens.append(body[4 : 4 + length])
                    message = b"Authentication failed: invalid credentials"
                    reply = struct.pack("!hh", 58, len(message)) + message + struct.pack("!i", 0)
                    if version >= 1:
                        reply += struct.pack("!q", 0)  # session_lifetime_ms
                else:
                    return
                frame = struct.pack("!i", correlation) + reply
                conn.sendall(struct.pack("!i", len(frame)) + frame)
        except OSError:
            pass
