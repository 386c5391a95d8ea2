"""The content of the fake Plex Media Server: sections, items, collections, and their JSON.

Items are small slotted objects; their wire form is built only when an answer needs it, so a
library of 20,000 films costs a few tens of milliseconds to make and a page of 50 to serve.
Field names and types follow external-apis.md §1.4-1.5: `ratingKey` and `key` strings,
`librarySectionID` an int, `addedAt` epoch seconds, `duration` milliseconds, `rating` floats.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from medianest_server.plugin_api import Clock

TYPE_NUMBERS = {"movie": 1, "show": 2, "season": 3, "episode": 4, "collection": 18}
SECTION_AGENTS = {
    "movie": ("tv.plex.agents.movie", "Plex Movie", "/:/resources/movie.png"),
    "show": ("tv.plex.agents.series", "Plex TV Series", "/:/resources/show.png"),
}
SAMPLE_EPOCH = 1736400000


def _words(text: str, separator: str = " ") -> tuple[str, ...]:
    return tuple(text.split(separator))


# for generated titles, genres and cast
_ADJECTIVES = _words(
    "Silent Crimson Last Hidden Golden Broken Distant Electric Frozen Wild Quiet Burning "
    "Hollow Secret Endless Northern Paper Iron Velvet Lonely"
)
_NOUNS = _words(
    "River Empire Signal Garden Horizon Machine Harbor Summer Shadow Voyage Kingdom Letter "
    "Mountain Station Island Mirror Orchard Tide Lantern Frontier"
)
GENRES = _words(
    "Action|Adventure|Animation|Comedy|Crime|Documentary|Drama|Family|Fantasy|History|Horror|"
    "Music|Mystery|Romance|Science Fiction|Thriller|War|Western",
    "|",
)
_ACTORS = _words(
    "Ada Lind|Ben Okafor|Chloé Martin|Dev Patel-Ross|Elif Kaya|Finn Berg|Grace Ho|Hugo Silva|"
    "Ines Moreau|Jonas Vik|Kara Singh|Leo Novak",
    "|",
)


@dataclass(eq=False, slots=True)
class FakeItem:
    """A library item of any type; `children` for shows (seasons) and seasons (episodes),
    `members` (rating keys) for collections."""

    rating_key: int
    section_key: int
    type: str
    title: str
    added_at: int
    updated_at: int
    title_sort: str = ""
    year: int | None = None
    summary: str = ""
    tagline: str = ""
    studio: str | None = None
    content_rating: str | None = None
    duration: int | None = None
    rating: float | None = None
    audience_rating: float | None = None
    genres: tuple[str, ...] = ()
    cast: tuple[tuple[str, str], ...] = ()  # (actor, role)
    directors: tuple[str, ...] = ()
    guids: tuple[str, ...] = ()  # "imdb://tt...", "tmdb://...", "tvdb://..."
    file: str | None = None
    view_count: int = 0
    index: int | None = None
    parent: FakeItem | None = None
    children: list[FakeItem] = field(default_factory=list)
    collections: tuple[str, ...] = ()  # titles of the collections it is in
    members: tuple[int, ...] = ()
    smart: bool = False
    subtype: str | None = None
    content: str | None = None  # a smart collection's filter URI

    def leaves(self) -> list[FakeItem]:
        """Episodes under a show or season; the item itself otherwise."""
        if self.type == "show":
            return [episode for season in self.children for episode in season.children]
        if self.type == "season":
            return list(self.children)
        return [self]


@dataclass(eq=False)
class FakeSection:
    key: int
    title: str
    type: str
    location: str
    uuid: str
    created_at: int
    updated_at: int
    items: list[FakeItem] = field(default_factory=list)
    collections: list[FakeItem] = field(default_factory=list)
    refreshing: bool = False


@dataclass
class FakeSession:
    """An active stream for `/status/sessions`."""

    session_key: str
    item: FakeItem
    user_title: str
    player_title: str = "Chrome"
    product: str = "Plex Web"
    state: str = "playing"
    local: bool = True
    view_offset: int = 0
    transcode: bool = False
    bandwidth: int = 4000


class Library:
    """Sections and items, and the helpers tests use to shape them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sections: dict[int, FakeSection] = {}
        self.items: dict[int, FakeItem] = {}
        self.tag_ids: dict[str, int] = {}
        self._rating_keys = itertools.count(1001)

    def now(self) -> int:
        return int(self.clock.now().timestamp())

    def tag_id(self, name: str) -> int:
        """The numeric id PMS gives a tag (genre, actor, ...): filters use it (`genre=<id>`)."""
        return self.tag_ids.setdefault(name, 100 + len(self.tag_ids))

    def add_section(
        self, key: int, title: str, kind: str = "movie", location: str | None = None
    ) -> FakeSection:
        """A library section (`kind` "movie" or "show") at `location` (as PMS sees it)."""
        if kind not in SECTION_AGENTS:
            raise ValueError(f"unsupported section type {kind!r}")
        now = self.now()
        section = FakeSection(
            key=key,
            title=title,
            type=kind,
            location=location or f"/data/{title.lower().replace(' ', '-')}",
            uuid=str(uuid.uuid4()),
            created_at=1600000000,
            updated_at=now,
        )
        self.sections[key] = section
        return section

    def _new(self, section: FakeSection, kind: str, title: str, **fields: Any) -> FakeItem:
        key = next(self._rating_keys)
        added = fields.pop("added_at", None) or self.now()
        item = FakeItem(
            rating_key=key,
            section_key=section.key,
            type=kind,
            title=title,
            added_at=added,
            updated_at=fields.pop("updated_at", None) or added,
            title_sort=fields.pop("title_sort", None) or _title_sort(title),
            **fields,
        )
        self.items[key] = item
        return item

    def add_item(
        self,
        section_key: int,
        title: str,
        file_path: str | None = None,
        *,
        year: int | None = None,
        show: str | None = None,
        season: int = 1,
        episode: int | None = None,
        genres: Sequence[str] = (),
        guids: Sequence[str] = (),
        added_at: int | None = None,
        **fields: Any,
    ) -> FakeItem:
        """What a Plex scan finds: a film in a movie section, or an episode (of `show`, season
        `season`, created as needed) in a show section. Newest in "recently added"."""
        section = self.sections[section_key]
        added = added_at or self.now()
        section.updated_at = max(section.updated_at, added)
        if section.type == "movie":
            item = self._new(
                section,
                "movie",
                title,
                year=year,
                file=file_path,
                genres=tuple(genres),
                guids=tuple(guids),
                added_at=added,
                duration=fields.pop("duration", 5_400_000),
                **fields,
            )
            section.items.append(item)
            return item
        show_title = show or title
        parent = next((s for s in section.items if s.title == show_title), None)
        if parent is None:
            parent = self._new(section, "show", show_title, year=year, added_at=added, index=1)
            parent.genres = tuple(genres)
            section.items.append(parent)
        season_item = next((s for s in parent.children if s.index == season), None)
        if season_item is None:
            season_item = self._new(
                section, "season", f"Season {season}", index=season, parent=parent, added_at=added
            )
            parent.children.append(season_item)
        season_item.added_at = max(season_item.added_at, added)
        number = episode if episode is not None else len(season_item.children) + 1
        item = self._new(
            section,
            "episode",
            title,
            year=year,
            index=number,
            parent=season_item,
            file=file_path,
            guids=tuple(guids),
            added_at=added,
            duration=fields.pop("duration", 2_700_000),
            **fields,
        )
        season_item.children.append(item)
        return item

    def add_collection(
        self,
        section_key: int,
        title: str,
        members: list[int] | None = None,
        *,
        smart: bool = False,
        content: str | None = None,
    ) -> FakeItem:
        """A collection in `section_key`; a smart one keeps its filter URI as `content`."""
        section = self.sections[section_key]
        collection = self._new(
            section,
            "collection",
            title,
            subtype=section.type,
            smart=smart,
            content=content if smart else None,
        )
        section.collections.append(collection)
        for rating_key in members or []:
            self.add_to_collection(collection, self.items[rating_key])
        return collection

    def add_to_collection(self, collection: FakeItem, item: FakeItem) -> None:
        if item.rating_key not in collection.members:
            collection.members = (*collection.members, item.rating_key)
            item.collections = (*item.collections, collection.title)
            collection.updated_at = self.now()

    def generate_library(
        self,
        section_key: int,
        count: int,
        kind: str = "movie",
        *,
        title: str | None = None,
        seasons: int = 1,
        episodes: int = 2,
    ) -> FakeSection:
        """Fill a section (created if missing) with `count` films or shows, deterministically:
        varied titles, years, ratings, genres, cast and watched state, for any size (20,000
        films take a fraction of a second: tag tuples are shared, not built per item)."""
        section = self.sections.get(section_key) or self.add_section(
            section_key, title or f"Library {section_key}", kind
        )
        genre_pairs = [tuple(sorted({GENRES[i], GENRES[(i * 5 + 3) % 18]})) for i in range(18)]
        casts = [((_ACTORS[i], "Lead"), (_ACTORS[(i + 5) % 12], "Friend")) for i in range(12)]
        directors = [(_ACTORS[(i + 3) % 12],) for i in range(12)]
        ratings = ("G", "PG", "PG-13", "R")
        base = SAMPLE_EPOCH - count * 600
        location = section.location
        for i in range(count):
            name = f"{_ADJECTIVES[i % 20]} {_NOUNS[(i // 20) % 20]} {i + 1}"
            sort_title = name
            if i % 7 == 0:
                name = "The " + name
            year = 1950 + (i * 7) % 76
            added = base + i * 600
            key = next(self._rating_keys)
            item = FakeItem(
                rating_key=key,
                section_key=section.key,
                type=kind,
                title=name,
                added_at=added,
                updated_at=added,
                title_sort=sort_title,
                year=year,
                summary=f"Generated item {i + 1}.",
                studio="Example Studio",
                content_rating=ratings[i % 4],
                rating=(10 + (i * 37) % 91) / 10,
                audience_rating=(10 + (i * 53) % 91) / 10,
                genres=genre_pairs[i % 18],
                cast=casts[i % 12],
                directors=directors[i % 12],
                index=None if kind == "movie" else 1,
            )
            self.items[key] = item
            section.items.append(item)
            if kind == "movie":
                item.duration = (80 + i % 70) * 60_000
                item.view_count = 1 if i % 3 == 0 else 0
                item.file = f"{location}/{name} ({year})/{name} ({year}).mkv"
                item.guids = (f"imdb://tt{1000000 + i:07d}", f"tmdb://{10000 + i}")
                continue
            item.guids = (f"tvdb://{70000 + i}", f"tmdb://{20000 + i}")
            for s in range(1, seasons + 1):
                season = self._new(
                    section, "season", f"Season {s}", index=s, parent=item, added_at=added
                )
                item.children.append(season)
                for e in range(1, episodes + 1):
                    season.children.append(
                        self._new(
                            section,
                            "episode",
                            f"Episode {e}",
                            index=e,
                            parent=season,
                            year=year,
                            duration=2_700_000,
                            view_count=1 if (i + e) % 4 == 0 else 0,
                            added_at=added,
                            file=f"{location}/{name}/Season {s:02d}/{name} - S{s:02d}E{e:02d}.mkv",
                        )
                    )
        return section

    def populate_sample(self) -> None:
        """Movies (1), TV Shows (2) and an empty YouTube movie library (3), with known items:
        "Example Movie" (2021; Science Fiction, Drama; cast; in a collection) and "Example Show"
        (two seasons of three episodes)."""
        movies = self.add_section(1, "Movies", "movie", "/data/movies")
        self.add_section(2, "TV Shows", "show", "/data/tv")
        self.add_section(3, "YouTube", "movie", "/data/youtube")
        samples = [
            ("Example Movie", 2021, ["Science Fiction", "Drama"], 7.9, 8.4, 1),
            ("Another Movie", 2019, ["Comedy"], 6.1, 7.0, 0),
            ("The Third Film", 2008, ["Drama", "Thriller"], 8.8, 9.1, 0),
            ("Animated Tale", 1995, ["Animation", "Family"], 7.2, 8.0, 2),
            ("Documentary Of Things", 2015, ["Documentary"], 6.6, 6.9, 0),
        ]
        for position, (name, year, genres, rating, audience, views) in enumerate(samples):
            self.add_item(
                1,
                name,
                f"/data/movies/{name} ({year})/{name} ({year}).mp4",
                year=year,
                genres=genres,
                guids=[f"imdb://tt{1000 + position:07d}", f"tmdb://{position + 1}"],
                added_at=SAMPLE_EPOCH + position * 3600,
                summary=f"A summary of {name}.",
                tagline="…",
                studio="Example Studio",
                content_rating="PG-13",
                rating=rating,
                audience_rating=audience,
                cast=(("Actor One", "Hero"), ("Actor Two", "Villain")),
                directors=("Jane Doe",),
                view_count=views,
                duration=6_989_056,
            )
        for season in (1, 2):
            for episode in (1, 2, 3):
                self.add_item(
                    2,
                    f"Episode {episode}",
                    f"/data/tv/Example Show/Season {season:02d}/Example Show - "
                    f"S{season:02d}E{episode:02d}.mkv",
                    show="Example Show",
                    season=season,
                    episode=episode,
                    year=2020,
                    genres=("Drama",),
                    guids=[f"tvdb://{9000 + season * 10 + episode}"],
                    added_at=SAMPLE_EPOCH + 20000 + season * 1000 + episode,
                    summary=f"Episode {episode} of season {season}.",
                    view_count=1 if season == 1 else 0,
                )
        show = self.sections[2].items[0]
        show.summary, show.rating, show.guids = "A show.", 8.1, ("tvdb://9000",)
        show.cast = (("Actor Two", "Detective"),)
        self.add_collection(1, "Favourites", [movies.items[0].rating_key])


def _title_sort(title: str) -> str:
    for article in ("The ", "A ", "An "):
        if title.startswith(article):
            return title[len(article) :]
    return title
