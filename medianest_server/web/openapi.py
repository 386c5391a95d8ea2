"""Built-in plugin: the API description, `GET /api/v1/openapi.json` and the `/api/docs` page.

The document is made from the route table, so it cannot drift from what the app serves: every
JSON route of the core and of active plugins, with the marshmallow schemas each route declares
(`body=`, `query=`, `response=` on `Routes.get/post/…`) turned into OpenAPI 3.1 by apispec, who
may call it (`x-access` and the security schemes), and the errors its access implies. HEAD
routes, pages and the `/ws` WebSocket are left out. It is built per request: cheap, and always
in step with which plugins are active.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, resolver
from markupsafe import Markup, escape
from marshmallow import Schema, class_registry

from .. import __version__
from ..appkeys import CONFIG, PLUGINS
from ..auth.csrf import CSRF_HEADER
from ..auth.sessions import SESSION_COOKIE
from ..hookspecs import hookimpl
from ..routing import MountedRoute, Routes
from .access import ROUTE_TABLE
from .api_schemas import ErrorResponse
from .templating import render_page

log = logging.getLogger("medianest.openapi")

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
CORE_TAG = "core"
WEBHOOK_PREFIX = "/api/v1/webhooks/"
# JSON lives under these; other "api" routes (the /ws WebSocket) are beyond what OpenAPI says
DESCRIBED_PREFIXES = ("/api/", "/health/")
AUTHENTICATED: list[dict[str, list[str]]] = [{"bearer": []}, {"cookie": []}]

# status -> (component name, when it happens); which apply to a route follows from its access
ERROR_RESPONSES = {
    400: ("BadRequest", "The input is invalid; `details` names each field and what is wrong."),
    401: ("Unauthorized", "Not signed in, or the credentials (or webhook secret) were refused."),
    403: ("Forbidden", "Only admins may do this, or the CSRF check failed (cookie sign-in)."),
    404: ("NotFound", "No such thing, or it belongs to someone else."),
    409: ("Conflict", "It clashes with what exists (a name taken, the last admin)."),
    429: ("TooManyRequests", "Over a rate limit; `Retry-After` says when to try again."),
    502: ("BadGateway", "The service behind it answered something MediaNest cannot use."),
    503: (
        "ServiceUnavailable",
        "The plugin is not connected yet or not working, or the service behind it is down.",
    ),
}

# aiohttp's `{name}` and `{name:regex}` (the regex may hold one level of `{m,n}` braces)
_PATH_PARAMETER = re.compile(
    r"\{(?P<name>[_a-zA-Z][_a-zA-Z0-9]*)(?::(?P<regex>[^{}]*(?:\{[^{}]*\}[^{}]*)*))?\}"
)
_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")

routes = Routes()


def openapi_path(path: str) -> tuple[str, list[dict[str, Any]]]:
    """An aiohttp route path as an OpenAPI path, and its path parameters (regex as pattern)."""
    parameters: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        schema: dict[str, Any] = {"type": "string"}
        if match["regex"]:
            schema["pattern"] = f"^(?:{match['regex']})$"
        parameters.append({"in": "path", "name": match["name"], "required": True, "schema": schema})
        return "{" + match["name"] + "}"

    return _PATH_PARAMETER.sub(replace, path), parameters


def operation_id(method: str, path: str) -> str:
    """`get_api_v1_me` for GET /api/v1/me: unique, as (method, path) is."""
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{method.lower()}{path}").strip("_")


def docstring_parts(handler: object) -> tuple[str, str]:
    """The first paragraph of a handler's docstring (one line) and the rest."""
    doc = inspect.getdoc(handler) if callable(handler) else None
    if not doc:
        return "", ""
    first, _, rest = doc.partition("\n\n")
    return " ".join(first.split()), rest.strip()


