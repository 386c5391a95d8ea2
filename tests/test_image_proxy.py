"""The core image proxy: images from the hosts a plugin declares, fetched once by the server and
then served from the disk cache; everything else refused in plain words."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from medianest_server.app import create_app
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.config import load_config
from medianest_server.images.fetch import ImageHosts
from medianest_server.plugins.loader import Candidate
from medianest_server.testing.plugin import FakeUpstream

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"\x00" * 200
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
CAP_MB = 0.05  # [images] max_image_mb in these tests: 51 KB
CACHE_MB = 0.1  # [images] cache_max_mb: about 3 of the 30 KB images below


def image_host(hits: Counter[str], other: str = "") -> web.Application:
    """An image host: posters, and the ways a host can answer with something else."""

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        hits[name] += 1
        if name == "poster.jpg":
            return web.Response(body=JPEG, content_type="image/jpeg")
        if name == "poster.png":
            return web.Response(body=PNG, content_type="image/png")
        if name.startswith("big-"):
            return web.Response(body=JPEG + b"\x00" * 30_000, content_type="image/jpeg")
        if name == "huge.jpg":
            return web.Response(body=JPEG + b"\x00" * 60_000, content_type="image/jpeg")
        if name == "page.html":
            return web.Response(text="<script>alert(1)</script>", content_type="text/html")
        if name == "logo.svg":
            svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
            return web.Response(text=svg, content_type="image/svg+xml")
        if name == "liar.png":
            return web.Response(text="<html>not a picture</html>", content_type="image/png")
        if name == "moved.jpg":
            raise web.HTTPFound(f"{other}/poster.jpg")
        if name == "hop.jpg":
            raise web.HTTPFound("/poster.png")
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/{name}", serve)
    return app


class Setup:
    def __init__(self, client: TestClient, declared: TestServer, other: TestServer) -> None:
        self.client = client
        self.declared_base = str(declared.make_url("")).rstrip("/")
        self.other_base = str(other.make_url("")).rstrip("/")
        self.headers: dict[str, str] = {}

    async def signed(self, url: str) -> str:
        response = await self.client.get(
            "/api/v1/assets_demo/image-url", params={"url": url}, headers=self.headers
        )
        assert response.status == 200
        src: str = (await response.json())["src"]
        return src

    async def image(self, url: str) -> Any:
        return await self.client.get(await self.signed(url), headers=self.headers)


@pytest.fixture
def hits() -> Counter[str]:
    return Counter()


@pytest.fixture
def other_hits() -> Counter[str]:
    return Counter()


@pytest.fixture
async def setup(
    write_config: Callable[..., Path],
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    hits: Counter[str],
    other_hits: Counter[str],
) -> Setup:
    other = await fake_upstream(image_host(other_hits))
    declared = await fake_upstream(image_host(hits, str(other.make_url("")).rstrip("/")))
    path = write_config(
        images={"max_image_mb": CAP_MB, "cache_max_mb": CACHE_MB},
        plugins={
            "assets_demo": {
                "image_hosts": [f"127.0.0.1:{declared.port}"],
                "poster_url": str(declared.make_url("/poster.jpg")),
            }
        },
    )
    plugin = Candidate(
        "assets_demo", lambda: importlib.import_module("tests.sample_plugins.assets_demo")
    )
    app = create_app(load_config(path, environ={}), plugins=[plugin], environ={})
    setup = Setup(await aiohttp_client(app), declared, other)
    auth = app[AUTH_SERVICES]
    user = await auth.users.create("viewer", password="long enough pw", role="user")
    token, _ = await auth.api_tokens.create(user.id, "tests")
    setup.headers = {"Authorization": f"Bearer {token}"}
    return setup


async def test_a_declared_host_is_fetched_once_then_served_from_the_disk_cache(
    setup: Setup, hits: Counter[str], tmp_path: Path
) -> None:
    src = await setup.signed(f"{setup.declared_base}/poster.jpg")
    assert src.startswith("/images/proxy?") and "sig=" in src
    for _ in range(3):
        response = await setup.client.get(src, headers=setup.headers)
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.headers["Cache-Control"].startswith("private, max-age=")
        assert await response.read() == JPEG
    assert hits["poster.jpg"] == 1
    cached = list((tmp_path / "data" / "image_cache").iterdir())
    assert [p.suffix for p in cached] == [".jpg"]


async def test_the_page_shows_the_poster_through_the_proxy(setup: Setup) -> None:
    html = await (await setup.client.get("/assets_demo/", headers=setup.headers)).text()
    assert '<img class="assets-demo-poster" src="/images/proxy?plugin=assets_demo&amp;url=' in html
    assert 'src="http' not in html, "no image is loaded from another origin"


async def test_only_signed_in_people_get_images(setup: Setup) -> None:
    src = await setup.signed(f"{setup.declared_base}/poster.jpg")
    anonymous = await setup.client.get(src, allow_redirects=False)
    assert anonymous.status == 302 and anonymous.headers["Location"].startswith("/login")


async def test_an_undeclared_host_is_refused_even_with_a_good_signature(
    setup: Setup, other_hits: Counter[str]
) -> None:
    response = await setup.image(f"{setup.other_base}/poster.jpg")
    assert response.status == 403
    assert "is not an image host the assets_demo plugin declared" in await response.text()
    assert other_hits == Counter()


async def test_a_bad_or_missing_signature_is_refused(setup: Setup, hits: Counter[str]) -> None:
    src = await setup.signed(f"{setup.declared_base}/poster.jpg")
    forged = src.replace("poster.jpg", "poster.png")
    response = await setup.client.get(forged, headers=setup.headers)
    assert response.status == 403
    assert "was not made by MediaNest" in await response.text()
    unsigned = src.split("&sig=")[0]
    response = await setup.client.get(unsigned, headers=setup.headers)
    assert response.status == 400
    assert "incomplete" in await response.text()
    assert hits == Counter()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("page.html", "sent text/html, not a JPEG, PNG, WebP or GIF image"),
        ("logo.svg", "does not serve SVG"),
        ("liar.png", "the data is not a JPEG, PNG, WebP or GIF image"),
        ("huge.jpg", "is larger than 51 KB"),
        ("moved.jpg", "which the assets_demo plugin did not declare; MediaNest did not follow"),
    ],
)
async def test_what_is_not_a_safe_image_is_refused_in_plain_words(
    setup: Setup, other_hits: Counter[str], name: str, words: str, tmp_path: Path
) -> None:
    response = await setup.image(f"{setup.declared_base}/{name}")
    assert response.status == 502
    assert words in await response.text()
    assert other_hits == Counter(), "a redirect to an undeclared host is never followed"
    assert not (tmp_path / "data" / "image_cache").exists() or not any(
        (tmp_path / "data" / "image_cache").iterdir()
    )


async def test_a_redirect_within_the_declared_host_is_followed(setup: Setup) -> None:
    response = await setup.image(f"{setup.declared_base}/hop.jpg")
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"
    assert await response.read() == PNG


async def test_an_image_the_host_does_not_have_is_404(setup: Setup) -> None:
    response = await setup.image(f"{setup.declared_base}/nothing.jpg")
    assert response.status == 404
    assert "has no such image" in await response.text()


async def test_the_disk_cache_stays_under_its_bound_least_recently_used_first(
    setup: Setup, hits: Counter[str], tmp_path: Path
) -> None:
    folder = tmp_path / "data" / "image_cache"
    bound = int(CACHE_MB * 2**20)  # room for three of these images, not four
    kept = await setup.signed(f"{setup.declared_base}/big-0.jpg")
    for index in range(8):
        assert (await setup.client.get(kept, headers=setup.headers)).status == 200  # in use
        assert (await setup.image(f"{setup.declared_base}/big-{index + 1}.jpg")).status == 200
        assert sum(p.stat().st_size for p in folder.iterdir()) <= bound
    assert len(list(folder.iterdir())) == 3
    assert hits["big-0.jpg"] == 1, "the image in use stayed cached"
    # the least recently used went: asked again, it is fetched again
    assert (await setup.image(f"{setup.declared_base}/big-1.jpg")).status == 200
    assert hits["big-1.jpg"] == 2
    assert sum(p.stat().st_size for p in folder.iterdir()) <= bound


@pytest.mark.parametrize(
    ("declared", "url", "allowed"),
    [
        ("image.tmdb.org", "https://image.tmdb.org/t/p/w300/x.jpg", True),
        ("image.tmdb.org", "http://IMAGE.tmdb.org:8080/x.jpg", True),
        ("image.tmdb.org", "https://image.tmdb.org.evil.example/x.jpg", False),
        ("image.tmdb.org", "https://evil.example/?image.tmdb.org", False),
        ("image.tmdb.org", "https://image.tmdb.org@evil.example/x.jpg", False),
        ("image.tmdb.org", "ftp://image.tmdb.org/x.jpg", False),
        ("*.ytimg.com", "https://i.ytimg.com/vi/abc/hqdefault.jpg", True),
        ("*.ytimg.com", "https://ytimg.com/x.jpg", False),
        ("*.ytimg.com", "https://evilytimg.com/x.jpg", False),
        ("192.168.1.20:5055", "http://192.168.1.20:5055/avatar.png", True),
        ("192.168.1.20:5055", "http://192.168.1.20/avatar.png", False),
    ],
)
def test_declared_hosts_match_exactly(declared: str, url: str, allowed: bool) -> None:
    assert ImageHosts.parse("demo", [declared]).allows(url) is allowed


@pytest.mark.parametrize("bad", ["https://image.tmdb.org", "image.tmdb.org/t/p", "", "*", "a:b"])
def test_a_declared_host_must_be_a_host_name(bad: str) -> None:
    with pytest.raises(ValueError):
        ImageHosts.parse("demo", [bad])


async def test_a_plugin_that_cannot_say_its_hosts_is_answered_503(
    write_config: Callable[..., Path], aiohttp_client: Any
) -> None:
    path = write_config(plugins={"assets_demo": {"image_hosts": ["https://not-a-host/"]}})
    plugin = Candidate(
        "assets_demo", lambda: importlib.import_module("tests.sample_plugins.assets_demo")
    )
    app = create_app(load_config(path, environ={}), plugins=[plugin], environ={})
    client = await aiohttp_client(app)
    auth = app[AUTH_SERVICES]
    user = await auth.users.create("viewer", password="long enough pw", role="user")
    token, _ = await auth.api_tokens.create(user.id, "tests")
    headers = {"Authorization": f"Bearer {token}"}
    signed = await client.get(
        "/api/v1/assets_demo/image-url", params={"url": "https://x/a.jpg"}, headers=headers
    )
    response = await client.get((await signed.json())["src"], headers=headers)
    assert response.status == 503
    assert "could not say which image hosts it uses" in await response.text()
