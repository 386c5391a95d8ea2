"""Benchmark: plugin hook dispatch per page, 10 plugins each contributing a nav item and a widget.

Target (issue: plugin system): under 0.5 ms of dispatch per page. A "page" is what every page
view asks the plugins for: `call_each("medianest_nav_items", budget=0.25, user=...)` then
`call_each("medianest_dashboard_widgets", budget=0.5, user=...)` on the plugin manager of the
real assembled app (started with `web.AppRunner(app).setup()`, no socket), 10 plugins built in
memory. Widget `load` coroutines are not run: this measures dispatch, not widget data. Baseline,
measured in the same run: the same 20 hook functions called directly in a loop (no pluggy, no
isolation, no budget), so the ratio reads as "dispatch costs N x calling the functions".

    .venv/bin/python bench/hook_dispatch.py [--pages 5000] [--warmup 500] [--plugins 10]
        [--async-hooks]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from medianest_server.app import create_app
from medianest_server.appkeys import PLUGINS
from medianest_server.auth.models import User
from medianest_server.config import build_config
from medianest_server.plugin_api import NavItem, Widget, hookimpl
from medianest_server.plugins.loader import Candidate, PluginManager

TARGET_MS = 0.5
NAV_BUDGET = 0.25
WIDGET_BUDGET = 0.5


def plugin_module(name: str, *, use_async: bool) -> types.ModuleType:
    """A plugin as a third party writes it: one nav item, one widget, hooks named by keyword."""
    module = types.ModuleType(f"bench_plugin_{name}")

    async def load() -> Mapping[str, Any]:
        return {"n": 1}

    def nav_items(user: User) -> list[NavItem]:
        return [NavItem(name.title(), f"/{name}/", icon="film", order=10)]

    def widgets(user: User) -> list[Widget]:
        return [Widget(f"{name}-recent", f"{name} for {user.name}", f"{name}/widgets/r.html", load)]

    if use_async:

        async def async_nav_items(user: User) -> list[NavItem]:
            return nav_items(user)

        async def async_widgets(user: User) -> list[Widget]:
            return widgets(user)

        module.medianest_nav_items = hookimpl(async_nav_items)  # type: ignore[attr-defined]
        module.medianest_dashboard_widgets = hookimpl(async_widgets)  # type: ignore[attr-defined]
    else:
        module.medianest_nav_items = hookimpl(nav_items)  # type: ignore[attr-defined]
        module.medianest_dashboard_widgets = hookimpl(widgets)  # type: ignore[attr-defined]
    return module


async def page(manager: PluginManager, user: User) -> int:
    nav = await manager.call_each("medianest_nav_items", budget=NAV_BUDGET, user=user)
    widgets = await manager.call_each(
        "medianest_dashboard_widgets", budget=WIDGET_BUDGET, user=user
    )
    return len(nav) + len(widgets)


async def direct(functions: list[Callable[..., Any]], user: User) -> int:
    """The same functions, called one after the other (awaited when they are coroutines)."""
    count = 0
    for function in functions:
        result = function(user=user)
        if asyncio.iscoroutine(result):
            result = await result
        count += len(result)
    return count


def percentile(samples: list[float], percent: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


async def measure(run: Callable[[], Any], pages: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await run()
    samples = []
    for _ in range(pages):
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--plugins", type=int, default=10)
    parser.add_argument("--async-hooks", action="store_true", help="write the hooks as `async def`")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # a failing hook is an error below, not a log line

    names = [f"bench{i:02d}" for i in range(args.plugins)]
    modules = {name: plugin_module(name, use_async=args.async_hooks) for name in names}
    user = User(1, "bench", "user")

    with tempfile.TemporaryDirectory(prefix="medianest-bench-") as tmp:
        config = build_config(
            {
                "server": {"secret_key": "x" * 40, "data_dir": tmp},
                "database": {"url": f"sqlite:///{tmp}/bench.db"},
            },
            environ={},
            base_dir=Path(tmp),
        )
        app = create_app(
            config,
            plugins=[
                Candidate(name, lambda m=module: m, "bench", "1.0")
                for name, module in modules.items()
            ],
            environ={},
        )
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()  # runs cleanup_ctx: database, migrations, plugin startup
        try:
            manager = app[PLUGINS]
            failed = [r.name for r in manager.records.values() if not r.active]
            if failed:
                raise SystemExit(f"plugins not active: {failed}")
            nav = await manager.call_each("medianest_nav_items", budget=NAV_BUDGET, user=user)
            widgets = await manager.call_each(
                "medianest_dashboard_widgets", budget=WIDGET_BUDGET, user=user
            )
            errors = [o.error for o in [*nav, *widgets] if o.error]
            if errors or len(nav) != len(names) or len(widgets) != len(names):
                raise SystemExit(f"unexpected outcomes: {len(nav)} nav, {len(widgets)}, {errors}")

            functions = [
                f
                for m in modules.values()
                for f in (m.medianest_nav_items, m.medianest_dashboard_widgets)
            ]
            dispatched = await measure(lambda: page(manager, user), args.pages, args.warmup)
            baseline = await measure(lambda: direct(functions, user), args.pages, args.warmup)
        finally:
            await runner.cleanup()

    mean = statistics.fmean(dispatched)
    base = statistics.fmean(baseline)
    verdict = "ok" if mean < TARGET_MS else "ABOVE TARGET"
    kind = "async def" if args.async_hooks else "def"
    print(
        f"hook dispatch, {args.plugins} plugins x (nav item + widget), hooks written as {kind}, "
        f"{args.pages:,} pages after {args.warmup:,} warm-up"
    )
    print(
        f"  dispatch: mean {mean:.3f} ms/page  p50 {percentile(dispatched, 50):.3f}  "
        f"p99 {percentile(dispatched, 99):.3f}  target < {TARGET_MS} ms  {verdict}"
    )
    print(
        f"  baseline (the {len(functions)} functions called directly): mean {base:.4f} ms/page  "
        f"p99 {percentile(baseline, 99):.4f}"
    )
    print(f"  dispatch/baseline = {mean / base:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
