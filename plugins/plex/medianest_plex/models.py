"""What the Plex clients return: frozen dataclasses parsed from Plex's JSON (no aiohttp, no
loose dicts). Times are UTC datetimes; token fields are left out of `repr`."""

from __future__ import annotations

import platform as _platform
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from .errors import PLEX_TV, PlexError

TYPE_NUMBERS = {"movie": 1, "show": 2, "season": 3, "episode": 4, "collection": 18}


def _version() -> str:
    try:
        return metadata.version("medianest-plex")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0"


@dataclass(frozen=True)
class PlexClientInfo:
    """Who MediaNest says it is to Plex: `product` is the name in the user's Plex devices;
    `client_identifier` is generated once per install and kept (Plex ties PINs to it)."""

    client_identifier: str
    product: str = "MediaNest"
    version: str = field(default_factory=_version)
    platform: str = field(default_factory=_platform.system)
    platform_version: str = field(default_factory=_platform.release)
    device: str = field(default_factory=_platform.system)
    device_name: str = ""  # empty: the product name

    def headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "X-Plex-Client-Identifier": self.client_identifier,
            "X-Plex-Product": self.product,
            "X-Plex-Version": self.version,
            "X-Plex-Platform": self.platform,
            "X-Plex-Platform-Version": self.platform_version,
            "X-Plex-Device": self.device,
            "X-Plex-Device-Name": self.device_name or self.product,
        }


@dataclass(frozen=True)
class Pin:
    """A sign-in PIN; `auth_token` is the person's plex.tv token once they approved it."""

    id: int
    code: str
    client_identifier: str
    product: str
    expires_in: int
    expires_at: datetime | None
    created_at: datetime | None
    auth_token: str | None = field(default=None, repr=False)

    @property
    def approved(self) -> bool:
        return bool(self.auth_token)


@dataclass(frozen=True)
class PlexUser:
    """A plex.tv account (`GET /api/v2/user`)."""

    id: int
    uuid: str
    username: str
    title: str
    email: str | None
    thumb: str | None
    friendly_name: str | None = None
    auth_token: str | None = field(default=None, repr=False)

    @property
    def display_name(self) -> str:
        return self.friendly_name or self.title or self.username


@dataclass(frozen=True)
class PlexConnection:
    protocol: str
    address: str
    port: int | None
    uri: str
    local: bool
    relay: bool


@dataclass(frozen=True)
class PlexResource:
    """A device an account can reach (`GET /api/v2/resources`). For a server, `machine_identifier`
    matches the server's `/identity`, `owned` tells the owner from a friend, and `access_token`
    is the token to use against that server (a friend's own, not their plex.tv token)."""

    name: str
    product: str
    product_version: str | None
    machine_identifier: str
    provides: tuple[str, ...]
    owned: bool
    owner_id: int | None
    source_title: str | None
    presence: bool
    connections: tuple[PlexConnection, ...]
    access_token: str | None = field(default=None, repr=False)

    @property
    def is_server(self) -> bool:
        return "server" in self.provides


@dataclass(frozen=True)
class PlexIdentity:
    """`GET /identity`: no token needed."""

    machine_identifier: str
    version: str
    claimed: bool


@dataclass(frozen=True)
class PlexServerInfo:
    """`GET /`: what the admin's "test connection" shows."""

    friendly_name: str
    machine_identifier: str
    version: str
    platform: str | None
    owner_username: str | None


@dataclass(frozen=True)
class PlexSection:
    """A library: `key` is the string PMS uses in paths; `locations` as PMS sees them."""

    key: str
    title: str
    type: str
    uuid: str | None
    agent: str | None
    scanner: str | None
    locations: tuple[str, ...]
    refreshing: bool
    thumb: str | None
    art: str | None
    updated_at: datetime | None
    scanned_at: datetime | None


