"""The README's two embedding examples, taken from README.md as written and run against a real Redis: the
health app mounted in Starlette under uvicorn, and aiohttp using a Prober directly, both over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from live.kafka import wait_until

pytestmark = pytest.mark.live

README = Path(__file__).resolve().parents[1] / "README.md"
NAME = "ingest-probe-embedded"


def readme_example(marker: str) -> str:
    """The README's ```python block that contains ``marker`` (exactly one)."""
    [block] = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if marker in b]
    return block


def run_example(marker: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(readme_example(marker), f"README.md ({marker})", "exec"), namespace)  # noqa: S102 -- our README
    return namespace


@pytest.fixture
def redis_env(monkeypatch, redis_server):
    """The process environment the examples read: only our Redis (tagged ``NAME``) is configured."""
    for key in list(os.environ):
        if key.startswith(("TIMESCALE", "PG", "REDIS", "KAFKA", "DATABASE_URL", "CACHE_HOST")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{redis_server.port}/0")
    monkeypatch.setenv("REDIS_CLIENT_NAME", NAME)
    return redis_server


def http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def test_starlette_example_mounts_the_health_app(redis_env):
    """The Starlette example under uvicorn: /health/livez, /health/readyz (redis ok), /health/metrics answer;
    the lifespan opened one Redis connection and closed it on shutdown."""
    import uvicorn

    # imported as uvicorn imports it: outside the event loop
    app = (await anyio.to_thread.run_sync(run_example, "from starlette"))["app"]
    sock = listening_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])  # listening already: requests wait in the backlog until it serves
        assert await anyio.to_thread.run_sync(http_get, port, "/health/livez") == (200, "ok\n")
        status, body = await anyio.to_thread.run_sync(http_get, port, "/health/readyz")
        assert status == 200
        assert {t["name"]: t["status"] for t in json.loads(body)["targets"]}["redis"] == "ok"
        status, body = await anyio.to_thread.run_sync(http_get, port, "/health/metrics")
        assert 'ingest_probe_up{target="redis",connector="redis"} 1' in body
        assert (await anyio.to_thread.run_sync(http_get, port, "/readyz"))[0] == 404  # only below the mount
        assert len(redis_env.client_list(NAME)) == 1
        server.should_exit = True
    assert wait_until(lambda: redis_env.client_list(NAME) == [], timeout=5)


async def test_aiohttp_example_uses_the_prober_directly(redis_env):
    """The aiohttp example: /readyz is 200 with redis ok, answered from one check for many requests (one
    Redis connection), and the cleanup context closes it."""
    from aiohttp import web

    app = (await anyio.to_thread.run_sync(run_example, "from aiohttp"))["app"]
    runner = web.AppRunner(app)
    await runner.setup()
    sock = listening_socket()
    try:
        await web.SockSite(runner, sock).start()
        port = sock.getsockname()[1]

        def twenty_at_once() -> list[tuple[int, str]]:
            with ThreadPoolExecutor(20) as pool:
                return list(pool.map(lambda _: http_get(port, "/readyz"), range(20)))

        answers = await anyio.to_thread.run_sync(twenty_at_once)
        assert {status for status, _ in answers} == {200}
        assert json.loads(answers[0][1]) == {"ready": True, "targets": {"timescale": "skipped", "redis": "ok",
                                                                       "kafka": "skipped"}}  # fmt: skip
        assert len(redis_env.client_list(NAME)) == 1
    finally:
        await runner.cleanup()
    assert wait_until(lambda: redis_env.client_list(NAME) == [], timeout=5)
