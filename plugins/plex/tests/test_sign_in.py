"""Slice 2: sign in with Plex, through the assembled app against the fakes."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

from aiohttp.test_utils import TestServer
from medianest_server.plugin_api import ManualClock
from medianest_server.testing import MediaNestClient

from medianest_plex.testing import FakePlex, PlexAccount


async def start(client: MediaNestClient, plex: FakePlex) -> int:
    response = await client.get("/plex/login")
    assert response.status == 200
    text = await response.text()
    pin_id = max(plex.tv.pins)
    assert f"/plex/login/check?pin={pin_id}" in text
    # without JavaScript: a refresh polls, and the button goes to Plex and comes back
    assert '<noscript><meta http-equiv="refresh"' in text
    page = html.unescape(text)
    href = page.split('class="button" href="', 1)[1].split('"', 1)[0]
    popup = page.split('data-popup="', 1)[1].split('"', 1)[0]
    assert href.startswith("https://app.plex.tv/auth#?") and "forwardUrl=" in href
    assert popup.startswith("https://app.plex.tv/auth#?") and "forwardUrl" not in popup
    assert "<script" not in text.replace('<script type="module"', "")
    assert plex.owner.token not in text
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"
    return pin_id


async def check(client: MediaNestClient, pin_id: int, clock: ManualClock) -> Any:
    clock.advance(3)  # the endpoint asks plex.tv at most once per 2 s per PIN
    return await client.get(f"/plex/login/check?pin={pin_id}", allow_redirects=False)


async def sign_in(
    client: MediaNestClient, plex: FakePlex, clock: ManualClock, account: PlexAccount
) -> Any:
    pin_id = await start(client, plex)
    waiting = await check(client, pin_id, clock)
    assert waiting.status == 200 and "Sign in with Plex" in await waiting.text()
    plex.tv.approve_pin(pin_id, account)
    return await check(client, pin_id, clock)


async def users(admin_client: MediaNestClient) -> list[str]:
    body = await (await admin_client.get("/api/v1/admin/users")).json()
    return [u["username"] for u in body["users"]]


async def test_the_sign_in_page_offers_plex(
    anonymous_client: MediaNestClient, admin_client: MediaNestClient
) -> None:
    text = await (await anonymous_client.get("/login")).text()
    assert "Sign in with Plex" in text and "/plex/login" in text


async def test_the_owner_signs_in_and_is_admin(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    done = await sign_in(anonymous_client, plex, clock, plex.owner)
    assert done.status == 303 and done.headers["Location"] == "/"
    me = await (await anonymous_client.get("/api/v1/me")).json()
    assert (me["username"], me["role"]) == (plex.owner.username, "admin")


async def test_a_friend_signs_in_as_a_user_and_returns_to_the_same_account(
    anonymous_client: MediaNestClient,
    plex: FakePlex,
    clock: ManualClock,
    medianest_app: TestServer,
    aiohttp_client: Any,
) -> None:
    bob = plex.tv.add_friend("bob", sections=[1])
    assert (await sign_in(anonymous_client, plex, clock, bob)).status == 303
    me = await (await anonymous_client.get("/api/v1/me")).json()
    assert (me["username"], me["role"]) == ("bob", "user")

    again: MediaNestClient = await aiohttp_client(medianest_app)
    assert (await sign_in(again, plex, clock, bob)).status == 303
    assert (await (await again.get("/api/v1/me")).json())["id"] == me["id"]


async def test_a_stranger_is_refused_and_nothing_is_created(
    anonymous_client: MediaNestClient,
    admin_client: MediaNestClient,
    plex: FakePlex,
    clock: ManualClock,
) -> None:
    before = await users(admin_client)
    stranger = plex.tv.add_stranger("mallory")
    refused = await sign_in(anonymous_client, plex, clock, stranger)
    assert refused.status == 403
    assert "has no access to this Plex server" in await refused.text()
    assert (await anonymous_client.get("/api/v1/me")).status == 401
    assert await users(admin_client) == before


async def test_an_account_plex_tv_refuses_is_told_so_in_words_a_person_understands(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    friend = plex.tv.add_friend("bob")
    pin_id = await start(anonymous_client, plex)
    plex.tv.approve_pin(pin_id, friend)
    plex.tv.revoke(friend)  # plex.tv answers 401 for the token it has just given
    refused = await check(anonymous_client, pin_id, clock)
    text = html.unescape(await refused.text())
    main = text[text.index("<main") : text.index("</main>")]
    assert refused.status == 401
    assert "Plex did not accept this sign-in" in main
    assert "plex.tv did not recognise the Plex account you just signed in with" in main
    assert "/api/v2/user" not in main and "answered unexpectedly" not in main
    assert (await anonymous_client.get("/api/v1/me")).status == 401


async def expired_pin(client: MediaNestClient, plex: FakePlex) -> int:
    pin_id = await start(client, plex)
    plex.tv.expire_pin(pin_id)
    return pin_id


async def test_an_expired_pin_says_so_and_offers_to_try_again(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    pin_id = await expired_pin(anonymous_client, plex)
    expired = await check(anonymous_client, pin_id, clock)
    assert expired.status == 410
    text = await expired.text()
    assert "expired" in text and 'href="/plex/login"' in text


async def test_plex_tv_down_is_a_clear_page_not_a_500(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    pin_id = await start(anonymous_client, plex)
    await plex.stop_tv()
    down = await check(anonymous_client, pin_id, clock)
    assert down.status == 503
    assert "plex.tv cannot be reached" in await down.text()
    again = await anonymous_client.get("/plex/login")
    assert again.status == 503


async def test_nobody_can_complete_a_pin_started_in_another_browser(
    anonymous_client: MediaNestClient,
    plex: FakePlex,
    clock: ManualClock,
    medianest_app: TestServer,
    aiohttp_client: Any,
) -> None:
    pin_id = await start(anonymous_client, plex)
    plex.tv.approve_pin(pin_id, plex.owner)
    thief: MediaNestClient = await aiohttp_client(medianest_app)
    stolen = await check(thief, pin_id, clock)
    assert stolen.status == 400
    assert (await thief.get("/api/v1/me")).status == 401
    assert (await check(anonymous_client, pin_id, clock)).status == 303


async def test_polling_asks_plex_tv_gently(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    pin_id = await start(anonymous_client, plex)
    path = f"/api/v2/pins/{pin_id}"
    for _ in range(5):
        assert (await anonymous_client.get(f"/plex/login/check?pin={pin_id}")).status == 200
    assert plex.tv.requests[path] == 1


async def poll(client: MediaNestClient, pin_id: int, clock: ManualClock) -> Any:
    clock.advance(3)
    return await client.get(
        f"/plex/login/check?pin={pin_id}", headers={"Accept": "application/json"}
    )


async def test_the_page_polls_as_json_and_is_signed_in_by_the_answer(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    pin_id = await start(anonymous_client, plex)
    waiting = await poll(anonymous_client, pin_id, clock)
    assert (waiting.status, await waiting.json()) == (200, {"state": "waiting"})
    plex.tv.approve_pin(pin_id, plex.owner)
    done = await poll(anonymous_client, pin_id, clock)
    assert (done.status, await done.json()) == (200, {"state": "signed_in", "redirect": "/"})
    me = await (await anonymous_client.get("/api/v1/me")).json()
    assert me["username"] == plex.owner.username
    # a late poll (the popup's page, a second tab) finds the browser signed in
    again = await poll(anonymous_client, pin_id, clock)
    assert (await again.json())["state"] == "signed_in"


async def test_polling_reports_an_expired_pin_or_a_stranger_as_json(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    pin_id = await expired_pin(anonymous_client, plex)
    expired = await poll(anonymous_client, pin_id, clock)
    body = await expired.json()
    assert expired.status == 410
    assert body["state"] == "failed" and "expired" in body["title"]
    assert body["retry_url"] == "/plex/login"

    pin_id = await start(anonymous_client, plex)
    plex.tv.approve_pin(pin_id, plex.tv.add_stranger("mallory"))
    refused = await poll(anonymous_client, pin_id, clock)
    assert refused.status == 403
    assert "has no access to this Plex server" in (await refused.json())["message"]


async def test_plex_pages_are_in_the_site_layout(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    await sign_in(anonymous_client, plex, clock, plex.owner)
    text = await (await anonymous_client.get("/plex/")).text()
    assert "data-unread-badge" in text  # the bell
    assert 'aria-current="page"' in text and ">Library</span>" in text  # the menu
    assert "<title>Library · MediaNest</title>" in text


async def test_the_sign_in_page_starts_plex_in_a_popup_or_by_redirect(
    anonymous_client: MediaNestClient, admin_client: MediaNestClient, plex: FakePlex
) -> None:
    page = await anonymous_client.get("/login")
    assert 'data-popup-flow="/plex/login"' in await page.text()
    assert page.headers["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"

    flow = await anonymous_client.get("/plex/login", headers={"Accept": "application/json"})
    body = await flow.json()
    pin_id = max(plex.tv.pins)
    assert body["pin_id"] == pin_id and body["poll_url"] == f"/plex/login/check?pin={pin_id}"
    assert body["popup_url"].startswith("https://app.plex.tv/auth#?")
    assert "forwardUrl" not in body["popup_url"] and "forwardUrl=" in body["auth_url"]
    assert "medianest_plex_pin" in flow.cookies
    assert plex.owner.token not in await flow.text()

    redirected = await anonymous_client.get("/plex/login?redirect=1", allow_redirects=False)
    assert redirected.status == 303
    location = redirected.headers["Location"]
    assert location.startswith("https://app.plex.tv/auth#?") and "forwardUrl=" in location


async def test_plex_tv_down_when_starting_is_reported_as_json_too(
    anonymous_client: MediaNestClient, plex: FakePlex
) -> None:
    await plex.stop_tv()
    response = await anonymous_client.get("/plex/login", headers={"Accept": "application/json"})
    body = await response.json()
    assert response.status == 503
    assert body["state"] == "failed" and "plex.tv cannot be reached" in body["title"]


async def test_an_older_attempts_poll_is_told_it_was_superseded_and_spoils_nothing(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    old = await start(anonymous_client, plex)
    new = await start(anonymous_client, plex)
    stale = await poll(anonymous_client, old, clock)
    assert (stale.status, await stale.json()) == (409, {"state": "superseded"})
    assert "medianest_plex_pin" not in stale.cookies  # the newer attempt's cookie stays
    plex.tv.approve_pin(new, plex.owner)
    done = await poll(anonymous_client, new, clock)
    assert (await done.json())["state"] == "signed_in"


async def test_a_disabled_account_is_told_so_when_signing_in_with_plex(
    anonymous_client: MediaNestClient,
    admin_client: MediaNestClient,
    plex: FakePlex,
    clock: ManualClock,
    medianest_app: TestServer,
    aiohttp_client: Any,
) -> None:
    bob = plex.tv.add_friend("bob", sections=[1])
    first: MediaNestClient = await aiohttp_client(medianest_app)
    assert (await sign_in(first, plex, clock, bob)).status == 303
    bob_id = (await (await first.get("/api/v1/me")).json())["id"]
    disabled = await admin_client.patch(f"/api/v1/admin/users/{bob_id}", json={"disabled": True})
    assert disabled.status == 200, await disabled.text()
    pin_id = await start(anonymous_client, plex)
    plex.tv.approve_pin(pin_id, bob)
    refused = await poll(anonymous_client, pin_id, clock)
    body = await refused.json()
    assert refused.status == 403 and body["state"] == "failed"
    assert "disabled" in body["message"]
    assert (await anonymous_client.get("/api/v1/me")).status == 401


async def test_plex_tv_unreachable_while_polling_keeps_the_page_waiting(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    pin_id = await start(anonymous_client, plex)
    await plex.stop_tv()
    blip = await poll(anonymous_client, pin_id, clock)
    body = await blip.json()
    assert blip.status == 200 and body["state"] == "waiting"
    assert "plex.tv is not answering" in body["warning"]
    clock.advance(3)
    # the HTML check (Plex's forwardUrl, no JavaScript) says so on a page, and keeps the PIN
    page = await anonymous_client.get(f"/plex/login/check?pin={pin_id}")
    assert page.status == 503 and "plex.tv cannot be reached" in await page.text()


async def test_on_a_fresh_install_setup_offers_plex_and_the_owner_ends_it(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    """Nobody has set MediaNest up yet: the setup page offers Sign in with Plex; a friend who
    comes first is let in as a user and setup stays open; the owner becomes the admin and
    setup is over."""
    setup = await anonymous_client.get("/setup")
    assert setup.status == 200
    assert 'data-popup-flow="/plex/login"' in await setup.text()
    assert setup.headers["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"
    bob = plex.tv.add_friend("bob", sections=[1])
    assert (await sign_in(anonymous_client, plex, clock, bob)).status == 303
    assert (await anonymous_client.get("/setup")).status == 200
    assert (await sign_in(anonymous_client, plex, clock, plex.owner)).status == 303
    me = await (await anonymous_client.get("/api/v1/me")).json()
    assert me["role"] == "admin"
    assert (await anonymous_client.get("/setup")).status == 404


async def test_a_plex_name_with_accents_becomes_a_plain_username(
    anonymous_client: MediaNestClient, plex: FakePlex, clock: ManualClock
) -> None:
    friend = plex.tv.add_friend("Zoë")
    signed_in = await sign_in(anonymous_client, plex, clock, friend)
    assert signed_in.status == 303
    me = await (await anonymous_client.get("/api/v1/me")).json()
    assert me["username"] == "Zoe"


async def test_the_plex_return_address_is_built_from_base_url_not_the_host_header(
    anonymous_client: MediaNestClient, medianest_config: Any
) -> None:
    page = await anonymous_client.get("/plex/login", headers={"Host": "evil.example"})
    text = html.unescape(await page.text())
    auth = text.split('class="button" href="', 1)[1].split('"', 1)[0]
    forward = parse_qs(auth.split("#?", 1)[1])["forwardUrl"][0]
    assert forward.startswith(f"{medianest_config.server.base_url}/plex/login/check?pin=")
    assert "evil.example" not in text
