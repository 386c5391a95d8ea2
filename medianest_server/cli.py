"""`medianest`: serve, init, migrate, check, plugins, backup.

Exit status: 0 success; 1 a check or operation failed; 2 the configuration (or the command line)
is wrong, reported before any data is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .config import (
    INIT_HEADER,
    Config,
    ConfigError,
    default_document,
    load_config,
    resolve_config_path,
    write_config_file,
)
from .db import (
    CORE_MIGRATIONS,
    DatabaseError,
    MigrationError,
    UnknownDatabaseURL,
    apply_migrations,
    backup_sqlite,
    load_migrations,
    open_database,
    pending_migrations,
)
from .logs import configure_logging, redactor
from .plugins.loader import PluginManager

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

log = logging.getLogger("medianest.cli")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: $MEDIANEST_CONFIG or ./medianest.toml)",
    )
    parser = argparse.ArgumentParser(
        prog="medianest",
        description="MediaNest: one portal for the people who share a Plex server.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"medianest {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the web server")
    serve.add_argument("--host", help="address to listen on (default: [server] host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: [server] port)")
    serve.set_defaults(handler=cmd_serve)

    init = commands.add_parser(
        "init", parents=[common], help="write a new configuration file with a fresh secret key"
    )
    init.add_argument(
        "--force", action="store_true", help="replace an existing file (kept as .bak)"
    )
    init.set_defaults(handler=cmd_init)

    migrate = commands.add_parser(
        "migrate", parents=[common], help="apply pending database migrations"
    )
    migrate.set_defaults(handler=cmd_migrate)

    check = commands.add_parser(
        "check", parents=[common], help="check config, database, Redis and the data folder"
    )
    check.set_defaults(handler=cmd_check)

    plugins = commands.add_parser(
        "plugins", parents=[common], help="list plugins: name, distribution, version, status"
    )
    plugins.set_defaults(handler=cmd_plugins)

    user = commands.add_parser("user", parents=[common], help="manage accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    setup_code = user_commands.add_parser(
        "setup-code",
        parents=[common],
        help="print the one-time code that /setup asks for (exit 1 when setup is done)",
    )
    setup_code.set_defaults(handler=cmd_user_setup_code)

    backup = commands.add_parser(
        "backup", parents=[common], help="copy the SQLite database consistently, even while serving"
    )
    backup.add_argument("path", type=Path, help="where to write the copy (must not exist)")
    backup.set_defaults(handler=cmd_backup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return EXIT_FAILED


def _config_path(args: argparse.Namespace) -> Path:
    return resolve_config_path(getattr(args, "config", None))


def _load(args: argparse.Namespace) -> Config:
    """Load and validate the configuration, or exit 2 with every problem listed."""
    try:
        config = load_config(_config_path(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    redactor.add(*config.secret_values())
    return config


def _fail(message: str, status: int = EXIT_FAILED) -> int:
    print(f"medianest: {redactor(message)}", file=sys.stderr)
    return status


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args)
    configure_logging(config.server.log_level, config.server.log_format)
    from .app import create_app
    from .server import run

    try:
        app = create_app(config)
    except UnknownDatabaseURL as exc:
        return _fail(f"database.url: {exc}", EXIT_CONFIG)
    try:
        run(
            app,
            args.host or config.server.host,
            args.port or config.server.port,
            shutdown_timeout=config.server.shutdown_timeout_seconds,
        )
    except MigrationError as exc:
        log.error("start-up stopped: %s", exc)
        return EXIT_FAILED
    except (DatabaseError, OSError) as exc:
        log.error("start-up failed: %s", exc)
        return EXIT_FAILED
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    path = _config_path(args)
    if path.exists() and not args.force:
        return _fail(f"{path} already exists; use --force to replace it (the old file is kept)")
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = write_config_file(path, default_document(), header=INIT_HEADER)
    print(f"wrote {path} with a fresh secret key")
    if backup:
        print(f"the previous file is kept as {backup}")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args)

    async def migrate() -> int:
        db = open_database(config.database.url, base_dir=config.base_dir)
        manager = _plugin_manager(config)
        await db.connect()
        try:
            applied = await apply_migrations(
                db, load_migrations("core", CORE_MIGRATIONS, db.dialect)
            )
            applied += await manager.apply_migrations(db)
        finally:
            await db.close()
        for record in manager.records.values():
            if record.status == "failed":
                print(f"plugin {record.name} skipped: {record.error}", file=sys.stderr)
        for migration in applied:
            print(f"applied {migration.component} {migration.name}")
        if not applied:
            print("database is up to date")
        failed = any(r.stage == "migrations" for r in manager.records.values())
        return EXIT_FAILED if failed else EXIT_OK

    try:
        return asyncio.run(migrate())
    except UnknownDatabaseURL as exc:
        return _fail(f"database.url: {exc}", EXIT_CONFIG)
    except DatabaseError as exc:
        return _fail(str(exc))


def _plugin_manager(config: Config) -> PluginManager:
    from .app import DEFAULT_PLUGINS

    manager = PluginManager(config, builtins=DEFAULT_PLUGINS)
    manager.load()
    return manager


def cmd_plugins(args: argparse.Namespace) -> int:
    """One line per plugin: name, distribution, version, status, hooks, error."""
    config = _load(args)
    try:
        dialect = open_database(config.database.url, base_dir=config.base_dir).dialect
    except UnknownDatabaseURL as exc:
        return _fail(f"database.url: {exc}", EXIT_CONFIG)
    logging.disable(logging.ERROR)  # failures are in the table; don't print them twice
    manager = _plugin_manager(config)
    manager.collect_migrations(dialect)
    logging.disable(logging.NOTSET)
    for record in manager.records.values():
        if record.builtin:
            continue
        hooks = ",".join(h.removeprefix("medianest_") for h in record.hooks) or "-"
        line = (
            f"{record.name}\t{record.distribution or '-'}\t{record.version or '-'}\t"
            f"{record.status}\t{hooks}"
        )
        if record.error:
            line += f"\t{record.stage or record.status}: {record.error}"
        print(redactor(line))
    return EXIT_FAILED if manager.failed_names() else EXIT_OK


def cmd_user_setup_code(args: argparse.Namespace) -> int:
    """Print the setup code alone on stdout while no admin exists; exit 1 otherwise."""
    config = _load(args)
    from .auth.setup import SetupService
    from .auth.users import UserService
    from .secretbox import SecretBox

    async def read_code() -> str | None:
        db = open_database(config.database.url, base_dir=config.base_dir)
        await db.connect()
        try:
            await apply_migrations(db, load_migrations("core", CORE_MIGRATIONS, db.dialect))
            box = SecretBox(config.server.secret_key)
            return await SetupService(db, box, UserService(db)).code()
        finally:
            await db.close()

    try:
        code = asyncio.run(read_code())
    except UnknownDatabaseURL as exc:
        return _fail(f"database.url: {exc}", EXIT_CONFIG)
    except DatabaseError as exc:
        return _fail(str(exc))
    if code is None:
        print("setup is complete: an account exists already", file=sys.stderr)
        return EXIT_FAILED
    print(code)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    path = _config_path(args)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"config: FAILED\n{exc}")
        return EXIT_CONFIG
    redactor.add(*config.secret_values())
    print(f"config: ok ({path})")
    results = asyncio.run(_run_checks(config))
    for name, ok, detail in results:
        print(redactor(f"{name}: {'ok' if ok else 'FAILED'} ({detail})"))
    return EXIT_OK if all(ok for _, ok, _ in results) else EXIT_FAILED


async def _run_checks(config: Config) -> list[tuple[str, bool, str]]:
    return [
        await _check_database(config),
        await _check_redis(config),
        _check_data_dir(config.data_dir),
    ]


async def _check_database(config: Config) -> tuple[str, bool, str]:
    try:
        db = open_database(config.database.url, base_dir=config.base_dir)
    except UnknownDatabaseURL as exc:
        return "database", False, str(exc)
    try:
        async with asyncio.timeout(10):
            await db.connect()
            try:
                await db.ping()
                pending = await pending_migrations(
                    db, load_migrations("core", CORE_MIGRATIONS, db.dialect)
                )
            finally:
                await db.close()
    except (DatabaseError, TimeoutError) as exc:
        return "database", False, f"{db.url_for_display}: {exc or 'timed out'}"
    if pending:
        names = ", ".join(m.name for m in pending)
        return (
            "database",
            False,
            f"{db.url_for_display}: not migrated ({names}); run `medianest migrate`",
        )
    return "database", True, f"{db.url_for_display}, migrated"


async def _check_redis(config: Config) -> tuple[str, bool, str]:
    if not config.redis.url:
        return "redis", True, "not configured; cache, events and limits stay in-process"
    import redis.asyncio as aioredis

    client = aioredis.from_url(config.redis.url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except (aioredis.RedisError, OSError) as exc:
        return "redis", False, f"unreachable: {exc}"
    finally:
        await client.aclose()
    return "redis", True, "reachable"


def _check_data_dir(data_dir: Path) -> tuple[str, bool, str]:
    target = data_dir
    while not target.exists() and target != target.parent:
        target = target.parent  # the folder will be created under its nearest existing parent
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        return "data_dir", False, f"{data_dir} is not writable: {exc.strerror}"
    note = "" if data_dir.exists() else ", will be created at start"
    return "data_dir", True, f"{data_dir} is writable{note}"


def cmd_backup(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        db = open_database(config.database.url, base_dir=config.base_dir)
    except UnknownDatabaseURL as exc:
        return _fail(f"database.url: {exc}", EXIT_CONFIG)
    if db.dialect != "sqlite":
        return _fail("backup copies SQLite databases; for PostgreSQL use pg_dump", EXIT_CONFIG)
    source = Path(str(getattr(db, "path", "")))
    if not source.is_file():
        return _fail(f"no database at {source}")
    dest = args.path if args.path.is_absolute() else Path(os.getcwd()) / args.path
    try:
        asyncio.run(backup_sqlite(source, dest))
    except (FileExistsError, DatabaseError, OSError) as exc:
        return _fail(str(exc))
    print(f"backup of {source} written to {dest} ({dest.stat().st_size} bytes)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
