"""The JSON of the fake server's sections and items, as PMS sends it (§1.4-1.5): `ratingKey`
and `key` strings, `librarySectionID` an int, epoch seconds, milliseconds, float ratings, tags
as lists of objects. Built only for the items an answer holds."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .library import SECTION_AGENTS, FakeItem, FakeSection, FakeSession, Library


def _image(item: FakeItem, kind: str) -> str:
    base = "collections" if item.type == "collection" else "metadata"
    if item.type == "collection":
        return f"/library/{base}/{item.rating_key}/composite/{item.updated_at}"
    return f"/library/{base}/{item.rating_key}/{kind}/{item.updated_at}"


def _year_of(item: FakeItem | None) -> int | None:
    return None if item is None else item.year


def _plex_guid(item: FakeItem) -> str:
    if item.type == "collection":
        return f"collection://{uuid.UUID(int=item.rating_key)}"
    return f"plex://{item.type}/{item.rating_key:024x}"


def _tags(
    names: Sequence[str], library: Library, *, detail: bool, kind: str
) -> list[dict[str, Any]]:
    if not detail:
        return [{"tag": name} for name in names]
    return [
        {"id": library.tag_id(n), "filter": f"{kind}={library.tag_id(n)}", "tag": n} for n in names
    ]


def _media(item: FakeItem, *, detail: bool) -> list[dict[str, Any]]:
    if item.file is None:
        return []
    container = item.file.rsplit(".", 1)[-1] if "." in item.file else "mkv"
    part: dict[str, Any] = {
        "id": item.rating_key * 10 + 1,
        "key": f"/library/parts/{item.rating_key * 10 + 1}/{item.added_at}/file.{container}",
        "duration": item.duration,
        "file": item.file,
        "size": 1190641734,
        "container": container,
        "videoProfile": "high",
        "has64bitOffsets": False,
        "optimizedForStreaming": False,
    }
    if detail:
        part["Stream"] = [
            {"id": item.rating_key * 100 + 1, "streamType": 1, "codec": "h264", "index": 0},
            {"id": item.rating_key * 100 + 2, "streamType": 2, "codec": "aac", "index": 1},
            {
                "id": item.rating_key * 100 + 3,
                "streamType": 3,
                "codec": "srt",
                "languageCode": "eng",
            },
        ]
    return [
        {
            "id": item.rating_key * 10,
            "duration": item.duration,
            "bitrate": 1363,
            "width": 1920,
            "height": 800,
            "aspectRatio": 2.35,
            "audioChannels": 2,
            "audioCodec": "aac",
            "videoCodec": "h264",
            "videoResolution": "1080",
            "container": container,
            "videoFrameRate": "24p",
            "videoProfile": "high",
            "optimizedForStreaming": 0,  # 0 here, false on Part: as captured (§1.4)
            "has64bitOffsets": False,
            "Part": [part],
        }
    ]


def section_fields(section: FakeSection) -> dict[str, Any]:
    """What items carry about their library in recentlyAdded, hubs and collection lists."""
    return {
        "librarySectionID": section.key,
        "librarySectionTitle": section.title,
        "librarySectionKey": f"/library/sections/{section.key}",
    }


def item_json(
    item: FakeItem,
    library: Library,
    *,
    detail: bool = False,
    with_section: bool = False,
    guids: bool = False,
) -> dict[str, Any]:
    """The JSON of one item as PMS sends it in `Metadata[]`."""
    rk = str(item.rating_key)
    data: dict[str, Any] = {"ratingKey": rk, "key": f"/library/metadata/{rk}"}
    parent = item.parent
    grandparent = parent.parent if parent is not None else None
    if parent is not None:
        data["parentRatingKey"] = str(parent.rating_key)
    if grandparent is not None:
        data["grandparentRatingKey"] = str(grandparent.rating_key)
    data["guid"] = _plex_guid(item)
    if parent is not None:
        data["parentGuid"] = _plex_guid(parent)
    if grandparent is not None:
        data["grandparentGuid"] = _plex_guid(grandparent)
    if item.studio:
        data["studio"] = item.studio
    data["type"] = item.type
    data["title"] = item.title
    if grandparent is not None:
        data["grandparentKey"] = f"/library/metadata/{grandparent.rating_key}"
        data["grandparentTitle"] = grandparent.title
        data["grandparentThumb"] = _image(grandparent, "thumb")
        data["grandparentArt"] = _image(grandparent, "art")
    if parent is not None:
        data["parentKey"] = f"/library/metadata/{parent.rating_key}"
        data["parentTitle"] = parent.title
        data["parentThumb"] = _image(parent, "thumb")
        if parent.index is not None:
            data["parentIndex"] = parent.index
        # a season's parentYear is its show's year (spec, /children); an episode's is its
        # season's, which is the show's here: the fake's seasons have no year of their own
        parent_year = parent.year if parent.year is not None else _year_of(grandparent)
        if parent_year is not None:
            data["parentYear"] = parent_year
    if item.type in ("show", "season"):
        data["key"] = f"/library/metadata/{rk}/children"
    if item.type == "collection":
        data["key"] = f"/library/collections/{rk}/children"
        data["subtype"] = item.subtype
        data["smart"] = item.smart
        data["childCount"] = len(item.members)
        # the reference names these without types (§1.5 Collections); the fake sends the
        # strings PMS writes as XML attributes ("-1": the library's default mode, "0": by
        # release date) and a boolean for collectionPublished, like `smart`
        data["collectionMode"] = "-1"
        data["collectionSort"] = "0"
        data["collectionPublished"] = False
        if item.smart and item.content:
            data["content"] = item.content
        years = [y for m in item.members if (y := library.items[m].year) is not None]
        if years:  # strings, as PMS sends them [inferred]
            data["minYear"], data["maxYear"] = str(min(years)), str(max(years))
    if item.type != "season" and item.type != "episode":
        data["titleSort"] = item.title_sort
    if item.content_rating:
        data["contentRating"] = item.content_rating
    data["summary"] = item.summary
    if item.index is not None:
        data["index"] = item.index
    if item.rating is not None:
        data["rating"] = item.rating
    if item.audience_rating is not None:
        data["audienceRating"] = item.audience_rating
        data["audienceRatingImage"] = "rottentomatoes://image.rating.upright"
    if item.year is not None:
        data["year"] = item.year
    if item.tagline:
        data["tagline"] = item.tagline
    data["thumb"] = _image(item, "thumb")
    if item.type == "season" and parent is not None:
        data["art"] = _image(parent, "art")  # a season shows its show's art (spec, /children)
    elif item.type != "collection":
        data["art"] = _image(item, "art")
    if item.duration is not None:
        data["duration"] = item.duration
    if item.year is not None and item.type in ("movie", "show", "episode"):
        data["originallyAvailableAt"] = f"{item.year}-06-01"
    if item.type in ("show", "season"):
        leaves = item.leaves()
        data["leafCount"] = len(leaves)
        data["viewedLeafCount"] = sum(1 for leaf in leaves if leaf.view_count)
        data["childCount"] = len(item.children)
    elif item.view_count:  # PMS leaves these out for unwatched items
        data["viewCount"] = item.view_count
        data["lastViewedAt"] = item.added_at + 86400
    data["addedAt"] = item.added_at
    data["updatedAt"] = item.updated_at
    if with_section:
        data.update(section_fields(library.sections[item.section_key]))
    media = _media(item, detail=detail)
    if media:
        data["Media"] = media
    if item.genres:
        data["Genre"] = _tags(item.genres, library, detail=detail, kind="genre")
    if item.directors:
        data["Director"] = _tags(item.directors, library, detail=detail, kind="director")
    if item.cast:
        cast = item.cast if detail else item.cast[:3]
        data["Role"] = [
            {
                "id": library.tag_id(actor),
                "filter": f"actor={library.tag_id(actor)}",
                "tag": actor,
                "role": role,
                "thumb": f"https://metadata-static.plex.tv/people/{library.tag_id(actor)}.jpg",
            }
            if detail
            else {"tag": actor}
            for actor, role in cast
        ]
    if item.collections:
        data["Collection"] = [{"tag": title} for title in item.collections]
    if (detail or guids) and item.guids:
        data["Guid"] = [{"id": guid} for guid in item.guids]
    return data


def section_json(section: FakeSection) -> dict[str, Any]:
    """One `Directory` of `/library/sections` (§1.5)."""
    agent, scanner, thumb = SECTION_AGENTS[section.type]
    return {
        "allowSync": True,
        "art": f"/:/resources/{section.type}-fanart.jpg",
        "composite": f"/library/sections/{section.key}/composite/{section.updated_at}",
        "filters": True,
        "refreshing": section.refreshing,
        "thumb": thumb,
        "key": str(section.key),
        "type": section.type,
        "title": section.title,
        "agent": agent,
        "scanner": scanner,
        "language": "en-US",
        "uuid": section.uuid,
        "updatedAt": section.updated_at,
        "createdAt": section.created_at,
        "scannedAt": section.updated_at,
        "content": True,
        "directory": True,
        "contentChangedAt": section.updated_at - 1600000000,
        "hidden": 0,
        "Location": [{"id": section.key, "path": section.location}],
    }


def hub_json(
    library: Library,
    title: str,
    kind: str,
    items: list[FakeItem],
    limit: int,
    needle: str,
    reasons: Mapping[int, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """One `Hub` of `/hubs/search` with `Metadata` items; empty hubs are kept (§1.5). Items
    found through a tag (`reasons`: rating key -> (hub identifier, tag)) come after the
    direct matches and say why (`reason`, `reasonTitle`, `reasonID`, spec)."""
    reasons = reasons or {}
    items = sorted(
        items,
        key=lambda i: (
            i.rating_key in reasons,
            not i.title.lower().startswith(needle),
            i.title_sort,
        ),
    )
    shown = items[:limit]
    hub: dict[str, Any] = {
        "title": title,
        "type": kind,
        "hubIdentifier": kind,
        "context": f"hub.{kind}",
        "size": len(shown),
        "more": len(items) > limit,
        "style": "shelf",
    }
    if shown:
        hub["hubKey"] = "/library/metadata/" + ",".join(str(i.rating_key) for i in shown)
        hub["Metadata"] = []
        for item in shown:
            data = item_json(item, library, with_section=True)
            # a string in captures [inferred]
            data["score"] = "0.95" if item.title.lower().startswith(needle) else "0.70"
            if item.rating_key in reasons:
                reason, tag = reasons[item.rating_key]
                data["reason"], data["reasonTitle"] = reason, tag
                data["reasonID"] = library.tag_id(tag)
                data["score"] = "0.50"
            hub["Metadata"].append(data)
    return hub


def tag_hub_json(
    library: Library, title: str, kind: str, tag_type: int, names: list[str], limit: int
) -> dict[str, Any]:
    """A tag hub (actors, directors, genres): `Directory` entries with `tag`, `id`, `filter`
    and `tagType` (§1.5); people have a `thumb` (the reference's actor entry), genres none
    [inferred: a genre has no picture]."""
    shown = sorted(names)[:limit]
    hub: dict[str, Any] = {
        "title": title,
        "type": kind,
        "hubIdentifier": kind,
        "context": f"hub.{kind}",
        "size": len(shown),
        "more": len(names) > limit,
        "style": "shelf",
    }
    if shown:
        hub["Directory"] = []
        for name in shown:
            entry: dict[str, Any] = {
                "id": library.tag_id(name),
                "filter": f"{kind}={library.tag_id(name)}",
                "tag": name,
                "tagType": tag_type,
            }
            if kind in ("actor", "director"):
                entry["thumb"] = (
                    f"https://metadata-static.plex.tv/people/{library.tag_id(name)}.jpg"
                )
            hub["Directory"].append(entry)
    return hub


def session_json(session: FakeSession, number: int, library: Library) -> dict[str, Any]:
    """One stream of `/status/sessions`: the item plus `User`, `Player`, `Session` and, when
    transcoding, `TranscodeSession` (§1.5, as Homepage and Homarr read them)."""
    data = item_json(session.item, library, with_section=True)
    # sessions are where PMS sends `librarySectionID` and `Media[].id` as strings (spec,
    # /status/sessions), unlike every library listing
    data["librarySectionID"] = str(data["librarySectionID"])
    for media in data.get("Media", ()):
        media["id"] = str(media["id"])
        media["selected"] = True
    data["sessionKey"] = session.session_key
    data["viewOffset"] = session.view_offset
    data["User"] = {
        "id": str(number),  # a string in PMS JSON [inferred]
        "title": session.user_title,
        "thumb": "https://plex.tv/users/abc/avatar?c=1",
    }
    data["Player"] = {
        "address": "192.168.1.20" if session.local else "198.51.100.4",
        "machineIdentifier": f"player-{session.session_key}",
        "model": "hosted",
        "platform": "Chrome",
        "platformVersion": "131.0",
        "product": session.product,
        "profile": "Web",
        "remotePublicAddress": "203.0.113.7" if session.local else "198.51.100.4",
        "state": session.state,
        "title": session.player_title,
        "version": "4.145.1",
        "local": session.local,
        "relayed": False,
        "secure": True,
        "userID": number,
    }
    data["Session"] = {
        "id": f"session-{session.session_key}",
        "bandwidth": session.bandwidth,
        "location": "lan" if session.local else "wan",
    }
    if session.transcode:
        data["TranscodeSession"] = {
            "key": f"/transcode/sessions/{session.session_key}",
            "videoDecision": "transcode",
            "audioDecision": "copy",
            "progress": 12.5,
            "speed": 2.1,
            "throttled": False,
        }
    return data
