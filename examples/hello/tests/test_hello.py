"""The hello plugin, tested the way a third party tests theirs: only medianest_server.testing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from medianest_server.testing import MediaNestClient


@pytest.fixture
def medianest_plugins() -> list[str]:
    return ["hello"]


@pytest.fixture
def medianest_settings() -> dict[str, Any]:
    return {"plugins": {"hello": {"greeting": "Howdy", "tick_interval_seconds": 0.05}}}


async def test_greeting_route_uses_the_setting(user_client: MediaNestClient) -> None:
    response = await user_client.get("/api/v1/hello/greeting")
    assert response.status == 200
    assert (await response.json())["greeting"] == "Howdy"


async def test_greeting_needs_a_signed_in_user(anonymous_client: MediaNestClient) -> None:
    assert (await anonymous_client.get("/api/v1/hello/greeting")).status == 401


async def test_periodic_task_runs_in_the_assembled_app(user_client: MediaNestClient) -> None:
    async with asyncio.timeout(5):
        while (await (await user_client.get("/api/v1/hello/greeting")).json())["ticks"] < 2:
            await asyncio.sleep(0.02)


async def test_plugin_is_listed_active_for_admins(admin_client: MediaNestClient) -> None:
    plugins = (await (await admin_client.get("/api/v1/admin/plugins")).json())["plugins"]
    hello = next(p for p in plugins if p["name"] == "hello")
    assert hello["status"] == "active"
    assert hello["distribution"] == "medianest-hello"
    assert "medianest_dashboard_widgets" in hello["hooks"]
    assert [t["name"] for t in hello["tasks"]] == ["tick"]


async def test_users_cannot_see_the_plugin_list(user_client: MediaNestClient) -> None:
    assert (await user_client.get("/api/v1/admin/plugins")).status == 403


@pytest.mark.parametrize("medianest_settings", [{"plugins": {"hello": {"greeting": ""}}}])
async def test_invalid_setting_disables_only_this_plugin(admin_client: MediaNestClient) -> None:
    plugins = (await (await admin_client.get("/api/v1/admin/plugins")).json())["plugins"]
    hello = next(p for p in plugins if p["name"] == "hello")
    assert hello["status"] == "failed"
    assert "plugins.hello.greeting" in hello["error"]
    assert (await admin_client.get("/health/ready")).status == 200
