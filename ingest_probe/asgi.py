"""The HTTP face of a Prober: an ASGI app with /livez, /readyz, /metrics, /probe and /report.

::

    prober = Prober(load_settings(environ=os.environ), timeout=2.0)
    health = create_app(prober)                         # fail_on="down", interval=15.0, max_age=2 * interval
    app = Starlette(routes=[Mount("/health", app=health)], lifespan=health.lifespan)

``ingest-probe serve`` runs the same app under uvicorn. Routes (GET or HEAD; any other method is 405, any
other path 404):

* ``/livez`` — 200 while the event loop answers; never touches a backend.
* ``/readyz[?only=SELECTOR]`` — 200 when the selected targets pass ``fail_on`` (``report.policy``), else
  503; JSON with one entry per target: status, error_kind, error, the result's age and its check number.
* ``/metrics`` — the Prometheus textfile of the latest results (the same renderer as ``report --format
  prometheus``, so the series cannot drift apart), plus the process's own metrics (prometheus_client).
* ``/probe?target=NAME`` — blackbox style: an on-demand check of one *configured* target (a name, never a
  URL: nothing from the query string is ever contacted), its deadline the scrape timeout Prometheus sends
  (``X-Prometheus-Scrape-Timeout-Seconds``) less a margin; 400 for an unknown name, 429 beyond a token
  bucket of ``probe_rate`` checks per second.
* A request head (path, query, headers) over ``SERVE_MAX_REQUEST_HEAD`` bytes is 431 on every route.
* ``/report[?only=SELECTOR]`` — the JSON report of the latest results (redacted as every report).

Results come from a background check every ``interval`` seconds (warm clients, ``lifespan``) and, when the
latest result of a target is older than ``max_age``, from an on-demand check; concurrent requests share
the check in flight for each target (the Prober's single-flight), so the backends see one connection per
target whatever the request rate. Nothing a request sends is echoed or logged unless it names a configured
target: no response, header or log line carries a secret.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ingest_probe.connectors._log_secrets import scrub
from ingest_probe.connectors._net import one_line
from ingest_probe.defaults import PROBE_RATE, SCRAPE_MARGIN, SERVE_INTERVAL, SERVE_MAX_REQUEST_HEAD
from ingest_probe.errors import UsageError
from ingest_probe.report import policy
from ingest_probe.report.builder import build_report
from ingest_probe.results import ProbeResult, Status
from ingest_probe.settings.service import load_settings
from ingest_probe.settings.targets import matches

if TYPE_CHECKING:
    from ingest_probe.prober import Prober
    from ingest_probe.report.model import Report

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Log = Callable[[str], None]

EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_METHODS = ("GET", "HEAD")


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: str, content_type: str = _TEXT, headers: Sequence[tuple[str, str]] = ()):
        self.status, self.body = status, body.encode()
        self.headers = [("content-type", content_type), ("cache-control", "no-store"), *headers]


def _text(status: int, line: str, headers: Sequence[tuple[str, str]] = ()) -> _Response:
    return _Response(status, line + "\n", _TEXT, headers)


def _json(status: int, document: Any) -> _Response:
    """Compact, sorted, ASCII JSON on one line: the C encoder (with ``indent`` it is pure Python, 4x slower)."""
    return _Response(status, json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n", _JSON)


class _TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take()`` spends one if there is one."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait(self) -> int:
        """Whole seconds until a token is there (``Retry-After``)."""
        return max(1, math.ceil((1.0 - self.tokens) / self.rate))


class HealthApp:
    """The ASGI app around a Prober (see the module docstring); ``create_app`` builds one.

    ``lifespan()`` (also usable as Starlette's/FastAPI's ``lifespan=``, and run for the ASGI ``lifespan``
    protocol) enters the prober unless it is running already, runs the background checks, and on the way
    out stops them and closes what it entered. ``use(prober)`` swaps in another running prober (a reload).
    """

    def __init__(
        self,
        prober: Prober,
        *,
        fail_on: str = "down",
        interval: float = SERVE_INTERVAL,
        max_age: float | None = None,
        probe_rate: float = PROBE_RATE,
        scrape_margin: float = SCRAPE_MARGIN,
        process_metrics: bool = True,
        access_log: Log | None = None,
        log: Log | None = None,
    ) -> None:
        policy.ready((), fail_on)  # a bad policy fails here, not on the first request
        if not (interval > 0 and probe_rate > 0 and (max_age is None or max_age >= 0)):
            raise UsageError("interval and probe_rate must be positive, max_age not negative")
        self._prober = prober
        self.fail_on = fail_on
        self.interval = interval
        self.max_age = 2 * interval if max_age is None else max_age
        self.scrape_margin = scrape_margin
        self._bucket = _TokenBucket(probe_rate, 2 * probe_rate)
        self._access_log = access_log
        self._log = log
        self._wake: anyio.Event | None = None  # made in the loop, by lifespan()
        self._statuses: dict[str, Status] = {}
        self._process = _process_registry() if process_metrics else None
        self._routes: dict[str, Callable[[Prober, dict[str, list[str]], Scope], Awaitable[_Response]]] = {
            "/livez": self._livez, "/readyz": self._readyz, "/metrics": self._metrics, "/probe": self._probe,
            "/report": self._report,
        }  # fmt: skip

    @property
    def prober(self) -> Prober:
        return self._prober

    def recheck(self) -> None:
        """Start the next background check now (the targets were just swapped: ``Prober.update``)."""
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------------------------------ lifespan

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Enter the prober (unless running), check in the background every ``interval``; undo on exit.
        ``app`` is ignored (Starlette passes itself)."""
        async with contextlib.AsyncExitStack() as stack:
            if not self._prober.running:
                await stack.enter_async_context(self._prober)
            tg = await stack.enter_async_context(anyio.create_task_group())
            tg.start_soon(self._refresh_forever, name="ingest-probe-refresh")
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    async def _refresh_forever(self) -> None:
        while True:
            wake = self._wake = anyio.Event()  # recheck() during the check below: the next one starts at once
            prober = self._prober
            try:
                await prober.check()
            except anyio.ClosedResourceError:
                return  # closed by its owner: nothing left to check
            except Exception as exc:  # noqa: BLE001 -- a failure of the check machinery: said, and tried again
                self._say(f"error: background check failed: {_describe(exc)}")
            else:
                self._log_transitions(prober)
            with anyio.move_on_after(self.interval):
                await wake.wait()

    def _log_transitions(self, prober: Prober) -> None:
        for seen in prober.latest():
            r = seen.result
            before = self._statuses.get(r.name)
            if before is not r.status:
                why = f" [{r.error_kind}] {r.error}" if r.error_kind else ""
                self._say(f"{r.name} {before.value if before else None} -> {r.status.value}{why}")
                self._statuses[r.name] = r.status

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    async def _lifespan_protocol(self, receive: Receive, send: Send) -> None:
        """ASGI lifespan: startup enters ``lifespan()``, shutdown leaves it."""
        await receive()  # lifespan.startup
        started = False
        try:
            async with self.lifespan():
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except Exception as exc:  # noqa: BLE001 -- reported to the server, which decides
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failed, "message": _describe(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    # -------------------------------------------------------------------------------------------- HTTP

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan_protocol(receive, send)
            return
        if scope["type"] != "http":  # a websocket routed here by a host app
            await send({"type": "websocket.close", "code": 1003})
            return
        started = time.monotonic()
        response, shown = await self._respond(scope)
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [(k.encode(), v.encode()) for k, v in
                                [*response.headers, ("content-length", str(len(response.body)))]]})
        await send({"type": "http.response.body", "body": b"" if head else response.body})
        if self._access_log is not None:
            client = scope.get("client") or ("-", 0)
            method = scope["method"] if scope["method"] in (*_METHODS, "POST", "PUT", "DELETE") else "(other)"
            self._access_log(f'{client[0]} "{method} {shown}" {response.status} '
                             f"{(time.monotonic() - started) * 1000:.1f} ms")

    async def _respond(self, scope: Scope) -> tuple[_Response, str]:
        """The response, and the request line as the access log may show it (only what we recognise)."""
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b"")) + sum(
            len(name) + len(value) + 4 for name, value in scope.get("headers") or ())
        if head > SERVE_MAX_REQUEST_HEAD:  # the server refuses a longer one only while it is still arriving
            return _text(431, "request head too large"), "(request head too large)"
        path = _route_path(scope)
        route = self._routes.get(path)
        if route is None:
            return _text(404, "not found: try /livez, /readyz, /metrics, /probe?target=NAME or /report"), "(other path)"
        if scope["method"] not in _METHODS:
            return _text(405, "method not allowed: GET or HEAD", [("allow", "GET, HEAD")]), path
        try:
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True,
                                          max_num_fields=16)  # fmt: skip
        except ValueError:
            return _text(400, "too many query parameters"), path
        shown = path + _shown_query(self._prober, query)
        try:
            return await route(self._prober, query, scope), shown
        except anyio.ClosedResourceError:
            return _text(503, "shutting down"), shown
        except Exception as exc:  # noqa: BLE001 -- a bug: one line in the log, a 500 without details
            self._say(f"error: internal error answering {path}: {_describe(exc)}")
            return _text(500, "internal error (see the server's log)"), shown

    async def _livez(self, prober: Prober, query: dict[str, list[str]], scope: Scope) -> _Response:
        return _text(200, "ok")

    async def _readyz(self, prober: Prober, query: dict[str, list[str]], scope: Scope) -> _Response:
        only = _selectors(query)
        try:
            await prober.check(only=only, max_age=self.max_age)
        except UsageError:
            return _no_match(prober)
        observed = prober.latest(only=only)
        now = time.monotonic()
        results = [o.result for o in observed]
        ready = policy.ready(results, self.fail_on)
        return _json(200 if ready else 503, {
            "ready": ready,
            "fail_on": self.fail_on,
            "targets": [{"name": r.name, "kind": r.kind, "labels": dict(r.labels), "status": r.status.value,
                         "error_kind": r.error_kind, "error": r.error, "age_s": round(o.age(now), 3),
                         "checked_at": _stamp(o.ended_at), "check": o.run.check}
                        for o, r in zip(observed, results, strict=True)],
        })  # fmt: skip

    async def _metrics(self, prober: Prober, query: dict[str, list[str]], scope: Scope) -> _Response:
        from ingest_probe.renderers.prometheus import render

        text = render(await prober.report(max_age=self.max_age))
        if self._process is not None:
            text += self._process()
        return _Response(200, text, EXPOSITION)

    async def _probe(self, prober: Prober, query: dict[str, list[str]], scope: Scope) -> _Response:
        from ingest_probe.renderers.prometheus import render

        names = query.get("target", [])
        configured = [t for t in prober.targets if t.configured]
        target = next((t for t in configured if names == [t.name]), None)
        if target is None:
            known = ", ".join(t.name for t in configured[:10]) or "none"
            return _text(400, f"?target= must be the name of one configured target ({known}), never a URL")
        if not self._bucket.take():
            return _text(429, "too many /probe requests", [("retry-after", str(self._bucket.wait()))])
        budget = self._budget(scope)
        with anyio.move_on_after(budget + 0.25):  # a joined check started with a longer deadline
            await prober.check(only=[target.name], ceiling=budget)
            return _Response(200, render(await prober.report(only=[target.name], max_age=math.inf)), EXPOSITION)
        late = ProbeResult(name=target.name, kind=target.kind, labels=dict(target.labels), configured=True,
                           status=Status.DOWN, error_kind="timeout", retryable=True, deadline_s=budget,
                           error=f"no result within the scrape timeout ({budget:.2f} s)")  # fmt: skip
        report = build_report(prober.settings or load_settings(), targets=[target], results=[late])
        return _Response(200, render(report), EXPOSITION)

    def _budget(self, scope: Scope) -> float:
        """The on-demand check's deadline: the scrape timeout less the margin (half of it when that is too
        short), never above the prober's timeout."""
        header = dict(scope.get("headers") or ()).get(b"x-prometheus-scrape-timeout-seconds", b"")
        try:
            scrape = float(header.decode("latin-1"))
        except ValueError:
            return self._prober.timeout
        if not (math.isfinite(scrape) and scrape > 0):
            return self._prober.timeout
        margin = self.scrape_margin if scrape > 2 * self.scrape_margin else scrape / 2
        return min(self._prober.timeout, scrape - margin)

    async def _report(self, prober: Prober, query: dict[str, list[str]], scope: Scope) -> _Response:
        from ingest_probe.renderers.json import render

        try:
            report: Report = await prober.report(only=_selectors(query), max_age=self.max_age)
        except UsageError:
            return _no_match(prober)
        return _Response(200, render(report), _JSON)


