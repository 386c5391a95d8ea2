"""Built-in plugin: each plugin's `static/` folder at `/static/plugins/<name>/`, and the template
helpers that link its files with a version in the URL.

    {{ plugin_static("youtube", "queue.js") }}        -> /static/plugins/youtube/queue.js?v=<hash>
    {{ plugin_assets("youtube", "queue.css", "queue.js") }}   -> <link ...> and <script ...> tags

A URL whose `v` is the file's current hash is cached for a year (`immutable`); any other is
revalidated. Only loaded plugins (active, not configured yet, or retrying) are served; paths
cannot leave the folder (no `..`, no hidden files, no symbolic link out of it).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup, escape

from ..appkeys import PLUGINS
from ..hookspecs import hookimpl
from ..plugins.loader import PluginManager
from ..routing import Routes

PREFIX = "/static/plugins"
FOLDER = "static"
LONG_CACHE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class PluginStaticFiles:
    """Finds a plugin's static files and their versions (hashed once per file: they ship with
    the code and do not change while it runs)."""

    def __init__(self, manager: PluginManager) -> None:
        self._manager = manager
        self._versions: dict[Path, str] = {}

    def folder(self, plugin: str) -> Path | None:
        """The `static/` folder beside a loaded plugin's module, or None."""
        record = self._manager.records.get(plugin)
        if record is None or record.builtin or not record.usable:
            return None
        module_file = getattr(record.module, "__file__", None)
        if not module_file:
            return None
        folder = (Path(module_file).resolve().parent / FOLDER).resolve()
        return folder if folder.is_dir() else None

    def find(self, plugin: str, relative: str) -> Path | None:
        """The file `relative` inside the plugin's folder, or None (absent, or outside it)."""
        folder = self.folder(plugin)
        if folder is None:
            return None
        parts = relative.split("/")
        if any(not p or p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
            return None
        path = folder.joinpath(*parts).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            return None
        return path

    def version(self, path: Path) -> str:
        version = self._versions.get(path)
        if version is None:
            version = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            self._versions[path] = version
        return version

    def url(self, plugin: str, filename: str) -> str:
        """`/static/plugins/<plugin>/<filename>?v=<hash>`; ValueError if there is no such file
        (a template linking a file that is not there is a bug worth seeing at once)."""
        path = self.find(plugin, filename)
        if path is None:
            raise ValueError(
                f"plugin {plugin!r} has no static file {filename!r} "
                f"(looked in its {FOLDER}/ folder; is the plugin loaded?)"
            )
        return f"{PREFIX}/{quote(plugin)}/{quote(filename)}?v={self.version(path)}"

    def tags(self, plugin: str, *filenames: str) -> Markup:
        """`<link rel="stylesheet">` for each .css, `<script type="module">` for each .js."""
        tags = []
        for filename in filenames:
            href = escape(self.url(plugin, filename))
            if filename.endswith(".css"):
                tags.append(Markup('<link rel="stylesheet" href="{}">').format(href))
            elif filename.endswith((".js", ".mjs")):
                tags.append(Markup('<script type="module" src="{}"></script>').format(href))
            else:
                raise ValueError(f"plugin_assets links .css and .js files, not {filename!r}")
        return Markup("\n").join(tags)


PLUGIN_STATIC = web.AppKey("plugin_static", PluginStaticFiles)


def setup_plugin_static(app: web.Application) -> None:
    """Make the helpers `plugin_static` and `plugin_assets` available to every template (call
    after `setup_templates`, with the plugin manager on the app)."""
    files = PluginStaticFiles(app[PLUGINS])
    app[PLUGIN_STATIC] = files
    env = aiohttp_jinja2.get_env(app)
    env.globals["plugin_static"] = files.url
    env.globals["plugin_assets"] = files.tags


routes = Routes()


@routes.page(PREFIX + "/{plugin}/{path:.+}", access="public")
async def plugin_static_file(request: web.Request) -> web.StreamResponse:
    """A file of a plugin's `static/` folder; a year's cache when `v` is its current hash."""
    files = request.app[PLUGIN_STATIC]
    plugin = request.match_info["plugin"]
    path = await asyncio.to_thread(files.find, plugin, request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound(text=f"The {plugin} plugin has no such file.")
    version = await asyncio.to_thread(files.version, path)
    cache = LONG_CACHE if request.query.get("v") == version else REVALIDATE
    return web.FileResponse(path, headers={"Cache-Control": cache})


@hookimpl
def medianest_routes() -> Routes:
    return routes
