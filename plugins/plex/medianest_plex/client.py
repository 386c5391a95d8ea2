"""Clients for plex.tv and a Plex Media Server, on MediaNest's shared HTTP client.

    info = PlexClientInfo(client_identifier=config["client_identifier"], product="MediaNest")
    plex_tv = PlexTvClient(ctx.http, info, base_url=config["plex_tv_url"])
    pin = await plex_tv.create_pin()
    server = PlexServerClient(ctx.http, config["url"], token=owner_token, info=info)
    page = await server.for_token(user_token).browse("1", start=0, size=50, sort="titleSort")

Every call sends the `X-Plex-*` headers and `Accept: application/json` (without it both answer
XML, external-apis.md §1.1), goes through the circuit breaker of its upstream ("Plex" or
"plex.tv"), and returns frozen dataclasses. Failures are one of `PlexUnauthorized` (401: the
token was refused), `PlexNotFound` (404; `PinExpired` for a PIN), `PlexUnavailable` (cannot be
reached, 5xx, circuit open) or `PlexError` (anything else). Tokens travel in the `X-Plex-Token`
header, never in a URL, and no message, `repr` or log line carries one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode

from medianest_server.plugin_api import HttpClient, HttpResponse, UpstreamError, UpstreamUnavailable

from .errors import (
    PLEX,
    PLEX_TV,
    PinExpired,
    PlexError,
    PlexNotFound,
    PlexUnauthorized,
    PlexUnavailable,
    not_answering,
)
from .models import (
    TYPE_NUMBERS,
    Pin,
    PlexClientInfo,
    PlexHub,
    PlexIdentity,
    PlexImage,
    PlexItem,
    PlexPage,
    PlexResource,
    PlexSection,
    PlexServerInfo,
    PlexSession,
    PlexUser,
    media_container,
    parse_hub,
    parse_identity,
    parse_item,
    parse_page,
    parse_pin,
    parse_resource,
    parse_section,
    parse_server_info,
    parse_session,
    parse_user,
)

DEFAULT_PLEX_TV_URL = "https://plex.tv"
PLEX_AUTH_APP_URL = "https://app.plex.tv/auth#?"
_KEY = re.compile(r"^\d+$")


# -- shared plumbing ---------------------------------------------------------------------------


class _PlexHttp:
    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        info: PlexClientInfo,
        upstream: str,
        timeout_seconds: float,
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self.info = info
        self._upstream = upstream
        self.timeout_seconds = timeout_seconds
        self.retries: int | None = None  # None: the HTTP client's default

    def _headers(self, token: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = self.info.headers()
        if token:
            headers["X-Plex-Token"] = token
        if extra:
            headers.update(extra)
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        single_flight: bool = False,
    ) -> HttpResponse:
        try:
            response = await self._http.request(
                method,
                self.base_url + path,
                upstream=self._upstream,
                params=params,
                headers=self._headers(token, headers),
                timeout=self.timeout_seconds,
                retries=self.retries,
                single_flight=single_flight,
            )
        except UpstreamUnavailable as exc:
            raise _unavailable(exc, self._upstream) from exc
        except UpstreamError as exc:
            raise not_answering(self._upstream, exc.message, http_status=exc.http_status) from exc
        _raise_for_status(response, self._upstream, path)
        return response

    async def _json(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        single_flight: bool = False,
    ) -> Any:
        response = await self._call(
            method,
            path,
            token=token,
            params=params,
            headers=headers,
            single_flight=single_flight,
        )
        try:
            return response.json()
        except UpstreamError as exc:
            raise PlexError(
                f"{self._upstream} sent a response that is not JSON ({path})",
                upstream=self._upstream,
                http_status=response.status,
            ) from exc


def _unavailable(exc: UpstreamUnavailable, upstream: str) -> PlexUnavailable:
    details = exc.details if isinstance(exc.details, Mapping) else {}
    retry = details.get("retry_after_seconds")
    return PlexUnavailable(
        f"{upstream} is not answering right now.",
        upstream=upstream,
        retry_after_seconds=retry if isinstance(retry, int) else None,
        detail=exc.message,
    )


def _raise_for_status(response: HttpResponse, upstream: str, path: str) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    reason = _error_message(response)
    where = f"({path})"
    if status == 401 or (status == 422 and "invalid token" in reason.lower()):
        raise PlexUnauthorized(
            f"{upstream} did not accept MediaNest's access.",
            upstream=upstream,
            http_status=status,
            detail=f"{upstream} refused the token {where}",
        )
    if status == 404:
        raise PlexNotFound(
            f"{upstream} has no such thing for you.",
            upstream=upstream,
            http_status=404,
            detail=f"{upstream} found nothing {where}",
        )
    if status >= 500:
        raise not_answering(upstream, f"{upstream} answered {status} {where}", http_status=status)
    detail = f": {reason}" if reason else ""
    raise PlexError(
        f"{upstream} answered in a way MediaNest does not understand.",
        upstream=upstream,
        http_status=status,
        detail=f"{upstream} answered {status} {where}{detail}",
    )


def _error_message(response: HttpResponse) -> str:
    """The message of plex.tv's `{"errors": [{"code", "message"}]}` (no tokens in those)."""
    if "json" not in response.headers.get("Content-Type", ""):
        return ""
    try:
        errors = response.json().get("errors") or []
        return "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
    except (UpstreamError, AttributeError):
        return ""


