"""What the benchmarks share: a port, a configuration, a seeded database, a signed-in browser.

Imported by the bench scripts (`python bench/<name>.py` puts this folder on sys.path).
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PASSWORD = "bench-password-7f3a91c2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp: Path, **sections: dict[str, Any]) -> Path:
    """medianest.toml in `tmp`: defaults, SQLite in tmp/data, no API rate limit (it would
    measure the limiter), log level warning, then `sections` ({"redis": {"url": ...}})."""
    import tomli_w

    from medianest_server.config import default_document

    document = default_document()
    document["auth"]["api_requests_per_minute"] = 0
    document["database"]["url"] = "sqlite:///data/medianest.db"
    document["server"]["data_dir"] = "data"
    document["server"]["log_level"] = "warning"
    for section, values in sections.items():
        document.setdefault(section, {}).update(values)
    path = tmp / "medianest.toml"
    path.write_bytes(tomli_w.dumps(document).encode())
    return path


async def seed_database(
    config_path: Path, *, admin: bool = True, password: str | None = PASSWORD, token: bool = False
) -> str | None:
    """Migrate; create an admin (so setup is done) if asked and the user `bench`; return a
    personal API token of `bench` when `token`."""
    from medianest_server.auth.tokens import ApiTokenService
    from medianest_server.auth.users import UserService
    from medianest_server.config import load_config
    from medianest_server.db import (
        CORE_MIGRATIONS,
        apply_migrations,
        load_migrations,
        open_database,
    )

    config = load_config(config_path, environ={})
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(config.database.url, base_dir=config.base_dir)
    await db.connect()
    try:
        await apply_migrations(db, load_migrations("core", CORE_MIGRATIONS, db.dialect))
        users = UserService(db)
        if admin:
            await users.create("admin", password=password, role="admin")
        user = await users.create("bench", password=password, role="user")
        raw = (await ApiTokenService(db).create(user.id, "bench"))[0] if token else None
    finally:
        await db.close()
    return raw


async def browser_cookie(base: str, username: str = "bench", password: str = PASSWORD) -> str:
    """`medianest_session=…` after signing in through the /login form, as a browser does."""
    import aiohttp

    async with aiohttp.ClientSession() as client:
        async with client.get(f"{base}/login", allow_redirects=False) as resp:
            html = await resp.text()
            assert resp.status == 200, (resp.status, html[:300])
            pre = resp.cookies["medianest_pre"].value
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, "no csrf_token field in /login"
        async with client.post(
            f"{base}/login",
            data={"csrf_token": match.group(1), "username": username, "password": password},
            headers={"Cookie": f"medianest_pre={pre}"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303, (resp.status, (await resp.text())[:300])
            return f"medianest_session={resp.cookies['medianest_session'].value}"


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, within: float = 30) -> bool:
    """Wait until the server on `port` answers /health/ready; False after `within` seconds.
    Raises RuntimeError with the end of `log` if the server exits first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    return False
