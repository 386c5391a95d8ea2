"""The Plex plugin's rules: who may sign in, what a person sees of the library, refreshes.

One `PlexService` per started plugin, published in `ctx.services` under "plex". It knows
nothing of HTTP requests or pages (routes.py does that).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from medianest_server.plugin_api import ExternalIdentity, PluginContext, User

from .client import Pin, PlexClientInfo, PlexItem, PlexServerClient, PlexTvClient
from .config import parse_mappings
from .errors import PlexError, PlexUnauthorized
from .images import ImageSigner
from .models import PlexSection

CLIENT_IDENTIFIER_FILE = "client_identifier"
PROVIDER = "plex"
SORTS = {
    "title": "titleSort",
    "added": "addedAt:desc",
    "year": "year:desc",
    "rating": "rating:desc",
}
FILTERS = ("unwatched", "genre", "year", "decade")
SEARCH_TYPES = ("movie", "show", "season", "episode", "collection")


class PlexSignInNeeded(PlexUnauthorized):
    """This person has no Plex token MediaNest may use, or Plex refused it: sign in again."""

    def __init__(self) -> None:
        super().__init__(
            "Plex did not accept your sign-in: sign in with Plex again to see the library",
            http_status=401,
        )


class NoServerAccess(Exception):
    """This Plex account is neither the owner of the configured server nor shared with."""

    def __init__(self, username: str) -> None:
        super().__init__(f"The Plex account {username} has no access to this server")
        self.username = username


def client_identifier(config: Mapping[str, Any], data_dir: Path) -> str:
    """The configured client identifier, or the one generated once and kept in `data_dir`."""
    configured = str(config.get("client_identifier") or "").strip()
    if configured:
        return configured
    path = Path(data_dir) / CLIENT_IDENTIFIER_FILE
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        return kept
    generated = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(generated + "\n", encoding="utf-8")
    tmp.replace(path)
    return generated


class PlexService:
    """The started plugin: its clients and the rules other plugins and the routes call."""

    def __init__(self, ctx: PluginContext, info: PlexClientInfo) -> None:
        self.ctx = ctx
        self.info = info
        config = ctx.config
        self.plex_tv = PlexTvClient(ctx.http, info, base_url=config["plex_tv_url"])
        self.server = PlexServerClient(ctx.http, config["url"], token=config["token"], info=info)
        self.images = ImageSigner(ctx.secrets.derive_key("plex images"))
        self.mappings = parse_mappings(config.get("path_mappings") or ())
        self._collection_locks: dict[tuple[str, str], asyncio.Lock] = {}

    @classmethod
    def start(cls, ctx: PluginContext) -> PlexService:
        identifier = client_identifier(ctx.config, Path(ctx.data_dir))
        info = PlexClientInfo(client_identifier=identifier, product=ctx.config["product"])
        return cls(ctx, info)

    @property
    def server_url(self) -> str:
        return self.server.base_url

    # -- sign in with Plex ---------------------------------------------------------------

    async def create_pin(self) -> Pin:
        return await self.plex_tv.create_pin(strong=True)

    def auth_url(self, pin: Pin, forward_url: str | None = None) -> str:
        return self.plex_tv.auth_url(pin, forward_url=forward_url)

    async def check_pin(self, pin_id: int) -> Pin:
        """The PIN now (`auth_token` set once approved); `PinExpired` once it expired."""
        return await self.plex_tv.check_pin(pin_id)

    async def identity_for(self, plex_tv_token: str) -> ExternalIdentity:
        """Who `plex_tv_token` is and what they may be here: the owner of the configured
        server is an admin, an account it is shared with a user (with the server access
        token plex.tv gave it); anyone else raises `NoServerAccess`."""
        account = await self.plex_tv.user(plex_tv_token)
        machine = await self.server.machine_identifier()
        resource = await self.plex_tv.server_access(plex_tv_token, machine)
        if resource is None:
            raise NoServerAccess(account.username)
        owner = resource.owned
        secret = resource.access_token or (plex_tv_token if owner else None)
        if not secret:
            raise NoServerAccess(account.username)
        return ExternalIdentity(
            provider=PROVIDER,
            subject=str(account.id),
            username=account.username or f"plex{account.id}",
            role="admin" if owner else "user",
            email=account.email or None,
            display_name=account.friendly_name or account.title or account.username,
            avatar_url=account.thumb or None,
            secret=secret,
        )

    # -- the library, as one person sees it --------------------------------------------------

    async def token_for(self, user: User) -> str:
        """The person's own server token (from signing in with Plex); admins who signed in
        otherwise use the owner's. `PlexSignInNeeded` when there is none."""
        token = await self.ctx.user_secret(user.id, PROVIDER)
        if token:
            return token
        if user.is_admin:
            return str(self.ctx.config["token"])
        raise PlexSignInNeeded()

    async def _cached(
        self, user: User, key: str, ttl: float, load: Callable[[PlexServerClient], Awaitable[Any]]
    ) -> Any:
        token = await self.token_for(user)
        client = self.server.for_token(token)

        async def loader() -> Any:
            try:
                return await load(client)
            except PlexUnauthorized as exc:
                raise PlexSignInNeeded() from exc

        if ttl <= 0:
            return await loader()
        return await self.ctx.cache.get_or_load(f"user:{user.id}:{key}", loader, ttl_seconds=ttl)

    def _ttl(self, what: str) -> float:
        return float(self.ctx.config[f"{what}_cache_seconds"])

    async def sections(self, user: User) -> list[dict[str, Any]]:
        async def load(client: PlexServerClient) -> list[dict[str, Any]]:
            sections = await client.sections()
            counts = await asyncio.gather(*(client.count(s.key) for s in sections))
            return [
                {
                    "key": s.key,
                    "title": s.title,
                    "type": s.type,
                    "count": count,
                    "url": f"/plex/library/{s.key}",
                }
                for s, count in zip(sections, counts, strict=True)
            ]

        result: list[dict[str, Any]] = await self._cached(
            user, "sections", self._ttl("library"), load
        )
        return result

    async def browse(
        self,
        user: User,
        section: str,
        *,
        start: int,
        size: int,
        sort: str,
        filters: Mapping[str, str | int],
    ) -> dict[str, Any]:
        order = SORTS[sort]
        key = f"browse:{section}:{start}:{size}:{sort}:" + "&".join(
            f"{k}={v}" for k, v in sorted(filters.items())
        )

        async def load(client: PlexServerClient) -> dict[str, Any]:
            page = await client.browse(section, start=start, size=size, sort=order, filters=filters)
            return {
                "section": section,
                "start": page.offset,
                "size": page.size,
                "total": page.total_size,
                "sort": sort,
                "filters": dict(filters),
                "items": [self.item_json(user, i) for i in page.items],
            }

        result: dict[str, Any] = await self._cached(user, key, self._ttl("library"), load)
        return result

    async def item(self, user: User, rating_key: str) -> dict[str, Any]:
        async def load(client: PlexServerClient) -> dict[str, Any]:
            item = await client.metadata(rating_key)
            body = self.item_json(user, item, detail=True)
            if item.type in ("show", "season", "collection"):
                if item.type == "collection":
                    children = await client.collection_items(rating_key)
                else:
                    children = await client.children(rating_key)
                body["children"] = [self.item_json(user, c) for c in children.items]
            machine = await self.server.machine_identifier()
            body["plex_url"] = (
                f"https://app.plex.tv/desktop/#!/server/{machine}/details"
                f"?key=%2Flibrary%2Fmetadata%2F{item.rating_key}"
            )
            return body

        result: dict[str, Any] = await self._cached(
            user, f"item:{rating_key}", self._ttl("library"), load
        )
        return result

    async def search(self, user: User, query: str, *, limit: int = 10) -> list[dict[str, Any]]:
        query = " ".join(query.split())[:100]
        if not query:
            return []

        async def load(client: PlexServerClient) -> list[dict[str, Any]]:
            hubs = await client.search(query, limit=limit)
            return [
                self.item_json(user, item)
                for hub in hubs
                if hub.type in SEARCH_TYPES
                for item in hub.items
            ]

        result: list[dict[str, Any]] = await self._cached(
            user, f"search:{query.lower()}:{limit}", self._ttl("library"), load
        )
        return result

    async def recently_added(
        self, user: User, section: str | None = None, *, size: int = 24
    ) -> list[dict[str, Any]]:
        async def load(client: PlexServerClient) -> list[dict[str, Any]]:
            page = await client.recently_added(section, size=size)
            return [self.item_json(user, i) for i in page.items]

        generation = await self.ctx.cache.get("library_generation") or 0
        result: list[dict[str, Any]] = await self._cached(
            user, f"recent:{generation}:{section or ''}:{size}", self._ttl("recent"), load
        )
        return result

    async def _collections_generation(self) -> int:
        return int(await self.ctx.cache.get("collections_generation") or 0)

    async def collections(self, user: User, section: str) -> list[dict[str, Any]]:
        """The collections of a library, as `user` sees it; `mine` marks those MediaNest made
        for them (their downloaded playlists), which come first."""

        async def load(client: PlexServerClient) -> list[dict[str, Any]]:
            return [
                {**self.item_json(user, c), "child_count": c.child_count}
                for c in await client.collections(section)
            ]

        generation = await self._collections_generation()
        listed: list[dict[str, Any]] = await self._cached(
            user, f"collections:{generation}:{section}", self._ttl("library"), load
        )
        mine = await self.owned_collections(user)
        marked = [{**c, "mine": c["rating_key"] in mine} for c in listed]
        return sorted(marked, key=lambda c: not c["mine"])

    async def collection(self, user: User, collection_id: str) -> dict[str, Any]:
        """One collection with what it holds, as `user` sees it; `PlexNotFound` if none."""

        async def load(client: PlexServerClient) -> dict[str, Any]:
            collection = await client.collection(collection_id)
            members = await client.collection_items(collection_id)
            body = self.item_json(user, collection, detail=True)
            body["items"] = [self.item_json(user, i) for i in members.items]
            return body

        generation = await self._collections_generation()
        result: dict[str, Any] = await self._cached(
            user, f"collection:{generation}:{collection_id}", self._ttl("library"), load
        )
        return result

    async def add_to_existing_collection(self, collection_id: str, items: list[str]) -> None:
        """Put `items` in the collection `collection_id` (with the owner's token)."""
        await self.server.collection(collection_id)  # PlexNotFound unless a collection
        await self.server.add_to_collection(collection_id, items)
        await self._collections_changed()

    async def server_status(self, *, with_sessions: bool) -> dict[str, Any]:
        """Is the server up, which version, how fast; the active streams for admins."""
        started = self.ctx.clock.monotonic()
        try:
            identity = await self.server.identity()
        except PlexError as exc:
            return {"up": False, "error": exc.message}
        status: dict[str, Any] = {
            "up": True,
            "version": identity.version,
            "machine_identifier": identity.machine_identifier,
            "latency_ms": round((self.ctx.clock.monotonic() - started) * 1000, 1),
        }
        if with_sessions:
            try:
                sessions = await self.server.sessions()
                status["sessions"] = [
                    {
                        "title": s.item.grandparent_title or s.item.title,
                        "user": s.user_title,
                        "player": s.player_title,
                        "state": s.state,
                    }
                    for s in sessions
                ]
            except PlexError as exc:
                status["sessions_error"] = exc.message
        return status

    async def library_updated(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A Plex `library.new` webhook: forget cached "recently added" lists and say what
        arrived (with its tmdb/imdb/tvdb GUIDs) as `plex.library.updated`."""
        metadata = payload.get("Metadata")
        if not isinstance(metadata, Mapping):
            raise ValueError("library.new without Metadata")
        guids = [
            str(g["id"])
            for g in metadata.get("Guid") or ()
            if isinstance(g, Mapping) and isinstance(g.get("id"), str)
        ]
        data = {
            "event": "library.new",
            "rating_key": str(metadata.get("ratingKey") or ""),
            "title": str(metadata.get("title") or ""),
            "type": str(metadata.get("type") or ""),
            "section_id": metadata.get("librarySectionID"),
            "guid": metadata.get("guid"),
            "guids": guids,
        }
        await self.ctx.cache.set("library_generation", self.ctx.clock.now().timestamp(), 86400)
        await self.ctx.emit("plex.library.updated", data, topic="all")
        return data

    # -- for other plugins: refreshes and collections ------------------------------------

    def plex_path(self, path: str) -> str | None:
        """`path` on this machine as Plex sees it (`path_mappings`, the longest local prefix
        wins); None when mappings are set and none holds it. Without mappings: unchanged."""
        clean = str(PurePosixPath(path))
        if not clean.startswith("/"):
            return None
        if not self.mappings:
            return clean
        for local, remote in self.mappings:
            if local == "/" or clean == local or clean.startswith(local + "/"):
                rest = clean[len(local) :].lstrip("/") if local != "/" else clean.lstrip("/")
                return str(PurePosixPath(remote) / rest) if rest else remote
        return None

    async def section_for(self, plex_path: str) -> PlexSection | None:
        """The library whose `Location` holds `plex_path` (the most specific one), or None."""
        best: tuple[int, PlexSection] | None = None
        for section in await self.server.sections():
            for location in section.locations:
                root = location.rstrip("/") or "/"
                inside = root == "/" or plex_path == root or plex_path.startswith(root + "/")
                if inside and (best is None or len(root) > best[0]):
                    best = (len(root), section)
        return best[1] if best else None

    async def _locate(self, path: str) -> tuple[PlexSection, str] | None:
        mapped = self.plex_path(path)
        if mapped is None:
            self.ctx.log.warning("plex refresh skipped: %s is under no path mapping", path)
            return None
        section = await self.section_for(mapped)
        if section is None:
            self.ctx.log.warning(
                "plex refresh skipped: %s (Plex: %s) is in no Plex library", path, mapped
            )
            return None
        return section, mapped

    @staticmethod
    def _folder(local_path: str, mapped: str) -> str:
        """The folder to scan: `mapped` itself for a folder on this machine, else its parent."""
        if Path(local_path).is_dir():
            return mapped
        return str(PurePosixPath(mapped).parent)

    async def refresh_path(self, path: str) -> str | None:
        """Scan only the folder of `path` (a file or folder on this machine) in the library
        that holds it, as Plex sees it. Answers the library's key, or None (logged) when the
        path is under no mapping or in no library. Raises `PlexError` if Plex fails."""
        located = await self._locate(path)
        if located is None:
            return None
        section, mapped = located
        await self.server.refresh_section(section.key, self._folder(path, mapped))
        return section.key

    async def add_to_collection(
        self,
        section: str | int,
        title: str,
        items: list[str] | tuple[str, ...],
        *,
        owner: User | None = None,
    ) -> str:
        """Put `items` (rating keys) in the collection `title` of library `section`, creating
        it if needed. Answers the collection's rating key.

        Without `owner`, the library's collection of that title is used (made if missing).
        With `owner`, the collection is that person's: the one MediaNest made for them under
        this title before (if Plex still has it), else a new one, named `title` or, when the
        library has a collection of that name already, `title (their username)` (then
        `title (#their id)`); it is recorded as theirs, so their library view shows it as
        theirs and deleting them forgets it. Another collection is never taken over.
        """
        title = " ".join(title.split())
        if not title:
            raise ValueError("a collection needs a title")
        if not items:
            raise ValueError("no items given")
        section = str(section)
        lock = self._collection_locks.setdefault((section, title.lower()), asyncio.Lock())
        async with lock:
            existing = {c.title: c.rating_key for c in await self.server.collections(section)}
            if owner is not None:
                key = await self._add_for_owner(owner, section, title, list(items), existing)
            elif title in existing:
                key = existing[title]
                await self.server.add_to_collection(key, list(items))
            else:
                key = (await self.server.create_collection(section, title, list(items))).rating_key
        await self._collections_changed()
        return key

    async def _add_for_owner(
        self,
        owner: User,
        section: str,
        playlist: str,
        items: list[str],
        existing: Mapping[str, str],
    ) -> str:
        rows = await self.ctx.db.fetch_all(
            "SELECT collection_key, user_id, playlist FROM plex_collections"
            " WHERE section_key = :section",
            {"section": section},
        )
        for row in rows:
            if int(row["user_id"]) == owner.id and row["playlist"] == playlist:
                key = str(row["collection_key"])
                if key in existing.values():
                    await self.server.add_to_collection(key, items)
                    return key
                # deleted in Plex since: forget it, make it again
                await self.ctx.db.execute(
                    "DELETE FROM plex_collections WHERE collection_key = :key", {"key": key}
                )
        # a title nobody has in this library: never someone else's collection, nor one an
        # admin made by hand (usernames are unique; display names are not)
        for title in (playlist, f"{playlist} ({owner.username})", f"{playlist} (#{owner.id})"):
            if title not in existing:
                break
        else:
            raise ValueError(f"every name for playlist {playlist!r} is taken in this library")
        key = (await self.server.create_collection(section, title, items)).rating_key
        await self.ctx.db.execute(
            "INSERT INTO plex_collections (user_id, section_key, collection_key, playlist,"
            " title, created_at) VALUES (:user_id, :section, :key, :playlist, :title, :now)",
            {
                "user_id": owner.id,
                "section": section,
                "key": key,
                "playlist": playlist,
                "title": title,
                "now": self.ctx.clock.now(),
            },
        )
        return key

    async def owned_collections(self, user: User) -> set[str]:
        """The rating keys of the collections MediaNest made for `user`."""
        rows = await self.ctx.db.fetch_all(
            "SELECT collection_key FROM plex_collections WHERE user_id = :user_id",
            {"user_id": user.id},
        )
        return {str(r["collection_key"]) for r in rows}

    def scan_delays(self) -> list[float]:
        """Waits between looks for a new item after a refresh: 0.25 s doubling to 5 s, in all
        at most `scan_wait_seconds` (a bounded number of tries, whatever the clock does)."""
        budget = float(self.ctx.config.get("scan_wait_seconds", 60.0))
        delays: list[float] = []
        delay = 0.25
        while sum(delays) + delay <= budget:
            delays.append(delay)
            delay = min(delay * 2, 5.0)
        return delays

    async def wait_for_item(self, section: PlexSection, plex_file: str) -> PlexItem | None:
        """The item whose media file is `plex_file` (as Plex sees it), once Plex lists it among
        the newest of `section`; None if it did not appear within `scan_wait_seconds`."""
        item_type = "episode" if section.type == "show" else section.type
        deadline = self.ctx.clock.monotonic() + float(self.ctx.config["scan_wait_seconds"])
        delays = self.scan_delays()
        for attempt in range(len(delays) + 1):
            page = await self.server.browse(
                section.key, start=0, size=50, sort="addedAt:desc", item_type=item_type
            )
            found = next((i for i in page.items if plex_file in i.files), None)
            if found is not None:
                return found
            if attempt == len(delays) or self.ctx.clock.monotonic() > deadline:
                break
            await asyncio.sleep(delays[attempt])
        return None

    async def download_completed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A `youtube.download.completed` event: refresh the folder of `path` in its library,
        then, for a download from a playlist, put the new item in the downloader's collection
        for that playlist once Plex lists it. Only if that library is in their own view of the
        server (what Plex shares with them): a collection they cannot see is no use to them.
        Answers what was done (for logs and tests)."""
        path = data.get("path")
        if not isinstance(path, str) or not path:
            self.ctx.log.warning("youtube.download.completed without a path: ignored")
            return {"refreshed": None}
        located = await self._locate(path)
        if located is None:
            return {"refreshed": None}
        section, mapped = located
        await self.server.refresh_section(section.key, self._folder(path, mapped))
        result: dict[str, Any] = {"refreshed": section.key, "collection": None}
        playlist = data.get("playlist")
        if not isinstance(playlist, str) or not playlist.strip():
            return result
        user_id = data.get("user_id")
        owner = await self.ctx.user(user_id) if isinstance(user_id, int) else None
        if owner is None or owner.disabled:
            self.ctx.log.warning(
                "download %s: no active user %r to own collection %r", path, user_id, playlist
            )
            return result
        if not await self._sees_section(owner, section.key):
            self.ctx.log.warning(
                "download %s: library %s is not shared with %s, so no collection %r for them",
                path,
                section.title,
                owner.username,
                playlist,
            )
            return result
        item = await self.wait_for_item(section, mapped)
        if item is None:
            self.ctx.log.warning(
                "plex did not list %s within %s s: not added to collection %r",
                mapped,
                self.ctx.config["scan_wait_seconds"],
                playlist,
            )
            return result
        result["collection"] = await self.add_to_collection(
            section.key, playlist, [item.rating_key], owner=owner
        )
        result["rating_key"] = item.rating_key
        return result

    async def _sees_section(self, user: User, section_key: str) -> bool:
        """Is library `section_key` in `user`'s view of the server (fresh, not cached)?"""
        try:
            token = await self.token_for(user)
        except PlexSignInNeeded:
            return False
        client = self.server.for_token(token)
        try:
            sections = await client.sections()
        except PlexUnauthorized:
            return False
        return any(s.key == section_key for s in sections)

    async def _collections_changed(self) -> None:
        generation = int(await self.ctx.cache.get("collections_generation") or 0)
        await self.ctx.cache.set("collections_generation", generation + 1, 86400)

    def item_json(self, user: User, item: PlexItem, *, detail: bool = False) -> dict[str, Any]:
        """An item for pages and the JSON API, as `user` sees it: images as proxy URLs signed
        for `user` alone (the proxy fetches them with their own token), never a token."""
        body: dict[str, Any] = {
            "rating_key": item.rating_key,
            "type": item.type,
            "title": item.title,
            "year": item.year,
            "url": f"/plex/item/{item.rating_key}",
            "thumb_url": self.images.url(
                user.id, item.thumb or item.parent_thumb or item.grandparent_thumb
            ),
            "rating": item.rating if item.rating is not None else item.audience_rating,
            "duration_ms": item.duration_ms,
            "added_at": item.added_at.isoformat() if item.added_at else None,
            "watched": item.view_count > 0
            or (item.leaf_count is not None and item.leaf_count == item.viewed_leaf_count),
            "section_id": item.section_id,
            "parent_title": item.parent_title,
            "grandparent_title": item.grandparent_title,
            "index": item.index,
            **display_names(item),
            "guids": list(item.guids),
        }
        if detail:
            body.update(
                {
                    "summary": item.summary,
                    "tagline": item.tagline,
                    "studio": item.studio,
                    "content_rating": item.content_rating,
                    "genres": list(item.genres),
                    "directors": list(item.directors),
                    "cast": [{"name": r.tag, "role": r.role} for r in item.cast],
                    "art_url": self.images.url(user.id, item.art, 1280, 720),
                    "leaf_count": item.leaf_count,
                    "child_count": item.child_count,
                }
            )
        return body


def display_names(item: PlexItem) -> dict[str, str | None]:
    """What a poster says: `display_title` is the show for a season or an episode (Plex puts it
    in parentTitle / grandparentTitle), `subtitle` the season, the episode, or the year."""
    if item.type == "season" and item.parent_title:
        return {"display_title": item.parent_title, "subtitle": item.title}
    if item.type == "episode" and item.grandparent_title:
        number = ""
        if item.parent_index is not None and item.index is not None:
            number = f"S{item.parent_index} · E{item.index}"
        subtitle = f"{number} · {item.title}" if number else item.title
        return {"display_title": item.grandparent_title, "subtitle": subtitle}
    return {"display_title": item.title, "subtitle": str(item.year) if item.year else None}
