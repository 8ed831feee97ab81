"""What every probe shares: deadline budgets, OS-level and library-internal error mapping, one-line messages,
bounded close."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import functools
import ipaddress
import math
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import anyio

from ingest_probe import errors
from ingest_probe.defaults import CLOSE_BUDGET, LIBRARY_SHARE, TIMEOUT
from ingest_probe.secret import Secret

if TYPE_CHECKING:
    from ingest_probe.results import Recorder

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

#: Why a peer that accepted the TCP connection may never answer the handshake. A different service on the
#: port belongs here: most wait silently for more bytes of their own protocol (Redis for a newline, Kafka
#: for the rest of a frame whose "length" is our first bytes) instead of hanging up.
SILENT_PEER = "server frozen, overloaded or black-holed, or a different service listens on that port?"


def budget(*, share: float = LIBRARY_SHARE, floor: float = 0.05, default: float = TIMEOUT) -> float:
    """Seconds a library call may take: a share of what is left before the enclosing deadline."""
    deadline = anyio.current_effective_deadline()
    if math.isinf(deadline):
        return default
    return max(floor, (deadline - anyio.current_time()) * share)


async def bounded_close(close: Callable[[], Awaitable[object]], *, budget: float = CLOSE_BUDGET) -> bool:
    """Await ``close()`` shielded from cancellation for at most ``budget`` s; True if it finished.

    For owners only: a probe that opened its own shielded scope would make its constant, not the owner's
    budget, the ceiling.
    """
    with anyio.move_on_after(budget, shield=True):
        await close()
        return True
    return False


_WS = re.compile(r"\s+")
#: A password where its position is known, whatever its value: URL userinfo and ``password=...`` pairs.
_URL_PASSWORD = re.compile(r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@]+(?=@)")
_PAIR_PASSWORD = re.compile(
    r"(?P<keep>\b(?:sasl_plain_password|sslpassword|password|passwd|pwd|pass)\s*=\s*)"
    r"(?:'[^']*'|\"[^\"]*\"|[^\s,;&'\"]+)",
    re.IGNORECASE,
)
#: An escape sequence in a repr or JSON (``b'user\x00user\x00pw'``, ``'a\nb'``): a separator, like a space.
_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[0abfnrtv])")


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _whole(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` stands alone: no word character runs on into it from either side."""
    before = (start == 0 or not _word(text[start]) or not _word(text[start - 1])
              or any(_ESCAPE.fullmatch(text, start - n, start) for n in (2, 4, 6) if start >= n))
    after = end == len(text) or not _word(text[end - 1]) or not _word(text[end]) or bool(_ESCAPE.match(text, end))
    return before and after


def redact(text: str, secrets: Iterable[Secret | None] = ()) -> str:
    """``text`` with every secret blanked by position, never by bare substring search.

    Where a message's shape says where a password is (URL userinfo, ``password=...``), that span is blanked
    whatever it holds. Elsewhere a known secret (as given, as a ``repr``, a ``bytes`` repr or a URL shows
    it) is blanked only where it stands as a whole token: a 2-character password ``ab`` never turns
    "disabled" into "dis***led", but ``'ab'``, ``(password ab)`` and ``b'user\x00user\x00ab'`` lose it.
    """
    text = _URL_PASSWORD.sub(r"\g<keep>***", text)
    text = _PAIR_PASSWORD.sub(r"\g<keep>***", text)
    forms: set[str] = set()
    for secret in secrets:
        value = secret.reveal() if secret is not None else ""
        if value:
            forms |= {value, repr(value)[1:-1], repr(value.encode("utf-8", "surrogateescape"))[2:-1],
                      quote(value, safe="")}
    for form in sorted(forms, key=len, reverse=True):
        out, position = [], 0
        while (found := text.find(form, position)) >= 0:
            end = found + len(form)
            if _whole(text, found, end):
                out += [text[position:found], "***"]
                position = end
            else:
                out.append(text[position : found + 1])
                position = found + 1
        text = "".join(out) + text[position:]
    return text


def one_line(text: object, *, secrets: Iterable[Secret | None] = (), limit: int = 240) -> str:
    """Collapse a driver message to one line, blank out any secret (``redact``), cap its length."""
    line = _WS.sub(" ", redact(str(text), secrets)).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


