"""What the fake plex.tv and the fake Plex Media Server share: content negotiation, XML, a real
JPEG, request recording, and the switches that make a fake slow, failing or down.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# PMS names JSON lists after the XML elements they replace; library items are all `Metadata` in
# JSON but `<Video>`, `<Directory>`, `<Track>` or `<Photo>` in XML (external-apis.md §1.4).
_XML_ITEM_TAGS = {
    "movie": "Video",
    "episode": "Video",
    "clip": "Video",
    "trailer": "Video",
    "track": "Track",
    "photo": "Photo",
}


def wants_json(request: web.Request) -> bool:
    """plex.tv v2 and PMS answer JSON only when asked; XML is the default (§1.1, §1.4)."""
    return "application/json" in request.headers.get("Accept", "").lower()


def xml_response(root: ElementTree.Element, *, status: int = 200) -> web.Response:
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root)
    return web.Response(body=body, status=status, content_type="application/xml", charset="utf-8")


def xml_element(tag: str, attrs: Mapping[str, Any]) -> ElementTree.Element:
    """An element from a JSON object: scalars become attributes (booleans "1"/"0", None left
    out), lists of objects child elements, nested objects a child element of the same name."""
    element = ElementTree.Element(tag)
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, list):
            for child in value:
                if isinstance(child, Mapping):
                    child_tag = key
                    if key == "Metadata":
                        child_tag = _XML_ITEM_TAGS.get(str(child.get("type")), "Directory")
                    element.append(xml_element(child_tag, child))
                else:
                    element.set(key, ",".join(str(part) for part in value))
        elif isinstance(value, Mapping):
            element.append(xml_element(key, value))
        elif isinstance(value, bool):
            element.set(key, "1" if value else "0")
        else:
            element.set(key, str(value))
    return element


def html_error(status: int, *, extra_headers: Mapping[str, str] | None = None) -> web.Response:
    """The small HTML page PMS (and a proxy in front of plex.tv) sends for errors; it stays HTML
    even when the client asked for JSON (§1.4)."""
    return web.Response(
        text=html_page(status),
        status=status,
        content_type="text/html",
        headers=dict(extra_headers or {}),
    )


def html_page(status: int) -> str:
    reason = _REASONS.get(status, "Error")
    return (
        f"<html><head><title>{reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
    )


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def jpeg(width: int, height: int) -> bytes:
    """A valid baseline JPEG of `width` x `height` mid-grey pixels (any decoder opens it).

    One 8x8 block costs two bits (DC difference 0, end of block), so even large sizes are small;
    the size is in the SOF0 header, where `jpeg_size` reads it back.
    """
    if not (1 <= width <= 65535 and 1 <= height <= 65535):
        raise ValueError("JPEG sides must be 1..65535")

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    quantization = segment(0xDB, b"\x00" + b"\x01" * 64)
    frame = segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    # one Huffman code of length 1 in each table: DC symbol 0 and AC symbol 0x00 (end of block)
    huffman = segment(
        0xC4, b"\x00\x01" + b"\x00" * 15 + b"\x00" + b"\x10\x01" + b"\x00" * 15 + b"\x00"
    )
    scan = segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    bits = 2 * (-(-width // 8)) * (-(-height // 8))
    data = bytearray(-(-bits // 8))
    if bits % 8:
        data[-1] = (1 << (8 - bits % 8)) - 1  # pad the last byte with 1 bits
    return b"\xff\xd8" + quantization + frame + huffman + scan + bytes(data) + b"\xff\xd9"


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a baseline JPEG's SOF0 header; ValueError if it is not one."""
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    position = 2
    while position + 4 <= len(data):
        marker = data[position + 1]
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker == 0xC0:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    raise ValueError("no SOF0 segment")


@dataclass(frozen=True)
class RecordedRequest:
    """One request a fake received, for assertions (headers and query as sent)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]


class FakeService:
    """Request counters and the switches every fake has.

    - `requests["/library/sections/1/all"]` counts requests per path; `log` keeps each one;
    - `down = True` answers 503 to everything (connection refused: stop the test server);
    - `fail_next(status, times)` answers the next `times` requests with `status`;
    - `delay_seconds` slows every answer; `pause()` holds every request until `resume()`.
    """

    down_page_status = 503

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.log: list[RecordedRequest] = []
        self.down = False
        self.delay_seconds = 0.0
        self._failures: deque[int] = deque()
        self._running = asyncio.Event()
        self._running.set()
        self._arrivals = asyncio.Condition()

    def fail_next(self, status: int = 503, times: int = 1) -> None:
        """Answer the next `times` requests with `status` (an HTML error page)."""
        self._failures.extend([status] * times)

    def pause(self) -> None:
        """Hold requests (after counting them) until `resume()`: for single-flight tests."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def wait_for_requests(self, path: str, count: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until `path` was requested at least `count` times (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout), self._arrivals:
            await self._arrivals.wait_for(lambda: self.requests[path] >= count)

    @web.middleware
    async def switches(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests[request.path] += 1
        self.log.append(
            RecordedRequest(
                request.method, request.path, dict(request.query), dict(request.headers)
            )
        )
        async with self._arrivals:
            self._arrivals.notify_all()
        await self._running.wait()
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.down:
            return html_error(self.down_page_status)
        if self._failures:
            return html_error(self._failures.popleft())
        return await handler(request)
