"""Route tables that declare who may call each route, for the core and for plugins alike.

    routes = Routes()

    @routes.get("/libraries", access="user")            # JSON: /api/v1/<plugin>/libraries
    async def libraries(request): ...

    @routes.page("/", access="user")                    # page: /<plugin>/
    async def library_page(request): ...

Access is one of "public" (anyone), "user" (signed in) or "admin". The core enforces it before
the handler runs; a route without a declared access cannot be registered. While a plugin is not
configured yet its routes answer "not connected yet", except those marked `setup=True` (the
pages that connect it, such as a server picker).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from aiohttp import web

Access = Literal["public", "user", "admin"]
RouteKind = Literal["api", "page"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACCESS_LEVELS: tuple[str, ...] = get_args(Access)


@dataclass(frozen=True)
class RouteDoc:
    """What the API description says about a route: marshmallow schemas (classes or instances)
    of its JSON body, its query string and its answer, a summary (default: the handler's
    first docstring line), and `errors`: statuses the handler itself may answer beyond those
    its access and input imply (409 for a name taken, 502/503 for an upstream)."""

    body: Any = None
    query: Any = None
    response: Any = None
    summary: str | None = None
    status: int = 200
    errors: tuple[int, ...] = ()


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    access: Access
    kind: RouteKind
    name: str | None = None
    doc: RouteDoc = field(default_factory=RouteDoc)
    setup: bool = False


class Routes:
    """A table of routes, each with its access; hand it back from `medianest_routes`."""

    def __init__(self) -> None:
        self.specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        access: Access,
        kind: RouteKind = "api",
        name: str | None = None,
        body: Any = None,
        query: Any = None,
        response: Any = None,
        summary: str | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        setup: bool = False,
    ) -> Callable[[Handler], Handler]:
        if access not in ACCESS_LEVELS:
            raise ValueError(f"access must be one of {ACCESS_LEVELS}, not {access!r}")
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/': {path!r}")

        doc = RouteDoc(body, query, response, summary, status, tuple(errors))

        def register(handler: Handler) -> Handler:
            self.specs.append(
                RouteSpec(method.upper(), path, handler, access, kind, name, doc, setup)
            )
            return handler

        return register

    def get(
        self, path: str, *, access: Access, name: str | None = None, **doc: Any
    ) -> Callable[[Handler], Handler]:
        """A JSON route; `doc` takes `body`, `query`, `response` schemas, `summary`, `status`,
        `errors`."""
        return self.route("GET", path, access=access, name=name, **doc)

    def post(
        self, path: str, *, access: Access, name: str | None = None, **doc: Any
    ) -> Callable[[Handler], Handler]:
        """A JSON route; `doc` takes `body`, `query`, `response` schemas, `summary`, `status`,
        `errors`."""
        return self.route("POST", path, access=access, name=name, **doc)

    def put(
        self, path: str, *, access: Access, name: str | None = None, **doc: Any
    ) -> Callable[[Handler], Handler]:
        """A JSON route; `doc` takes `body`, `query`, `response` schemas, `summary`, `status`,
        `errors`."""
        return self.route("PUT", path, access=access, name=name, **doc)

    def patch(
        self, path: str, *, access: Access, name: str | None = None, **doc: Any
    ) -> Callable[[Handler], Handler]:
        """A JSON route; `doc` takes `body`, `query`, `response` schemas, `summary`, `status`,
        `errors`."""
        return self.route("PATCH", path, access=access, name=name, **doc)

    def delete(
        self, path: str, *, access: Access, name: str | None = None, **doc: Any
    ) -> Callable[[Handler], Handler]:
        """A JSON route; `doc` takes `body`, `query`, `response` schemas, `summary`, `status`,
        `errors`."""
        return self.route("DELETE", path, access=access, name=name, **doc)

    def page(
        self,
        path: str,
        *,
        access: Access,
        method: str = "GET",
        name: str | None = None,
        setup: bool = False,
    ) -> Callable[[Handler], Handler]:
        """An HTML page (or a form post answered with a page or a redirect). `setup=True`:
        it serves while the plugin is not configured yet (the pages that connect it)."""
        return self.route(method, path, access=access, kind="page", name=name, setup=setup)


@dataclass(frozen=True)
class MountedRoute:
    """A route as registered on the app: who owns it and who may call it."""

    plugin: str
    method: str
    path: str
    access: Access
    kind: RouteKind
    handler: Handler | None = None
    doc: RouteDoc = field(default_factory=RouteDoc)
    setup: bool = False


def mount_path(spec: RouteSpec, plugin: str, *, builtin: bool) -> str:
    """Built-in routes keep their path; a plugin's go under /api/v1/<plugin>/ or /<plugin>/."""
    if builtin:
        return spec.path
    if spec.kind == "api":
        return f"/api/v1/{plugin}{spec.path}"
    return f"/{plugin}{spec.path}"
