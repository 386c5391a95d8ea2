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


async def test_the_widget_renders_for_a_user(
    medianest_plugin: Any, user_client: MediaNestClient
) -> None:
    html = await medianest_plugin.render_widget("greeting", user_client.user)
    assert "Howdy" in html


@pytest.mark.parametrize(
    "medianest_settings",
    [{"plugins": {"hello": {"greeting": "Hi", "tick_interval_seconds": 3600}}}],
)
async def test_the_tick_task_runs_now_and_emits_its_event(medianest_plugin: Any) -> None:
    """An hour-long interval, run at once by the harness: no waiting for the clock."""
    await medianest_plugin.run_task("tick")
    event = await medianest_plugin.emitted("hello.tick.completed")
    assert event.data["ticks"] >= 1
    (outcome,) = await medianest_plugin.check_health()
    assert outcome.status == "up"


async def test_the_plugin_context_is_the_plugins_own(medianest_plugin: Any) -> None:
    assert medianest_plugin.ctx.name == "hello"
    assert medianest_plugin.ctx.config["greeting"] == "Howdy"
