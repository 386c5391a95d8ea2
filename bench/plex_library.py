"""Benchmark: the Plex plugin's library page, served from cache, and single-flight first loads.

Issue 6 targets:

(a) `GET /api/v1/plex/libraries/<key>/items?start=0&size=50` served from the per-user cache:
    at least 800 responses/s with `wrk -t1 -c32 -d8s`, after one warm-up request. The static
    `GET /health/live` is measured in the same run with the same load (the baseline), and the
    ratio printed.
(b) 500 concurrent first loads of the same library page (a fresh cache key) make at most one
    call to the Plex server (single-flight): the fake server's request count for that path is
    printed.

Everything runs in this process on 127.0.0.1: the fake Plex Media Server and fake plex.tv from
`medianest_plex.testing` (with a generated library of `--items` films in section 4), and the real
app (`create_app` with the installed `plex` plugin only) started with `aiohttp.web.AppRunner` +
`TCPSite`, on a temporary SQLite database and data folder. The signed-in person is an admin
created directly (as the plugin's tests do) with an API token, so library calls use the owner's
server token; `[auth] api_requests_per_minute = 0` so the rate limit is not measured. wrk runs as
a subprocess, bounded by its duration; everything is stopped and the temporary folder removed.

    .venv/bin/python bench/plex_library.py [--duration 8] [--connections 32] [--items 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from medianest_plex.testing import FakePlexServer, FakePlexTv

from medianest_server.app import create_app
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.config import build_config
from medianest_server.plugins.loader import discover_entry_points

TARGET = 800.0
SECTION = 4
CONCURRENT_FIRST_LOADS = 500
PASSWORD = "bench-password-7f3a91c2"


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def wrk(url: str, token: str | None, args: argparse.Namespace) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    process = await asyncio.create_subprocess_exec(
        *command, url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=args.duration + 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = out.decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    p99 = re.search(r"99%\s+(\S+)", text)
    if rate is None:
        raise RuntimeError(f"wrk gave no figure:\n{text}")
    return {
        "rate": float(rate.group(1)),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "p99": p99.group(1) if p99 else "?",
    }


async def main(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("wrk is required (apt-get install wrk)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="medianest-bench-plex-"))
    runners: list[web.AppRunner] = []
    try:
        pms = FakePlexServer()
        pms.generate_library(SECTION, args.items)
        pms_runner, pms_url = await serve(pms.app())
        runners.append(pms_runner)
        pms.base_url = pms_url
        tv = FakePlexTv(server=pms)
        tv_runner, tv_url = await serve(tv.app())
        runners.append(tv_runner)
        owner = tv.add_owner("owner")

        config = build_config(
            {
                "server": {
                    "secret_key": "bench-secret-key-0123456789abcdef0123456789",
                    "data_dir": str(tmp / "data"),
                    "log_level": "warning",
                },
                "database": {"url": f"sqlite:///{tmp}/medianest.db"},
                "auth": {"api_requests_per_minute": 0},
                "plugins": {
                    "plex": {
                        "url": pms_url,
                        "token": owner.token,
                        "plex_tv_url": tv_url,
                        "library_cache_seconds": 600,
                    }
                },
            },
            source="bench",
            base_dir=tmp,
            environ={},
        )
        plugins = [c for c in discover_entry_points() if c.name == "plex"]
        if not plugins:
            print("the plex plugin is not installed (pip install -e plugins/plex)", file=sys.stderr)
            return 2
        app = create_app(config, plugins=plugins, environ={})
        app_runner, base = await serve(app)
        runners.append(app_runner)

        auth = app[AUTH_SERVICES]
        user = await auth.users.create(
            "benchadmin", password="bench-password-7f3a91c2", role="admin"
        )
        token, _ = await auth.api_tokens.create(user.id, "bench")
        headers = {"Authorization": f"Bearer {token}"}

        path = f"/api/v1/plex/libraries/{SECTION}/items?start=0&size=50"
        plex_path = f"/library/sections/{SECTION}/all"
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(base + path) as warm,
        ):
            body = await warm.json()
            if warm.status != 200 or len(body["items"]) != 50:
                print(f"warm-up failed: {warm.status} {body}", file=sys.stderr)
                return 1
        calls_after_warmup = pms.requests[plex_path]

        # (a) cached page vs /health/live
        live_before = await wrk(base + "/health/live", None, args)
        page = await wrk(base + path, token, args)
        live_after = await wrk(base + "/health/live", None, args)
        calls_after_wrk = pms.requests[plex_path]
        baseline = (live_before["rate"] + live_after["rate"]) / 2

        # (b) 500 concurrent first loads of one page with a fresh cache key
        fresh = f"/api/v1/plex/libraries/{SECTION}/items?start=50&size=50"
        before = pms.requests[plex_path]
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

            async def load() -> int:
                async with session.get(base + fresh) as response:
                    await response.read()
                    return response.status

            statuses = await asyncio.wait_for(
                asyncio.gather(*(load() for _ in range(CONCURRENT_FIRST_LOADS))), timeout=120
            )
        first_load_calls = pms.requests[plex_path] - before

        print(
            f"library: {args.items} films in section {SECTION}; wrk -t1 -c{args.connections} "
            f"-d{args.duration}s"
        )
        print(
            f"(a) GET {path} (cached): {page['rate']:.0f} responses/s "
            f"(p99 {page['p99']}, non-2xx {page['non_2xx']}); target {TARGET:.0f}: "
            f"{'MET' if page['rate'] >= TARGET and not page['non_2xx'] else 'NOT MET'}"
        )
        print(
            f"    GET /health/live baseline: {live_before['rate']:.0f} before, "
            f"{live_after['rate']:.0f} after; page/baseline = {page['rate'] / baseline:.2f}"
        )
        print(
            f"    Plex calls for {plex_path}: {calls_after_warmup} by the warm-up, "
            f"{calls_after_wrk - calls_after_warmup} during wrk"
        )
        ok = sum(1 for s in statuses if s == 200)
        print(
            f"(b) {CONCURRENT_FIRST_LOADS} concurrent first loads of {fresh}: {ok} answered 200; "
            f"Plex server requests for {plex_path}: {first_load_calls} "
            f"({'single-flight OK' if first_load_calls <= 1 else 'MORE THAN ONE'})"
        )
        return 0 if first_load_calls <= 1 and ok == CONCURRENT_FIRST_LOADS else 1
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--items", type=int, default=5000, help="films in the library")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
