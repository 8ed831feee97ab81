"""What a connector kind is (the ``Connector`` protocol, its ``ConnectorSettings``, the ``Probe`` it builds) and
what every built-in probe shares: error tables (``Rule``, ``map_error``) and the warm-client lifecycle.

A kind owns its keys, reads its settings from the configuration, describes them for the manifest and
builds a probe for one target. The registry (``connectors.registry``) lists the kinds; nothing else in
ingest-probe names them. Imported when a probe runs (the protocols are only named elsewhere).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio

from ingest_probe import errors
from ingest_probe.connectors._log_secrets import HeldSecrets
from ingest_probe.connectors._net import library_failure, one_line

if TYPE_CHECKING:
    from ingest_probe.config.keys import KeySet
    from ingest_probe.config.reader import Reader
    from ingest_probe.results import Recorder
    from ingest_probe.secret import Secret


class ConnectorSettings(Protocol):
    """One target's settings (frozen): whether it is configured, where it points, what secrets it holds."""

    @property
    def configured(self) -> bool: ...

    @property
    def endpoint(self) -> str | None:
        """``host:port`` (or the like) for reports; never a credential."""

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret these settings hold, to scrub from messages and logs."""


class Probe(Protocol):
    """A check of one target. ``check`` may keep a warm client between calls; ``aclose`` releases it.

    ``check`` takes no timeout: the caller (the supervisor) owns the deadline through a cancel scope, and
    the probe reads ``anyio.current_effective_deadline()`` to set its library's own timeouts a little
    under it. Expected failures are raised as ``errors.ProbeError`` subclasses; anything else is a bug.
    ``phase_names`` are the steps it times (``Recorder.phase``), reported as ``null`` until reached.
    """

    phase_names: tuple[str, ...]

    async def check(self, rec: Recorder) -> None: ...

    async def aclose(self) -> None: ...


class Connector(Protocol):
    """One connector kind, registered once (``registry.register_connector``) and shared by its targets."""

    #: The kind's name: ``timescale``, ``redis``, ``kafka``, or whatever a plugin registers.
    kind: str
    #: The configuration keys it owns; the registry of all keys is the general ones plus every kind's.
    keys: KeySet
    #: The key a URL of this kind is read from (``REDIS_URL``): a target built from a URL sets it alone.
    url_key: str

    def from_config(self, r: Reader) -> Any:
        """This kind's settings (a ``ConnectorSettings``) from the configuration, configured or not."""

    def manifest(self, settings: Any) -> dict[str, Any]:
        """What the target is configured to be, from allow-listed parts only; ``summary`` is one line."""

    def drivers(self, settings: Any) -> tuple[str, ...]:
        """Client-library modules a probe of these settings imports (loaded before a loop starts)."""

    def probe(self, settings: Any) -> Probe:
        """A fresh probe for one target (imports the probe module, never the client library)."""


# ------------------------------------------------------------------------------------------ error tables

P = TypeVar("P")


class Rule(Generic[P]):
    """One row of a client library's error table: an exception of ``catch`` for which ``when`` holds (a match
    on the library's message text is always such a predicate, in the table) becomes ``make``'s ProbeError.

    ``make`` and ``when`` get the probe (its settings, endpoint and state), the exception and the phase the
    probe was in (``resolve``, ``connect``, ``query`` or None).
    """

    __slots__ = ("catch", "make", "name", "when")

    def __init__(
        self,
        name: str,
        catch: type[BaseException] | tuple[type[BaseException], ...],
        make: Callable[[P, Any, str | None], errors.ProbeError],
        *,
        when: Callable[[P, Any, str | None], bool] | None = None,
    ) -> None:
        self.name, self.catch, self.make, self.when = name, catch, make, when

    def matches(self, probe: P, exc: BaseException, phase: str | None) -> bool:
        return isinstance(exc, self.catch) and (self.when is None or self.when(probe, exc, phase))


class _HasSettings(Protocol):
    @property
    def settings(self) -> ConnectorSettings: ...


def text(probe: _HasSettings, exc: BaseException) -> str:
    """A library's message as rules read and show it: one line, every secret of the probe blanked."""
    return one_line(exc, secrets=probe.settings.secrets())


def says(*needles: str) -> Callable[[Any, Any, str | None], bool]:
    """A ``when`` predicate for a rule: the library's message (as ``text`` has it) holds one of ``needles``."""
    return lambda probe, exc, phase: any(needle in text(probe, exc) for needle in needles)


def map_error(table: Sequence[Rule[P]], probe: P, exc: BaseException, phase: str | None) -> errors.ProbeError | None:
    """The first matching rule's error (tables list the most specific first), else None: not a known failure."""
    for rule in table:
        if rule.matches(probe, exc, phase):
            return rule.make(probe, exc, phase)
    return None


def rule_for(table: Sequence[Rule[P]], probe: P, exc: BaseException, phase: str | None) -> str | None:
    """The name of the rule that maps ``exc`` (tests pin each rule by it), else None."""
    return next((rule.name for rule in table if rule.matches(probe, exc, phase)), None)


# ------------------------------------------------------------------------------ the warm-client lifecycle

