"""`medianest`: serve, init, migrate, check, plugins, backup.

Exit status: 0 success; 1 a check or operation failed; 2 the configuration (or the command line)
is wrong, reported before any data is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from . import __version__
from .config import (
    INIT_HEADER,
    Config,
    ConfigError,
    default_document,
    load_config,
    resolve_config_path,
    with_listen_address,
    write_config_file,
)
from .db import (
    CORE_MIGRATIONS,
    Database,
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
from .plugins.status_record import RecordedStatus, recorded_statuses

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

    host, port = args.host or config.server.host, args.port or config.server.port
    config = with_listen_address(config, host, port)
    _note_base_url(config, host, port)
    busy = _port_problem(host, port, from_flag=args.port is not None)
    if busy:
        log.error("start-up stopped: %s", busy)
        return EXIT_FAILED
    try:
        app = create_app(config)
    except UnknownDatabaseURL as exc:
        return _fail(f"database.url: {exc}", EXIT_CONFIG)
    try:
        run(app, host, port, shutdown_timeout=config.server.shutdown_timeout_seconds)
    except MigrationError as exc:
        log.error("start-up stopped: %s", exc)
        return EXIT_FAILED
    except (DatabaseError, OSError) as exc:
        log.error("start-up failed: %s", exc)
        return EXIT_FAILED
    return EXIT_OK


def _note_base_url(config: Config, host: str, port: int) -> None:
    """Say once when an explicit base_url points at this machine on another port: links and
    webhook addresses would lead nowhere (behind a proxy another port is normal)."""
    url = urlsplit(config.server.base_url)
    local = url.hostname in ("127.0.0.1", "localhost", "::1", host)
    if config.server.base_url_explicit and local and (url.port or 80) != port:
        log.warning(
            "[server] base_url is %s but MediaNest listens on port %d: links and webhook "
            "addresses use base_url; change it, or leave it empty to follow --port",
            config.server.base_url,
            port,
        )


def _port_problem(host: str, port: int, *, from_flag: bool) -> str | None:
    """Why MediaNest cannot listen on host:port, in words that say what to change."""
    where = "--port" if from_flag else "[server] port (or MEDIANEST_SERVER__PORT, or --port)"
    try:
        with socket.create_server((host, port)):
            return None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (
                f"port {port} on {host} is already in use by another program; stop it, or "
                f"choose another port with {where}"
            )
        if exc.errno == errno.EACCES:
            return f"port {port} needs special privileges; choose one above 1023 with {where}"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this machine; change [server] host or --host"
        return f"cannot listen on {host}:{port}: {exc.strerror}"


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


STATUS_WORDS = {"not_configured": "not configured", "retrying": "retrying"}


def cmd_plugins(args: argparse.Namespace) -> int:
    """One line per plugin: name, distribution, version, status, hooks, error (or -).

    The status is what the server would make of this configuration and environment; where the
    running server recorded a failure that only start-up revealed, that failure is shown."""
    config = _load(args)
    try:
        db = open_database(config.database.url, base_dir=config.base_dir)
    except UnknownDatabaseURL as exc:
        return _fail(f"database.url: {exc}", EXIT_CONFIG)
    logging.disable(logging.ERROR)  # failures are in the table; don't print them twice
    manager = _plugin_manager(config)
    manager.collect_migrations(db.dialect)
    logging.disable(logging.NOTSET)
    recorded = asyncio.run(_recorded_statuses(db))
    failed = False
    for record in manager.records.values():
        if record.builtin:
            continue
        status: str = record.status
        error = record.error
        stage = record.stage or record.status
        seen = recorded.get(record.name)
        if record.usable and seen is not None and seen.status in ("failed", "retrying"):
            # retrying: the server found its upstream not reachable yet and keeps trying
            status, stage = seen.status, seen.stage or "startup"
            error = f"{seen.error} (the server, {seen.at:%Y-%m-%d %H:%M} UTC)"
        failed = failed or status == "failed"
        if status == "not_configured":
            detail = f"needs {', '.join(record.missing)}"
        elif error:
            detail = f"{stage}: {error}"
        else:
            detail = "-"
        hooks = ",".join(h.removeprefix("medianest_") for h in record.hooks) or "-"
        print(
            redactor(
                f"{record.name}\t{record.distribution or '-'}\t{record.version or '-'}\t"
                f"{STATUS_WORDS.get(status, status)}\t{hooks}\t{detail}"
            )
        )
    for problem in manager.unknown_sections():
        print(redactor(problem), file=sys.stderr)
    return EXIT_FAILED if failed or manager.unknown_sections() else EXIT_OK


async def _recorded_statuses(db: Database) -> dict[str, RecordedStatus]:
    """What the running server recorded, if the database answers within a few seconds."""
    try:
        async with asyncio.timeout(5):
            await db.connect()
            try:
                return await recorded_statuses(db)
            finally:
                await db.close()
    except (DatabaseError, TimeoutError, OSError):
        return {}


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
    logging.disable(logging.ERROR)  # the problems are printed below, once
    manager = _plugin_manager(config)
    logging.disable(logging.NOTSET)
    problems = manager.unknown_sections() + [
        problem
        for record in manager.records.values()
        if record.status == "failed" and record.stage == "config" and record.error
        for problem in record.error.split("; plugins.")
    ]
    if problems:
        print("config: FAILED")
        for problem in problems:
            shown = problem if problem.startswith("plugins.") else f"plugins.{problem}"
            print(redactor(f"  {shown}"))
        return EXIT_CONFIG
    print(f"config: ok ({path})")
    plugins_ok, plugins_line = _plugins_line(manager)
    print(redactor(plugins_line))
    results = asyncio.run(_run_checks(config))
    for name, ok, detail in results:
        print(redactor(f"{name}: {'ok' if ok else 'FAILED'} ({detail})"))
    healthy = plugins_ok and all(ok for _, ok, _ in results)
    return EXIT_OK if healthy else EXIT_FAILED


def _plugins_line(manager: PluginManager) -> tuple[bool, str]:
    """`plugins: ok (plex: active, youtube: not configured)`; FAILED names the plugins that
    cannot load (`medianest plugins` says why)."""
    records = [r for r in manager.records.values() if not r.builtin]
    described = ", ".join(f"{r.name}: {STATUS_WORDS.get(r.status, r.status)}" for r in records)
    failed = [r.name for r in records if r.status == "failed"]
    if failed:
        return False, f"plugins: FAILED ({described}; `medianest plugins` says why)"
    return True, f"plugins: ok ({described or 'none installed'})"


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
