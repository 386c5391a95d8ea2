"""`create_app(config)`: build the web.Application, its stores and routes. Nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from .appkeys import CONFIG, DB, MIGRATIONS
from .config import Config
from .db import CORE_MIGRATIONS, apply_migrations, load_migrations, open_database
from .logs import redactor
from .web import health, pages
from .web.middlewares import error_middleware, request_id_middleware
from .web.templating import setup_templates

log = logging.getLogger("medianest.app")


def create_app(config: Config) -> web.Application:
    """Assemble the application for `config`. Raises UnknownDatabaseURL for a bad database URL.

    Nothing is opened here: the database connects and migrates when the app starts, and closes
    when it stops (cleanup_ctx), so an app can be built, inspected and thrown away cheaply.
    """
    redactor.add(*config.secret_values())
    app = web.Application(
        middlewares=[request_id_middleware, error_middleware],
        client_max_size=int(config.server.max_request_body_mb * 1024 * 1024),
    )
    app[CONFIG] = config
    db = open_database(
        config.database.url,
        base_dir=config.base_dir,
        pool_size=config.database.pool_size,
        busy_timeout_ms=config.database.busy_timeout_ms,
    )
    app[DB] = db
    app[MIGRATIONS] = load_migrations("core", CORE_MIGRATIONS, db.dialect)

    setup_templates(app)
    app.add_routes(health.routes)
    app.add_routes(pages.routes)
    app.cleanup_ctx.append(_data_dir)
    app.cleanup_ctx.append(_database)
    return app


async def _data_dir(app: web.Application) -> AsyncIterator[None]:
    app[CONFIG].data_dir.mkdir(parents=True, exist_ok=True)
    yield


async def _database(app: web.Application) -> AsyncIterator[None]:
    db = app[DB]
    await db.connect()
    try:
        applied = await apply_migrations(db, app[MIGRATIONS])
        for migration in applied:
            log.info(
                "migration applied",
                extra={"component": migration.component, "migration": migration.name},
            )
        yield
    finally:
        await db.close()
        log.info("database closed", extra={"database": db.url_for_display})