def _paging(start: int | None, size: int | None) -> dict[str, str]:
    headers = {}
    if start is not None:
        headers["X-Plex-Container-Start"] = str(max(start, 0))
    if size is not None:
        headers["X-Plex-Container-Size"] = str(max(size, 0))
    return headers


def _type_number(item_type: int | str) -> int:
    if isinstance(item_type, int):
        return item_type
    if item_type in TYPE_NUMBERS:
        return TYPE_NUMBERS[item_type]
    if item_type.isdigit():
        return int(item_type)
    raise ValueError(f"unknown Plex item type {item_type!r}")


def _key(value: str | int, what: str) -> str:
    """A rating or section key, checked: it goes into a URL path."""
    text = str(value)
    if not _KEY.match(text):
        raise ValueError(f"invalid Plex {what}: {text!r}")
    return text


# -- plex.tv -----------------------------------------------------------------------------------


class PlexTvClient(_PlexHttp):
    """plex.tv: the PIN sign-in, who a token belongs to, and which servers it can reach."""

    def __init__(
        self,
        http: HttpClient,
        info: PlexClientInfo,
        *,
        base_url: str = DEFAULT_PLEX_TV_URL,
        timeout_seconds: float = 10.0,
    ) -> None:
        super().__init__(http, base_url, info, PLEX_TV, timeout_seconds)

    async def create_pin(self, *, strong: bool = True) -> Pin:
        """`POST /api/v2/pins?strong=true`: a PIN for the Plex auth app (§1.2 step 2)."""
        params = {"strong": "true"} if strong else None
        return parse_pin(await self._json("POST", "/api/v2/pins", token=None, params=params))

    async def check_pin(self, pin_id: int) -> Pin:
        """The PIN now: `auth_token` is set once approved. `PinExpired` once it expired."""
        try:
            body = await self._json("GET", f"/api/v2/pins/{int(pin_id)}", token=None)
        except PlexNotFound as exc:
            raise PinExpired(
                "The Plex sign-in code expired; start again", upstream=PLEX_TV, http_status=404
            ) from exc
        return parse_pin(body)

    def auth_url(self, pin: Pin, *, forward_url: str | None = None) -> str:
        """Where to send the browser to approve `pin` (the Plex auth app, §1.2 step 3)."""
        params = {
            "clientID": self.info.client_identifier,
            "code": pin.code,
            "context[device][product]": self.info.product,
        }
        if forward_url:
            params["forwardUrl"] = forward_url
        return PLEX_AUTH_APP_URL + urlencode(params, quote_via=quote)

    async def user(self, token: str) -> PlexUser:
        """The account of `token`; `PlexUnauthorized` if plex.tv refuses it (§1.2 step 1)."""
        return parse_user(await self._json("GET", "/api/v2/user", token=token, single_flight=True))

    async def resources(self, token: str) -> list[PlexResource]:
        """Every device `token`'s account can reach (servers and players, §1.3 A)."""
        body = await self._json(
            "GET",
            "/api/v2/resources",
            token=token,
            params={"includeHttps": 1, "includeRelay": 1},
            single_flight=True,
        )
        if not isinstance(body, list):
            raise PlexError("plex.tv sent resources that are not a list", upstream=PLEX_TV)
        return [parse_resource(entry) for entry in body if isinstance(entry, dict)]

    async def server_access(self, token: str, machine_identifier: str) -> PlexResource | None:
        """The server `machine_identifier` as `token`'s account sees it; None: no access."""
        for resource in await self.resources(token):
            if resource.is_server and resource.machine_identifier == machine_identifier:
                return resource
        return None


