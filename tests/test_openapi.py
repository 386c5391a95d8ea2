"""The API description: every JSON route is in it, its schemas are right, and it leaks nothing."""

from __future__ import annotations

import importlib
import json
import re
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from marshmallow import Schema, fields, validate
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from medianest_server.app import create_app
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.config import Config, load_config
from medianest_server.plugin_api import Routes, hookimpl
from medianest_server.plugins.loader import Candidate
from medianest_server.web.access import ROUTE_TABLE
from medianest_server.web.webhooks import webhook_secret

from .conftest import SECRET

# a plugin whose routes declare their schemas, next to the sample plugins that declare none
described_routes = Routes()


class NewShelf(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=80))
    note = fields.String(load_default="")


class Shelf(Schema):
    code = fields.String(required=True)
    title = fields.String(required=True)


class ShelfQuery(Schema):
    sort = fields.String(load_default="title", validate=validate.OneOf(("title", "code")))


@described_routes.put(
    "/shelves/{code:[a-z]{2}}", access="admin", body=NewShelf, response=Shelf, status=201
)
async def put_shelf(request: web.Request) -> web.Response:
    """Make a shelf.

    The code is two lower-case letters.
    """
    return web.json_response({"code": request.match_info["code"], "title": "x"}, status=201)


@described_routes.get(
    "/shelves", access="user", query=ShelfQuery, response=Shelf(many=True), summary="Every shelf"
)
async def list_shelves(request: web.Request) -> web.Response:
    return web.json_response([])


@described_routes.post("/broken", access="user", body=42)
async def broken(request: web.Request) -> web.Response:
    """A route whose author passed something that is not a schema."""
    return web.json_response({})


def _described_module() -> types.ModuleType:
    module = types.ModuleType("described")

    @hookimpl
    def medianest_routes() -> Routes:
        return described_routes

    module.medianest_routes = medianest_routes  # type: ignore[attr-defined]
    return module


def sample(name: str) -> Candidate:
    return Candidate(name, lambda: importlib.import_module(f"tests.sample_plugins.{name}"))


PLUGINS = [sample("good"), sample("hooks_demo"), Candidate("described", _described_module)]
JSON_PREFIXES = ("/api/", "/health/")  # JSON routes; the /ws WebSocket is not OpenAPI's to describe
FORBIDDEN_FIELDS = {"password_hash", "token_hash", "refresh_token_hash", "secret", "secret_key"}


@pytest.fixture
def sqlite_config(write_config: Callable[..., Path], tmp_path: Path) -> Config:
    return load_config(write_config(database={"url": f"sqlite:///{tmp_path}/m.db"}), environ={})


@pytest.fixture
async def server(sqlite_config: Config, aiohttp_server: Any) -> TestServer:
    return await aiohttp_server(create_app(sqlite_config, plugins=PLUGINS, environ={}))


