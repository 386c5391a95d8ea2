"""Slice 1: settings, start-up, the health check ("test connection") and the nav item."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest
from medianest_server.testing import MediaNestClient

from medianest_plex.config import PlexSettings
from medianest_plex.service import client_identifier
from medianest_plex.testing import FakePlex


async def _plugin(admin_client: MediaNestClient) -> dict[str, Any]:
    plugins = (await (await admin_client.get("/api/v1/admin/plugins")).json())["plugins"]
    return next(p for p in plugins if p["name"] == "plex")


def test_schema_defaults_and_docs() -> None:
    assert PlexSettings().load({})["url"] == ""
    loaded = PlexSettings().load({"url": "http://plex.local:32400", "token": "t"})
    assert loaded["plex_tv_url"] == "https://plex.tv"
    assert loaded["product"] == "MediaNest"
    assert loaded["client_identifier"] == ""
    assert (loaded["library_cache_seconds"], loaded["recent_cache_seconds"]) == (60.0, 30.0)
    for name, field in PlexSettings().fields.items():
        assert field.metadata.get("doc"), name
    assert PlexSettings().fields["token"].metadata["secret"] is True


def test_schema_refuses_a_url_that_is_not_http() -> None:
    errors = PlexSettings().validate({"url": "ftp://plex.local", "token": "t"})
    assert "url" in errors


def test_client_identifier_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = client_identifier({"client_identifier": ""}, tmp_path)
    assert len(first) == 36
    assert client_identifier({"client_identifier": ""}, tmp_path) == first
    assert (tmp_path / "client_identifier").read_text().strip() == first
    assert client_identifier({"client_identifier": "mine"}, tmp_path) == "mine"


async def test_plugin_starts_and_keeps_a_client_identifier(
    admin_client: MediaNestClient, tmp_path: Path
) -> None:
    plugin = await _plugin(admin_client)
    assert plugin["status"] == "active", plugin["error"]
    kept = tmp_path / "data" / "plugins" / "plex" / "client_identifier"
    assert len(kept.read_text().strip()) == 36


async def test_test_connection_names_version_and_machine(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    response = await admin_client.get("/admin/health")
    assert response.status == 200
    text = html.unescape(await response.text())
    assert f"Plex {plex.server.version} ({plex.server.machine_identifier})" in text


async def test_test_connection_says_why_it_failed(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    await plex.stop_server()
    text = html.unescape(await (await admin_client.get("/admin/health")).text())
    assert "Plex cannot be reached (GET /identity)" in text


@pytest.mark.parametrize("medianest_settings", [{"plugins": {"plex": {"url": "ftp://x"}}}])
async def test_a_bad_url_disables_only_this_plugin(admin_client: MediaNestClient) -> None:
    plugin = await _plugin(admin_client)
    assert plugin["status"] == "failed"
    assert "plugins.plex.url" in plugin["error"]


async def test_nav_has_the_library(user_client: MediaNestClient) -> None:
    text = await (await user_client.get("/")).text()
    assert 'href="/plex/"' in text


async def test_test_connection_says_when_the_owner_token_is_refused(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    plex.server.grants.clear()
    text = html.unescape(await (await admin_client.get("/admin/health")).text())
    assert "Plex refused the token (/)" in text