class DaemonExecutor(ThreadPoolExecutor):  # asyncio accepts only ThreadPoolExecutor as its default
    """Runs each call in its own daemon thread and never waits for one at shutdown.

    The loop's default executor serves ``getaddrinfo`` for every client library. A lookup stuck in the
    system resolver cannot be cancelled; with the stock executor, closing the loop (and the interpreter's
    exit) would wait for it, holding the process far past ``--timeout``. Daemon threads are abandoned.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- handed to the awaiting coroutine, which re-raises it
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=work, name="ingest-probe-io", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to wait for: the threads are daemons and finish (or are abandoned) on their own."""


#: One per process: each call gets a fresh daemon thread (see ``DaemonExecutor``), so it holds no state.
_DAEMON_EXECUTOR = DaemonExecutor()


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a fresh daemon thread; a cancelled await abandons the call, never waits for it.

    For blocking calls that cannot be interrupted (a lookup stuck in the system resolver, a file on a hung
    mount). Not anyio's worker threads, which the interpreter joins at exit, and not the loop's default
    executor, which belongs to the caller (an embedder's loop): stuck calls there fill it, here they cost
    one idle daemon thread each, until they return on their own or the process exits.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_DAEMON_EXECUTOR, functools.partial(fn, *args))


#: ``fn(host, port)`` → the host's addresses, raising ``socket.gaierror`` when the name does not resolve. A
#: blocking call: ``resolve()`` runs it in a daemon thread.
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (``socket.getaddrinfo``, looked up at each call), TCP addresses only."""
    infos = socket.getaddrinfo(_encoded(host), port, 0, socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


_RESOLVER: ContextVar[Resolver] = ContextVar("ingest_probe_resolver", default=system_resolver)


@contextlib.contextmanager
def use_resolver(resolver: Resolver) -> Iterator[None]:
    """Resolve host names with ``resolver`` inside this block (this context and the tasks started in it).

    It decides the ``resolve`` phase of every probe (the ``dns`` error kind); the client libraries still look
    the host up themselves when they connect. For tests (a name that must not resolve, without asking the
    machine's DNS) and for embedders with their own name service.
    """
    token = _RESOLVER.set(resolver)
    try:
        yield
    finally:
        _RESOLVER.reset(token)


def _encoded(host: str) -> bytes:
    """The name as the resolver gets it; a ``UnicodeError`` for a name that cannot be one (an empty label)."""
    return host.encode("ascii") if host.isascii() else host.encode("idna")


async def resolve(host: str, port: int) -> list[str]:
    """Resolve ``host`` (the ``resolve`` phase); a failure is a ``DnsError`` that says what to check.

    The lookup (``use_resolver``'s, by default the system's) runs in a daemon thread (``in_daemon_thread``),
    abandoned when the deadline cancels us.
    """
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]  # a literal needs no lookup (nor a thread)
    except ValueError:
        pass
    lookup = _RESOLVER.get()
    try:
        _encoded(host)  # a name that cannot be one fails here, whichever resolver is in use
        addresses = await in_daemon_thread(lookup, host, port)
    except socket.gaierror as exc:
        raise errors.DnsError(
            f"cannot resolve host {host!r} ({exc.strerror}): check the host name and DNS"
        ) from exc
    except UnicodeError as exc:  # a label longer than 63 characters, an empty label ("a..b")
        raise errors.DnsError(f"invalid host name {host!r} ({exc}): check the host name") from exc
    return sorted(set(addresses))


def pem_is_encrypted(path: str | None) -> bool:
    """Whether the PEM file at ``path`` holds an encrypted private key (PKCS#8 or legacy ``Proc-Type``).

    Blocking file I/O: call it off the loop. Only the header is looked at; nothing of the file is shown.
    """
    if not path:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in head or b"Proc-Type: 4,ENCRYPTED" in head


def connection_reset(exc: BaseException | None) -> bool:
    """A connection reset, aborted or broken under us (not refused, not a timeout)."""
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN)


async def speaks_tls(host: str, port: int, *, limit: float = 0.5) -> bool:
    """Whether ``host:port`` completes a TLS handshake (certificate not checked) within ``limit`` s.

    For telling a TLS-only server from a different service when a plaintext handshake was hung up on.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with anyio.move_on_after(min(limit, budget())):
        try:
            address = (await resolve(host, port))[0]  # our lookup (daemon thread), not the loop's executor
            _, writer = await asyncio.open_connection(address, port, ssl=context, server_hostname=host)
        except (OSError, errors.DnsError):  # ssl.SSLError is an OSError
            return False
        writer.transport.abort()  # no close_notify round trip: only the handshake was wanted
        return True
    return False


def map_os_error(exc: BaseException, endpoint: str | None) -> errors.ProbeError | None:
    """Map a socket-level failure to the error tree, or None when it is not one we recognise."""
    where = endpoint or "the server"
    if isinstance(exc, socket.gaierror):
        return errors.DnsError(f"cannot resolve {where} ({exc.strerror}): check the host name and DNS")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return errors.TlsError(
            f"TLS certificate of {where} not trusted ({exc.verify_message}): check the CA file / hostname"
        )
    if isinstance(exc, ssl.SSLError):
        return errors.TlsError(f"TLS handshake with {where} failed ({exc.reason or exc}): check TLS settings")
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
    ):
        return errors.RefusedError(f"connection refused by {where}: is the server running on that port?")
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return errors.RefusedError(f"connection to {where} was reset: wrong port, TLS mismatch or a proxy?")
    if isinstance(exc, TimeoutError):
        return errors.ProbeTimeoutError(f"{where} did not answer in time: {SILENT_PEER}")
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return errors.RefusedError(f"{where} is unreachable ({exc.strerror}): check routing/firewall")
    if isinstance(exc, OSError) and exc.errno is not None:
        return errors.RefusedError(f"cannot connect to {where}: {exc.strerror}")
    return None


def in_chain(exc: BaseException, kind: type[E], *, start: BaseException | None = None) -> E | None:
    """The first exception of ``kind`` in the chain of causes from ``start`` (default: ``exc`` itself), following
    ``__cause__`` then ``__context__``, or None (a library may chain the error that matters)."""
    seen: set[int] = set()
    current: BaseException | None = exc if start is None else start
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def raised_inside(exc: BaseException, package: str) -> bool:
    """True when the innermost frame of ``exc``'s traceback outside the standard library runs code of
    ``package`` (``"aiokafka"``).

    The frame's module name decides (Cython frames of asyncpg carry it too), so our own
    ``ingest_probe.connectors.redis.probe`` never counts as the ``redis`` package. Standard-library frames are looked
    past: a ``binascii.Error`` from ``base64`` that aiokafka called on a peer's junk is aiokafka's failure.
    """
    frames: list[TracebackType] = []
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    for frame in reversed(frames):
        module = str(frame.tb_frame.f_globals.get("__name__") or "")
        if module.partition(".")[0] in sys.stdlib_module_names:
            continue
        return module == package or module.startswith(package + ".")
    return False


def library_failure(
    exc: BaseException,
    *,
    package: str,
    protocol: str,
    endpoint: str | None,
    secrets: Iterable[Secret | None] = (),
) -> errors.ProtocolError | None:
    """A ``ProtocolError`` for an unexpected exception raised *inside* the client library, else None.

    Client libraries assume they talk to their server: fed junk, they fail with ``TypeError``,
    ``ValueError``, ``AttributeError``… from deep inside their parsers. That is the peer's fault, not a bug
    of ours, so it becomes data for that connector. An exception raised in our own code (the innermost
    frame is ours), a ``ProbeError`` or anything that is not an ``Exception`` (cancellation) is not
    mapped: the caller re-raises it, and a bug fails loudly.
    """
    if not isinstance(exc, Exception) or isinstance(exc, errors.ProbeError):
        return None
    if not raised_inside(exc, package):
        return None
    where = endpoint or "the server"
    detail = one_line(f"{type(exc).__name__}: {exc}", secrets=secrets)
    return errors.ProtocolError(
        f"{where} answered with something {package} could not parse ({detail}): is this really a {protocol} port?"
    )


# ---------------------------------------------------------------------------------- TLS certificate expiry


def record_peer_certificate(rec: Recorder, transport: Any) -> None:
    """Note the expiry of the TLS certificate the peer presented on ``transport`` (an asyncio transport or
    stream writer; a plaintext one, or None, is ignored): ``details.tls_cert_not_after`` (UTC) and
    ``tls_cert_days_left``, the earliest when a probe has several connections (Kafka brokers).

    The certificate is read in DER form (``getpeercert(binary_form=True)``), so it is there whether or not it
    was verified (with verification off, ``getpeercert()`` is empty). Never raises: a certificate that
    cannot be read is noted, not a failure of the probe.
    """
    get_extra_info = getattr(transport, "get_extra_info", None)
    ssl_object = get_extra_info("ssl_object") if get_extra_info is not None else None
    if ssl_object is None:
        return
    try:
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, OSError):  # handshake not done (ssl.SSLError is an OSError)
        return
    if not der:
        return
    try:
        not_after = certificate_not_after(der)
    except ValueError as exc:
        rec.details["tls_cert_error"] = f"cannot read the peer certificate's validity: {exc}"
        return
    if rec.tls_not_after is not None and rec.tls_not_after <= not_after:
        return
    rec.tls_not_after = not_after
    when = dt.datetime.fromtimestamp(not_after, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    rec.details["tls_cert_not_after"] = when
    rec.details["tls_cert_days_left"] = round((not_after - time.time()) / 86400.0, 2)


def cert_expiry(rec: Recorder, warn_days: float, *, now: float | None = None) -> str | None:
    """Why the peer certificate recorded on ``rec`` makes the target degraded, or None: it expired (a
    verified handshake would have failed: verification is off), or expires within ``warn_days``."""
    if rec.tls_not_after is None:
        return None
    left = (rec.tls_not_after - (time.time() if now is None else now)) / 86400.0
    when = rec.details.get("tls_cert_not_after")
    where = f"of {rec.endpoint} " if rec.endpoint else ""
    if left <= 0:
        return (f"the TLS certificate {where}expired {-left:.1f} days ago ({when}) and was accepted only because"
                " certificate verification is off: renew it, and verify it (a CA file, sslmode=verify-full)")
    if left < warn_days:
        return (f"the TLS certificate {where}expires in {left:.1f} days ({when}), within --cert-warn-days"
                f" {warn_days:g}: renew it")
    return None


def _der_item(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The DER item at ``pos`` (before ``end``): (tag, content start, content end)."""
    if pos + 2 > end:
        raise ValueError("truncated DER item")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > end:  # 0: indefinite length, never in DER
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("truncated DER item")
    return tag, pos, pos + length


_SEQUENCE, _UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x30, 0x17, 0x18, 0xA0


def certificate_not_after(der: bytes) -> float:
    """The ``notAfter`` of a DER-encoded X.509 certificate as Unix time: a minimal walk of RFC 5280's
    Certificate → tbsCertificate → [version] serialNumber signature issuer validity; ``ValueError`` when the
    bytes are not such a certificate."""

    def expect(tag: int, pos: int, end: int) -> tuple[int, int]:
        found, start, stop = _der_item(der, pos, end)
        if found != tag:
            raise ValueError(f"expected DER tag 0x{tag:02x}, found 0x{found:02x}")
        return start, stop

    cert_start, cert_end = expect(_SEQUENCE, 0, len(der))
    tbs, tbs_end = expect(_SEQUENCE, cert_start, cert_end)
    pos = tbs
    if _der_item(der, pos, tbs_end)[0] == _VERSION:
        pos = _der_item(der, pos, tbs_end)[2]
    for _ in ("serialNumber", "signature", "issuer"):
        pos = _der_item(der, pos, tbs_end)[2]
    validity, validity_end = expect(_SEQUENCE, pos, tbs_end)
    not_before_end = _der_item(der, validity, validity_end)[2]
    tag, start, stop = _der_item(der, not_before_end, validity_end)
    return _der_time(tag, der[start:stop])


def _der_time(tag: int, raw: bytes) -> float:
    """UTCTime (``YYMMDDHHMMSSZ``, 1950-2049) or GeneralizedTime (``YYYYMMDDHHMMSSZ``) as Unix time."""
    text = raw.decode("ascii", "replace")
    if tag == _UTC_TIME and len(text) == 13:
        digits = text[:12]
    elif tag == _GENERALIZED_TIME and len(text) == 15:
        digits = text[:14]
    else:
        raise ValueError("notAfter is not a DER UTCTime or GeneralizedTime")
    if not (digits.isascii() and digits.isdigit() and text.endswith("Z")):
        raise ValueError("notAfter is not a UTC time in DER form")
    if tag == _UTC_TIME:
        digits = f"{19 if int(digits[:2]) >= 50 else 20}{digits}"
    return dt.datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC).timestamp()
