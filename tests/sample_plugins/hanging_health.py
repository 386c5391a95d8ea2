import asyncio

from medianest_server.plugin_api import HealthCheck, HealthResult, SearchGroup, hookimpl


@hookimpl
def medianest_health_checks() -> list[HealthCheck]:
    async def hang() -> HealthResult:
        await asyncio.Event().wait()
        return HealthResult("up")

    return [HealthCheck("forever", hang, timeout_seconds=0.2)]


@hookimpl
async def medianest_search(query: str) -> SearchGroup:
    await asyncio.Event().wait()
    return SearchGroup("never")
