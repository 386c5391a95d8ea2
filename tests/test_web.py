"""The HTTP surface of the assembled core app, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from medianest_server.app import create_app
from medianest_server.appkeys import DB
from medianest_server.config import Config, load_config
from medianest_server.logs import access_log_options, configure_logging
from medianest_server.plugins.loader import Candidate

from .conftest import SECRET


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("info", "json", stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def _with_boom(config: Config) -> web.Application:
    """The real app plus a plugin whose routes fail on purpose (mounted as /api/v1/test/...)."""
    boom = Candidate("test", lambda: importlib.import_module("tests.sample_plugins.boom"))
    return create_app(config, plugins=[boom], environ={})


@pytest.fixture
async def client(app_config: Config, aiohttp_client) -> TestClient:
    server = TestServer(_with_boom(app_config))
    await server.start_server(**access_log_options())  # as `medianest serve` runs it
    return await aiohttp_client(server)


async def test_live_and_ready_answer_json(client: TestClient) -> None:
    live = await client.get("/health/live")
    assert live.status == 200
    assert await live.json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status == 200
    assert await ready.json() == {
        "status": "ready",
        "checks": {"database": "up", "migrations": "up"},
        "failed_plugins": [],
    }


async def test_ready_is_503_while_a_migration_is_pending(client: TestClient) -> None:
    db = client.app[DB]
    await db.execute("DELETE FROM schema_migrations WHERE component = 'core'")
    ready = await client.get("/health/ready")
    assert ready.status == 503
    assert (await ready.json())["checks"] == {"database": "up", "migrations": "down"}


async def test_ready_is_503_when_the_database_is_gone(client: TestClient) -> None:
    await client.app[DB].close()
    ready = await client.get("/health/ready")
    assert ready.status == 503
    assert (await ready.json())["checks"]["database"] == "down"
    assert (await client.get("/health/live")).status == 200


async def test_request_id_is_taken_from_the_client_or_generated(client: TestClient) -> None:
    given = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert made.headers["X-Request-ID"] not in ("", "bad id\twith spaces")
    assert len(made.headers["X-Request-ID"]) == 32
    other = await client.get("/health/live")
    assert other.headers["X-Request-ID"] != made.headers["X-Request-ID"]


async def test_unknown_api_path_is_a_json_404_with_the_request_id(client: TestClient) -> None:
    response = await client.get("/api/v1/no-such-thing", headers={"X-Request-ID": "req-404"})
    assert response.status == 404
    assert response.content_type == "application/json"
    body = await response.json()
    assert body == {
        "error": {
            "code": "not_found",
            "message": "Not Found",
            "details": None,
            "request_id": "req-404",
        }
    }


async def test_wrong_method_on_api_is_json_405_with_allow(client: TestClient) -> None:
    response = await client.delete("/health/live")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


async def test_unknown_page_is_a_styled_404_page(client: TestClient) -> None:
    response = await client.get("/no/such/page", headers={"X-Request-ID": "page-404"})
    assert response.status == 404
    assert response.content_type == "text/html"
    text = await response.text()
    assert "page-404" in text
    assert "medianest.css" in text


async def test_unhandled_error_is_500_logged_once_with_request_id_and_no_secret(
    client: TestClient, log_stream: io.StringIO
) -> None:
    response = await client.get("/api/v1/test/boom", headers={"X-Request-ID": "req-boom"})
    assert response.status == 500
    body = await response.json()
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["request_id"] == "req-boom"
    assert "kaboom" not in json.dumps(body)
    page = await client.get("/test/boom")
    assert page.status == 500
    assert "text/html" in page.headers["Content-Type"]

    # the access line is written just after the response is sent: wait for it, bounded
    of_request: list[dict[str, object]] = []
    for _ in range(200):
        lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
        of_request = [line for line in lines if line.get("request_id") == "req-boom"]
        if any(line["message"] == "request" for line in of_request):
            break
        await asyncio.sleep(0.01)
    assert {line["message"] for line in of_request} >= {"unhandled error", "request"}
    assert sum(1 for line in of_request if line["message"] == "unhandled error") == 1
    assert (
        "kaboom" in next(li for li in of_request if li["message"] == "unhandled error")["exception"]
    )
    assert SECRET not in log_stream.getvalue()
    assert "about to fail with ***" in log_stream.getvalue()


async def test_request_body_over_the_limit_is_413(aiohttp_client, write_config) -> None:
    from medianest_server.config import load_config

    config = load_config(write_config(server={"max_request_body_mb": 0.01}), environ={})
    client = await aiohttp_client(_with_boom(config))
    small = await client.post("/api/v1/test/echo", data=b"x" * 1000)
    assert await small.json() == {"size": 1000}
    big = await client.post("/api/v1/test/echo", data=b"x" * 20_000)
    assert big.status == 413
    assert (await big.json())["error"]["code"] == "request_too_large"


async def test_first_visit_leads_to_setup_whose_stylesheet_is_served(client: TestClient) -> None:
    home = await client.get("/", allow_redirects=False)
    assert home.status == 302
    assert home.headers["Location"] == "/login?next=/"
    login = await client.get("/login", allow_redirects=False)
    assert login.status == 303 and login.headers["Location"] == "/setup"
    page = await client.get("/")
    assert page.url.path == "/setup"
    text = await page.text()
    assert "Set up MediaNest" in text
    href = text.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    css = await client.get(href)
    assert css.status == 200
    assert css.content_type == "text/css"


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("info", "text", stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


async def _access_line(stream: io.StringIO, needle: str) -> str:
    """The access line that mentions `needle` (written just after the response: bounded wait)."""
    for _ in range(300):
        for line in stream.getvalue().splitlines():
            if "medianest.access request" in line and needle in line:
                return line
        await asyncio.sleep(0.01)
    raise AssertionError(f"no access line with {needle!r} in:\n{stream.getvalue()}")


async def test_control_characters_from_outside_are_escaped_in_the_log(
    client: TestClient, text_log: io.StringIO
) -> None:
    """A path with an ESC sequence or a NUL cannot recolour the admin's terminal or forge a
    line: it is written as \\x1b."""
    await client.get("/nothing%1b%5b31mRED", headers={"X-Request-ID": "req-esc"})
    await client.get("/nul%00here", headers={"X-Request-ID": "req-nul"})
    escaped = await _access_line(text_log, "req-esc")
    assert "\x1b" not in text_log.getvalue() and "\x00" not in text_log.getvalue()
    assert "\\x1b[31mRED" in escaped
    assert "\\x00here" in await _access_line(text_log, "req-nul")


async def test_behind_a_trusted_proxy_the_access_line_names_the_client_and_the_request(
    aiohttp_client: Any, write_config: Any, log_stream: io.StringIO
) -> None:
    config = load_config(write_config(server={"trusted_proxies": ["127.0.0.1"]}), environ={})
    server = TestServer(create_app(config, plugins=[], environ={}))
    await server.start_server(**access_log_options())
    proxied = await aiohttp_client(server)
    await proxied.get(
        "/health/live", headers={"X-Forwarded-For": "203.0.113.5", "X-Request-ID": "req-proxy"}
    )
    for _ in range(300):
        lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
        access = [li for li in lines if li["logger"] == "medianest.access"]
        if access:
            break
        await asyncio.sleep(0.01)
    assert access[-1]["request_id"] == "req-proxy"
    assert access[-1]["remote"] == "203.0.113.5"


async def test_a_request_the_parser_refuses_is_logged_not_crashed_on(
    client: TestClient, text_log: io.StringIO
) -> None:
    """A 20 KB header: aiohttp answers 400 (or 431) before any middleware; the access logger
    writes its line instead of raising AssertionError on the missing route."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"GET /big HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * 20_000
        + b"\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    assert status_line.split()[1] in (b"400", b"431")
    line = await _access_line(text_log, "status=400")  # aiohttp's stand-in request: path /
    assert "method=UNKNOWN" in line
    logged = text_log.getvalue()
    assert "AssertionError" not in logged and "Traceback" not in logged
    assert "WARNING aiohttp.server malformed request refused: 400 Got more than 8190" in logged