async def bearer(app: web.Application, username: str, role: str = "user") -> dict[str, str]:
    auth = app[AUTH_SERVICES]
    user = await auth.users.create(username, password="long enough pw", role=role)  # type: ignore[arg-type]
    raw, _ = await auth.api_tokens.create(user.id, "docs")
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
async def client(server: TestServer, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(server)


async def fetch_document(server: TestServer, client: TestClient) -> dict[str, Any]:
    response = await client.get("/api/v1/openapi.json", headers=await bearer(server.app, "reader"))
    assert response.status == 200
    assert response.content_type == "application/json"
    document: dict[str, Any] = await response.json()
    return document


def openapi_path(path: str) -> str:
    return re.sub(r"\{([_a-zA-Z][_a-zA-Z0-9]*)(?::(?:[^{}]|\{[^{}]*\})*)?\}", r"{\1}", path)


def component(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    name = schema["$ref"].rsplit("/", 1)[-1]
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def answer(document: dict[str, Any], operation: dict[str, Any], status: str) -> dict[str, Any]:
    """The component schema an operation answers with for `status`."""
    content = operation["responses"][status]["content"]["application/json"]
    return component(document, content["schema"])


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)


async def test_every_json_route_on_the_app_is_described_with_its_method_and_access(
    server: TestServer, client: TestClient
) -> None:
    document = await fetch_document(server, client)
    paths = document["paths"]
    expected = [
        info
        for info in server.app[ROUTE_TABLE].values()
        if info.kind == "api" and info.method != "HEAD" and info.path.startswith(JSON_PREFIXES)
    ]
    assert len([i for i in expected if i.path.startswith("/api/v1/")]) >= 25
    for info in expected:
        operation = paths.get(openapi_path(info.path), {}).get(info.method.lower())
        assert operation is not None, f"{info.method} {info.path} is not described"
        assert operation["x-access"] == info.access
        assert operation["summary"]
        core = info.plugin.startswith("core.")
        assert operation["tags"] == ["core" if core else info.plugin]
    described = {(m, p) for p, ops in paths.items() for m in ops}
    assert len(described) == len(expected)  # nothing but JSON routes: no pages, no HEAD
    assert "/api/docs" not in paths and "/" not in paths and "/ws" not in paths
    assert {tag["name"] for tag in document["tags"]} == {"core", "good", "hooks_demo", "described"}


async def test_the_document_is_valid_openapi_3_1_even_with_a_plugin_schema_gone_wrong(
    server: TestServer, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    document = await fetch_document(server, client)
    assert document["openapi"] == "3.1.0"
    validate_spec(document)
    broken = document["paths"]["/api/v1/described/broken"]["post"]
    assert broken["summary"] == "A route whose author passed something that is not a schema."
    assert "requestBody" not in broken and "x-schema-error" in broken
    assert "body= must be a marshmallow Schema" in caplog.text


async def test_anonymous_callers_get_401_on_the_document_and_the_sign_in_page_for_the_docs(
    client: TestClient,
) -> None:
    document = await client.get("/api/v1/openapi.json")
    assert document.status == 401
    assert (await document.json())["error"]["code"] == "unauthorized"
    page = await client.get("/api/docs", allow_redirects=False)
    assert page.status == 302
    assert page.headers["Location"].startswith("/login?next=/api/docs")


async def test_body_query_path_and_answer_schemas_come_from_the_route_declarations(
    server: TestServer, client: TestClient
) -> None:
    document = await fetch_document(server, client)
    paths = document["paths"]

    sign_in = paths["/api/v1/auth/token"]["post"]
    body = component(document, sign_in["requestBody"]["content"]["application/json"]["schema"])
    assert set(body["required"]) == {"username", "password"}
    assert "security" not in sign_in and sign_in["x-access"] == "public"
    pair = answer(document, sign_in, "200")
    assert set(pair["required"]) == {"access_token", "refresh_token", "token_type", "expires_in"}

    notifications = paths["/api/v1/notifications"]["get"]
    query = {p["name"]: p for p in notifications["parameters"] if p["in"] == "query"}
    assert set(query) == {"page", "per_page", "unread"}
    assert query["per_page"]["schema"]["maximum"] == 200
    assert notifications["security"] == [{"bearer": []}, {"cookie": []}]
    assert {"401", "429"} <= set(notifications["responses"])
    assert "403" not in notifications["responses"]  # a GET needs no CSRF token

    revoke = paths["/api/v1/me/tokens/{token_id}"]["delete"]
    (token_id,) = revoke["parameters"]
    assert token_id["in"] == "path" and token_id["required"] is True
    assert re.fullmatch(token_id["schema"]["pattern"], "12")
    assert not re.fullmatch(token_id["schema"]["pattern"], "12a")
    assert {"401", "403", "404"} <= set(revoke["responses"])

    created = answer(document, paths["/api/v1/me/tokens"]["post"], "201")
    assert "token" in created["properties"]

    shelf = paths["/api/v1/described/shelves/{code}"]["put"]
    assert shelf["summary"] == "Make a shelf."
    assert shelf["description"] == "The code is two lower-case letters."
    assert shelf["parameters"][0]["schema"]["pattern"] == "^(?:[a-z]{2})$"
    assert shelf["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/described.NewShelf"
    }
    assert "201" in shelf["responses"] and "403" in shelf["responses"]
    listing = paths["/api/v1/described/shelves"]["get"]
    assert listing["summary"] == "Every shelf"
    assert listing["parameters"][0]["schema"]["enum"] == ["title", "code"]
    shelves = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert shelves == {"type": "array", "items": {"$ref": "#/components/schemas/described.Shelf"}}

    error = document["components"]["responses"]["Unauthorized"]["content"]["application/json"]
    shape = component(document, error["schema"])
    assert component(document, shape["properties"]["error"])["required"] == ["code", "message"]


async def test_answers_of_the_core_match_what_the_document_says(
    server: TestServer, client: TestClient
) -> None:
    document = await fetch_document(server, client)
    admin = await bearer(server.app, "boss", "admin")

    def check(path: str, method: str, status: int, body: Any) -> None:
        responses = document["paths"][path][method]["responses"]
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        rooted = {**schema, "components": document["components"]}
        errors = list(OAS31Validator(rooted).iter_errors(body))
        assert errors == [], f"{method} {path}: {errors[0].message}"

    sign_in = await client.post(
        "/api/v1/auth/token", json={"username": "boss", "password": "long enough pw"}
    )
    check("/api/v1/auth/token", "post", 200, await sign_in.json())
    created = await client.post("/api/v1/me/tokens", json={"name": "ci"}, headers=admin)
    assert created.status == 201
    check("/api/v1/me/tokens", "post", 201, await created.json())
    for path in (
        "/api/v1/me",
        "/api/v1/me/sessions",
        "/api/v1/me/tokens",
        "/api/v1/notifications",
        "/api/v1/admin/users",
        "/api/v1/admin/audit",
        "/api/v1/admin/plugins",
        "/health/live",
        "/health/ready",
    ):
        response = await client.get(path, headers=admin)
        assert response.status == 200, path
        if "content" in document["paths"][path]["get"]["responses"]["200"]:
            check(path, "get", 200, await response.json())
    refused = await client.get("/api/v1/admin/users", headers=await bearer(server.app, "someone"))
    assert refused.status == 403
    shape = document["components"]["responses"]["Forbidden"]["content"]["application/json"]
    rooted = {**shape["schema"], "components": document["components"]}
    assert list(OAS31Validator(rooted).iter_errors(await refused.json())) == []


async def test_no_secret_reaches_the_document(server: TestServer, client: TestClient) -> None:
    document = await fetch_document(server, client)
    text = json.dumps(document)
    assert SECRET not in text
    assert webhook_secret(server.app, "hooks_demo", "ping") not in text
    assert "password_hash" not in text and "token_hash" not in text
    for node in walk(document):
        if isinstance(node, dict) and isinstance(node.get("properties"), dict):
            assert not FORBIDDEN_FIELDS & set(node["properties"]), node["properties"].keys()
    # answers never carry a password, and only the token-creating answer carries a token
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith("2"):
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if not schema or "$ref" not in schema:
                    continue
                names = set(component(document, schema).get("properties", {}))
                assert "password" not in names, f"{method} {path}"
                if "token" in names:
                    assert (method, path) == ("post", "/api/v1/me/tokens")


async def test_the_docs_page_lists_every_group_and_route_with_its_fields(
    server: TestServer, client: TestClient
) -> None:
    response = await client.get("/api/docs", headers=await bearer(server.app, "reader"))
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert '<code class="api-path">/api/v1/me</code>' in page
    for group in ("core", "good", "hooks_demo", "described"):
        assert f'id="tag-{group}"' in page
    # the sign-in body's fields and the answer's fields are spelled out
    sign_in = page[page.index("post_api_v1_auth_token") :]
    sign_in = sign_in[: sign_in.index("</article>")]
    for name in ("username", "password", "access_token", "refresh_token", "expires_in"):
        assert f"<code>{name}</code>" in sign_in
    assert "<code>sessions[].user_agent</code>" in page  # lists of objects are walked into
    assert "signed-in users" in page and "admins" in page
    # strict CSP: no inline script or style, nothing third-party
    scripts = re.findall(r"<script[^>]*>", page)
    assert all(re.search(r'src="/static/', tag) for tag in scripts), scripts
    assert "style=" not in page and "<style" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
