"""Connecting Plex after set-up: not configured until url and token are set, the dashboard's
"Connect Plex" card (typed by hand, with "Test connection"), and the server picker that signs
in with Plex and saves the chosen server's address and token. No restart anywhere."""

from __future__ import annotations

import html
import tomllib
from pathlib import Path
from typing import Any

import pytest
from medianest_server.plugin_api import ManualClock
from medianest_server.testing import MediaNestClient

from medianest_plex.testing import FakePlex
from medianest_plex.testing.plextv import REMOTE_URI

NOT_CONNECTED = {"plugins": {"plex": {}}}


def _unconfigured(plex: FakePlex) -> dict[str, Any]:
    """Plex installed, only plex.tv's address set (the fake's): no url, no token."""
    return {"plugins": {"plex": {"plex_tv_url": plex.tv_url}}}


@pytest.fixture
def medianest_settings(plex: FakePlex) -> dict[str, Any]:
    return _unconfigured(plex)


async def _status(admin_client: MediaNestClient) -> dict[str, Any]:
    plugins = (await (await admin_client.get("/api/v1/admin/plugins")).json())["plugins"]
    found: dict[str, Any] = next(p for p in plugins if p["name"] == "plex")
    return found


def _config(tmp_path: Path) -> dict[str, Any]:
    return tomllib.loads((tmp_path / "medianest.toml").read_text())


async def test_without_url_and_token_plex_is_not_configured_and_says_so_plainly(
    admin_client: MediaNestClient, user_client: MediaNestClient
) -> None:
    status = await _status(admin_client)
    assert (status["status"], status["missing"], status["error"]) == (
        "not_configured",
        ["url", "token"],
        None,
    )
    # people read plain words, never setting names, and no menu entry leads there
    page = await user_client.get("/plex/")
    text = html.unescape(await page.text())
    assert page.status == 503
    main = text[text.index("<main") : text.index("</main>")]
    assert "Plex is not connected yet. An admin needs to connect it first" in main
    assert "plugins.plex" not in main and "token" not in main.lower()
    assert 'href="/plex/"' not in await (await user_client.get("/")).text()
    api = await user_client.get("/api/v1/plex/libraries")
    assert api.status == 503
    assert (await api.json())["error"]["code"] == "not_configured"
    # the user's dashboard offers nothing to connect; the admin's does
    assert "Connect Plex" not in await (await user_client.get("/")).text()
    dashboard = html.unescape(await (await admin_client.get("/")).text())
    assert "Connect Plex" in dashboard
    assert "Plex server address" in dashboard and "Server owner's Plex token" in dashboard
    assert 'href="/plex/setup"' in dashboard  # the picker, offered first


async def test_connect_card_tests_typed_values_without_saving_them(
    admin_client: MediaNestClient, plex: FakePlex, tmp_path: Path
) -> None:
    before = (tmp_path / "medianest.toml").read_text()
    good = await admin_client.post(
        "/dashboard/connect/plex/test",
        data={"url": plex.server_url, "token": plex.owner.token},
        headers={"Accept": "application/json"},
    )
    (result,) = (await good.json())["results"]
    assert result["status"] == "up"
    assert result["message"] == f"Connected to HomeServer (Plex {plex.server.version})."
    wrong = await admin_client.post(
        "/dashboard/connect/plex/test",
        data={"url": plex.server_url, "token": "not-the-token"},
        headers={"Accept": "application/json"},
    )
    assert (await wrong.json())["results"][0]["message"] == (
        "Plex answers at that address but refused the token."
    )
    # without JavaScript: the page again, with the result and the typed address (not the token)
    page = await admin_client.post(
        "/dashboard/connect/plex/test", data={"url": "http://127.0.0.1:1", "token": "x"}
    )
    text = html.unescape(await page.text())
    assert "No Plex server answers at that address." in text
    assert 'value="http://127.0.0.1:1"' in text and 'value="x"' not in text
    assert (tmp_path / "medianest.toml").read_text() == before  # nothing was saved
    assert (await _status(admin_client))["status"] == "not_configured"