def create_app(prober: Prober, **options: Any) -> HealthApp:
    """The ASGI app around ``prober`` (see ``HealthApp`` for the options: fail_on, interval, max_age,
    probe_rate, scrape_margin, process_metrics, access_log, log)."""
    return HealthApp(prober, **options)


def _route_path(scope: Scope) -> str:
    """The path below where the app is mounted (Starlette keeps the full path and sets ``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("/", ""):
        return path[len(root):] or "/"
    return path


def _selectors(query: dict[str, list[str]]) -> list[str]:
    return [s for value in query.get("only", ()) for s in value.split(",") if s]


def _shown_query(prober: Prober, query: dict[str, list[str]]) -> str:
    """The query as the access log shows it: target names and selectors only when they name a target."""
    shown = []
    for key in ("target", "only"):
        for value in query.get(key, ()):
            known = any(t.name == value if key == "target" else matches(t, value) for t in prober.targets)
            shown.append(f"{key}={value if known else '(unknown)'}")
    if set(query) - {"target", "only"}:
        shown.append("(other parameters)")
    return "?" + "&".join(shown) if shown else ""


def _no_match(prober: Prober) -> _Response:
    known = ", ".join(t.name for t in prober.targets[:10])
    return _text(400, f"?only= matches no target name or kind (targets: {known})")


def _stamp(when: dt.datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _describe(exc: BaseException) -> str:
    return scrub(one_line(f"{type(exc).__name__}: {exc}"))


def _process_registry() -> Callable[[], str]:
    """The process's own metrics (CPU, memory, fds, start time) from prometheus_client, as exposition text."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    return lambda: generate_latest(registry).decode()