# -- Plex Media Server -------------------------------------------------------------------------


class PlexServerClient(_PlexHttp):
    """One Plex Media Server, as one token sees it. `for_token` gives the same server as
    another person sees it (their own server access token: they see what is shared with them).
    """

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        *,
        token: str | None,
        info: PlexClientInfo,
        timeout_seconds: float = 15.0,
        upstream: str = PLEX,
    ) -> None:
        """`upstream` names it for the HTTP client's statistics and circuit breaker."""
        super().__init__(http, base_url, info, upstream, timeout_seconds)
        self._token = token
        self._machine_identifier: str | None = None

    def __repr__(self) -> str:
        return f"PlexServerClient({self.base_url!r})"

    def for_token(self, token: str) -> PlexServerClient:
        """This server, seen with `token`."""
        client = PlexServerClient(
            self._http,
            self.base_url,
            token=token,
            info=self.info,
            timeout_seconds=self.timeout_seconds,
            upstream=self._upstream,
        )
        client._machine_identifier = self._machine_identifier
        return client

    async def _get(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body = await self._json(
            "GET", path, token=self._token, params=params, headers=headers, single_flight=True
        )
        return media_container(body)

    async def identity(self) -> PlexIdentity:
        """`/identity` (no token): is it up, which server is it, which version."""
        container = media_container(
            await self._json("GET", "/identity", token=None, single_flight=True)
        )
        identity = parse_identity(container)
        self._machine_identifier = identity.machine_identifier or None
        return identity

    async def server_info(self) -> PlexServerInfo:
        """`/`: name, version and machine identifier, for "test connection"."""
        return parse_server_info(await self._get("/"))

    async def machine_identifier(self) -> str:
        """The server's machine identifier (asked once, then remembered)."""
        if self._machine_identifier is None:
            await self.identity()
        if not self._machine_identifier:
            raise PlexError("Plex did not say its machine identifier")
        return self._machine_identifier

    async def sections(self) -> list[PlexSection]:
        """The libraries this token sees."""
        container = await self._get("/library/sections")
        return [parse_section(d) for d in container.get("Directory") or () if isinstance(d, dict)]

    async def browse(
        self,
        section: str | int,
        *,
        start: int = 0,
        size: int = 50,
        sort: str | None = None,
        filters: Mapping[str, str | int] | None = None,
        item_type: int | str | None = None,
    ) -> PlexPage:
        """One page of a library. `sort` is PMS's: "titleSort", "addedAt:desc", "year:desc",
        "rating:desc", "audienceRating:desc"; `filters` e.g. {"unwatched": 1, "genre": <tag
        id>, "year": 2021, "decade": 2010}; `item_type` a type name or number (4: episodes).
        `size=0` answers only `total_size`."""
        params: dict[str, str | int] = dict(filters or {})
        if sort:
            params["sort"] = sort
        if item_type is not None:
            params["type"] = _type_number(item_type)
        container = await self._get(
            f"/library/sections/{_key(section, 'section')}/all",
            params=params,
            headers=_paging(start, size),
        )
        return parse_page(container)

    async def count(self, section: str | int) -> int:
        """How many items a library has (`X-Plex-Container-Size: 0` answers the total only)."""
        return (await self.browse(section, start=0, size=0)).total_size

    async def filter_values(self, section: str | int, field: str) -> list[tuple[str, str]]:
        """(key, title) pairs a library can be filtered by: field "genre", "year" or "decade".
        Genre filters take the key (a tag id), not the name."""
        if field not in ("genre", "year", "decade"):
            raise ValueError(f"unsupported filter field {field!r}")
        container = await self._get(f"/library/sections/{_key(section, 'section')}/{field}")
        return [
            (str(d.get("key", "")), str(d.get("title", "")))
            for d in container.get("Directory") or ()
            if isinstance(d, dict)
        ]

    async def metadata(self, rating_key: str | int) -> PlexItem:
        """One item, complete (summary, cast, genres, files, guids); `PlexNotFound` if unknown."""
        container = await self._get(f"/library/metadata/{_key(rating_key, 'rating key')}")
        items = [m for m in container.get("Metadata") or () if isinstance(m, dict)]
        if not items:
            raise PlexNotFound("Plex found nothing (/library/metadata)", http_status=200)
        return parse_item(items[0])

    async def children(
        self, rating_key: str | int, *, start: int | None = None, size: int | None = None
    ) -> PlexPage:
        """A show's seasons or a season's episodes."""
        container = await self._get(
            f"/library/metadata/{_key(rating_key, 'rating key')}/children",
            headers=_paging(start, size),
        )
        return parse_page(container)

    async def search(
        self, query: str, *, limit: int = 10, section: str | int | None = None
    ) -> list[PlexHub]:
        """`/hubs/search` across the libraries this token sees, grouped in hubs. PMS only uses
        `sectionId` to order hubs, so with `section` the items are also filtered here."""
        if not query.strip():
            return []  # PMS answers 400 to an empty query
        params: dict[str, str | int] = {"query": query, "limit": limit}
        wanted = None
        if section is not None:
            wanted = int(_key(section, "section"))
            params["sectionId"] = wanted
        try:
            container = await self._get("/hubs/search", params=params)
        except PlexNotFound:  # restrictions leave this token no searchable library
            return []
        hubs = [parse_hub(h) for h in container.get("Hub") or () if isinstance(h, dict)]
        if wanted is not None:
            hubs = [hub.only_section(wanted) for hub in hubs]
        return hubs

    async def recently_added(
        self, section: str | int | None = None, *, start: int = 0, size: int = 50
    ) -> PlexPage:
        """Newest first, across the libraries this token sees or in one (seasons stand for
        new episodes, as Plex groups them)."""
        path = "/library/recentlyAdded"
        if section is not None:
            path = f"/library/sections/{_key(section, 'section')}/recentlyAdded"
        return parse_page(await self._get(path, headers=_paging(start, size)))

    async def collections(self, section: str | int) -> list[PlexItem]:
        """The collections of a library."""
        container = await self._get(f"/library/sections/{_key(section, 'section')}/collections")
        return [parse_item(m) for m in container.get("Metadata") or () if isinstance(m, dict)]

    async def collection(self, collection_id: str | int) -> PlexItem:
        """One collection (a library item of type "collection", as python-plexapi reads it)."""
        item = await self.metadata(_key(collection_id, "collection"))
        if item.type != "collection":
            raise PlexNotFound("Plex has no such collection (/library/metadata)")
        return item

    async def collection_items(
        self, collection_id: str | int, *, start: int | None = None, size: int | None = None
    ) -> PlexPage:
        """What a collection holds."""
        container = await self._get(
            f"/library/collections/{_key(collection_id, 'collection')}/children",
            headers=_paging(start, size),
        )
        return parse_page(container)

    async def _items_uri(self, item_keys: Sequence[str | int]) -> str:
        if not item_keys:
            raise ValueError("no items given")
        keys = ",".join(_key(k, "rating key") for k in item_keys)
        machine = await self.machine_identifier()
        return f"server://{machine}/com.plexapp.plugins.library/library/metadata/{keys}"

    async def create_collection(
        self,
        section: str | int,
        title: str,
        item_keys: Sequence[str | int],
        *,
        item_type: int | str | None = None,
    ) -> PlexItem:
        """A new (regular) collection of `item_keys` in `section`; all in the query, as Plex
        wants (§1.5 Collections). Plex makes a new one even if the title exists: look first.
        `item_type` (1 movies, 2 shows, ...) defaults to the type of the section."""
        section_key = _key(section, "section")
        if item_type is None:
            kinds = {s.key: s.type for s in await self.sections()}
            if section_key not in kinds:
                raise PlexNotFound(f"Plex has no library {section_key}")
            item_type = kinds[section_key]
        params: dict[str, str | int] = {
            "uri": await self._items_uri(item_keys),
            "type": _type_number(item_type),
            "title": title,
            "smart": 0,
            "sectionId": section_key,
        }
        body = await self._json("POST", "/library/collections", token=self._token, params=params)
        items = media_container(body).get("Metadata") or ()
        if not items:
            raise PlexError("Plex did not return the new collection")
        return parse_item(items[0])

    async def add_to_collection(
        self, collection_id: str | int, item_keys: Sequence[str | int]
    ) -> None:
        """Put `item_keys` in an existing (regular) collection."""
        await self._call(
            "PUT",
            f"/library/collections/{_key(collection_id, 'collection')}/items",
            token=self._token,
            params={"uri": await self._items_uri(item_keys)},
        )

    async def refresh_section(
        self, section: str | int, path: str | None = None, *, force: bool = False
    ) -> None:
        """Scan a library, or only the folder `path` (as PMS sees it: a partial scan, §1.5).
        Plex answers at once and scans in the background."""
        params: dict[str, str | int] = {}
        if path:
            params["path"] = path
        if force:
            params["force"] = 1
        await self._call(
            "GET",
            f"/library/sections/{_key(section, 'section')}/refresh",
            token=self._token,
            params=params,
        )

    async def sessions(self) -> list[PlexSession]:
        """Active streams (the owner's token)."""
        container = await self._get("/status/sessions")
        return [parse_session(d) for d in container.get("Metadata") or () if isinstance(d, dict)]

    @asynccontextmanager
    async def transcode(
        self, path: str, width: int, height: int, *, max_bytes: int = 10 * 2**20
    ) -> AsyncIterator[PlexImage]:
        """Stream `path` (an image path on this server, e.g. an item's `thumb`) resized by
        Plex's photo transcoder, for the image proxy:

            async with server.transcode(item.thumb, 300, 450) as image:
                async for chunk in image.chunks(): ...

        Only server paths: a URL of another host is refused here (ValueError), since Plex would
        fetch it. The token goes in the header, never in the URL."""
        if not path.startswith("/") or path.startswith("//") or "://" in path:
            raise ValueError("only image paths on the Plex server can be transcoded")
        if not (0 < width <= 4000 and 0 < height <= 4000):
            raise ValueError("image sides must be 1..4000")
        params: dict[str, str | int] = {
            "url": path,
            "width": width,
            "height": height,
            "minSize": 1,
            "upscale": 1,
        }
        headers = self._headers(self._token, {"Accept": "image/*"})
        try:
            async with self._http.stream(
                "GET",
                self.base_url + "/photo/:/transcode",
                upstream=PLEX,
                params=params,
                headers=headers,
                timeout=self.timeout_seconds,
                max_body_bytes=max_bytes,
            ) as response:
                if not response.ok:
                    _raise_for_stream_status(response.status)

                async def chunks(size: int) -> AsyncIterator[bytes]:
                    try:
                        async for chunk in response.iter_chunked(size):
                            yield chunk
                    except UpstreamError as exc:
                        raise not_answering(PLEX, exc.message, http_status=exc.http_status) from exc

                yield PlexImage(
                    response.headers.get("Content-Type", "image/jpeg"),
                    response.content_length,
                    chunks,
                )
        except UpstreamUnavailable as exc:
            raise _unavailable(exc, PLEX) from exc
        except UpstreamError as exc:
            raise not_answering(PLEX, exc.message, http_status=exc.http_status) from exc


def _raise_for_stream_status(status: int) -> None:
    where = "(/photo/:/transcode)"
    if status in (401, 403):
        raise PlexUnauthorized(
            "Plex did not show this image to you.",
            http_status=status,
            detail=f"Plex refused the token {where}",
        )
    if status == 404:
        raise PlexNotFound(
            "Plex has no such image.", http_status=status, detail=f"Plex found nothing {where}"
        )
    if status >= 500:
        raise not_answering(PLEX, f"Plex answered {status} {where}", http_status=status)
    raise PlexError(
        "Plex answered in a way MediaNest does not understand.",
        http_status=status,
        detail=f"Plex answered {status} {where}",
    )


__all__ = [
    "DEFAULT_PLEX_TV_URL",
    "Pin",
    "PinExpired",
    "PlexClientInfo",
    "PlexError",
    "PlexHub",
    "PlexIdentity",
    "PlexImage",
    "PlexItem",
    "PlexNotFound",
    "PlexPage",
    "PlexResource",
    "PlexSection",
    "PlexServerClient",
    "PlexServerInfo",
    "PlexSession",
    "PlexTvClient",
    "PlexUnauthorized",
    "PlexUnavailable",
    "PlexUser",
]