async def test_connect_card_saves_and_starts_plex_without_a_restart(
    admin_client: MediaNestClient, user_client: MediaNestClient, plex: FakePlex, tmp_path: Path
) -> None:
    bad = await admin_client.post(
        "/dashboard/connect/plex", data={"url": "ftp://plex", "token": plex.owner.token}
    )
    assert bad.status == 400
    assert "Not saved: check Plex server address." in html.unescape(await bad.text())
    assert "url" not in _config(tmp_path)["plugins"]["plex"]

    saved = await admin_client.post(
        "/dashboard/connect/plex",
        data={"url": plex.server_url, "token": plex.owner.token},
        allow_redirects=False,
    )
    assert (saved.status, saved.headers["Location"]) == (303, "/?connected=plex")
    section = _config(tmp_path)["plugins"]["plex"]
    assert section == {
        "plex_tv_url": plex.tv_url,  # kept: the card only touches url and token
        "url": plex.server_url,
        "token": plex.owner.token,
    }
    assert (tmp_path / "medianest.toml.bak").exists()
    assert (await _status(admin_client))["status"] == "active"
    welcome = html.unescape(await (await admin_client.get("/?connected=plex")).text())
    assert "Plex is connected." in welcome and "Connect Plex" not in welcome
    # the library answers now, for the admin (owner's token) and in the menu of everyone
    assert (await admin_client.get("/api/v1/plex/libraries")).status == 200
    assert 'href="/plex/"' in await (await user_client.get("/")).text()


async def test_server_picker_signs_in_with_plex_and_saves_the_chosen_server(
    admin_client: MediaNestClient, plex: FakePlex, clock: ManualClock, tmp_path: Path
) -> None:
    plex.tv.add_owned_server("Cabin", online=False)  # the owner's second server, switched off
    intro = html.unescape(await (await admin_client.get("/plex/setup")).text())
    assert "Sign in with the account that owns your server" in intro

    started = await admin_client.get("/plex/setup/start", allow_redirects=False)
    assert started.status == 303
    assert started.headers["Location"].startswith("https://app.plex.tv/auth#?")
    pin_id = max(plex.tv.pins)
    waiting = await admin_client.get("/plex/setup/check", allow_redirects=False)
    assert waiting.status == 200 and "Waiting for Plex" in await waiting.text()

    plex.tv.approve_pin(pin_id, plex.owner)
    clock.advance(3)
    checked = await admin_client.get("/plex/setup/check", allow_redirects=False)
    assert (checked.status, checked.headers["Location"]) == (303, "/plex/setup")

    page = html.unescape(await (await admin_client.get("/plex/setup")).text())
    assert plex.tv.owner is not None and plex.owner.token not in page  # no token in the page
    home, cabin = page.index("HomeServer"), page.index("Cabin")
    assert home < cabin  # the reachable server first
    assert "reachable" in page[home:cabin] and "offline" in page[cabin:]
    local = f'value="{plex.server.machine_identifier} {plex.server_url}"'
    assert f"{local}" in page and page.index(local) < page.index(REMOTE_URI)
    assert "does not answer from here" in page  # the remote address, tried and reported

    # a forged choice (not an address of that server) changes nothing
    forged = await admin_client.post(
        "/plex/setup", data={"pick": f"{plex.server.machine_identifier} http://evil.example"}
    )
    assert forged.status == 400
    assert "url" not in _config(tmp_path)["plugins"]["plex"]

    chosen = await admin_client.post(
        "/plex/setup",
        data={"pick": f"{plex.server.machine_identifier} {plex.server_url}"},
        allow_redirects=False,
    )
    assert (chosen.status, chosen.headers["Location"]) == (303, "/?connected=plex")
    section = _config(tmp_path)["plugins"]["plex"]
    assert (section["url"], section["token"]) == (plex.server_url, plex.owner.token)
    assert (await _status(admin_client))["status"] == "active"
    assert (await admin_client.get("/api/v1/plex/libraries")).status == 200


async def test_server_picker_is_for_admins_only(user_client: MediaNestClient) -> None:
    assert (await user_client.get("/plex/setup")).status == 403
    assert (await user_client.post("/plex/setup", data={"pick": "x y"})).status == 403
