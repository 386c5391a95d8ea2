"""How the fake server pages, sorts and filters a listing (§1.4 paging, §1.5 `/all`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .library import FakeItem


def to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def paging(headers: Mapping[str, str], query: Mapping[str, str]) -> tuple[int, int | None, bool]:
    """(start, size, paged) from `X-Plex-Container-Start/Size`, as headers or in the query."""

    def read(name: str) -> int | None:
        return to_int(headers.get(name) or query.get(name))

    start, size = read("X-Plex-Container-Start"), read("X-Plex-Container-Size")
    paged = start is not None or size is not None
    return max(start or 0, 0), None if size is None else max(size, 0), paged


def unwatched(item: FakeItem) -> bool:
    if item.type in ("show", "season"):
        return any(leaf.view_count == 0 for leaf in item.leaves())
    return item.view_count == 0


def filter_items(
    items: list[FakeItem], query: Mapping[str, str], tag_id: Callable[[str], int]
) -> list[FakeItem]:
    """`unwatched=1`, `genre=<tag id>[,id]`, `year=`, `decade=`, `title=` (contains),
    `addedAt>>=`/`addedAt<<=` (epoch); other filters are ignored, as PMS does (§1.5)."""
    checks: list[Callable[[FakeItem], bool]] = []
    if query.get("unwatched") == "1":
        checks.append(unwatched)
    if "genre" in query:
        wanted = {to_int(v) for v in query["genre"].split(",")}
        checks.append(lambda i: any(tag_id(g) in wanted for g in i.genres))
    if "year" in query:
        years = {to_int(v) for v in query["year"].split(",")}
        checks.append(lambda i: i.year in years)
    if "decade" in query:
        decades = {to_int(v) for v in query["decade"].split(",")}
        checks.append(lambda i: i.year is not None and i.year // 10 * 10 in decades)
    if "title" in query:
        needle = query["title"].lower()
        checks.append(lambda i: needle in i.title.lower())
    after, before = to_int(query.get("addedAt>>")), to_int(query.get("addedAt<<"))
    if after is not None:
        checks.append(lambda i: i.added_at >= after)
    if before is not None:
        checks.append(lambda i: i.added_at <= before)
    if not checks:
        return items
    return [item for item in items if all(check(item) for check in checks)]


SORT_FIELDS: dict[str, Callable[[FakeItem], Any]] = {
    "titleSort": lambda i: i.title_sort.lower(),
    "title": lambda i: i.title.lower(),
    "addedAt": lambda i: i.added_at,
    "updatedAt": lambda i: i.updated_at,
    "year": lambda i: i.year,
    "originallyAvailableAt": lambda i: i.year,
    "rating": lambda i: i.rating,
    "audienceRating": lambda i: i.audience_rating,
    "duration": lambda i: i.duration,
    "viewCount": lambda i: i.view_count,
}


def sort_items(items: list[FakeItem], sort: str) -> list[FakeItem]:
    """`sort=field[:asc|desc][,field...]`, items without the value last. ValueError for an
    unknown field [inferred: strict, so a client sending a wrong name notices]."""
    keys = []
    for part in sort.split(","):
        name, _, direction = part.strip().partition(":")
        if name not in SORT_FIELDS or direction not in ("", "asc", "desc"):
            raise ValueError(f"unknown sort {part!r}")
        keys.append((SORT_FIELDS[name], direction == "desc"))
    ordered = sorted(items, key=lambda i: (i.title_sort.lower(), i.rating_key))
    for getter, descending in reversed(keys):
        present = [i for i in ordered if getter(i) is not None]
        missing = [i for i in ordered if getter(i) is None]
        present.sort(key=getter, reverse=descending)  # stable: earlier keys break ties
        ordered = present + missing
    return ordered
