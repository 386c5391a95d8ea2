"""A plugin with a leader-only task: across instances sharing Redis, only one runs it."""

from __future__ import annotations

from medianest_server.plugin_api import PluginContext, Task, hookimpl

runs: list[str] = []


@hookimpl
def medianest_background_tasks(ctx: PluginContext) -> list[Task]:
    async def sweep() -> None:
        runs.append(str(ctx.data_dir))  # each instance has its own data folder

    return [Task("sweep", 0.05, sweep, leader_only=True)]
