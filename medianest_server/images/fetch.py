"""Fetching an image for the proxy: declared hosts only, redirects included; JPEG, PNG, WebP or
GIF only (never SVG, which can carry script); never more than the size cap."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from yarl import URL

from ..errors import Forbidden, MediaNestError, NotFound
from ..http import HttpClient, UpstreamError
from .signing import SCHEMES

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
FETCH_TIMEOUT_SECONDS = 10.0
# what the proxy serves, by the type the bytes really are; SVG is left out on purpose
IMAGE_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ImageRefused(MediaNestError):
    """The image host answered with something the proxy will not serve (502)."""

    status = 502
    code = "image_refused"


@dataclass(frozen=True)
class Image:
    body: bytes
    content_type: str  # one of IMAGE_TYPES, from the bytes themselves

    @property
    def extension(self) -> str:
        return IMAGE_TYPES[self.content_type]


@dataclass(frozen=True)
class ImageHosts:
    """The image hosts one plugin declared: `image.tmdb.org` (any port), `*.ytimg.com` (the
    domain's subdomains), `192.168.1.20:5055` (that port only)."""

    plugin: str
    patterns: tuple[tuple[str, int | None], ...]

    @classmethod
    def parse(cls, plugin: str, declared: Iterable[str]) -> ImageHosts:
        """Raises ValueError naming an entry that is not a host name."""
        if isinstance(declared, str):
            raise ValueError("return a list of host names, not one string")
        patterns = []
        for entry in declared:
            if not isinstance(entry, str) or not entry.strip():
                raise ValueError(f"not a host name: {entry!r}")
            text = entry.strip().lower()
            if "/" in text or "@" in text:
                raise ValueError(f"a host name, not an address: {entry!r}")
            host, port = text, None
            if ":" in text and not text.endswith("]"):
                host, _, port_text = text.rpartition(":")
                if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                    raise ValueError(f"not a port in {entry!r}")
                port = int(port_text)
            host = host.strip("[]")
            if not host or host == "*." or "*" in host.removeprefix("*."):
                raise ValueError(f"not a host name: {entry!r}")
            patterns.append((host, port))
        return cls(plugin, tuple(patterns))

    def allows(self, url: str) -> bool:
        """Is `url` an http(s) address on one of these hosts? (Read as the HTTP client reads
        it, so that what is checked is what is fetched.)"""
        try:
            parsed = URL(url)
            host, port = parsed.host, parsed.port
        except (TypeError, ValueError):
            return False
        if parsed.scheme not in SCHEMES or not host or not parsed.absolute:
            return False
        host = host.lower().rstrip(".")
        port = port or _DEFAULT_PORTS[parsed.scheme]
        for pattern, wanted_port in self.patterns:
            if wanted_port is not None and wanted_port != port:
                continue
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return True
            elif host == pattern:
                return True
        return False


def host_of(url: str) -> str:
    """`image.tmdb.org` or `127.0.0.1:8123`: how messages name an image host."""
    try:
        parsed = URL(url)
        host = parsed.host
    except (TypeError, ValueError):
        return "(invalid address)"
    if not host:
        return "(no host)"
    return f"{host}:{parsed.explicit_port}" if parsed.explicit_port else host


def not_declared(hosts: ImageHosts, url: str) -> Forbidden:
    return Forbidden(
        f"{host_of(url)} is not an image host the {hosts.plugin} plugin declared, "
        "so MediaNest does not fetch images from it.",
        details={"plugin": hosts.plugin, "host": host_of(url)},
    )


async def fetch_image(
    http: HttpClient,
    url: str,
    hosts: ImageHosts,
    *,
    max_bytes: int,
    timeout: float = FETCH_TIMEOUT_SECONDS,  # noqa: ASYNC109 (the read timeout of each hop)
) -> Image:
    """GET `url` from a declared host, following redirects only to declared hosts.

    Raises Forbidden (an undeclared host), NotFound (the host has no such image), ImageRefused
    (not an image, SVG, over `max_bytes`, a redirect elsewhere), or the client's UpstreamError /
    UpstreamUnavailable when the host cannot be reached (its circuit breaker is per host).
    """
    if not hosts.allows(url):
        raise not_declared(hosts, url)
    for _ in range(MAX_REDIRECTS + 1):
        host = host_of(url)
        try:
            response = await http.get(
                url,
                upstream=f"image host {host}",
                allow_redirects=False,  # each hop is checked against the declared hosts
                max_body_bytes=max_bytes,
                timeout=timeout,
                single_flight=True,
            )
        except UpstreamError as exc:
            if exc.http_status is None:
                raise
            # the host answered, with more than the cap (the only answered failure of a GET)
            raise ImageRefused(
                f"The image from {host} is larger than {_size(max_bytes)}; "
                "MediaNest does not serve images that large.",
                details={"host": host, "max_bytes": max_bytes},
            ) from None
        if response.status in REDIRECT_STATUSES:
            try:
                target = str(URL(url).join(URL(response.headers.get("Location", ""))))
            except (TypeError, ValueError):
                target = ""
            if not hosts.allows(target):
                raise ImageRefused(
                    f"{host} redirected the image to {host_of(target)}, which the "
                    f"{hosts.plugin} plugin did not declare; MediaNest did not follow.",
                    details={"host": host, "redirected_to": host_of(target)},
                )
            url = target
            continue
        if response.status == 404:
            raise NotFound(f"{host} has no such image.", details={"host": host})
        if not response.ok:
            raise ImageRefused(
                f"{host} answered {response.status} instead of the image.",
                details={"host": host, "http_status": response.status},
            )
        return _checked(host, response.headers.get("Content-Type", ""), response.body)
    raise ImageRefused(
        f"{host_of(url)} redirected more than {MAX_REDIRECTS} times; MediaNest gave up.",
        details={"host": host_of(url)},
    )


def _checked(host: str, declared_type: str, body: bytes) -> Image:
    declared = declared_type.split(";", 1)[0].strip().lower()
    if declared == "image/svg+xml":
        raise ImageRefused(
            f"{host} sent an SVG image; MediaNest does not serve SVG from elsewhere, "
            "because SVG can carry script.",
            details={"host": host, "content_type": declared},
        )
    if declared not in IMAGE_TYPES:
        raise ImageRefused(
            f"{host} sent {declared or 'something without a type'}, not a JPEG, PNG, WebP "
            "or GIF image.",
            details={"host": host, "content_type": declared},
        )
    actual = sniff(body)
    if actual is None:
        raise ImageRefused(
            f"{host} said it sent {declared}, but the data is not a JPEG, PNG, WebP or GIF image.",
            details={"host": host, "content_type": declared},
        )
    return Image(body, actual)


def sniff(body: bytes) -> str | None:
    """The image type the bytes are (by their signature), or None."""
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if body.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(body) >= 12 and body.startswith(b"RIFF") and body[8:12] == b"WEBP":
        return "image/webp"
    return None


def _size(count: int) -> str:
    megabytes = count / 2**20
    return f"{megabytes:g} MB" if megabytes >= 1 else f"{count // 1024} KB"