class _SchemaNames:
    """Component names: the class name less "Schema", prefixed with the plugin's name outside
    the core (two plugins may both have an `Item`), numbered if still taken."""

    def __init__(self) -> None:
        self.spec: APISpec | None = None
        self.prefix = ""

    def __call__(self, schema: Any) -> str:
        name = self.prefix + resolver(schema)
        taken = self.spec.components.schemas if self.spec is not None else {}
        candidate, number = name, 2
        while candidate in taken:
            candidate, number = f"{name}{number}", number + 1
        return candidate


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of every JSON route of the core and of the active plugins."""
    names = _SchemaNames()
    spec = APISpec(
        title="MediaNest",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin(schema_name_resolver=names)],
        info={
            "description": "The JSON API of MediaNest and of its active plugins. Sign in with "
            "a personal API token or a JWT from `POST /api/v1/auth/token` "
            "(`Authorization: Bearer …`), or with the browser session cookie (then send "
            f"`{CSRF_HEADER}` on every request that changes something)."
        },
        servers=[{"url": app[CONFIG].server.base_url.rstrip("/") or "/"}],
    )
    names.spec = spec
    spec.components.security_scheme(
        "bearer",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (profile page) or a JWT access token.",
        },
    )
    spec.components.security_scheme(
        "cookie",
        {
            "type": "apiKey",
            "in": "cookie",
            "name": SESSION_COOKIE,
            "description": f"The browser session; changes also need `{CSRF_HEADER}`.",
        },
    )
    spec.components.schema("Error", schema=ErrorResponse)
    for name, description in ERROR_RESPONSES.values():
        spec.components.response(
            name,
            {
                "description": description,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        )

    manager = app[PLUGINS]
    described: set[tuple[str, str]] = set()
    tags: dict[str, dict[str, Any]] = {}
    for route, info in sorted(app[ROUTE_TABLE].items(), key=lambda item: _order(item[1])):
        if not described_route(info) or not manager.is_active(info.plugin):
            continue
        record = manager.records.get(info.plugin)
        builtin = record.builtin if record is not None else info.plugin.startswith("core.")
        tag = CORE_TAG if builtin else info.plugin
        path, path_parameters = openapi_path(info.path)
        if (path, info.method) in described:
            log.warning(
                "route left out of the API description: same path as another once its "
                "patterns are dropped",
                extra={"plugin": info.plugin, "method": info.method, "path": info.path},
            )
            continue
        described.add((path, info.method))
        if tag not in tags:
            tags[tag] = _tag(tag, record.version if record is not None else None)
        handler = info.handler or route.handler
        names.prefix = "" if builtin else f"{info.plugin}."
        try:
            operation = _operation(info, tag, handler, path_parameters)
            spec.path(path=path, operations={info.method.lower(): operation})
        except Exception as exc:  # a plugin's odd schema must not take the document down
            log.warning(
                "route schemas left out of the API description: %s",
                exc,
                extra={"plugin": info.plugin, "method": info.method, "path": info.path},
            )
            plain = _operation(info, tag, handler, path_parameters, with_schemas=False)
            plain["x-schema-error"] = "Its schemas could not be described; the server log says why."
            spec.path(path=path, operations={info.method.lower(): plain})
    for tag_object in tags.values():
        spec.tag(tag_object)
    return spec.to_dict()


def described_route(info: MountedRoute) -> bool:
    """Whether the document describes this route (when its plugin is active)."""
    return (
        info.kind == "api"
        and info.method not in ("HEAD", "*")  # "*": a failed plugin's placeholder (503)
        and info.path.startswith(DESCRIBED_PREFIXES)
    )


def _order(info: MountedRoute) -> tuple[str, str, int]:
    """The core first, then plugins by name; by path and method within each."""
    method = _METHOD_ORDER.index(info.method) if info.method in _METHOD_ORDER else 99
    owner = "" if info.plugin.startswith("core.") else info.plugin
    return (owner, info.path, method)


def _tag(name: str, version: str | None) -> dict[str, Any]:
    if name == CORE_TAG:
        return {"name": name, "description": "MediaNest itself"}
    return {"name": name, "description": f"The {name} plugin" + (f" {version}" if version else "")}


def _operation(
    info: MountedRoute,
    tag: str,
    handler: object,
    path_parameters: list[dict[str, Any]],
    *,
    with_schemas: bool = True,
) -> dict[str, Any]:
    doc = info.doc
    parameters = [dict(parameter) for parameter in path_parameters]
    first, rest = docstring_parts(handler)
    summary = doc.summary or first
    if info.path.startswith(WEBHOOK_PREFIX):
        summary = summary or f"Inbound webhook of the {info.plugin} plugin"
        rest = rest or (
            "The sender proves itself with the webhook's secret, in the path or in the header "
            "the plugin names; a wrong or missing secret is refused with 401."
        )
        for parameter in parameters:
            if parameter["name"] == "secret":
                parameter["description"] = "The webhook's secret"
    operation: dict[str, Any] = {
        "tags": [tag],
        "summary": summary or _from_name(handler),
        "operationId": operation_id(info.method, openapi_path(info.path)[0]),
        "x-access": info.access,
    }
    if rest:
        operation["description"] = rest
    if with_schemas and doc.query is not None:
        query = _schema(doc.query, "query", allow_dict=False)
        parameters.insert(0, {"in": "query", "schema": query})
    if parameters:
        operation["parameters"] = parameters
    if with_schemas and doc.body is not None:
        body = _schema(doc.body, "body")
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    success: dict[str, Any] = {"description": _phrase(doc.status)}
    answer = _schema(doc.response, "response") if with_schemas else None
    if answer is not None:  # without a schema, say nothing of the body (it may be SSE)
        success["content"] = {JSON: {"schema": answer}}
    responses: dict[str, Any] = {str(doc.status): success}
    has_input = doc.body is not None or doc.query is not None
    for status in sorted({*_error_statuses(info, has_input=has_input), *doc.errors}):
        responses[str(status)] = ERROR_RESPONSES[status][0]
    operation["responses"] = responses
    if info.access != "public":
        operation["security"] = AUTHENTICATED
    return operation


def _schema(value: Any, what: str, *, allow_dict: bool = True) -> Any:
    """`value` if apispec can describe it; apispec would turn anything else into a dangling
    `$ref`, so say what is wrong instead."""
    if value is None or isinstance(value, Schema) or (allow_dict and isinstance(value, dict)):
        return value
    if isinstance(value, type) and issubclass(value, Schema):
        return value
    if isinstance(value, str):
        class_registry.get_class(value)  # raises RegistryError for an unknown schema name
        return value
    raise TypeError(
        f"{what}= must be a marshmallow Schema class or instance"
        + (" or a dict" if allow_dict else "")
        + f", not {type(value).__name__}"
    )


def _error_statuses(info: MountedRoute, *, has_input: bool) -> list[int]:
    statuses = []
    if has_input:
        statuses.append(400)
    if info.access != "public" or info.path.startswith(WEBHOOK_PREFIX):
        statuses.append(401)
    if info.access == "admin" or (info.access == "user" and info.method != "GET"):
        statuses.append(403)
    if "{" in info.path and not info.path.startswith(WEBHOOK_PREFIX):
        statuses.append(404)
    if info.access != "public" and info.path.startswith("/api/"):
        statuses.append(429)
    if not info.plugin.startswith("core"):  # a plugin's routes: not connected, or failed
        statuses.append(503)
    return statuses


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Success"


def _from_name(handler: object) -> str:
    name = getattr(handler, "__name__", "") or "operation"
    return name.replace("_", " ").strip().capitalize()


@routes.get(
    "/api/v1/openapi.json",
    access="user",
    response={"type": "object", "description": "An OpenAPI 3.1 document"},
)
async def openapi_document(request: web.Request) -> web.Response:
    """This description of the API, as OpenAPI 3.1.

    Lists every JSON route of MediaNest and of its active plugins, with who may call it.
    """
    return web.json_response(build_document(request.app))


# the /api/docs page: the document walked into rows a template can print


@dataclass(frozen=True)
class FieldRow:
    name: str
    type: str
    required: bool
    notes: str
    where: str = ""


@dataclass(frozen=True)
class ResponseView:
    status: str
    description: str
    fields: list[FieldRow]


@dataclass
class OperationView:
    anchor: str
    method: str
    path: str
    access: str
    summary: str
    description: str
    parameters: list[FieldRow]
    body: list[FieldRow]
    responses: list[ResponseView]


@dataclass
class TagView:
    name: str
    description: str
    operations: list[OperationView] = field(default_factory=list)


class _Reader:
    """Reads schemas of one document, following `$ref`s into the components."""

    MAX_DEPTH = 4

    def __init__(self, document: dict[str, Any]) -> None:
        components = document.get("components", {})
        self.schemas: dict[str, Any] = components.get("schemas", {})
        self.responses: dict[str, Any] = components.get("responses", {})

    def deref(self, schema: Any) -> Any:
        if isinstance(schema, dict) and "$ref" in schema:
            return self.schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        return schema

    def label(self, schema: Any) -> str:
        if not isinstance(schema, dict) or not schema:
            return "any"
        if "$ref" in schema:
            return str(schema["$ref"].rsplit("/", 1)[-1])
        for combined in ("anyOf", "oneOf"):
            if combined in schema:
                return " or ".join(self.label(part) for part in schema[combined])
        kinds = schema.get("type", "any")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        labels = []
        for kind in kinds:
            if kind == "array":
                labels.append(f"array of {self.label(schema.get('items', {}))}")
            elif kind == "string" and "format" in schema:
                labels.append(f"string ({schema['format']})")
            else:
                labels.append(str(kind))
        return " or ".join(labels)

    def notes(self, schema: Any) -> str:
        if not isinstance(schema, dict):
            return ""
        parts = [str(schema["description"])] if schema.get("description") else []
        if "enum" in schema:
            parts.append("one of: " + ", ".join(str(value) for value in schema["enum"]))
        for low, high, unit in (
            ("minLength", "maxLength", " characters"),
            ("minimum", "maximum", ""),
            ("minItems", "maxItems", " items"),
        ):
            if low in schema and high in schema:
                parts.append(f"{schema[low]} to {schema[high]}{unit}")
            elif low in schema or high in schema:
                bound = "at least" if low in schema else "at most"
                parts.append(f"{bound} {schema.get(low, schema.get(high))}{unit}")
        if "pattern" in schema:
            parts.append(f"matches `{schema['pattern']}`")
        if "default" in schema:
            parts.append(f"default `{json.dumps(schema['default'])}`")
        if schema.get("readOnly"):
            parts.append("read only")
        if schema.get("writeOnly"):
            parts.append("write only")
        return "; ".join(parts)

    def rows(self, schema: Any, prefix: str = "", depth: int = 0) -> list[FieldRow]:
        """One row per field, nested objects as `parent.child`, lists as `parent[].child`."""
        schema = self.deref(schema)
        if not isinstance(schema, dict) or depth > self.MAX_DEPTH:
            return []
        if schema.get("type") == "array":
            return self.rows(schema.get("items", {}), prefix + "[].", depth + 1)
        required = set(schema.get("required", []))
        found = []
        for name, prop in schema.get("properties", {}).items():
            full = prefix + name
            notes = code_spans(self.notes(prop))
            found.append(FieldRow(full, self.label(prop), name in required, notes))
            nested = self._nested(prop)
            if nested is not None:
                inner, suffix = nested
                found += self.rows(inner, f"{full}{suffix}.", depth + 1)
        return found

    def _nested(self, prop: Any) -> tuple[Any, str] | None:
        """The object schema a property holds (itself, through null, or as list items)."""
        if not isinstance(prop, dict):
            return None
        if "$ref" in prop:
            return prop, ""
        for part in prop.get("anyOf", []):
            if isinstance(part, dict) and "$ref" in part:
                return part, ""
        items = prop.get("items")
        if isinstance(items, dict) and ("$ref" in items or "properties" in items):
            return items, "[]"
        if "properties" in prop:
            return prop, ""
        return None

    def parameter(self, parameter: dict[str, Any]) -> FieldRow:
        schema = parameter.get("schema", {})
        return FieldRow(
            str(parameter.get("name", "")),
            self.label(schema),
            bool(parameter.get("required")),
            code_spans(
                "; ".join(p for p in (parameter.get("description", ""), self.notes(schema)) if p)
            ),
            where=str(parameter.get("in", "")),
        )

    def response(self, status: str, response: Any) -> ResponseView:
        if isinstance(response, dict) and "$ref" in response:
            response = self.responses.get(response["$ref"].rsplit("/", 1)[-1], {})
        schema = response.get("content", {}).get(JSON, {}).get("schema", {})
        description = code_spans(str(response.get("description", "")))
        return ResponseView(status, description, self.rows(schema))


def docs_view(document: dict[str, Any]) -> list[TagView]:
    """The document grouped by tag, each operation with its fields as rows."""
    reader = _Reader(document)
    groups = {
        tag["name"]: TagView(tag["name"], tag.get("description", ""))
        for tag in document.get("tags", [])
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            tag = (operation.get("tags") or [CORE_TAG])[0]
            group = groups.setdefault(tag, TagView(tag, ""))
            body = operation.get("requestBody", {}).get("content", {}).get(JSON, {})
            group.operations.append(
                OperationView(
                    anchor=operation.get("operationId", ""),
                    method=method.upper(),
                    path=path,
                    access=operation.get("x-access", ""),
                    summary=code_spans(operation.get("summary", "")),
                    description=code_spans(operation.get("description", "")),
                    parameters=[reader.parameter(p) for p in operation.get("parameters", [])],
                    body=reader.rows(body.get("schema", {})),
                    responses=[
                        reader.response(status, response)
                        for status, response in operation.get("responses", {}).items()
                    ],
                )
            )
    return [group for group in groups.values() if group.operations]


def code_spans(text: str) -> Markup:
    """Text for a page, escaped, with its `backticked` parts as <code>."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text as it is
        return escape(text)
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if index % 2 else escape(part)
        for index, part in enumerate(parts)
    )


ACCESS_LABELS = {"public": "anyone", "user": "signed-in users", "admin": "admins"}


@routes.page("/api/docs", access="user")
async def api_docs(request: web.Request) -> web.StreamResponse:
    """The API description, readable in a browser."""
    document = build_document(request.app)
    context = {
        "info": document["info"],
        "about": code_spans(document["info"].get("description", "")),
        "openapi_version": document["openapi"],
        "groups": docs_view(document),
        "access_labels": ACCESS_LABELS,
    }
    return await render_page(request, "api_docs.html", context)


@hookimpl
def medianest_routes() -> Routes:
    return routes