@dataclass(frozen=True)
class PlexRole:
    """One cast member: `tag` is the actor, `role` the character."""

    tag: str
    role: str | None = None
    thumb: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class PlexItem:
    """A library item of any type (movie, show, season, episode, collection, ...).

    Times are UTC datetimes, `duration_ms` milliseconds; `files` are the media files as PMS
    sees them; `guids` the external ids ("imdb://tt..", "tmdb://..", "tvdb://..").
    """

    rating_key: str
    key: str
    type: str
    title: str
    title_sort: str | None = None
    guid: str | None = None
    year: int | None = None
    summary: str | None = None
    tagline: str | None = None
    studio: str | None = None
    content_rating: str | None = None
    thumb: str | None = None
    art: str | None = None
    duration_ms: int | None = None
    rating: float | None = None
    audience_rating: float | None = None
    originally_available_at: str | None = None
    added_at: datetime | None = None
    updated_at: datetime | None = None
    view_count: int = 0
    view_offset_ms: int | None = None
    index: int | None = None
    parent_index: int | None = None
    parent_rating_key: str | None = None
    parent_title: str | None = None
    parent_thumb: str | None = None
    grandparent_rating_key: str | None = None
    grandparent_title: str | None = None
    grandparent_thumb: str | None = None
    leaf_count: int | None = None
    viewed_leaf_count: int | None = None
    child_count: int | None = None
    section_id: int | None = None
    section_title: str | None = None
    subtype: str | None = None
    smart: bool | None = None
    genres: tuple[str, ...] = ()
    directors: tuple[str, ...] = ()
    cast: tuple[PlexRole, ...] = ()
    collections: tuple[str, ...] = ()
    guids: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def watched(self) -> bool:
        if self.leaf_count is not None:
            return self.leaf_count > 0 and (self.viewed_leaf_count or 0) >= self.leaf_count
        return self.view_count > 0