S = TypeVar("S", bound=ConnectorSettings)
C = TypeVar("C")


class WarmClient(Generic[S, C]):
    """The one lifecycle of a probe that keeps a client warm between checks.

    * A warm client is reused unless it went stale while idle (``_stale``: the server closed it); a fresh one
      is opened otherwise (``_open``: the resolve and connect phases), then queried (``_query``).
      ``details.reused_connection`` says which.
    * A reused client whose connection turns out lost before any reply (``_lost``: a restart the loop has not
      seen yet, a middlebox's idle-timeout reset) is replaced once, within the same deadline
      (``details.reconnected``).
    * Any failure or cancellation drops the client (``_discard``: abort, or close within a share of the time
      left); the next check starts afresh.
    * Failures are mapped at one boundary (``mapped``), by the kind's error table (``_map``); what no rule
      maps and the library raised from its own code is the peer's junk (``library_failure``), anything else
      is a bug and propagates.
    * ``aclose`` closes politely within the time its *owner* gives (the owner shields it; a probe never
      does), then aborts whatever is left.

    Concurrent ``check()`` calls on one probe take turns (one connection per probe).
    """

    phase_names: tuple[str, ...] = ("resolve", "connect", "query")
    #: The client library's top-level package, and the protocol it speaks (for ``library_failure``).
    library = ""
    protocol = ""

    def __init__(self, settings: S) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint
        self._client: C | None = None
        #: The secrets, scrubbed from the client libraries' log records while a client may use them.
        self._secrets = HeldSecrets(settings.secrets())
        self._lock = anyio.Lock()

    async def check(self, rec: Recorder) -> None:
        self._secrets.hold()
        async with self._lock, self.mapped(lambda: rec.current_phase):
            await self._cycle(rec)

    async def aclose(self) -> None:
        """Close the warm client politely within the caller's deadline (the owner shields it), then abort what
        is left; idempotent, never raises on a dead server."""
        client = self._client
        if client is not None:
            try:
                await self._close(client)
            finally:
                self._abort(client)
                if self._client is client:
                    self._client = None
        self._secrets.release()

    @contextlib.asynccontextmanager
    async def mapped(self, phase: Callable[[], str | None]) -> AsyncIterator[None]:
        """The boundary: a library's exception leaves as a ``ProbeError`` (``raise ... from``), or as itself
        when it is not a failure of the server (a bug)."""
        try:
            yield
        except errors.ProbeError:
            raise
        except Exception as exc:
            mapped = await self._map(exc, phase())
            if mapped is None:
                mapped = library_failure(exc, package=self.library, protocol=self.protocol,
                                         endpoint=self._where(), secrets=self.settings.secrets())
            if mapped is None:
                raise  # raised in our code, not by the library on a bad answer: a bug, let it fail loudly
            raise mapped from exc

    async def _cycle(self, rec: Recorder) -> None:
        try:
            client = self._client
            if client is not None and await self._stale(client):
                await self._drop()
                client = None
            if client is not None:
                self._reused(rec, True)
                try:
                    await self._query(client, rec)
                    return
                except Exception as exc:
                    if isinstance(exc, errors.ProbeError) or not self._lost(exc):
                        raise
                # Lost before any reply: one fresh connection within the same deadline.
                await self._drop()
                rec.details["reconnected"] = True
            self._reused(rec, False)
            await self._query(await self._open(rec), rec)
        except BaseException:
            await self._drop()  # failed or cancelled: the client's state is unknown, the next check starts afresh
            raise

    async def _drop(self) -> None:
        """Forget the client after a failure (``_discard``); cancelled meanwhile, it stays for ``aclose``."""
        client = self._client
        if client is None:
            return
        await self._discard(client)
        if self._client is client:
            self._client = None

    def _reused(self, rec: Recorder, reused: bool) -> None:
        rec.details["reused_connection"] = reused

    def _where(self) -> str | None:
        """How messages name the server."""
        return self.endpoint

    # ----------------------------------------------------------------------------------- per kind

    async def _open(self, rec: Recorder) -> C:
        """A fresh client (resolve and connect phases), set as ``self._client`` before its first byte."""
        raise NotImplementedError

    async def _query(self, client: C, rec: Recorder) -> None:
        """The check on an open client (the query phase); facts go to ``rec.details``."""
        raise NotImplementedError

    async def _stale(self, client: C) -> bool:
        """Whether a warm client went away while idle (seen without sending anything)."""
        return False

    def _lost(self, exc: Exception) -> bool:
        """Whether a reused client failed because its connection is gone before any reply."""
        return False

    async def _discard(self, client: C) -> None:
        """Get rid of a client after a failure: abort it, or close it within a share of the time left."""
        raise NotImplementedError

    async def _close(self, client: C) -> None:
        """Close a client politely within the caller's deadline."""
        await self._discard(client)

    def _abort(self, client: C) -> None:
        """Abort whatever a close left open, at once (no await)."""

    async def _map(self, exc: Exception, phase: str | None) -> errors.ProbeError | None:
        """``exc`` by the kind's error table, else None."""
        return None
