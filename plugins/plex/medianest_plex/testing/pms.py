"""A fake Plex Media Server: the endpoints MediaNest uses, with PMS's wire contract.

external-apis.md §1.4-1.5 and §6: JSON `MediaContainer` only with `Accept: application/json`
(XML otherwise), the token by `X-Plex-Token` header or query, an HTML 401 (even for JSON clients)
without a valid one, paging by `X-Plex-Container-Start/Size` header or query echoed in headers
and in `offset`/`size`/`totalSize`, per-token visibility (the owner sees every library, a friend
what is shared with them), collections created and filled by `server://` URIs in the query,
refreshes that answer 200 with an empty body and are recorded, and `/photo/:/transcode` that
answers a real JPEG scaled as the spec describes.

Errors: 401 is the HTML page of §1.4, which comes from captures of real servers; the spec gives
every PMS path a JSON `{"errors": [...]}` body for 400 and 401, but it is plex.tv's body copied
(its example is "X-Plex-Client-Identifier is missing"), and the captures show HTML. 404 is the
spec's HTML page. The reference is silent on the body of a PMS 400: the fake sends the same
small HTML page as for 401 and 404.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from medianest_server.plugin_api import Clock, SystemClock

from .library import TYPE_NUMBERS, FakeItem, FakeSection, FakeSession, Library
from .listing import filter_items, paging, sort_items, to_int
from .render import hub_json, item_json, section_json, session_json, tag_hub_json
from .wire import (
    FakeService,
    Handler,
    html_error,
    html_page,
    jpeg,
    wants_json,
    xml_element,
    xml_response,
)

MEDIA_TAG_PREFIX = "/system/bundle/media/flags/"
RECENTLY_ADDED_PAGE = 50  # the spec's default page for recentlyAdded (§1.5)
MAX_IMAGE_SIDE = 4000
POSTER_SIZE = (1000, 1500)  # an item's own poster and art [inferred: typical Plex sizes]
ART_SIZE = (1920, 1080)
_URI = re.compile(
    r"^server://(?P<machine>[^/]+)/com\.plexapp\.plugins\.library/library/metadata/"
    r"(?P<keys>\d+(?:,\d+)*)$"
)
_IMAGE_PATHS = re.compile(
    r"^/library/(?:metadata/(?P<rk>\d+)/(?P<kind>thumb|art|banner|clearLogo|theme)(?:/\d+)?"
    r"|collections/(?P<collection>\d+)/composite/\d+"
    r"|sections/(?P<section>\d+)/composite/\d+)$"
    r"|^/:/resources/[\w.-]+\.(?:png|jpg)$"
)


@dataclass(frozen=True)
class Grant:
    """Who a server token belongs to: the owner (admin) or a friend with some libraries."""

    admin: bool
    sections: frozenset[int] | None  # None: every library
    account_id: int | None = None


@dataclass(frozen=True)
class RefreshCall:
    """One `/library/sections/{key}/refresh` the server received (`section_key` may be "all")."""

    section_key: str
    path: str | None
    force: bool
    method: str


@dataclass(frozen=True)
class TranscodeCall:
    url: str
    width: int
    height: int
    token_in_query: bool


class FakePlexServer(Library, FakeService):
    """Plex Media Server for tests; `app()` builds the aiohttp app, the state is on this object.

        pms = FakePlexServer()                      # sample library: sections 1, 2, 3
        pms.generate_library(4, 20_000)             # a big movie library
        pms.add_item(3, "New Video", "/data/youtube/New Video.mp4")   # what a scan finds
        pms.refresh_calls                           # [RefreshCall(section_key="3", path=...)]
        pms.requests["/library/sections/4/all"]     # requests per path

    Tokens: `set_owner(token)` (FakePlexTv.add_owner does it) sees everything and may change
    things; `share(token, sections=[...])` (FakePlexTv.add_friend) sees those libraries and may
    only read. `base_url` is where clients reach it (set it once it is served).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        machine_identifier: str | None = None,
        friendly_name: str = "HomeServer",
        version: str = "1.41.3.9314-a0bfb8370",
        sample: bool = True,
    ) -> None:
        Library.__init__(self, clock or SystemClock())
        FakeService.__init__(self)
        self.machine_identifier = machine_identifier or secrets.token_hex(20)
        self.friendly_name = friendly_name
        self.version = version
        self.base_url = "http://127.0.0.1:32400"
        self.owner_username = "owner"
        self.grants: dict[str, Grant] = {}
        self.refresh_calls: list[RefreshCall] = []
        self.transcode_calls: list[TranscodeCall] = []
        self.sessions: list[FakeSession] = []
        self._refreshes = asyncio.Condition()
        if sample:
            self.populate_sample()

    # -- tokens and helpers for tests -----------------------------------------------------

    def set_owner(self, token: str, username: str = "owner") -> None:
        self.grants[token] = Grant(admin=True, sections=None)
        self.owner_username = username

    def share(
        self, token: str, *, sections: Iterable[int] | None = None, account_id: int | None = None
    ) -> None:
        """Let `token` read `sections` (None: every library), as a shared user."""
        chosen = None if sections is None else frozenset(sections)
        self.grants[token] = Grant(admin=False, sections=chosen, account_id=account_id)

    def visible_sections(self, grant: Grant | None) -> list[FakeSection]:
        if grant is None:
            return []
        return [
            s
            for k, s in sorted(self.sections.items())
            if grant.sections is None or k in grant.sections
        ]

    def add_session(self, rating_key: int, user_title: str, **fields: Any) -> FakeSession:
        session = FakeSession(
            str(len(self.sessions) + 1), self.items[rating_key], user_title, **fields
        )
        self.sessions.append(session)
        return session

    def add_collection(
        self,
        section_key: int,
        title: str,
        members: list[int] | None = None,
        *,
        smart: bool = False,
        content: str | None = None,
    ) -> FakeItem:
        """A collection; a smart one without `content` filters its whole library."""
        if smart and content is None:
            kind = TYPE_NUMBERS[self.sections[section_key].type]
            content = (
                f"server://{self.machine_identifier}/com.plexapp.plugins.library"
                f"/library/sections/{section_key}/all?type={kind}"
            )
        return super().add_collection(section_key, title, members, smart=smart, content=content)

    def collections_named(self, title: str) -> list[FakeItem]:
        return [c for s in self.sections.values() for c in s.collections if c.title == title]

    async def wait_for_refresh(self, count: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until at least `count` refreshes were received (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout), self._refreshes:
            await self._refreshes.wait_for(lambda: len(self.refresh_calls) >= count)

    # -- the app --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.switches, self._authenticate])
        r = app.router
        r.add_get("/identity", self._identity)
        r.add_get("/", self._root)
        r.add_get("/library/sections", self._sections)
        r.add_get("/library/sections/{key:\\d+}/all", self._all)
        r.add_get("/library/sections/{key:\\d+}/recentlyAdded", self._section_recent)
        r.add_get("/library/sections/{key:\\d+}/collections", self._section_collections)
        for method in ("GET", "POST", "DELETE"):
            r.add_route(method, "/library/sections/{key:\\d+|all}/refresh", self._refresh)
        r.add_get("/library/sections/{key:\\d+}/{tag:genre|year|decade}", self._filter_values)
        r.add_get("/library/recentlyAdded", self._recent)
        r.add_get("/library/metadata/{keys:\\d+(?:,\\d+)*}", self._metadata)
        r.add_delete("/library/metadata/{rk:\\d+}", self._delete_collection)
        r.add_get("/library/metadata/{rk:\\d+}/children", self._children)
        r.add_get("/library/metadata/{rk:\\d+}/{kind:thumb|art}/{ts:\\d+}", self._raw_image)
        r.add_post("/library/collections", self._create_collection)
        r.add_delete("/library/collections/{rk:\\d+}", self._delete_collection)
        r.add_get("/library/collections/{rk:\\d+}/children", self._collection_items)
        r.add_get("/library/collections/{rk:\\d+}/items", self._collection_items)
        r.add_put("/library/collections/{rk:\\d+}/items", self._add_collection_items)
        r.add_delete("/library/collections/{rk:\\d+}/items/{item:\\d+}", self._remove_item)
        r.add_get("/library/collections/{rk:\\d+}/composite/{ts:\\d+}", self._raw_image)
        r.add_get("/hubs/search", self._search)
        r.add_get("/status/sessions", self._sessions)
        r.add_get("/photo/:/transcode", self._transcode)
        return app

    def _token(self, request: web.Request) -> str | None:
        return request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")

    def grant(self, request: web.Request) -> Grant | None:
        token = self._token(request)
        return self.grants.get(token) if token else None

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/identity" and self.grant(request) is None:
            return _unauthorized()
        return await handler(request)

    def _admin(self, request: web.Request) -> bool:
        grant = self.grant(request)
        return grant is not None and grant.admin

    def _section(self, request: web.Request, key: int | None = None) -> FakeSection:
        """The section of the path (or `key`) if this token may see it; 404 otherwise
        [inferred: PMS hides what is not shared rather than answering 401]."""
        if key is None:
            key = int(request.match_info["key"])
        grant = self.grant(request)
        section = self.sections.get(key)
        if section is None or grant is None:
            raise _not_found()
        if grant.sections is not None and key not in grant.sections:
            raise _not_found()
        return section

    def _visible_item(self, request: web.Request, rating_key: int) -> FakeItem:
        item = self.items.get(rating_key)
        grant = self.grant(request)
        if item is None or grant is None:
            raise _not_found()
        if grant.sections is not None and item.section_key not in grant.sections:
            raise _not_found()
        return item

    def _library_container(self, section: FakeSection) -> dict[str, Any]:
        return {
            "allowSync": True,
            "identifier": "com.plexapp.plugins.library",
            "librarySectionID": section.key,
            "librarySectionTitle": section.title,
            "librarySectionUUID": section.uuid,
            "mediaTagPrefix": MEDIA_TAG_PREFIX,
            "mediaTagVersion": 1736000000,
        }

    def _respond(
        self, request: web.Request, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        headers = {"X-Plex-Protocol": "1.0", **(headers or {})}
        if wants_json(request):
            return web.json_response({"MediaContainer": body}, headers=headers)
        response = xml_response(xml_element("MediaContainer", body))
        response.headers.update(headers)
        return response

    def _paged(
        self,
        request: web.Request,
        items: list[FakeItem],
        container: dict[str, Any],
        render: Callable[[FakeItem], dict[str, Any]],
        *,
        default_size: int | None = None,
    ) -> web.Response:
        """One page of `items`: `offset`, `size`, `totalSize` in the body and the paging
        headers echoed when the client paged (§1.4). `Size=0` answers the total only. The
        reference names `X-Plex-Container-Start` and `X-Plex-Container-Total-Size` as the
        answer's headers and is silent on an `X-Plex-Container-Size` one: the fake sends none
        (the page's size is `size` in the body)."""
        start, size, paged = paging(request.headers, request.query)
        if size is None:
            size = default_size
        window = items[start : start + size] if size is not None else items[start:]
        body: dict[str, Any] = {"size": len(window), "totalSize": len(items), "offset": start}
        body.update(container)
        if window:
            body["Metadata"] = [render(item) for item in window]
        headers = {}
        if paged:
            headers = {
                "X-Plex-Container-Start": str(start),
                "X-Plex-Container-Total-Size": str(len(items)),
            }
        return self._respond(request, body, headers)

    # -- server ---------------------------------------------------------------------------

    async def _identity(self, request: web.Request) -> web.Response:
        return self._respond(
            request,
            {
                "size": 0,
                "claimed": True,
                "machineIdentifier": self.machine_identifier,
                "version": self.version,
            },
        )

    async def _root(self, request: web.Request) -> web.Response:
        """Server capabilities: every attribute of the reference (§1.5 `GET /`, spec `/`),
        its values but this server's name, identifier, owner and version. The reference
        lists two of the `Directory` entries; the fake sends those two and `size` counts them."""
        return self._respond(
            request,
            {
                "size": 2,
                "allowCameraUpload": True,
                "allowChannelAccess": True,
                "allowMediaDeletion": True,
                "allowSharing": True,
                "allowSync": True,
                "allowTuners": True,
                "backgroundProcessing": True,
                "certificate": True,
                "companionProxy": True,
                "countryCode": "nld",
                "diagnostics": "logs,databases,streaminglogs",
                "eventStream": True,
                "friendlyName": self.friendly_name,
                "hubSearch": True,
                "itemClusters": True,
                "livetv": 7,
                "machineIdentifier": self.machine_identifier,
                "mediaProviders": True,
                "multiuser": True,
                "musicAnalysis": 2,
                "myPlex": True,
                "myPlexMappingState": "mapped",
                "myPlexSigninState": "ok",
                "myPlexSubscription": True,
                "myPlexUsername": self.owner_username,
                "offlineTranscode": 1,
                "ownerFeatures": "webhooks,hardware_transcoding",
                "photoAutoTag": True,
                "platform": "Linux",
                "platformVersion": "6.8.0",
                "pluginHost": True,
                "pushNotifications": False,
                "readOnlyLibraries": False,
                "streamingBrainABRVersion": 3,
                "streamingBrainVersion": 2,
                "sync": True,
                "transcoderActiveVideoSessions": sum(1 for s in self.sessions if s.transcode),
                "transcoderAudio": True,
                "transcoderLyrics": True,
                "transcoderPhoto": True,
                "transcoderSubtitles": True,
                "transcoderVideo": True,
                "transcoderVideoBitrates": (
                    "64,96,208,320,720,1500,2000,3000,4000,8000,10000,12000,20000"
                ),
                "transcoderVideoQualities": "0,1,2,3,4,5,6,7,8,9,10,11,12",
                "transcoderVideoResolutions": (
                    "128,128,160,240,320,480,768,720,720,1080,1080,1080,1080"
                ),
                "updatedAt": self.now(),
                "updater": True,
                "version": self.version,
                "voiceSearch": True,
                "Directory": [
                    {"count": 1, "key": "activities", "title": "activities"},
                    {"count": 1, "key": "library", "title": "library"},
                ],
            },
        )

    async def _sections(self, request: web.Request) -> web.Response:
        sections = self.visible_sections(self.grant(request))
        return self._respond(
            request,
            {
                "size": len(sections),
                "allowSync": False,
                "title1": "Plex Library",
                "Directory": [section_json(s) for s in sections],
            },
        )

    # -- browsing -------------------------------------------------------------------------

    def _of_type(self, section: FakeSection, type_number: int | None) -> list[FakeItem]:
        if type_number == TYPE_NUMBERS["collection"]:
            return list(section.collections)
        primary = TYPE_NUMBERS[section.type]
        if type_number is None or type_number == primary:
            return list(section.items)
        if section.type == "show" and type_number == TYPE_NUMBERS["season"]:
            return [season for show in section.items for season in show.children]
        if section.type == "show" and type_number == TYPE_NUMBERS["episode"]:
            return [leaf for show in section.items for leaf in show.leaves()]
        return []

    async def _all(self, request: web.Request) -> web.Response:
        section = self._section(request)
        type_number = to_int(request.query.get("type"))
        items = filter_items(self._of_type(section, type_number), request.query, self.tag_id)
        try:
            items = sort_items(items, request.query.get("sort", "titleSort"))
        except ValueError:
            raise _bad_request() from None
        guids = request.query.get("includeGuids") == "1"
        plural = "Movies" if section.type == "movie" else "Shows"
        container = {
            "art": f"/:/resources/{section.type}-fanart.jpg",
            **self._library_container(section),
            "thumb": f"/:/resources/{section.type}.png",
            "title1": section.title,
            "title2": f"All {plural}",
            "viewGroup": section.type,
            "viewMode": 65592,
        }
        return self._paged(request, items, container, lambda i: item_json(i, self, guids=guids))

    async def _filter_values(self, request: web.Request) -> web.Response:
        """`/library/sections/{key}/genre|year|decade`: the values `/all` can filter by."""
        section = self._section(request)
        tag = request.match_info["tag"]
        entries: dict[str, str] = {}
        for item in section.items:
            if tag == "genre":
                for genre in item.genres:
                    entries[str(self.tag_id(genre))] = genre
            elif item.year is not None:
                value = item.year if tag == "year" else item.year // 10 * 10
                entries[str(value)] = str(value) if tag == "year" else f"{value}s"
        directory = [
            {
                "fastKey": f"/library/sections/{section.key}/all?{tag}={key}",
                "key": key,
                "title": title,
            }
            for key, title in sorted(entries.items(), key=lambda kv: kv[1])
        ]
        return self._respond(request, {"size": len(directory), "Directory": directory})

    def _recent_items(self, sections: list[FakeSection]) -> list[FakeItem]:
        """Films, and for TV the seasons that got episodes (§1.5), newest first."""
        items: list[FakeItem] = []
        for section in sections:
            if section.type == "movie":
                items.extend(section.items)
            else:
                items.extend(season for show in section.items for season in show.children)
        return sorted(items, key=lambda i: (i.added_at, i.rating_key), reverse=True)

    async def _recent(self, request: web.Request) -> web.Response:
        items = self._recent_items(self.visible_sections(self.grant(request)))
        return self._recent_page(request, items)

    async def _section_recent(self, request: web.Request) -> web.Response:
        return self._recent_page(request, self._recent_items([self._section(request)]))

    def _recent_page(self, request: web.Request, items: list[FakeItem]) -> web.Response:
        container = {
            "allowSync": False,
            "identifier": "com.plexapp.plugins.library",
            "mediaTagPrefix": MEDIA_TAG_PREFIX,
            "mediaTagVersion": 1736000000,
            "mixedParents": True,
        }
        return self._paged(
            request, items, container, self._recent_json, default_size=RECENTLY_ADDED_PAGE
        )

    def _recent_json(self, item: FakeItem) -> dict[str, Any]:
        """An item of recentlyAdded: it also names its library's UUID (spec)."""
        data = item_json(item, self, with_section=True)
        data["librarySectionUUID"] = self.sections[item.section_key].uuid
        return data

    async def _metadata(self, request: web.Request) -> web.Response:
        """`/library/metadata/{rk}` or `{rk},{rk},...`: complete items; 404 if none is known."""
        items = []
        for key in request.match_info["keys"].split(","):
            try:
                items.append(self._visible_item(request, int(key)))
            except web.HTTPNotFound:
                continue
        if not items:
            raise _not_found()
        section = self.sections[items[0].section_key]
        rendered = []
        for item in items:
            data = item_json(item, self, detail=True, with_section=True)
            if request.query.get("includeChildren") == "1" and item.children:
                data["Children"] = {
                    "size": len(item.children),
                    "Metadata": [item_json(c, self) for c in item.children],
                }
            rendered.append(data)
        body = {"size": len(items), **self._library_container(section), "Metadata": rendered}
        return self._respond(request, body)

    async def _children(self, request: web.Request) -> web.Response:
        item = self._visible_item(request, int(request.match_info["rk"]))
        section = self.sections[item.section_key]
        children = (
            [self.items[k] for k in item.members] if item.type == "collection" else item.children
        )
        container: dict[str, Any] = {
            **self._library_container(section),
            "art": f"/library/metadata/{item.rating_key}/art/{item.updated_at}",
            "key": str(item.rating_key),
            "nocache": True,
            "parentTitle": item.title,
            "summary": item.summary,
            "thumb": f"/library/metadata/{item.rating_key}/thumb/{item.updated_at}",
            "title1": section.title if item.parent is None else item.parent.title,
            "title2": item.title,
            "viewGroup": {"show": "season", "season": "episode"}.get(item.type, item.type),
            "viewMode": 65592,
        }
        if item.index is not None:
            container["parentIndex"] = item.index
        if item.year is not None:
            container["parentYear"] = item.year
        if item.parent is not None:
            container["grandparentTitle"] = item.parent.title
        if item.type == "show":
            # a show's seasons come with an "All episodes" entry in `Directory` beside the
            # seasons in `Metadata` (spec, /library/metadata/{ratingKey}/children). The
            # reference is silent on whether `size` counts it: the fake counts seasons only
            leaves = item.leaves()
            container["viewMode"] = 65593
            container["Directory"] = [
                {
                    "leafCount": len(leaves),
                    "thumb": container["thumb"],
                    "viewedLeafCount": sum(1 for leaf in leaves if leaf.view_count),
                    "key": f"/library/metadata/{item.rating_key}/allLeaves",
                    "title": "All episodes",
                }
            ]
        return self._paged(request, list(children), container, lambda i: item_json(i, self))

    async def _raw_image(self, request: web.Request) -> web.Response:
        """An image at its own size (see `_transcode`); a collection's composite as a poster."""
        item = self._visible_item(request, int(request.match_info["rk"]))
        size = _native_size(item, request.match_info.get("kind", "thumb")) or POSTER_SIZE
        return web.Response(body=jpeg(*size), content_type="image/jpeg")

    # -- search ---------------------------------------------------------------------------

    async def _search(self, request: web.Request) -> web.Response:
        """`/hubs/search`: one hub per type, empty ones included; `sectionId` only reorders
        the hubs (the spec: "gives context"), it does not filter (§1.5). As the spec says,
        an actor, director or genre that matches also brings its films and shows into their
        hubs, after the direct matches, with `reason` (the tag hub's identifier),
        `reasonTitle` (the tag) and `reasonID` (its id). The reference is silent on which
        tag hubs an answer has: the fake sends Actors, Directors and Genres."""
        query = request.query.get("query", "").strip()
        if not query:
            raise _bad_request()
        sections = self.visible_sections(self.grant(request))
        if not sections:
            raise _not_found()  # restrictions leave no searchable section
        limit = to_int(request.query.get("limit")) or 3
        needle = query.lower()
        found: dict[str, list[FakeItem]] = {
            "movie": [],
            "show": [],
            "episode": [],
            "collection": [],
        }
        tags: dict[str, dict[str, None]] = {"actor": {}, "director": {}, "genre": {}}
        reasons: dict[int, tuple[str, str]] = {}  # rating key -> (hub identifier, tag)
        for section in sections:
            found["collection"].extend(c for c in section.collections if needle in c.title.lower())
            for item in section.items:
                item_tags = {
                    "actor": [actor for actor, _role in item.cast],
                    "director": list(item.directors),
                    "genre": list(item.genres),
                }
                reason = None
                for kind, names in item_tags.items():
                    for name in names:
                        if needle in name.lower():
                            tags[kind][name] = None
                            reason = reason or (kind, name)
                if needle in item.title.lower():
                    found[item.type].append(item)
                elif reason is not None:
                    found[item.type].append(item)
                    reasons[item.rating_key] = reason
                for leaf in item.leaves() if item.type == "show" else ():
                    if needle in leaf.title.lower():
                        found["episode"].append(leaf)
        hubs = [
            hub_json(self, "Movies", "movie", found["movie"], limit, needle, reasons),
            hub_json(self, "Shows", "show", found["show"], limit, needle, reasons),
            hub_json(self, "Episodes", "episode", found["episode"], limit, needle, reasons),
            hub_json(self, "Collections", "collection", found["collection"], limit, needle),
            tag_hub_json(self, "Actors", "actor", 6, list(tags["actor"]), limit),
            tag_hub_json(self, "Directors", "director", 4, list(tags["director"]), limit),
            tag_hub_json(self, "Genres", "genre", 1, list(tags["genre"]), limit),
        ]
        context = self.sections.get(to_int(request.query.get("sectionId")) or -1)
        if context is not None:
            hubs.sort(key=lambda hub: hub["type"] != context.type)
        return self._respond(request, {"size": len(hubs), "Hub": hubs})

    # -- collections ----------------------------------------------------------------------

    def _collection_item(self, request: web.Request) -> FakeItem:
        item = self._visible_item(request, int(request.match_info["rk"]))
        if item.type != "collection":
            raise _not_found()
        return item

    def _uri_items(self, uri: str, section: FakeSection) -> list[FakeItem]:
        match = _URI.match(uri)
        if match is None or match["machine"] != self.machine_identifier:
            raise _bad_request()
        items = []
        for key in match["keys"].split(","):
            item = self.items.get(int(key))
            if item is None or item.section_key != section.key or item.type == "collection":
                raise _bad_request()
            items.append(item)
        return items

    def _collection_answer(self, request: web.Request, collection: FakeItem) -> web.Response:
        section = self.sections[collection.section_key]
        body = {
            "size": 1,
            **self._library_container(section),
            "Metadata": [item_json(collection, self, with_section=True)],
        }
        return self._respond(request, body)

    async def _create_collection(self, request: web.Request) -> web.Response:
        """`POST /library/collections?uri=&type=&title=&smart=0&sectionId=`: all in the query,
        no body; answers the container with the new collection first. Plex makes a new one
        each time, even with a title that exists (§1.5)."""
        if not self._admin(request):
            return _unauthorized()
        query = request.query
        section = self.sections.get(to_int(query.get("sectionId")) or -1)
        title = query.get("title", "").strip()
        smart = query.get("smart") == "1"
        if section is None or not title or (smart and not query.get("uri")):
            raise _bad_request()
        items = [] if smart or not query.get("uri") else self._uri_items(query["uri"], section)
        collection = self.add_collection(section.key, title, smart=smart, content=query.get("uri"))
        for item in items:
            self.add_to_collection(collection, item)
        return self._collection_answer(request, collection)

    async def _collection_items(self, request: web.Request) -> web.Response:
        collection = self._collection_item(request)
        section = self.sections[collection.section_key]
        members = [self.items[key] for key in collection.members]
        container = {
            **self._library_container(section),
            "key": str(collection.rating_key),
            "title1": section.title,
            "title2": collection.title,
        }
        return self._paged(request, members, container, lambda i: item_json(i, self))

    async def _add_collection_items(self, request: web.Request) -> web.Response:
        """`PUT /library/collections/{rk}/items?uri=server://...`; not on smart collections."""
        if not self._admin(request):
            return _unauthorized()
        collection = self._collection_item(request)
        if collection.smart or not request.query.get("uri"):
            raise _bad_request()
        section = self.sections[collection.section_key]
        for item in self._uri_items(request.query["uri"], section):
            self.add_to_collection(collection, item)
        return self._collection_answer(request, collection)

    async def _remove_item(self, request: web.Request) -> web.Response:
        if not self._admin(request):
            return _unauthorized()
        collection = self._collection_item(request)
        key = int(request.match_info["item"])
        if key not in collection.members:
            raise _not_found()
        collection.members = tuple(k for k in collection.members if k != key)
        item = self.items[key]
        item.collections = tuple(t for t in item.collections if t != collection.title)
        return self._collection_answer(request, collection)

    async def _delete_collection(self, request: web.Request) -> web.Response:
        if not self._admin(request):
            return _unauthorized()
        collection = self._collection_item(request)
        section = self.sections[collection.section_key]
        section.collections.remove(collection)
        for key in collection.members:
            item = self.items[key]
            item.collections = tuple(t for t in item.collections if t != collection.title)
        del self.items[collection.rating_key]
        return web.Response(status=200)

    async def _section_collections(self, request: web.Request) -> web.Response:
        section = self._section(request)
        container = {**self._library_container(section), "title1": section.title}
        items = sorted(section.collections, key=lambda c: c.title_sort.lower())
        return self._paged(
            request, items, container, lambda i: item_json(i, self, with_section=True)
        )

    # -- scans, sessions, images ----------------------------------------------------------

    async def _refresh(self, request: web.Request) -> web.Response:
        """Partial (`?path=`) or full scan: 200, empty body, recorded; the scan itself is up to
        the test (`add_item`). GET as python-plexapi sends it, POST as the 2026 spec (§1.5)."""
        if not self._admin(request):
            return _unauthorized()
        key = request.match_info["key"]
        if key != "all" and int(key) not in self.sections:
            raise _not_found()
        if request.method != "DELETE":
            call = RefreshCall(
                section_key=key,
                path=request.query.get("path"),
                force=request.query.get("force") == "1",
                method=request.method,
            )
            self.refresh_calls.append(call)
            async with self._refreshes:
                self._refreshes.notify_all()
        return web.Response(status=200)

    async def _sessions(self, request: web.Request) -> web.Response:
        """Active streams; the owner's view [inferred: shared users may not read them]."""
        if not self._admin(request):
            return _unauthorized()
        entries = [session_json(s, n, self) for n, s in enumerate(self.sessions, start=1)]
        body: dict[str, Any] = {"size": len(entries)}
        if entries:
            body["Metadata"] = entries
        return self._respond(request, body)

    async def _transcode(self, request: web.Request) -> web.Response:
        """`/photo/:/transcode?url=&width=&height=&minSize=&upscale=`: a JPEG scaled
        proportionally, as the spec says PMS always does: `minSize=1` resizes the image's
        smaller side to the asked one (the other side may come out larger), `minSize=0` fits
        it inside the box, `upscale=0` never goes above the image's own size. Paths of this
        server's images only (404 for others). The reference is silent on an image's own
        size: the fake's posters are 1000x1500, episode stills and art 16:9; composites,
        resources and absolute URLs (fetched by PMS itself) come out at the asked size.
        Every call is recorded."""
        query = request.query
        url, width, height = (
            query.get("url"),
            to_int(query.get("width")),
            to_int(query.get("height")),
        )
        if not url or not width or not height or width < 1 or height < 1:
            raise _bad_request()
        self.transcode_calls.append(
            TranscodeCall(url, width, height, token_in_query="X-Plex-Token" in query)
        )
        native: tuple[int, int] | None = None
        if not re.match(r"^https?://", url):
            match = _IMAGE_PATHS.match(url)
            if match is None:
                raise _not_found()
            if match["rk"] or match["collection"]:
                item = self._visible_item(request, int(match["rk"] or match["collection"]))
                if match["rk"]:
                    native = _native_size(item, match["kind"])
            if match["section"]:
                self._section(request, int(match["section"]))
        if native is not None:
            width, height = _scaled(
                native,
                (width, height),
                min_size=query.get("minSize") == "1",
                upscale=query.get("upscale") == "1",
            )
        body = jpeg(min(width, MAX_IMAGE_SIDE), min(height, MAX_IMAGE_SIDE))
        return web.Response(body=body, content_type="image/jpeg")


def _native_size(item: FakeItem, kind: str) -> tuple[int, int] | None:
    """The size of an item's own image of `kind` (thumb, art, ...), None: any size."""
    if kind == "thumb":
        return (1280, 720) if item.type == "episode" else POSTER_SIZE
    return {"art": ART_SIZE, "banner": (1000, 185), "clearLogo": (800, 310)}.get(kind)


def _scaled(
    native: tuple[int, int], box: tuple[int, int], *, min_size: bool, upscale: bool
) -> tuple[int, int]:
    """Plex's proportional resize of an image of size `native` for the asked `box`."""
    (native_w, native_h), (box_w, box_h) = native, box
    if min_size:  # the smaller native side is the one resized against
        scale = box_w / native_w if native_w <= native_h else box_h / native_h
    else:
        scale = min(box_w / native_w, box_h / native_h)
    if not upscale:
        scale = min(scale, 1.0)
    return max(1, round(native_w * scale)), max(1, round(native_h * scale))


def _unauthorized() -> web.Response:
    """PMS's 401: HTML, even for `Accept: application/json` clients (§1.4)."""
    return html_error(401, extra_headers={"X-Plex-Protocol": "1.0"})


def _not_found() -> web.HTTPNotFound:
    return web.HTTPNotFound(text=html_page(404), content_type="text/html")


def _bad_request() -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=html_page(400), content_type="text/html")
