"""Benchmark: the dashboard `GET /` for a signed-in user, with four widgets whose data is cached.

Target (issue 5): one `medianest serve` process on SQLite renders at least 800 dashboard pages/s
for a signed-in user (session cookie) whose dashboard shows four plugin widgets, each loading its
data through `ctx.cache.get_or_load(..., ttl_seconds=300)`, so after the first page every widget
is a cache hit. Baselines, measured in the same run with the same load generator: the
unauthenticated static `GET /health/live` (before and after the pages), and a signed-in page
without widgets (`GET /notifications` with the same cookie), so the figures read as "a dashboard
costs N x a static response" and "the widgets cost N x a plain signed-in page".

The widgets come from a throwaway plugin, `benchwidgets`, written to a temporary directory (never
the repository, never installed in the venv): a module with `medianest_dashboard_widgets`,
`medianest_nav_items` and a tiny route reporting how often each loader ran (to confirm the
cache), plus its templates in `templates/benchwidgets/widgets/`. A launcher script next to it
builds the app with `create_app(config, plugins=[Candidate("benchwidgets", ...)], environ={})`
(the core plus this plugin alone, not whatever the venv has installed) and runs it with
`medianest_server.server.run`. The server runs with `[auth] api_requests_per_minute = 0` and
`[server] log_level = "warning"` so neither the rate limit nor logging is measured.

Load comes from `wrk -t1 -c32` (required). Before measuring, one response must be 200 and contain
the four widgets without an error card. The load average is printed (the box is shared), and so is
the server's CPU time per request (all its threads, from /proc) and its share of a core. When the
dashboard is below the target (or with --profile always), the page is then profiled in process
with cProfile (aiohttp TestServer plus a concurrent client loop on the same temporary database)
and the top costs per page are printed, with the SQL statements each page runs. The profile
includes the client's own share (aiohttp client frames) and excludes SQLite's work, which runs in
aiosqlite's threads. All traffic goes to 127.0.0.1, every run is bounded in time, and the server
is stopped and the temporary directory removed at the end.

    .venv/bin/python bench/dashboard.py [--duration 8] [--connections 32] [--profile auto]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import importlib.util
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from benchsite import browser_cookie, free_port, seed_database, wait_ready, write_config

TARGET_PAGES = 800
PLUGIN = "benchwidgets"
WIDGET_IDS = ("recent", "queue", "status", "stats")

PLUGIN_MODULE = textwrap.dedent(
    '''
    """Four dashboard widgets whose data is cached (written by bench/dashboard.py)."""

    from __future__ import annotations

    from collections import Counter
    from typing import Any

    from aiohttp import web

    from medianest_server.plugin_api import NavItem, Routes, User, Widget, hookimpl

    WIDGET_IDS = ("recent", "queue", "status", "stats")
    LOADS: Counter[str] = Counter()


    def _rows(widget_id: str) -> list[dict[str, Any]]:
        """What an upstream API call would have returned: ten small rows."""
        return [
            {"title": f"{widget_id} item {n}", "subtitle": f"detail {n * 7}", "value": n * 13}
            for n in range(10)
        ]


    @hookimpl
    def medianest_dashboard_widgets(ctx: Any, user: User) -> list[Widget]:
        def widget(widget_id: str) -> Widget:
            async def loader() -> dict[str, Any]:
                LOADS[widget_id] += 1
                return {"rows": _rows(widget_id), "total": 10}

            async def load() -> dict[str, Any]:
                return await ctx.cache.get_or_load(f"widget:{widget_id}", loader, ttl_seconds=300)

            return Widget(
                widget_id, widget_id.title(), f"benchwidgets/widgets/{widget_id}.html", load
            )

        return [widget(widget_id) for widget_id in WIDGET_IDS]


    @hookimpl
    def medianest_nav_items(user: User) -> list[NavItem]:
        return [NavItem("Bench", "/api/v1/benchwidgets/loads", icon="home", order=500)]


    @hookimpl
    def medianest_routes() -> Routes:
        routes = Routes()

        @routes.get("/loads", access="user")
        async def loads(request: web.Request) -> web.Response:
            return web.json_response(dict(LOADS))

        return routes
    '''
)

WIDGET_TEMPLATE = textwrap.dedent(
    """\
    <ul class="bench-{id}">
      {% for row in data.rows %}
      <li><strong>{{ row.title }}</strong> <span class="muted">{{ row.subtitle }}</span>
        <span class="value">{{ row.value }}</span></li>
      {% endfor %}
    </ul>
    <p class="muted">{{ data.total }} in all, for {{ user.username }}</p>
    """
)

LAUNCHER = textwrap.dedent(
    """
    import sys

    import benchwidgets
    from medianest_server.app import create_app
    from medianest_server.config import load_config
    from medianest_server.logs import configure_logging
    from medianest_server.plugins.loader import Candidate
    from medianest_server.server import run

    config = load_config(sys.argv[1], environ={})
    configure_logging(config.server.log_level, config.server.log_format)
    app = create_app(config, plugins=[Candidate("benchwidgets", lambda: benchwidgets)], environ={})
    run(app, "127.0.0.1", int(sys.argv[2]))
    """
)


def write_plugin(tmp: Path) -> Path:
    """The throwaway plugin module, its templates, and the launcher; returns the launcher."""
    (tmp / f"{PLUGIN}.py").write_text(PLUGIN_MODULE)
    folder = tmp / "templates" / PLUGIN / "widgets"
    folder.mkdir(parents=True)
    for widget_id in WIDGET_IDS:
        (folder / f"{widget_id}.html").write_text(WIDGET_TEMPLATE.replace("{id}", widget_id))
    launcher = tmp / "launch_server.py"
    launcher.write_text(LAUNCHER)
    return launcher


def import_plugin(tmp: Path) -> ModuleType:
    """The same plugin module, imported into this process (for the in-process profile)."""
    spec = importlib.util.spec_from_file_location(PLUGIN, tmp / f"{PLUGIN}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[PLUGIN] = module
    spec.loader.exec_module(module)
    return module


def start_server(launcher: Path, config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIANEST_")}
    argv = [sys.executable, str(launcher), str(config), str(port)]
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=launcher.parent
        )
    if not wait_ready(proc, port, log):
        stop_server(proc)
        raise RuntimeError(f"server not ready in 30 s: {log.read_text()[-2000:]}")
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def sign_in(base: str) -> str:
    """The browser session cookie, through the /login form (as a browser signs in)."""
    return await browser_cookie(base)


def fetch(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status, resp.read().decode()


def check_dashboard(html: str) -> None:
    """The page shows the four widgets, each rendered from its data, and no error card."""
    problems = []
    for widget_id in WIDGET_IDS:
        if f'data-widget="{PLUGIN}/{widget_id}"' not in html:
            problems.append(f"no card for {widget_id}")
        if f'class="bench-{widget_id}"' not in html or f"{widget_id} item 9" not in html:
            problems.append(f"no data in {widget_id}")
    if "widget-error" in html:
        problems.append("an error card: " + html[html.index("widget-error") :][:300])
    if 'href="/api/v1/benchwidgets/loads"' not in html:
        problems.append("the plugin's menu entry is missing")
    if problems:
        raise RuntimeError("dashboard check failed: " + "; ".join(problems))


def check_pages(base: str, cookie: str) -> None:
    status, html = fetch(base + "/", {"Cookie": cookie})
    if status != 200:
        raise RuntimeError(f"GET / answered {status}")
    check_dashboard(html)
    status, html = fetch(base + "/notifications", {"Cookie": cookie})
    if status != 200 or "Notifications" not in html or "data-widget=" in html:
        raise RuntimeError(f"GET /notifications answered {status} without the expected page")
    status, _ = fetch(base + "/health/live", {})
    if status != 200:
        raise RuntimeError(f"GET /health/live answered {status}")


@dataclass(frozen=True)
class Run:
    rps: float
    failed: int
    cpu_ms: float | None  # the server process's CPU (all its threads) per request
    cpu_share: float | None  # of one core, during the measured seconds


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process and all its threads (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, headers: dict[str, str], args: argparse.Namespace, server_pid: int) -> Run:
    header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]

    def argv(seconds: float) -> list[str]:
        duration = f"-d{max(1, round(seconds))}s"
        return ["wrk", "-t1", f"-c{args.connections}", duration, *header_args, url]

    if args.warmup > 0:
        subprocess.run(argv(args.warmup), capture_output=True, check=True, timeout=args.warmup + 30)
    cpu_before, started = process_cpu_seconds(server_pid), time.monotonic()
    out = subprocess.run(
        argv(args.duration),
        capture_output=True,
        text=True,
        check=True,
        timeout=args.duration + 30,
    ).stdout
    cpu_after, elapsed = process_cpu_seconds(server_pid), time.monotonic() - started
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    errors = re.search(r"Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)", out)
    failures = int(bad.group(1)) if bad else 0
    failures += sum(int(n) for n in errors.groups()) if errors else 0
    cpu_ms = cpu_share = None
    if cpu_before is not None and cpu_after is not None and int(total.group(1)):
        cpu_ms = (cpu_after - cpu_before) * 1000 / int(total.group(1))
        cpu_share = (cpu_after - cpu_before) / elapsed
    return Run(float(rps.group(1)), failures, cpu_ms, cpu_share)


# -- the in-process profile ------------------------------------------------------------------------


def _breakdown() -> list[tuple[str, Any]]:
    """(label, function) for the cumulative costs worth naming, in the order a page pays them."""
    import aiohttp
    import aiohttp_jinja2
    import jinja2
    from aiohttp.web_protocol import RequestHandler

    from medianest_server import cache, notifications
    from medianest_server.auth.sessions import DatabaseSessionStorage
    from medianest_server.auth.users import PreferenceStore
    from medianest_server.web import dashboard, layout

    return [
        ("aiohttp server: one request, all in", RequestHandler._handle_request),
        ("session: load_session (cookie -> cache/DB)", DatabaseSessionStorage.load_session),
        ("session: save_session", DatabaseSessionStorage.save_session),
        ("page handler (widgets + layout + render)", dashboard.dashboard),
        ("  dashboard_widgets", dashboard.dashboard_widgets),
        ("    medianest_dashboard_widgets hook", dashboard._widgets),
        ("    render_widget x4 (load + template)", dashboard.render_widget),
        ("      MemoryCache.get_or_load", cache.MemoryCache.get_or_load),
        ("  page_context (layout)", layout.page_context),
        ("    nav_items (hook)", layout.nav_items),
        ("    Notifications.unread", notifications.Notifications.unread),
        ("  PreferenceStore.get (both callers)", PreferenceStore.get),
        ("  aiohttp_jinja2.render_template (page)", aiohttp_jinja2.render_template),
        ("jinja2 Template.render (page + widgets)", jinja2.Template.render),
        ("aiohttp client request (the load)", aiohttp.ClientSession._request),
    ]


def _cumulative(stats: pstats.Stats, function: Any) -> float | None:
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    entry = raw.get((code.co_filename, code.co_firstlineno, code.co_name))
    return None if entry is None else float(entry[3])


def _count_statements(db: Any) -> collections.Counter[str]:
    """Wrap the database's query methods (on this instance, in this process) to count SQL."""
    counts: collections.Counter[str] = collections.Counter()
    for name in ("execute", "fetch_one", "fetch_all", "fetch_val"):
        original = getattr(db, name)

        def counted(sql: str, params: Any = None, *, _original: Any = original) -> Any:
            counts[" ".join(sql.split())[:90]] += 1
            return _original(sql, params)

        setattr(db, name, counted)
    return counts


