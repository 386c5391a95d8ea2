"""Jinja2 templates and static files, found the same way in a checkout and in an installed wheel."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .. import __version__
from ..routing import Handler
from .access import USER

PageHandler = Callable[[web.Request], Awaitable[Mapping[str, Any]]]
PACKAGE_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = PACKAGE_DIR / "static"
log = logging.getLogger("medianest.web")


def templates_dir() -> Path:
    """Inside the wheel templates live in the package; in a checkout, at the repository root."""
    packaged = PACKAGE_DIR / "templates"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "templates"


def setup_templates(app: web.Application, plugin_dirs: Sequence[Path] = ()) -> None:
    """The core's templates first, then each plugin's `templates/` folder (whose templates
    live under `<plugin name>/...`, so names never collide)."""
    loaders = [jinja2.FileSystemLoader(str(templates_dir()))]
    loaders += [jinja2.FileSystemLoader(str(folder)) for folder in plugin_dirs]
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.ChoiceLoader(loaders),
        # templates ship with the code and do not change while it runs: no stat per render
        auto_reload=False,
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["medianest_version"] = __version__
    # the icon set and the empty state, usable in every template (a plugin's too) unimported
    icons = env.get_template("_icons.html").make_module()
    env.globals["icon"] = getattr(icons, "icon")  # noqa: B009 (a template's export: untyped)
    env.globals["empty_state"] = getattr(icons, "empty_state")  # noqa: B009
    static = app.router.add_static("/static/", STATIC_DIR, name="static")
    env.globals["static_url"] = _versioned_urls(static)


def _versioned_urls(resource: web.AbstractResource) -> Callable[[str], str]:
    assert isinstance(resource, web.StaticResource)
    """`static_url("medianest.css")` → `/static/medianest.css?v=<hash>`, hashed once per file
    (aiohttp's append_version reads and hashes the file on every page)."""
    cache: dict[str, str] = {}

    def url(filename: str) -> str:
        if filename not in cache:
            cache[filename] = str(resource.url_for(filename=filename, append_version=True))
        return cache[filename]

    return url


async def render_page(
    request: web.Request, name: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """Render a full page: the layout's context (menu, unread count, theme) plus `context`.

    Only pages pay for the layout's queries; JSON routes never run this.
    """
    from .layout import page_context

    merged = {**await page_context(request), **context}
    return aiohttp_jinja2.render_template(name, request, merged, status=status)


def page_template(name: str) -> Callable[[PageHandler], Handler]:
    """`@page_template("x.html")` on a handler returning its template's context."""

    def decorate(handler: PageHandler) -> Handler:
        @functools.wraps(handler)
        async def render(request: web.Request) -> web.StreamResponse:
            return await render_page(request, name, await handler(request))

        return render

    return decorate


def signed_in_context(request: web.Request) -> dict[str, Any]:
    from .layout import signed_in_context as minimal

    return minimal(request)


ERROR_PAGE_LAYOUT_SECONDS = 1.0


async def error_page_context(request: web.Request) -> dict[str, Any]:
    """The layout of an error page: the full one (menu, bell, theme) for a signed-in person, the
    bare one when nobody is signed in, and the bare one too when the full one cannot be had
    quickly (the error may be the database's): an error page must not fail itself."""
    from .layout import page_context

    if request.get(USER) is None:
        return signed_in_context(request)
    try:
        async with asyncio.timeout(ERROR_PAGE_LAYOUT_SECONDS):
            return await page_context(request)
    except Exception:
        log.warning("error page shown without its menu", exc_info=True)
        return signed_in_context(request)
