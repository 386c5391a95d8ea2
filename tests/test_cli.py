"""The `medianest` command as an operator runs it: real processes, real database files."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from medianest_server import __version__

from .conftest import REDIS_URL, SECRET, ServerProcess, free_port

MEDIANEST = [sys.executable, "-m", "medianest_server"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEDIANEST, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"medianest {__version__}"


def test_check_reports_one_line_per_part_and_fails_until_migrated(write_config) -> None:
    path = write_config()
    before = run("check", "--config", str(path))
    assert before.returncode == 1
    lines = before.stdout.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == [
        "config",
        "plugins",
        "database",
        "redis",
        "data_dir",
    ]
    # the bundled Plex plugin waits for its url and token; the example plugin runs
    assert lines[1] == "plugins: ok (hello: active, plex: not configured)"
    assert lines[2].startswith("database: FAILED") and "medianest migrate" in lines[2]
    assert lines[3].startswith("redis: ok (not configured")

    migrate = run("migrate", "--config", str(path))
    assert migrate.returncode == 0, migrate.stderr
    assert "applied core 0001_initial" in migrate.stdout
    assert run("migrate", "--config", str(path)).stdout.strip() == "database is up to date"

    after = run("check", "--config", str(path))
    assert after.returncode == 0, after.stdout
    assert all(": ok" in line for line in after.stdout.splitlines())


def test_check_fails_for_unreachable_redis_and_unwritable_data_dir(
    write_config, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = write_config(
        redis={"url": f"redis://127.0.0.1:{free_port()}/0"},
        server={"data_dir": "not-a-dir/data"},
    )
    result = run("check", "--config", str(path))
    assert result.returncode == 1
    out = result.stdout
    assert "redis: FAILED (unreachable" in out
    assert "data_dir: FAILED" in out


def test_check_reaches_a_real_redis(write_config) -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        from .conftest import service_missing

        service_missing("Redis", exc)
    result = run("check", "--config", str(write_config(redis={"url": REDIS_URL})))
    assert "redis: ok (reachable)" in result.stdout


def test_serve_until_sigterm_then_close_the_database(write_config, start_server) -> None:
    server = start_server(write_config())
    server.wait_ready()
    with urllib.request.urlopen(server.url + "/health/live", timeout=5) as response:
        request_id = response.headers["X-Request-ID"]
    assert server.stop() == 0
    log = server.log
    assert "listening" in log
    assert f"request_id={request_id}" in log
    assert log.index("shutting down") < log.index("database closed") < log.index("stopped")
    assert SECRET not in log


SLOW_SERVER = textwrap.dedent(
    """
    import asyncio, logging, sys
    from aiohttp import web
    from medianest_server.app import create_app
    from medianest_server.config import load_config
    from medianest_server.logs import configure_logging
    from medianest_server.plugin_api import Routes, hookimpl
    from medianest_server.plugins.loader import Candidate
    from medianest_server.server import run

    routes = Routes()

    @routes.get("/slow", access="public")
    async def slow(request):
        logging.getLogger("medianest.test").info("slow request started")
        await asyncio.sleep(1.5)
        return web.Response(text="finished")

    @hookimpl
    def medianest_routes():
        return routes

    config = load_config(sys.argv[sys.argv.index("--config") + 1], environ={})
    configure_logging()
    this_module = sys.modules[__name__]
    app = create_app(config, plugins=[Candidate("slow", lambda: this_module)], environ={})
    run(app, "127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1]), shutdown_timeout=10)
    """
)


def test_sigterm_lets_in_flight_requests_finish(
    write_config, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    script = tmp_path / "slow_server.py"
    script.write_text(SLOW_SERVER)
    server = start_server(write_config(), argv=[sys.executable, str(script)])
    server.wait_ready()
    result: dict[str, object] = {}

    def fetch() -> None:
        with urllib.request.urlopen(server.url + "/api/v1/slow/slow", timeout=20) as response:
            result["status"], result["body"] = response.status, response.read()

    client = threading.Thread(target=fetch)
    client.start()
    deadline = time.monotonic() + 10
    while "slow request started" not in server.log and time.monotonic() < deadline:
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGTERM)
    client.join(20)
    assert result == {"status": 200, "body": b"finished"}
    assert server.stop() == 0
    assert server.log.index("shutting down") < server.log.index("database closed")


def test_changed_migration_stops_start_up_with_a_clear_message(write_config) -> None:
    path = write_config()
    assert run("migrate", "--config", str(path)).returncode == 0
    db_file = path.parent / "data" / "medianest.db"
    with sqlite3.connect(db_file) as connection:
        connection.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    result = subprocess.run(
        [*MEDIANEST, "serve", "--config", str(path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "0001_initial" in result.stderr and "changed" in result.stderr
    assert "listening" not in result.stderr


def test_backup_copies_a_database_that_is_being_served(
    write_config, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = write_config()
    server = start_server(path)
    server.wait_ready()
    dest = tmp_path / "backups" / "copy.db"
    dest.parent.mkdir()
    result = run("backup", str(dest), "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert str(dest) in result.stdout
    with sqlite3.connect(dest) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master")}
    assert {"users", "sessions", "jobs", "schema_migrations"} <= tables
    again = run("backup", str(dest), "--config", str(path))
    assert again.returncode == 1
    assert "exists" in again.stderr
    assert server.stop() == 0


def test_backup_refuses_postgresql_with_advice(write_config) -> None:
    result = run(
        "backup",
        "x.db",
        "--config",
        str(write_config(database={"url": "postgresql://postgres@127.0.0.1:5432/postgres"})),
    )
    assert result.returncode == 2
    assert "pg_dump" in result.stderr


@pytest.mark.parametrize("command", [["serve"], ["check"]])
def test_missing_config_file_says_how_to_make_one(tmp_path: Path, command: list[str]) -> None:
    result = run(*command, "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "medianest init" in result.stdout + result.stderr


def test_setup_code_is_printed_alone_and_matches_the_servers(
    write_config, start_server: Callable[..., ServerProcess]
) -> None:
    path = write_config()
    printed = run("user", "setup-code", "--config", str(path))
    assert printed.returncode == 0, printed.stderr
    code = printed.stdout.strip()
    assert len(printed.stdout.splitlines()) == 1 and len(code) == 19
    server = start_server(path)
    server.wait_ready()
    assert f"setup code {code}" in server.log  # the server logs the same code
    again = run("user", "setup-code", "--config", str(path))
    assert again.stdout.strip() == code
    assert server.stop() == 0


def test_setup_code_exits_1_once_an_admin_exists(write_config) -> None:
    import asyncio

    from medianest_server.auth.users import UserService
    from medianest_server.config import load_config
    from medianest_server.db import open_database

    path = write_config()
    assert run("migrate", "--config", str(path)).returncode == 0
    config = load_config(path, environ={})

    async def add_user() -> None:
        db = open_database(config.database.url, base_dir=config.base_dir)
        await db.connect()
        try:
            await UserService(db).create("admin", password="correct horse", role="admin")
        finally:
            await db.close()

    asyncio.run(add_user())
    result = run("user", "setup-code", "--config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "setup is complete" in result.stderr


def test_plugins_lists_one_line_per_plugin_with_its_status(write_config, tmp_path: Path) -> None:
    """The example plugin is installed by ./dev (examples/hello), as a third party's would be."""
    path = write_config()
    result = run("plugins", "--config", str(path))
    assert result.returncode == 0, result.stderr
    line = next(li for li in result.stdout.splitlines() if li.startswith("hello\t"))
    name, dist, version, status, hooks, error = line.split("\t")
    assert (name, dist, version, status, error) == (
        "hello",
        "medianest-hello",
        "1.0.0",
        "active",
        "-",
    )
    assert "dashboard_widgets" in hooks.split(",")
    plex = next(li for li in result.stdout.splitlines() if li.startswith("plex\t")).split("\t")
    assert (plex[3], plex[5]) == ("not configured", "needs url, token")

    path.write_text(path.read_text() + '\n[plugins.hello]\ngreeting = ""\n')
    broken = run("plugins", "--config", str(path))
    assert broken.returncode == 1
    line = next(li for li in broken.stdout.splitlines() if li.startswith("hello\t"))
    assert "\tfailed\t" in line
    assert line.endswith("config: plugins.hello.greeting: Length must be between 1 and 100.")

    env_off = subprocess.run(
        [*MEDIANEST, "plugins", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MEDIANEST_PLUGINS": "none"},
    )
    line = next(li for li in env_off.stdout.splitlines() if li.startswith("hello\t"))
    assert "\tdisabled\t" in line and line.endswith("not in MEDIANEST_PLUGINS")


@pytest.mark.parametrize(
    ("added", "expected"),
    [
        (
            '[plugins.plex]\nurll = "http://127.0.0.1:32400"\n',
            "  plugins.plex.urll: unknown key; did you mean 'url'?",
        ),
        (
            '[plugins.plexx]\nurl = "http://127.0.0.1:32400"\n',
            "  plugins.plexx: no plugin of that name is installed; did you mean [plugins.plex]?",
        ),
    ],
)
def test_check_validates_every_plugin_section_with_its_schema(
    write_config, added: str, expected: str
) -> None:
    path = write_config()
    path.write_text(path.read_text() + "\n" + added)
    result = run("check", "--config", str(path))
    assert result.returncode == 2, result.stdout
    assert result.stdout.splitlines() == ["config: FAILED", expected]
    listed = run("plugins", "--config", str(path))
    assert listed.returncode == 1
    assert expected.strip() in listed.stdout + listed.stderr


def test_plugins_shows_a_failure_that_only_the_running_server_saw(
    write_config, start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = write_config(plugins={"plex": {"url": "http://127.0.0.1:1", "token": "t0ken-abc"}})
    # a broken data folder: where Plex keeps its client identifier there is a directory
    (tmp_path / "data" / "plugins" / "plex" / "client_identifier").mkdir(parents=True)
    assert run("plugins", "--config", str(path)).returncode == 0  # nothing wrong in the config
    server = start_server(path)
    server.wait_ready()
    result = run("plugins", "--config", str(path))
    assert result.returncode == 1
    line = next(li for li in result.stdout.splitlines() if li.startswith("plex\t"))
    _, _, _, status, _, error = line.split("\t")
    assert status == "failed"
    assert error.startswith("startup: IsADirectoryError") and "(the server, " in error
    assert "t0ken-abc" not in result.stdout
    assert server.stop() == 0


def test_serve_on_another_port_links_to_that_port(
    write_config, start_server: Callable[..., ServerProcess]
) -> None:
    """A fresh config leaves base_url empty: it follows --port (the setup link, webhooks)."""
    path = write_config()
    server = start_server(path)
    server.wait_ready()
    assert f"open http://127.0.0.1:{server.port}/setup" in server.log
    assert "base_url is" not in server.log
    assert server.stop() == 0


def test_an_explicit_base_url_on_another_local_port_is_pointed_out_once(
    write_config, start_server: Callable[..., ServerProcess]
) -> None:
    path = write_config(server={"base_url": "http://127.0.0.1:8080"})
    server = start_server(path)
    server.wait_ready()
    assert server.log.count("[server] base_url is http://127.0.0.1:8080 but MediaNest") == 1
    assert "open http://127.0.0.1:8080/setup" in server.log  # what the admin asked for
    assert server.stop() == 0


def test_a_busy_port_says_which_setting_to_change(write_config) -> None:
    path = write_config()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*MEDIANEST, "serve", "--config", str(path), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert (
        f"port {port} on 127.0.0.1 is already in use by another program; stop it, or "
        "choose another port with --port"
    ) in result.stderr
    assert "Errno" not in result.stderr


def test_check_says_a_config_that_is_not_utf8_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "medianest.toml"
    path.write_bytes(b'[server]\nsecret_key = "caf\xe9 0123456789abcdefghijklmnopqrstuvwxyz"\n')
    result = run("check", "--config", str(path))
    assert result.returncode == 2
    assert "not UTF-8 text" in result.stdout and "Traceback" not in result.stdout + result.stderr


STUBBORN_SERVER = """
import asyncio, sys
from aiohttp import web
from medianest_server.server import run

async def stubborn() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # a health check that swallows its cancellation

async def keep_one(app: web.Application):
    task = asyncio.get_running_loop().create_task(stubborn(), name="stubborn check")
    yield  # the cleanup leaves it running, as a stuck plugin check is left behind

app = web.Application()
app.cleanup_ctx.append(keep_one)
app.router.add_get("/health/live", lambda request: web.json_response({"status": "ok"}))
run(app, "127.0.0.1", int(sys.argv[1]), shutdown_timeout=0)
"""


def test_serve_exits_even_when_a_task_ignores_its_cancellation(tmp_path: Path) -> None:
    """asyncio.run would wait without end for such a task at exit; the server names it and
    leaves it behind."""
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN_SERVER)
    port = free_port()
    log = tmp_path / "stubborn.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, str(script), str(port)], stderr=stderr)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "a task ignored its cancellation at exit and is left behind" in log.read_text()