@dataclass(frozen=True)
class PlexPage:
    """One page of a listing: `offset` of the first item and `total_size` of the whole list."""

    items: tuple[PlexItem, ...]
    offset: int
    total_size: int

    @property
    def size(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class PlexTag:
    """A tag hit in search (an actor, a genre): `filter` is e.g. "actor=49"."""

    tag: str
    id: int | None
    filter: str | None
    thumb: str | None
    tag_type: int | None


@dataclass(frozen=True)
class PlexHub:
    """One group of search results: `hub_identifier` "movie", "show", "actor", ..."""

    title: str
    type: str
    hub_identifier: str
    more: bool
    items: tuple[PlexItem, ...]
    tags: tuple[PlexTag, ...]

    @property
    def size(self) -> int:
        return len(self.items) + len(self.tags)

    def only_section(self, section_id: int) -> PlexHub:
        """The hub with only the items of library `section_id` (tag hits are kept)."""
        items = tuple(i for i in self.items if i.section_id == section_id)
        return replace(self, items=items)


@dataclass(frozen=True)
class PlexSession:
    """An active stream (`/status/sessions`)."""

    session_key: str
    item: PlexItem
    user_id: str | None
    user_title: str | None
    user_thumb: str | None
    player_title: str | None
    player_product: str | None
    state: str | None
    local: bool | None
    bandwidth_kbps: int | None
    location: str | None
    transcoding: bool


class PlexImage:
    """A transcoded image being streamed: `async for chunk in image.chunks(): ...`."""

    def __init__(
        self,
        content_type: str,
        content_length: int | None,
        chunks: Callable[[int], AsyncIterator[bytes]],
    ) -> None:
        self.content_type = content_type
        self.content_length = content_length
        self._chunks = chunks

    def chunks(self, size: int = 64 * 1024) -> AsyncIterator[bytes]:
        """The body in pieces of at most `size` bytes; `PlexUnavailable` if Plex breaks off."""
        return self._chunks(size)


# -- parsing ---------------------------------------------------------------------------------


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str | float):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _tags(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    return tuple(str(t["tag"]) for t in data.get(name) or () if isinstance(t, dict) and "tag" in t)


def media_container(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("MediaContainer"), dict):
        raise PlexError("Plex sent JSON without a MediaContainer")
    container: dict[str, Any] = body["MediaContainer"]
    return container


def parse_item(data: Mapping[str, Any]) -> PlexItem:
    """A `Metadata[]` entry of any PMS listing as a `PlexItem`."""
    files = tuple(
        str(part["file"])
        for media in data.get("Media") or ()
        for part in media.get("Part") or ()
        if part.get("file")
    )
    cast = tuple(
        PlexRole(
            tag=str(role["tag"]),
            role=_str(role.get("role")),
            thumb=_str(role.get("thumb")),
            id=_int(role.get("id")),
        )
        for role in data.get("Role") or ()
        if isinstance(role, dict) and "tag" in role
    )
    return PlexItem(
        rating_key=str(data.get("ratingKey", "")),
        key=str(data.get("key", "")),
        type=str(data.get("type", "")),
        title=str(data.get("title", "")),
        title_sort=_str(data.get("titleSort")),
        guid=_str(data.get("guid")),
        year=_int(data.get("year")),
        summary=_str(data.get("summary")),
        tagline=_str(data.get("tagline")),
        studio=_str(data.get("studio")),
        content_rating=_str(data.get("contentRating")),
        thumb=_str(data.get("thumb")),
        art=_str(data.get("art")),
        duration_ms=_int(data.get("duration")),
        rating=_float(data.get("rating")),
        audience_rating=_float(data.get("audienceRating")),
        originally_available_at=_str(data.get("originallyAvailableAt")),
        added_at=_epoch(data.get("addedAt")),
        updated_at=_epoch(data.get("updatedAt")),
        view_count=_int(data.get("viewCount")) or 0,
        view_offset_ms=_int(data.get("viewOffset")),
        index=_int(data.get("index")),
        parent_index=_int(data.get("parentIndex")),
        parent_rating_key=_str(data.get("parentRatingKey")),
        parent_title=_str(data.get("parentTitle")),
        parent_thumb=_str(data.get("parentThumb")),
        grandparent_rating_key=_str(data.get("grandparentRatingKey")),
        grandparent_title=_str(data.get("grandparentTitle")),
        grandparent_thumb=_str(data.get("grandparentThumb")),
        leaf_count=_int(data.get("leafCount")),
        viewed_leaf_count=_int(data.get("viewedLeafCount")),
        child_count=_int(data.get("childCount")),
        section_id=_int(data.get("librarySectionID")),
        section_title=_str(data.get("librarySectionTitle")),
        subtype=_str(data.get("subtype")),
        smart=data.get("smart") if isinstance(data.get("smart"), bool) else None,
        genres=_tags(data, "Genre"),
        directors=_tags(data, "Director"),
        cast=cast,
        collections=_tags(data, "Collection"),
        guids=tuple(
            str(g["id"]) for g in data.get("Guid") or () if isinstance(g, dict) and "id" in g
        ),
        files=files,
    )


def parse_page(container: Mapping[str, Any]) -> PlexPage:
    items = tuple(parse_item(m) for m in container.get("Metadata") or () if isinstance(m, dict))
    offset = _int(container.get("offset")) or 0
    total = _int(container.get("totalSize"))
    if total is None:  # not every listing has it; python-plexapi falls back to `size` (§1.4)
        total = offset + (_int(container.get("size")) or len(items))
    return PlexPage(items=items, offset=offset, total_size=total)


def parse_pin(data: Any) -> Pin:
    if not isinstance(data, dict) or not isinstance(data.get("id"), int):
        raise PlexError("plex.tv sent a PIN without an id", upstream=PLEX_TV)
    return Pin(
        id=data["id"],
        code=str(data.get("code", "")),
        client_identifier=str(data.get("clientIdentifier", "")),
        product=str(data.get("product") or ""),
        expires_in=_int(data.get("expiresIn")) or 0,
        expires_at=_iso(data.get("expiresAt")),
        created_at=_iso(data.get("createdAt")),
        auth_token=data.get("authToken") or None,
    )


def parse_resource(data: Mapping[str, Any]) -> PlexResource:
    connections = tuple(
        PlexConnection(
            protocol=str(c.get("protocol", "")),
            address=str(c.get("address", "")),
            port=_int(c.get("port")),
            uri=str(c.get("uri", "")),
            local=bool(c.get("local")),
            relay=bool(c.get("relay")),
        )
        for c in data.get("connections") or ()
        if isinstance(c, dict)
    )
    provides = tuple(p.strip() for p in str(data.get("provides") or "").split(",") if p.strip())
    return PlexResource(
        name=str(data.get("name", "")),
        product=str(data.get("product", "")),
        product_version=_str(data.get("productVersion")),
        machine_identifier=str(data.get("clientIdentifier", "")),
        provides=provides,
        owned=data.get("owned") is True,
        owner_id=_int(data.get("ownerId")),
        source_title=_str(data.get("sourceTitle")),
        presence=bool(data.get("presence")),
        connections=connections,
        access_token=_str(data.get("accessToken")),
    )


def parse_section(data: Mapping[str, Any]) -> PlexSection:
    return PlexSection(
        key=str(data.get("key", "")),
        title=str(data.get("title", "")),
        type=str(data.get("type", "")),
        uuid=_str(data.get("uuid")),
        agent=_str(data.get("agent")),
        scanner=_str(data.get("scanner")),
        locations=tuple(
            str(loc["path"]) for loc in data.get("Location") or () if isinstance(loc, dict)
        ),
        refreshing=data.get("refreshing") is True,
        thumb=_str(data.get("thumb")),
        art=_str(data.get("art")),
        updated_at=_epoch(data.get("updatedAt")),
        scanned_at=_epoch(data.get("scannedAt")),
    )


def parse_hub(data: Mapping[str, Any]) -> PlexHub:
    """One `Hub` of `/hubs/search`: items in `Metadata`, tag hits (actors, genres) in
    `Directory`; both read defensively, as the reference advises (§1.5)."""
    items = tuple(parse_item(m) for m in data.get("Metadata") or () if isinstance(m, dict))
    tags = tuple(
        PlexTag(
            tag=str(d["tag"]),
            id=_int(d.get("id")),
            filter=_str(d.get("filter")),
            thumb=_str(d.get("thumb")),
            tag_type=_int(d.get("tagType")),
        )
        for d in data.get("Directory") or ()
        if isinstance(d, dict) and "tag" in d
    )
    return PlexHub(
        title=str(data.get("title", "")),
        type=str(data.get("type", "")),
        hub_identifier=str(data.get("hubIdentifier", "")),
        more=bool(data.get("more")),
        items=items,
        tags=tags,
    )


def parse_session(data: Mapping[str, Any]) -> PlexSession:
    """One active stream of `/status/sessions`."""
    user = data.get("User") or {}
    player = data.get("Player") or {}
    session = data.get("Session") or {}
    transcode = data.get("TranscodeSession") or {}
    return PlexSession(
        session_key=str(data.get("sessionKey", "")),
        item=parse_item(data),
        user_id=_str(user.get("id")),
        user_title=_str(user.get("title")),
        user_thumb=_str(user.get("thumb")),
        player_title=_str(player.get("title")),
        player_product=_str(player.get("product")),
        state=_str(player.get("state")),
        local=player.get("local") if isinstance(player.get("local"), bool) else None,
        bandwidth_kbps=_int(session.get("bandwidth")),
        location=_str(session.get("location")),
        transcoding=transcode.get("videoDecision") == "transcode",
    )


def parse_user(data: Any) -> PlexUser:
    """`GET /api/v2/user`."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), int):
        raise PlexError("plex.tv sent an account without an id", upstream=PLEX_TV)
    return PlexUser(
        id=data["id"],
        uuid=str(data.get("uuid", "")),
        username=str(data.get("username") or data.get("title") or ""),
        title=str(data.get("title") or data.get("username") or ""),
        email=_str(data.get("email")),
        thumb=_str(data.get("thumb")),
        friendly_name=_str(data.get("friendlyName")),
        auth_token=_str(data.get("authToken")),
    )


def parse_identity(container: Mapping[str, Any]) -> PlexIdentity:
    """`GET /identity`."""
    return PlexIdentity(
        machine_identifier=str(container.get("machineIdentifier", "")),
        version=str(container.get("version", "")),
        claimed=bool(container.get("claimed")),
    )


def parse_server_info(container: Mapping[str, Any]) -> PlexServerInfo:
    """`GET /`."""
    return PlexServerInfo(
        friendly_name=str(container.get("friendlyName", "")),
        machine_identifier=str(container.get("machineIdentifier", "")),
        version=str(container.get("version", "")),
        platform=_str(container.get("platform")),
        owner_username=_str(container.get("myPlexUsername")),
    )
