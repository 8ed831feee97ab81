"""The ASGI app (ingest_probe.asgi) called directly with ASGI messages over fake probes: routes, statuses,
the cache and on-demand checks, /probe's deadline, rate limit and refusals, lifespan, swaps, the access log."""

from __future__ import annotations

import json
import math
import time

import anyio
import pytest
from fakes import FakeProbe, fake_prober, hang, scripted

from ingest_probe.asgi import create_app
from ingest_probe.renderers.prometheus import render


def trio(redis=None, **kw):
    """timescale and redis configured, kafka not."""
    return [FakeProbe("timescale"), FakeProbe("redis", redis, **kw), FakeProbe("kafka", configured=False)]


async def call(app, path, *, method="GET", query="", headers=(), root_path=""):
    """One request through the app: (status, headers, body text)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": root_path + path, "raw_path": (root_path + path).encode(), "root_path": root_path,
             "query_string": query.encode(), "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 9464)}  # fmt: skip
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start, body = sent
    assert start["type"] == "http.response.start"
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert body == {"type": "http.response.body", "body": body["body"]}
    return start["status"], headers, body["body"].decode()


async def test_livez_answers_without_touching_a_backend():
    """/livez is 200 'ok' while every probe hangs; no probe is called."""
    probes = trio(hang)
    async with fake_prober(probes, timeout=30.0) as prober:
        status, headers, body = await call(create_app(prober, process_metrics=False), "/livez")
    assert (status, body) == (200, "ok\n")
    assert headers["cache-control"] == "no-store"
    assert [p.checks for p in probes] == [0, 0, 0]


async def test_readyz_follows_fail_on_and_lists_every_target():
    """/readyz: degraded passes fail_on=down but not fail_on=degraded; down fails both (503); one entry per
    target with status, error_kind, error and the result's age."""
    probes = trio(scripted("degraded", "degraded", "down"))
    async with fake_prober(probes, timeout=1.0) as prober:
        lenient = create_app(prober, max_age=60, process_metrics=False)
        strict = create_app(prober, fail_on="degraded", max_age=60, process_metrics=False)
        status, headers, body = await call(lenient, "/readyz")
        assert headers["content-type"] == "application/json"
        doc = json.loads(body)
        assert (status, doc["ready"], doc["fail_on"]) == (200, True, "down")
        assert [(t["name"], t["status"], t["error_kind"]) for t in doc["targets"]] == [
            ("timescale", "ok", None), ("redis", "degraded", "missing_topic"), ("kafka", "skipped", None)]
        assert all(0 <= t["age_s"] < 1 for t in doc["targets"])
        assert doc["targets"][1]["checked_at"].endswith("Z")
        assert (await call(strict, "/readyz"))[0] == 503
        await prober.check()
        await prober.check()  # redis down now
        status, _, body = await call(lenient, "/readyz")
        assert (status, json.loads(body)["targets"][1]["error_kind"]) == (503, "refused")


async def test_readyz_only_narrows_and_a_selector_matching_nothing_is_400_without_echo():
    """?only= selects targets (names, kinds, globs, comma lists); one that matches nothing is a 400 naming
    the targets, never echoing the selector."""
    probes = trio(scripted("down"))
    async with fake_prober(probes, timeout=1.0) as prober:
        app = create_app(prober, process_metrics=False)
        status, _, body = await call(app, "/readyz", query="only=times*")
        assert (status, [t["name"] for t in json.loads(body)["targets"]]) == (200, ["timescale"])
        status, _, body = await call(app, "/readyz", query="only=kafka,timescale")
        assert (status, [t["name"] for t in json.loads(body)["targets"]]) == (200, ["timescale", "kafka"])
        assert (await call(app, "/readyz", query="only=redis"))[0] == 503
        status, _, body = await call(app, "/readyz", query="only=SELECTOR-9f1")
    assert status == 400
    assert "SELECTOR-9f1" not in body
    assert "timescale, redis, kafka" in body


async def test_results_come_from_the_cache_until_older_than_max_age():
    """Within max_age a request is answered from the latest results (no probe call); older ones are checked
    on demand, once for many requests."""
    probes = trio()
    async with fake_prober(probes, timeout=1.0) as prober:
        app = create_app(prober, max_age=0.2, process_metrics=False)
        for path in ("/readyz", "/metrics", "/report", "/readyz"):
            assert (await call(app, path))[0] == 200
        assert [p.checks for p in probes[:2]] == [1, 1]
        await anyio.sleep(0.25)
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call, app, "/readyz")
        assert [p.checks for p in probes[:2]] == [2, 2]


