"""The Plex plugin's pages and JSON API: handlers parse input, call the service, render."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aiohttp import BodyPartReader, web
from marshmallow import Schema, ValidationError, fields, validate, validates
from medianest_server.plugin_api import (
    Conflict,
    Id,
    InvalidInput,
    PluginContext,
    Routes,
    Unauthorized,
    UpstreamUnavailable,
    User,
    WholeNumber,
    current_user,
    load_json,
    load_query,
    parse_int,
    path_id,
    render_page,
)
from yarl import URL

from .errors import PinExpired, PlexError, PlexNotFound, PlexUnauthorized, PlexUnavailable
from .images import MAX_SIDE
from .service import SORTS, NoServerAccess, PlexService, PlexSignInNeeded
from .setup import add_setup_routes

PIN_COOKIE = "medianest_plex_pin"
PIN_CHECK_SECONDS = 2
NOT_CONFIGURED = "Plex is not connected right now; please try again in a moment."


async def render(
    request: web.Request, name: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """A page in the site's layout (menu, unread count, theme): per person, never cached."""
    response = await render_page(request, name, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


async def message_page(
    request: web.Request,
    title: str,
    message: str,
    *,
    status: int,
    retry_url: str | None = None,
    retry_label: str = "Try again",
) -> web.Response:
    return await render(
        request,
        "plex/message.html",
        {"title": title, "message": message, "retry_url": retry_url, "retry_label": retry_label},
        status=status,
    )


def build_routes(ctx: PluginContext) -> Routes:
    routes = Routes()
    add_setup_routes(routes, ctx)

    def service() -> PlexService | None:
        return ctx.services.get("plex", PlexService)

    # -- sign in with Plex ---------------------------------------------------------------
    #
    # GET /plex/login makes a PIN and shows the waiting page. With JavaScript, its button opens
    # Plex in a popup (or, when popups are blocked, goes there with a forwardUrl back to
    # /plex/login/check) and the page polls /plex/login/check as JSON; without, the button
    # goes to Plex with the forwardUrl and a <noscript> refresh polls the same URL as HTML.

    async def waiting(request: web.Request, stored: Mapping[str, Any]) -> web.Response:
        if wants_json(request):
            return web.json_response({"state": "waiting"}, headers={"Cache-Control": "no-store"})
        pin_id = int(stored["id"])
        response = await render(
            request,
            "plex/login.html",
            {
                "pin_id": pin_id,
                "code": stored["code"],
                "auth_url": stored["auth_url"],
                "popup_url": stored.get("popup_url") or stored["auth_url"],
                "check_url": f"/plex/login/check?pin={pin_id}",
            },
        )
        # keep a handle on the Plex popup (to close it when done); the default is same-origin
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
        return response

    async def failed(
        request: web.Request, title: str, message: str, status: int, *, forget_pin: bool = True
    ) -> web.Response:
        if wants_json(request):
            body = {"state": "failed", "title": title, "message": message}
            response: web.Response = web.json_response(
                {**body, "retry_url": "/plex/login"}, status=status
            )
        else:
            response = await message_page(
                request, title, message, status=status, retry_url="/plex/login"
            )
        if forget_pin:
            response.del_cookie(PIN_COOKIE, path="/plex/login")
        return response

    @routes.page("/login", access="public")
    async def login(request: web.Request) -> web.Response:
        plex = service()
        if plex is None:
            return await failed(request, "Plex is not available", NOT_CONFIGURED, 503)
        try:
            pin = await plex.create_pin()
        except PlexError as exc:
            title, message, status = _plex_down_text(exc)
            return await failed(request, title, message, status, forget_pin=False)
        nonce = secrets.token_urlsafe(24)  # binds the PIN to this browser
        ttl = max(60, min(pin.expires_in or 900, 3600))
        # on base_url, never the Host header: Plex sends the browser wherever this says
        forward = ctx.absolute_url(f"/plex/login/check?pin={pin.id}")
        stored = {
            "id": pin.id,
            "code": pin.code,
            # the page's own tab comes back through forwardUrl; a popup only has to approve
            "auth_url": plex.auth_url(pin, forward_url=forward),
            "popup_url": plex.auth_url(pin),
        }
        await ctx.cache.set(f"pin:{nonce}", stored, ttl)
        response: web.Response
        if wants_json(request):  # the sign-in page's popup flow (LoginProvider.popup)
            response = web.json_response(
                {
                    "pin_id": pin.id,
                    "code": pin.code,
                    "popup_url": stored["popup_url"],
                    "auth_url": stored["auth_url"],
                    "poll_url": f"/plex/login/check?pin={pin.id}",
                },
                headers={"Cache-Control": "no-store"},
            )
        elif request.query.get("redirect") == "1":  # popups blocked: there and back
            response = web.Response(status=303, headers={"Location": str(stored["auth_url"])})
        else:
            response = await waiting(request, stored)
        response.set_cookie(
            PIN_COOKIE,
            nonce,
            max_age=ttl,
            path="/plex/login",
            httponly=True,
            samesite="Lax",
            secure=request.secure,
        )
        return response

    @routes.page("/login/check", access="public")
    async def login_check(request: web.Request) -> web.StreamResponse:
        """Ask plex.tv about this browser's PIN, at most once per PIN_CHECK_SECONDS; sign in
        once it carries a token. HTML for the page and Plex's forwardUrl, JSON for polling."""
        plex = service()
        if plex is None:
            return await failed(request, "Plex is not available", NOT_CONFIGURED, 503)
        nonce = request.cookies.get(PIN_COOKIE, "")
        stored = await ctx.cache.get(f"pin:{nonce}") if nonce else None
        if stored is not None and request.query.get("pin", str(stored["id"])) != str(stored["id"]):
            # an older attempt of this browser (another tab, a popup closed and tried again):
            # the cookie belongs to the newer one, which must go on
            if wants_json(request):
                return web.json_response({"state": "superseded"}, status=409)
            stored = None
        if stored is None:
            if current_user(request) is not None:
                return signed_in(request)
            return await failed(
                request,
                "Sign-in not found",
                "This Plex sign-in expired or was started in another browser.",
                400,
            )
        pin_id = int(stored["id"])
        limit = await ctx.ratelimiter.hit(
            f"plex:pin:{pin_id}", limit=1, window_seconds=PIN_CHECK_SECONDS
        )
        if not limit.allowed:
            return await waiting(request, stored)
        try:
            pin = await plex.check_pin(pin_id)
            if not pin.auth_token:
                return await waiting(request, stored)
            identity = await plex.identity_for(pin.auth_token)
        except PinExpired:
            await ctx.cache.delete(f"pin:{nonce}")
            return await failed(
                request,
                "The Plex sign-in expired",
                "The code was not approved in time. Start again to get a new one.",
                410,
            )
        except NoServerAccess as exc:
            await ctx.cache.delete(f"pin:{nonce}")
            return await failed(
                request,
                "No access to this server",
                f"The Plex account {exc.username} has no access to this Plex server, so it "
                "cannot sign in to MediaNest. Ask the server's owner to share a library with "
                "it, or sign in with another Plex account.",
                403,
            )
        except PlexUnauthorized:
            await ctx.cache.delete(f"pin:{nonce}")
            ctx.log.warning("plex sign-in: plex.tv refused the token it had just given")
            return await failed(
                request,
                "Plex did not accept this sign-in",
                "plex.tv did not recognise the Plex account you just signed in with. Start "
                "again; if it keeps happening, sign out of Plex in your browser, sign in to "
                "plex.tv once more, and try again.",
                401,
            )
        except PlexUnavailable as exc:
            if wants_json(request):  # a blip: the PIN stands, the page keeps asking
                title, message, _ = _plex_down_text(exc)
                return web.json_response({"state": "waiting", "warning": message}, status=200)
            title, message, status = _plex_down_text(exc)
            return await failed(request, title, message, status, forget_pin=False)
        except PlexError as exc:
            title, message, status = _plex_down_text(exc)
            return await failed(request, title, message, status, forget_pin=False)
        await ctx.cache.delete(f"pin:{nonce}")
        try:
            await ctx.complete_login(request, identity)
        except Unauthorized as exc:  # a disabled account
            return await failed(request, "You cannot sign in", exc.message, 403)
        except Conflict as exc:  # linking from the profile: someone else's Plex account
            return await failed(request, "This Plex account was not linked", exc.message, 409)
        response = signed_in(request)
        response.del_cookie(PIN_COOKIE, path="/plex/login")
        return response

    def signed_in(request: web.Request) -> web.Response:
        where = ctx.return_url(request)  # the profile when the flow linked an account
        if wants_json(request):
            return web.json_response({"state": "signed_in", "redirect": where})
        return web.Response(status=303, headers={"Location": where})

    # -- the library: JSON ---------------------------------------------------------------

    def ready() -> PlexService:
        plex = service()
        if plex is None:
            raise UpstreamUnavailable(NOT_CONFIGURED)
        return plex

    def who(request: web.Request) -> User:
        user = current_user(request)
        assert user is not None  # access="user"
        return user

    @routes.get("/libraries", access="user", errors=UPSTREAM)
    async def api_libraries(request: web.Request) -> web.Response:
        return web.json_response({"libraries": await ready().sections(who(request))})

    @routes.get(
        "/libraries/{section:[0-9]+}/items", access="user", query=BrowseQuery, errors=UPSTREAM
    )
    async def api_browse(request: web.Request) -> web.Response:
        args = browse_args(request)
        page = await ready().browse(who(request), key(request, "section"), **args)
        return web.json_response(page)

    @routes.get("/items/{key:[0-9]+}", access="user", errors=UPSTREAM)
    async def api_item(request: web.Request) -> web.Response:
        return web.json_response(await ready().item(who(request), key(request, "key")))

    @routes.get("/search", access="user", query=SearchQuery, errors=UPSTREAM)
    async def api_search(request: web.Request) -> web.Response:
        query = load_query(request, SearchQuery())["q"]
        return web.json_response(
            {"query": query, "items": await ready().search(who(request), query)}
        )

    @routes.get("/recent", access="user", query=RecentQuery, errors=UPSTREAM)
    async def api_recent(request: web.Request) -> web.Response:
        query = load_query(request, RecentQuery())
        section = str(query["section"]) if query.get("section") else None
        items = await ready().recently_added(who(request), section)
        return web.json_response({"items": items})

    # -- collections -------------------------------------------------------------------

    @routes.get("/collections", access="user", query=CollectionsQuery, errors=UPSTREAM)
    async def api_collections(request: web.Request) -> web.Response:
        query = load_query(request, CollectionsQuery())
        section = str(query["section"])
        items = await ready().collections(who(request), section)
        if query["mine"]:
            items = [c for c in items if c["mine"]]
        return web.json_response({"section": section, "collections": items})

    @routes.get("/collections/{id:[0-9]+}", access="user", errors=UPSTREAM)
    async def api_collection(request: web.Request) -> web.Response:
        return web.json_response(await ready().collection(who(request), key(request, "id")))

    @routes.post("/collections", access="admin", status=201, body=NewCollection, errors=UPSTREAM)
    async def api_create_collection(request: web.Request) -> web.Response:
        body = await load_json(request, NewCollection())
        plex = ready()
        with plex_refusal():
            created = await plex.add_to_collection(
                str(body["section"]), body["title"], [str(i) for i in body["items"]]
            )
        return web.json_response(await plex.collection(who(request), created), status=201)

    @routes.post("/collections/{id:[0-9]+}/items", access="admin", body=MoreItems, errors=UPSTREAM)
    async def api_add_items(request: web.Request) -> web.Response:
        body = await load_json(request, MoreItems())
        plex, collection = ready(), key(request, "id")
        with plex_refusal():
            await plex.add_to_existing_collection(collection, [str(i) for i in body["items"]])
        return web.json_response(await plex.collection(who(request), collection))

    @routes.page("/collections/{section:[0-9]+}", access="user")
    async def collections_page(request: web.Request) -> web.Response:
        section = key(request, "section")

        async def load(plex: PlexService, user: User) -> dict[str, Any]:
            titles = {s["key"]: s["title"] for s in await plex.sections(user)}
            if section not in titles:
                raise PlexNotFound("Plex has no such library for you")
            return {
                "section": {"key": section, "title": titles[section]},
                "collections": await plex.collections(user, section),
            }

        return await library_page(request, "plex/collections.html", load)

    # -- the library: pages ---------------------------------------------------------------

    async def library_page(
        request: web.Request,
        template: str,
        load: Callable[[PlexService, User], Awaitable[dict[str, Any]]],
        defaults: Mapping[str, Any] | None = None,
    ) -> web.Response:
        """The page with what `load` found, or with `defaults` and the error in place."""
        plex = service()
        if plex is None:
            return await message_page(request, "Plex is not available", NOT_CONFIGURED, status=503)
        user = who(request)
        context: dict[str, Any] = {"user": user, "error": None, **(defaults or {})}
        try:
            context.update(await load(plex, user))
        except PlexSignInNeeded as exc:
            return await message_page(
                request,
                "Sign in with Plex again",
                exc.message,
                status=401,
                retry_url="/plex/login",
                retry_label="Sign in with Plex",
            )
        except PlexNotFound:
            return await message_page(
                request, "Not found", "Plex has no such item for you.", status=404
            )
        except PlexError as exc:
            # people read plain words; the cause goes to the log and the admin health page
            ctx.log.warning("plex page %s failed: %s", request.path, exc.detail)
            context["error"] = exc.message
        return await render(request, template, context)

    @routes.page("/", access="user")
    async def index(request: web.Request) -> web.Response:
        async def load(plex: PlexService, user: User) -> dict[str, Any]:
            sections = await plex.sections(user)
            recent = await plex.recently_added(user, size=12)
            return {"sections": sections, "recent": recent}

        return await library_page(request, "plex/index.html", load)

    @routes.page("/library/{section:[0-9]+}", access="user")
    async def browse_page(request: web.Request) -> web.Response:
        args = browse_args(request)
        section = key(request, "section")

        async def load(plex: PlexService, user: User) -> dict[str, Any]:
            page = await plex.browse(user, section, **args)
            start, size, total = page["start"], args["size"], page["total"]
            query = {k: str(v) for k, v in args["filters"].items()}
            query["sort"] = args["sort"]
            query["size"] = str(size)
            prev_url = next_url = None
            if start > 0:
                prev_url = str(
                    URL(request.path).with_query({**query, "start": str(max(0, start - size))})
                )
            if start + size < total:
                next_url = str(URL(request.path).with_query({**query, "start": str(start + size)}))
            return {"page": page, "prev_url": prev_url, "next_url": next_url, "sorts": list(SORTS)}

        return await library_page(request, "plex/browse.html", load)

    @routes.page("/item/{key:[0-9]+}", access="user")
    async def item_page(request: web.Request) -> web.Response:
        rating_key = key(request, "key")

        async def load(plex: PlexService, user: User) -> dict[str, Any]:
            return {"item": await plex.item(user, rating_key)}

        return await library_page(request, "plex/item.html", load)

    @routes.page("/search", access="user")
    async def search_page(request: web.Request) -> web.Response:
        query = request.query.get("q", "")

        async def load(plex: PlexService, user: User) -> dict[str, Any]:
            return {"items": await plex.search(user, query, limit=30)}

        return await library_page(
            request, "plex/search.html", load, defaults={"query": query, "items": []}
        )

    # -- the image proxy ----------------------------------------------------------------

    @routes.page("/photo", access="user")
    async def photo(request: web.Request) -> web.StreamResponse:
        plex, user = ready(), who(request)
        path = request.query.get("path", "")
        width = parse_int(request.query.get("w", ""), field="w", low=1, high=MAX_SIDE)
        height = parse_int(request.query.get("h", ""), field="h", low=1, high=MAX_SIDE)
        if not plex.images.verify(user.id, path, width, height, request.query.get("sig", "")):
            raise web.HTTPForbidden(text="This image was not shown to you.")
        try:
            # with the viewer's own server token: Plex decides what they may see
            token = await plex.token_for(user)
        except PlexSignInNeeded:
            raise web.HTTPForbidden(text="Sign in with Plex to see images.") from None
        try:
            async with plex.server.for_token(token).transcode(path, width, height) as image:
                response = web.StreamResponse(
                    headers={
                        "Content-Type": image.content_type,
                        "Cache-Control": "private, max-age=2592000, immutable",
                    }
                )
                if image.content_length is not None:
                    response.content_length = image.content_length
                await response.prepare(request)
                async for chunk in image.chunks(65536):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except PlexUnauthorized:
            raise web.HTTPForbidden(text="Plex does not show you this image.") from None
        except PlexNotFound:
            raise web.HTTPNotFound(text="Plex has no such image for you.") from None

    return routes


MAX_PAYLOAD_BYTES = 1024 * 1024


async def read_plex_payload(request: web.Request) -> Any:
    """The `payload` part of Plex's multipart body, parsed; None if there is none.

    Plex sends it with `Content-Type: application/json` (some senders without a type), and
    beside it, for some events, a `thumb` JPEG part, which is skipped unread. Only the parts
    are walked, so neither shape depends on how a form parser treats typed parts."""
    if request.content_type == "application/x-www-form-urlencoded":  # a relay's plain form
        raw = (await request.post()).get("payload")
        return json.loads(raw) if isinstance(raw, str) else None
    if not request.content_type.startswith("multipart/"):
        return None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name != "payload":
            continue  # the thumbnail, or anything else Plex adds one day
        raw = await part.read(decode=True)
        if len(raw) > MAX_PAYLOAD_BYTES:
            return None
        return json.loads(raw.decode(part.get_charset("utf-8")))
    return None


def webhook_handler(ctx: PluginContext) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Plex's webhooks: multipart with a `payload` JSON part (and maybe a `thumb`)."""

    async def handle(request: web.Request) -> web.Response:
        try:
            payload = await read_plex_payload(request)
        except (ValueError, UnicodeDecodeError, LookupError):
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
            ctx.log.warning("plex webhook refused: malformed payload")
            raise InvalidInput(
                "Not a Plex webhook payload", details={"payload": ["Missing or not JSON."]}
            )
        plex = ctx.services.get("plex", PlexService)
        if payload["event"] != "library.new" or plex is None:
            return web.json_response({"ok": True, "handled": False})
        try:
            data = await plex.library_updated(payload)
        except ValueError as exc:
            ctx.log.warning("plex webhook refused: %s", exc)
            raise InvalidInput(str(exc)) from None
        return web.json_response({"ok": True, "handled": True, "guids": data["guids"]})

    return handle


def key(request: web.Request, name: str) -> str:
    """A Plex key from the path (section, rating key, collection): ASCII digits, bounded."""
    return str(path_id(request, name))


# what a Plex call may answer besides the route's own statuses: Plex refused or is down
UPSTREAM = (502, 503)


class SearchQuery(Schema):
    q = fields.String(load_default="", validate=validate.Length(max=200))


class RecentQuery(Schema):
    section = Id(load_default=None)


class CollectionsQuery(Schema):
    section = Id(required=True)
    mine = fields.Boolean(load_default=False)


class NewCollection(Schema):
    section = Id(required=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    items = fields.List(Id(), required=True, validate=validate.Length(min=1, max=500))

    @validates("title")
    def _title(self, value: str, **_: Any) -> None:
        if not value.strip():
            raise ValidationError("A title of 1 to 200 characters.")


class MoreItems(Schema):
    items = fields.List(Id(), required=True, validate=validate.Length(min=1, max=500))


@contextmanager
def plex_refusal() -> Iterator[None]:
    """Plex answering 400 to a change (items of another library, a smart collection) is the
    caller's mistake: 400, not 502."""
    try:
        yield
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    except PlexError as exc:
        if exc.http_status == 400:
            raise InvalidInput(
                "Plex refused the change: are the items in that collection's library?"
            ) from None
        raise


class BrowseQuery(Schema):
    start = WholeNumber(0, 10_000_000, load_default=0)
    size = WholeNumber(1, 200, load_default=50)
    sort = fields.String(load_default="title", validate=validate.OneOf(list(SORTS)))
    unwatched = fields.Boolean(load_default=False)
    genre = Id(load_default=None)
    year = WholeNumber(1, 9999, load_default=None)
    decade = WholeNumber(1, 9999, load_default=None)


def browse_args(request: web.Request) -> dict[str, Any]:
    """The library's paging, sort and filters from the query (400 naming a bad one)."""
    query = load_query(request, BrowseQuery())
    filters: dict[str, str | int] = {"unwatched": 1} if query["unwatched"] else {}
    for name in ("genre", "year", "decade"):
        if query[name] is not None:
            filters[name] = query[name]
    return {
        "start": query["start"],
        "size": query["size"],
        "sort": query["sort"],
        "filters": filters,
    }


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _plex_down_text(exc: PlexError) -> tuple[str, str, int]:
    """(title, message, status) for plex.tv or the server failing during sign-in."""
    if isinstance(exc, PlexUnavailable):
        return (
            f"{exc.upstream} cannot be reached",
            f"{exc.upstream} is not answering right now, so signing in with Plex is not possible.",
            503,
        )
    return (
        f"{exc.upstream} answered unexpectedly",
        f"Signing in with Plex did not work: {exc.message} Please try again in a moment.",
        502,
    )