async def profile_dashboard(
    config_path: Path, module: ModuleType, pages: int, concurrency: int
) -> tuple[float, float, pstats.Stats, collections.Counter[str]]:
    """(ms per page unprofiled, ms per page profiled, stats, SQL counts over the profiled pages)."""
    import aiohttp
    from aiohttp.test_utils import TestServer

    from medianest_server.app import create_app
    from medianest_server.appkeys import DB
    from medianest_server.config import load_config
    from medianest_server.logs import access_log_options, configure_logging
    from medianest_server.plugins.loader import Candidate

    config = load_config(config_path, environ={})
    configure_logging(config.server.log_level, config.server.log_format)
    app = create_app(config, plugins=[Candidate(PLUGIN, lambda: module)], environ={})
    server = TestServer(app, host="127.0.0.1", **access_log_options())
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        cookie = await sign_in(base)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, headers={"Cookie": cookie}) as client:
            async with client.get(base + "/") as resp:
                check_dashboard(await resp.text())

            async def worker(count: int) -> None:
                for _ in range(count):
                    async with client.get(base + "/") as resp:
                        await resp.read()
                        assert resp.status == 200, resp.status

            async def load(total: int) -> float:
                share, extra = divmod(total, concurrency)
                start = time.perf_counter()
                await asyncio.gather(*(worker(share + (i < extra)) for i in range(concurrency)))
                return (time.perf_counter() - start) * 1000 / total

            await load(max(100, pages // 5))  # warm-up: connections, template cache, widget cache
            plain_ms = await load(pages)
            counts = _count_statements(app[DB])
            profiler = cProfile.Profile()
            profiler.enable()
            try:
                profiled_ms = await load(pages)
            finally:
                profiler.disable()
    finally:
        await server.close()
    return plain_ms, profiled_ms, pstats.Stats(profiler), counts


IDLE = ("<method 'poll' of 'select.epoll' objects>",)
OURS = ("medianest_server/", "aiohttp_jinja2/", "jinja2/", "/templates/", f"/{PLUGIN}.py")


def print_profile(args: argparse.Namespace, config: Path, tmp: Path) -> None:
    module = import_plugin(tmp)
    pages, concurrency = args.profile_pages, args.profile_concurrency
    plain_ms, profiled_ms, stats, counts = asyncio.run(
        profile_dashboard(config, module, pages, concurrency)
    )
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    idle = sum(v[2] for k, v in raw.items() if k[2] in IDLE)
    busy = total - idle

    def ms(seconds: float) -> str:
        return f"{seconds * 1000 / pages:7.3f}"

    print(
        f"\nprofile of GET / (in process: aiohttp TestServer + an aiohttp client with "
        f"{concurrency} concurrent requests in the same loop, {pages} pages after a warm-up)"
    )
    print(
        f"  {plain_ms:.2f} ms per page unprofiled ({1000 / plain_ms:.0f} pages/s, client "
        f"included), {profiled_ms:.2f} ms profiled; per page: {busy * 1000 / pages:.2f} ms busy "
        f"in the loop + {idle * 1000 / pages:.2f} ms waiting in epoll (for aiosqlite's threads, "
        "whose SQLite work the profile does not see); shares below are of the busy time"
    )
    print(f"\n  {'cumulative, per page':<44} {'ms':>7} {'share':>6}")
    for label, function in _breakdown():
        ct = _cumulative(stats, function)
        if ct is not None:
            print(f"  {label:<44} {ms(ct)} {ct / busy:6.1%}")
    print(f"\n  SQL statements per page ({sum(counts.values()) / pages:.1f} in all):")
    for sql, n in counts.most_common(10):
        print(f"    {n / pages:5.2f}  {sql}")

    def table(title: str, rows: list[tuple[Any, Any]], column: int) -> None:
        print(f"\n  {title}")
        print(f"    {'ms':>7} {'share':>6} {'calls*':>7}  function")
        for (filename, line, name), values in rows[: args.profile_top]:
            seconds, calls = values[column], values[1]
            where = f"{_short(filename)}:{line} {name}" if line else name
            print(f"    {ms(seconds)} {seconds / busy:6.1%} {calls / pages:7.1f}  {where}")

    by_own = sorted(
        ((k, v) for k, v in raw.items() if k[2] not in IDLE), key=lambda kv: kv[1][2], reverse=True
    )
    table("top functions by own time (tottime), per page:", by_own, 2)
    ours = [(k, v) for k, v in raw.items() if any(p in k[0].replace(os.sep, "/") for p in OURS)]
    ours.sort(key=lambda kv: kv[1][3], reverse=True)
    table("top MediaNest / Jinja2 / template functions by cumulative time, per page:", ours, 3)
    print("  (* calls per page; a coroutine counts once per resumption)")


def _short(filename: str) -> str:
    filename = filename.replace(os.sep, "/")
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--profile",
        choices=["auto", "always", "never"],
        default="auto",
        help="profile the page in process (auto: when the dashboard is below the target)",
    )
    parser.add_argument("--profile-pages", type=int, default=2000)
    parser.add_argument("--profile-concurrency", type=int, default=8)
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args()

    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    load_before = os.getloadavg()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results: dict[str, Run] = {}

    with tempfile.TemporaryDirectory(prefix="medianest-bench-") as tmp_name:
        tmp = Path(tmp_name)
        launcher = write_plugin(tmp)
        config = write_config(tmp)
        asyncio.run(seed_database(config))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(launcher, config, port, tmp / "server.log")
        try:
            cookie = asyncio.run(sign_in(base))
            check_pages(base, cookie)
            runs = [
                ("baseline-1", "/health/live", {}),
                ("dashboard", "/", {"Cookie": cookie}),
                ("notifications", "/notifications", {"Cookie": cookie}),
                ("baseline-2", "/health/live", {}),
            ]
            for name, path, headers in runs:
                results[name] = run_wrk(base + path, headers, args, server.pid)
            status, body = fetch(base + f"/api/v1/{PLUGIN}/loads", {"Cookie": cookie})
            loads = json.loads(body) if status == 200 else {}
        finally:
            stop_server(server)
        load_after = os.getloadavg()
        uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

        b1, b2 = results["baseline-1"], results["baseline-2"]
        baseline = statistics.mean([b1.rps, b2.rps])
        print(
            "server: one process, SQLite, core + the benchwidgets plugin (4 cached widgets), "
            "api_requests_per_minute = 0, log_level = warning"
        )
        print(
            f"load generator: wrk -t1 -c{args.connections}, {args.duration:g} s after a "
            f"{args.warmup:g} s warm-up; {os.cpu_count()} CPUs; load average (1/5/15 min) "
            f"before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after "
            f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
        )
        print(f"  uptime before: {uptime_before}\n  uptime after:  {uptime_after}")
        print(
            f"{'GET':<40} {'pages/s':>8} {'x baseline':>11} {'target':>8} {'failed':>7}"
            f" {'server CPU/page':>16}"
        )
        rows = [
            ("/health/live, no auth (baseline)", b1, b2, None),
            ("/, signed in, 4 cached widgets", results["dashboard"], None, TARGET_PAGES),
            ("/notifications, signed in, no widgets", results["notifications"], None, None),
        ]
        for label, run, other, target in rows:
            rps = baseline if other else run.rps
            failed = run.failed + (other.failed if other else 0)
            cpu = [
                (r.cpu_ms, r.cpu_share)
                for r in (run, other)
                if r is not None and r.cpu_ms is not None and r.cpu_share is not None
            ]
            cpu_text = ""
            if cpu:
                cpu_ms = statistics.mean(ms for ms, _ in cpu)
                share = statistics.mean(share for _, share in cpu)
                cpu_text = f"{cpu_ms:.2f} ms ({share:.0%})"
            target_text = f">= {target}" if target else ""
            print(
                f"{label:<40} {rps:8.0f} {rps / baseline:10.3f}x {target_text:>8} {failed:>7}"
                f" {cpu_text:>16}"
            )
        print(
            f"  (baseline before {b1.rps:.0f}, after {b2.rps:.0f} req/s; server CPU is all its "
            "threads, per request, and in brackets its share of one core while measured)"
        )
        dashboard = results["dashboard"].rps
        plain = results["notifications"].rps
        print(
            f"  dashboard = {dashboard / plain:.2f}x /notifications; "
            f"{1000 / dashboard:.2f} ms vs {1000 / plain:.2f} ms per page on one process; "
            f"{dashboard / TARGET_PAGES:.0%} of the target"
        )
        print(
            "  widget loader calls during the whole run (1 each = cached after the first page): "
            + (", ".join(f"{k} {v}" for k, v in sorted(loads.items())) or "unknown")
        )

        wanted = args.profile == "always" or (args.profile == "auto" and dashboard < TARGET_PAGES)
        if wanted:
            print_profile(args, config, tmp)


if __name__ == "__main__":
    main()