async def test_metrics_is_the_textfile_renderer_plus_process_metrics():
    """/metrics = the Prometheus renderer over the latest results (the textfile's series, byte for byte), then
    prometheus_client's process metrics."""
    async with fake_prober(trio(), timeout=1.0) as prober:
        app = create_app(prober)
        status, headers, body = await call(app, "/metrics")
        textfile = render(await prober.report(max_age=math.inf))
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body.startswith(textfile)
    assert 'ingest_probe_up{target="redis",connector="redis"} 1' in textfile
    assert "\nprocess_resident_memory_bytes " in body[len(textfile):]


async def test_probe_refuses_anything_but_one_configured_target_name():
    """/probe?target= with an unknown name, an unconfigured target, a URL, two targets or none: 400, nothing
    contacted, the value never echoed."""
    probes = trio()
    async with fake_prober(probes, timeout=1.0) as prober:
        app = create_app(prober, process_metrics=False)
        for query in ("target=nope", "target=kafka", "target=redis%3A%2F%2Fu%3Apw-9f1%40evil%3A6379",
                      "target=redis&target=timescale", "", "target=red*"):
            status, _, body = await call(app, "/probe", query=query)
            assert status == 400, query
            assert "pw-9f1" not in body
            assert "(timescale, redis)" in body
    assert [p.checks for p in probes] == [0, 0, 0]


