"""The outgoing HTTP client against real aiohttp servers on 127.0.0.1 standing in for upstreams."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from medianest_server import __version__
from medianest_server.clock import ManualClock
from medianest_server.errors import UpstreamUnavailable
from medianest_server.http import HttpClient, UpstreamError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN = "secret123"


@dataclass
class Upstream:
    """A server on 127.0.0.1 that answers with `handler` and remembers every request it saw."""

    server: TestServer
    handler: Handler
    hits: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    peers: set[Any] = field(default_factory=set)  # client (host, port): one per connection

    def url(self, path: str = "/") -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def upstream(aiohttp_server: Any) -> Upstream:
    async def default(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    upstream = Upstream(server=None, handler=default)  # type: ignore[arg-type]

    async def dispatch(request: web.Request) -> web.StreamResponse:
        upstream.hits.append((request.method, request.path))
        upstream.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        return await upstream.handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    upstream.server = await aiohttp_server(app)
    return upstream


def answers(*statuses: int) -> Handler:
    """A handler that answers with these statuses in turn, then keeps answering the last one."""
    queue = list(statuses)

    async def handler(request: web.Request) -> web.Response:
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        return web.json_response({"status": status}, status=status)

    return handler


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def client(clock: ManualClock) -> AsyncIterator[HttpClient]:
    async with HttpClient(
        backoff_seconds=0, clock=clock, connect_timeout=2, read_timeout=2, failure_threshold=3
    ) as client:
        yield client


def closed_port_url(path: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# retries


async def test_get_is_retried_after_two_503s(client: HttpClient, upstream: Upstream) -> None:
    upstream.handler = answers(503, 503, 200)
    response = await client.get(upstream.url("/library/sections"), upstream="Plex")
    assert response.status == 200
    assert response.ok
    assert response.json() == {"status": 200}
    assert upstream.hits == [("GET", "/library/sections")] * 3


async def test_get_gives_back_the_last_503_once_retries_run_out(
    client: HttpClient, upstream: Upstream
) -> None:
    upstream.handler = answers(503)
    response = await client.get(upstream.url("/status"), upstream="Kuma", retries=1)
    assert response.status == 503
    assert not response.ok
    assert len(upstream.hits) == 2


async def test_post_is_never_retried(client: HttpClient, upstream: Upstream) -> None:
    upstream.handler = answers(503, 200)
    response = await client.post(
        upstream.url("/api/v1/request"), upstream="Overseerr", json={"mediaId": 1}
    )
    assert response.status == 503
    assert upstream.hits == [("POST", "/api/v1/request")]


async def test_connection_refused_names_the_upstream_after_the_retries(client: HttpClient) -> None:
    with pytest.raises(UpstreamError) as caught:
        await client.get(closed_port_url("/identity"), upstream="Plex")
    error = caught.value
    assert error.upstream == "Plex"
    assert error.http_status is None
    assert (error.status, error.code) == (502, "upstream_error")
    assert error.message.startswith("Plex cannot be reached (GET /identity)")
    assert client.stats()["Plex"].requests == 3  # the first attempt and two retries


async def test_read_timeout_raises_timed_out(client: HttpClient, upstream: Upstream) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    upstream.handler = slow
    try:
        with pytest.raises(UpstreamError, match=r"^Plex timed out after 0\.2 s \(GET /slow\)$"):
            await client.get(upstream.url("/slow"), upstream="Plex", timeout=0.2, retries=1)
    finally:
        release.set()
    assert len(upstream.hits) == 2  # a timeout is retried like a connection error


# circuit breaker


async def test_breaker_opens_after_the_threshold_and_spares_the_upstream(
    client: HttpClient, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medianest.http")
    upstream.handler = answers(500)
    for _ in range(3):
        assert (await client.get(upstream.url("/identity"), upstream="Plex")).status == 500
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get(upstream.url("/identity"), upstream="Plex")
    assert caught.value.message == (
        "Plex is unavailable (circuit open after 3 failures; retrying in 30 s)"
    )
    assert caught.value.status == 503
    assert len(upstream.hits) == 3
    assert client.breaker("Plex").state == "open"
    assert client.stats()["Plex"].circuit == "open"
    assert client.stats()["Plex"].rejected == 1
    opened = [r for r in caplog.records if "circuit opened" in r.getMessage()]
    assert len(opened) == 1
    assert opened[0].getMessage().startswith("Plex circuit opened after 3 failures")
    # other upstreams have their own breaker
    assert (await client.get(upstream.url("/api/v1/status"), upstream="Overseerr")).status == 500


async def _trip(client: HttpClient, upstream: Upstream) -> None:
    upstream.handler = answers(500)
    for _ in range(3):
        await client.get(upstream.url("/identity"), upstream="Plex")
    assert client.breaker("Plex").state == "open"
    upstream.hits.clear()


async def test_after_the_reset_time_exactly_one_probe_goes_through(
    client: HttpClient, upstream: Upstream, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medianest.http")
    await _trip(client, upstream)
    probe_arrived, release = asyncio.Event(), asyncio.Event()

    async def slow_ok(request: web.Request) -> web.Response:
        probe_arrived.set()
        await release.wait()
        return web.json_response({"ok": True})

    upstream.handler = slow_ok
    clock.advance(29)
    with pytest.raises(UpstreamUnavailable, match="retrying in 1 s"):
        await client.get(upstream.url("/identity"), upstream="Plex")
    clock.advance(1)
    callers = [
        asyncio.create_task(client.get(upstream.url("/identity"), upstream="Plex"))
        for _ in range(20)
    ]
    await probe_arrived.wait()
    refused = [task for task in callers if task.done()]
    assert len(refused) == 19
    for task in refused:
        assert isinstance(task.exception(), UpstreamUnavailable)
        assert "checking whether it is back" in str(task.exception())
    release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert [r.status for r in results if not isinstance(r, BaseException)] == [200]
    assert len(upstream.hits) == 1
    assert client.breaker("Plex").state == "closed"
    closed = [r for r in caplog.records if "circuit closed" in r.getMessage()]
    assert [r.getMessage() for r in closed] == ["Plex circuit closed: it answers again"]
    assert (await client.get(upstream.url("/identity"), upstream="Plex")).status == 200


async def test_a_failed_probe_opens_the_circuit_again(
    client: HttpClient, upstream: Upstream, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medianest.http")
    await _trip(client, upstream)
    clock.advance(30)
    assert (await client.get(upstream.url("/identity"), upstream="Plex")).status == 500
    with pytest.raises(UpstreamUnavailable, match="retrying in 30 s"):
        await client.get(upstream.url("/identity"), upstream="Plex")
    assert len(upstream.hits) == 1
    upstream.handler = answers(200)
    clock.advance(30)
    assert (await client.get(upstream.url("/identity"), upstream="Plex")).status == 200
    assert client.breaker("Plex").state == "closed"
    # one line when it opened, one when it closed; failed probes in between add none
    messages = [r.getMessage() for r in caplog.records if "circuit" in r.getMessage()]
    assert len(messages) == 2


async def test_a_cancelled_probe_lets_the_next_caller_probe(
    client: HttpClient, upstream: Upstream, clock: ManualClock
) -> None:
    await _trip(client, upstream)
    probe_arrived, release = asyncio.Event(), asyncio.Event()

    async def hang_then_ok(request: web.Request) -> web.Response:
        if request.path == "/hang":
            probe_arrived.set()
            await release.wait()
        return web.json_response({"ok": True})

    upstream.handler = hang_then_ok
    clock.advance(30)
    probe = asyncio.create_task(client.get(upstream.url("/hang"), upstream="Plex"))
    await probe_arrived.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    release.set()
    assert (await client.get(upstream.url("/identity"), upstream="Plex")).status == 200
    assert client.breaker("Plex").state == "closed"


async def test_4xx_answers_do_not_trip_the_breaker(client: HttpClient, upstream: Upstream) -> None:
    upstream.handler = answers(404)
    for _ in range(6):
        response = await client.get(upstream.url("/library/metadata/999"), upstream="Plex")
        assert response.status == 404
    assert len(upstream.hits) == 6
    stats = client.stats()["Plex"]
    assert (stats.circuit, stats.failures, stats.requests) == ("closed", 0, 6)


# stats


async def test_stats_record_latency_and_the_last_error(
    client: HttpClient, upstream: Upstream, clock: ManualClock
) -> None:
    upstream.handler = answers(200, 503)
    assert client.stats() == {}
    await client.get(upstream.url("/identity"), upstream="Plex")
    stats = client.stats()["Plex"]
    assert stats.requests == 1
    assert stats.last_latency_ms is not None and stats.last_latency_ms > 0
    assert stats.last_error is None
    await client.get(upstream.url("/identity"), upstream="Plex", retries=0)
    stats = client.stats()["Plex"]
    assert (stats.requests, stats.failures, stats.circuit) == (2, 1, "closed")
    assert stats.last_error == "Plex answered 503 (GET /identity)"
    assert stats.last_error_at == clock.now()
    assert len(stats.latencies_ms) == 2
    p50 = stats.latency_percentile(50)
    assert p50 is not None and p50 > 0


async def test_latency_record_keeps_the_last_256(client: HttpClient, upstream: Upstream) -> None:
    for _ in range(260):
        await client.get(upstream.url("/"), upstream="Plex")
    stats = client.stats()["Plex"]
    assert stats.requests == 260
    assert len(stats.latencies_ms) == 256


# bodies


async def test_oversized_bodies_are_refused(client: HttpClient, upstream: Upstream) -> None:
    big = b"x" * (2 * 2**20)

    async def sized(request: web.Request) -> web.StreamResponse:
        if request.path == "/sized":
            return web.Response(body=big)
        response = web.StreamResponse()  # chunked: no Content-Length to check up front
        await response.prepare(request)
        for start in range(0, len(big), 2**16):
            await response.write(big[start : start + 2**16])
        await response.write_eof()
        return response

    upstream.handler = sized
    for path in ("/sized", "/chunked"):
        with pytest.raises(UpstreamError) as caught:
            await client.get(upstream.url(path), upstream="Plex", max_body_bytes=2**20)
        assert caught.value.message == f"Plex sent a response larger than 1048576 bytes ({path})"
        assert caught.value.http_status == 200
    assert len(upstream.hits) == 2  # not retried
    assert (await client.get(upstream.url("/sized"), upstream="Plex")).body == big
    assert client.breaker("Plex").state == "closed"


async def test_invalid_json_raises_upstream_error(client: HttpClient, upstream: Upstream) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>login</html>", content_type="text/html")

    upstream.handler = html
    response = await client.get(upstream.url("/api/v1/status"), upstream="Overseerr")
    assert response.text() == "<html>login</html>"
    with pytest.raises(UpstreamError, match=r"^Overseerr sent invalid JSON \(/api/v1/status"):
        response.json()


async def test_stream_yields_a_large_body_in_chunks(client: HttpClient, upstream: Upstream) -> None:
    poster = bytes(range(256)) * 4096  # 1 MiB

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=poster, content_type="image/jpeg")

    upstream.handler = image
    chunks = []
    async with client.stream("GET", upstream.url("/photo/:/transcode"), upstream="Plex") as resp:
        assert resp.status == 200
        assert resp.headers["content-type"] == "image/jpeg"
        assert resp.content_length == len(poster)
        async for chunk in resp.iter_chunked(64 * 1024):
            chunks.append(chunk)
    assert b"".join(chunks) == poster
    assert len(chunks) >= 16
    assert max(len(c) for c in chunks) <= 64 * 1024
    assert client.stats()["Plex"].requests == 1


async def test_stream_retries_a_503_before_any_byte(client: HttpClient, upstream: Upstream) -> None:
    upstream.handler = answers(503, 200)
    async with client.stream("GET", upstream.url("/thumb"), upstream="Plex") as resp:
        body = b"".join([chunk async for chunk in resp.iter_chunked()])
    assert resp.status == 200
    assert body == b'{"status": 200}'
    assert len(upstream.hits) == 2


# secrets and connections


async def test_errors_and_logs_never_contain_the_query_token(
    clock: ManualClock, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="medianest.http")
    query = f"?X-Plex-Token={TOKEN}"
    errors: list[Exception] = []
    async with HttpClient(backoff_seconds=0, clock=clock, failure_threshold=1) as client:
        with pytest.raises(UpstreamError) as refused:
            await client.get(closed_port_url("/identity" + query), upstream="Plex")
        errors.append(refused.value)

        upstream.handler = answers(500)
        response = await client.get(upstream.url("/library" + query), upstream="Plex tv")
        assert TOKEN not in response.url
        with pytest.raises(UpstreamError) as status_error:
            response.raise_for_status()
        assert status_error.value.message == "Plex tv answered 500 Internal Server Error (/library)"
        errors.append(status_error.value)
        with pytest.raises(UpstreamUnavailable) as unavailable:
            await client.get(upstream.url("/library" + query), upstream="Plex tv")
        errors.append(unavailable.value)
        texts = [str(s.last_error) for s in client.stats().values()]
    for error in errors:
        texts += [str(error), repr(error), str(getattr(error, "details", ""))]
    texts += [record.getMessage() + str(record.__dict__) for record in caplog.records]
    assert len(caplog.records) >= 2  # both circuits opened
    for text in texts:
        assert TOKEN not in text


async def test_one_session_and_connection_are_reused(
    client: HttpClient, upstream: Upstream
) -> None:
    async def who(request: web.Request) -> web.Response:
        return web.json_response({"user_agent": request.headers["User-Agent"]})

    upstream.handler = who
    for _ in range(5):
        response = await client.get(upstream.url("/identity"), upstream="Plex")
        assert response.json() == {"user_agent": f"MediaNest/{__version__}"}
    assert len(upstream.hits) == 5
    assert len(upstream.peers) == 1  # keep-alive on one connection of the shared session


async def test_single_flight_shares_one_request_between_identical_calls(
    client: HttpClient, upstream: Upstream
) -> None:
    async def recent(request: web.Request) -> web.Response:
        return web.json_response({"token": request.headers.get("X-Plex-Token")})

    upstream.handler = recent
    url = upstream.url("/library/recentlyAdded")
    same = [
        client.get(url, upstream="Plex", headers={"X-Plex-Token": "a"}, single_flight=True)
        for _ in range(10)
    ]
    other = client.get(url, upstream="Plex", headers={"X-Plex-Token": "b"}, single_flight=True)
    *shared, alone = await asyncio.gather(*same, other)
    assert len(upstream.hits) == 2  # one per distinct token
    assert {r.json()["token"] for r in shared} == {"a"}
    assert alone.json() == {"token": "b"}


async def test_requests_before_start_are_refused(clock: ManualClock) -> None:
    client = HttpClient(clock=clock)
    with pytest.raises(RuntimeError, match="not started"):
        await client.get("http://127.0.0.1:1/", upstream="Plex")


async def test_an_encoded_url_reaches_the_upstream_exactly_as_encoded(
    client: HttpClient, upstream: Upstream
) -> None:
    """Strict upstreams (Overseerr's search) refuse `+` and raw `'`, `:`, `/`, `?`: a yarl URL
    built with encoded=True is sent byte for byte; a string is re-quoted."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({})

    upstream.handler = record
    encoded = "query=It%27s%20Always%20Sunny%3A%20a%26b%2Bc%2Fd%3F%20%C3%A9&page=1"
    base = upstream.url("/api/v1/search")
    await client.get(URL(f"{base}?{encoded}", encoded=True), upstream="O")
    await client.get(f"{base}?{encoded}", upstream="O")
    assert seen[0] == f"/api/v1/search?{encoded}"
    assert seen[1] != seen[0]  # the string form lost some escapes (what Overseerr refuses)
