"""Jinja2 templates and static files, found the same way in a checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .. import __version__

PACKAGE_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = PACKAGE_DIR / "static"


def templates_dir() -> Path:
    """Inside the wheel templates live in the package; in a checkout, at the repository root."""
    packaged = PACKAGE_DIR / "templates"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "templates"


def setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        context_processors=[_signed_in_context],
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["medianest_version"] = __version__
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=True)


async def _signed_in_context(request: web.Request) -> dict[str, Any]:
    return signed_in_context(request)


def signed_in_context(request: web.Request) -> dict[str, Any]:
    """Who is signed in and their CSRF token, for the layout's menu and forms."""
    from ..auth.middleware import AUTH
    from ..auth.services import AUTH_SERVICES
    from .access import USER

    user = request.get(USER)
    auth = request.get(AUTH)
    token = ""
    if auth is not None and auth.method == "cookie" and auth.session_id:
        token = request.app[AUTH_SERVICES].csrf.for_session(auth.session_id)
    return {"current_user": user, "csrf_token": token}