async def test_probe_checks_now_within_the_scrape_timeout_less_a_margin():
    """/probe?target=NAME checks that target now (not from the cache), with a deadline of the
    X-Prometheus-Scrape-Timeout-Seconds header less 0.5 s (half of a short one), capped by the timeout."""
    probes = [FakeProbe("timescale"), FakeProbe("redis", hang)]
    async with fake_prober(probes, timeout=30.0, jitter=0.0) as prober:
        app = create_app(prober, process_metrics=False)
        for header, deadline in (("1.5", 1.0), ("0.4", 0.2)):
            started = time.monotonic()
            status, headers, body = await call(app, "/probe", query="target=redis",
                                               headers=[("X-Prometheus-Scrape-Timeout-Seconds", header)])
            assert time.monotonic() - started < deadline + 0.5
            assert (status, headers["content-type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
            assert 'ingest_probe_up{target="redis",connector="redis"} 0' in body
            assert "timescale" not in body
            [seen] = prober.latest(only=["redis"])
            assert (seen.result.error_kind, seen.result.deadline_s) == ("timeout", deadline)
        probes[1].behaviour = None
        await call(app, "/probe", query="target=redis", headers=[("X-Prometheus-Scrape-Timeout-Seconds", "1e999")])
        assert prober.latest(only=["redis"])[0].result.deadline_s == 30.0  # not a finite number: the timeout
    assert [p.checks for p in probes] == [0, 3]


async def test_probe_joining_a_slower_check_answers_at_the_scrape_deadline():
    """A /probe that joins a check already in flight with a longer deadline still answers by the scrape
    deadline: target down, error_kind timeout."""
    probes = [FakeProbe("redis", hang)]
    async with fake_prober(probes, timeout=30.0) as prober, anyio.create_task_group() as tg:
        tg.start_soon(prober.check)  # the background check, 30 s deadline
        await anyio.wait_all_tasks_blocked()
        started = time.monotonic()
        status, _, body = await call(create_app(prober, process_metrics=False), "/probe", query="target=redis",
                                     headers=[("X-Prometheus-Scrape-Timeout-Seconds", "1")])
        assert time.monotonic() - started < 1.5
        tg.cancel_scope.cancel()
    assert status == 200
    assert 'ingest_probe_up{target="redis",connector="redis"} 0' in body
    assert probes[0].checks == 1


async def test_probe_rate_is_bounded_by_a_token_bucket():
    """Beyond probe_rate checks a second (bursts of twice that) /probe answers 429 with Retry-After."""
    probes = trio()
    async with fake_prober(probes, timeout=1.0) as prober:
        app = create_app(prober, probe_rate=1.0, process_metrics=False)
        statuses = [(await call(app, "/probe", query="target=redis"))[:2] for _ in range(3)]
    assert [s for s, _ in statuses] == [200, 200, 429]
    assert statuses[2][1]["retry-after"] == "1"
    assert probes[1].checks == 2


async def test_other_paths_are_404_other_methods_405_and_head_has_no_body():
    """Unknown path: 404; POST/PUT/DELETE/OPTIONS: 405 with Allow; HEAD: GET's headers, empty body."""
    async with fake_prober(trio(), timeout=1.0) as prober:
        app = create_app(prober, process_metrics=False)
        assert (await call(app, "/"))[0] == 404
        assert (await call(app, "/readyz/x"))[0] == 404
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            status, headers, _ = await call(app, "/readyz", method=method)
            assert (status, headers["allow"]) == (405, "GET, HEAD")
        status, headers, body = await call(app, "/livez", method="HEAD")
    assert (status, headers["content-length"], body) == (200, "3", "")


async def test_mounted_below_a_root_path():
    """Mounted at /health (Starlette keeps the full path and sets root_path), the routes answer below it."""
    async with fake_prober(trio(), timeout=1.0) as prober:
        app = create_app(prober, process_metrics=False)
        assert (await call(app, "/livez", root_path="/health"))[0] == 200
        assert (await call(app, "/readyz", root_path="/health"))[0] == 200
        assert (await call(app, "x", root_path="/health"))[0] == 404


async def test_lifespan_checks_in_the_background_and_closes_what_it_opened():
    """lifespan(): enters a prober that is not running, checks every `interval` without any request, and
    closes it on exit; a prober the caller runs is left open."""
    probes = trio()
    prober = fake_prober(probes, timeout=1.0)
    app = create_app(prober, interval=0.05, process_metrics=False)
    async with app.lifespan():
        assert prober.running
        await anyio.sleep(0.4)
    assert probes[1].checks >= 4
    assert all(p.closed for p in probes[:2])
    assert not prober.running

    probes = trio()
    async with fake_prober(probes, timeout=1.0) as prober:
        async with create_app(prober, interval=0.05, process_metrics=False).lifespan():
            await anyio.sleep(0.1)
        assert prober.running
        assert not probes[1].closed


async def test_asgi_lifespan_protocol():
    """Run under a server's ASGI lifespan protocol: startup.complete once checking, shutdown.complete after
    closing the prober."""
    probes = trio()
    prober = fake_prober(probes, timeout=1.0)
    app = create_app(prober, interval=0.05, process_metrics=False)
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive():
        if len(sent) == 1:
            await anyio.sleep(0.2)
        return inbox.pop(0)

    async def send(message):
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert probes[1].checks >= 2
    assert probes[1].closed


async def test_recheck_starts_the_background_check_at_once():
    """recheck() during the lifespan (after a reload swapped the targets): the next background check runs
    now, not an interval later."""
    probes = trio()
    async with fake_prober(probes, timeout=1.0) as prober:
        app = create_app(prober, interval=60, process_metrics=False)
        async with app.lifespan():
            await anyio.sleep(0.1)
            assert probes[1].checks == 1
            app.recheck()
            await anyio.sleep(0.1)
            assert probes[1].checks == 2


async def test_access_log_shows_routes_and_known_names_only():
    """One access-log line per request: client, method, route, status, time; a query value or path that
    names no configured target is never written."""
    lines = []
    async with fake_prober(trio(), timeout=1.0) as prober:
        app = create_app(prober, access_log=lines.append, process_metrics=False)
        await call(app, "/probe", query="target=redis")
        await call(app, "/probe", query="target=postgres://u:LOGGED-9f1@db/x")
        await call(app, "/readyz", query="only=red*&token=LOGGED-9f1")
        await call(app, "/LOGGED-9f1")
        await call(app, "/livez", method="LOGGED-9f1")
    assert all("LOGGED-9f1" not in line for line in lines), lines
    assert [line.rsplit(" ", 2)[0] for line in lines] == [
        '127.0.0.1 "GET /probe?target=redis" 200', '127.0.0.1 "GET /probe?target=(unknown)" 400',
        '127.0.0.1 "GET /readyz?only=red*&(other parameters)" 200', '127.0.0.1 "GET (other path)" 404',
        '127.0.0.1 "(other) /livez" 405']


async def test_a_bug_answering_is_a_500_without_details():
    """An exception in the machinery (not a probe's: those are results) is a 500 with no details, and one
    log line."""
    logged = []
    async with fake_prober(trio(), timeout=1.0) as prober:
        app = create_app(prober, log=logged.append, process_metrics=False)

        async def broken(**kwargs):
            raise KeyError("detail-9f1")

        prober.report = broken
        status, _, body = await call(app, "/report")
    assert (status, body) == (500, "internal error (see the server's log)\n")
    assert len(logged) == 1
    assert "KeyError" in logged[0]


def test_bad_options_fail_at_construction():
    """An unknown fail_on or a non-positive interval is refused when the app is built."""
    from ingest_probe import Prober
    from ingest_probe.errors import UsageError

    prober = Prober([])
    with pytest.raises(UsageError, match="fail-on"):
        create_app(prober, fail_on="sometimes")
    with pytest.raises(UsageError):
        create_app(prober, interval=0)
