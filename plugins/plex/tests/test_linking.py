"""Linked identities: a signed-in person links their Plex account from the profile (the Plex
sign-in run while signed in links instead of signing in), a plugin finds it with
`ctx.identity`, and it is unlinked while another way to sign in remains."""

from __future__ import annotations

import html
from typing import Any

from aiohttp.test_utils import TestServer
from medianest_server.appkeys import PLUGINS
from medianest_server.plugin_api import ManualClock
from medianest_server.testing import MediaNestClient

from medianest_plex.testing import FakePlex, sign_in_with_plex


async def test_a_local_user_links_plex_from_the_profile_and_plugins_find_it(
    user_client: MediaNestClient, plex: FakePlex, clock: ManualClock, medianest_app: TestServer
) -> None:
    assert user_client.user is not None
    profile = html.unescape(await (await user_client.get("/profile")).text())
    assert 'href="/plex/login"' in profile and "Link Plex" in profile
    bob = plex.tv.add_friend("bob", sections=[1])
    linked = await sign_in_with_plex(user_client, plex, clock, bob)
    assert (linked.status, linked.headers["Location"]) == (303, "/profile")
    me = await (await user_client.get("/api/v1/me")).json()
    assert me["id"] == user_client.user.id  # still the same person, not a new Plex user
    ctx = medianest_app.app[PLUGINS].records["plex"].ctx
    assert ctx is not None
    identity = await ctx.identity(user_client.user.id, "plex")
    assert identity is not None
    assert (identity.provider, identity.subject, identity.username) == ("plex", str(bob.id), "bob")
    listed = (await (await user_client.get("/api/v1/me/identities")).json())["identities"]
    assert [(i["provider"], i["subject"]) for i in listed] == [("plex", str(bob.id))]
    assert "secret" not in str(listed)
    # the library now uses bob's own share
    libraries = (await (await user_client.get("/api/v1/plex/libraries")).json())["libraries"]
    assert [s["key"] for s in libraries] == ["1"]


async def test_a_plex_account_linked_to_someone_else_is_not_linked_again(
    user_client: MediaNestClient,
    plex: FakePlex,
    clock: ManualClock,
    aiohttp_client: Any,
    medianest_app: TestServer,
) -> None:
    bob = plex.tv.add_friend("bob", sections=[1])
    other: MediaNestClient = await aiohttp_client(medianest_app)
    assert (await sign_in_with_plex(other, plex, clock, bob)).status == 303  # bob's own user
    refused = await sign_in_with_plex(user_client, plex, clock, bob)
    assert refused.status == 409
    assert "linked to another MediaNest user" in html.unescape(await refused.text())


async def test_unlinking_needs_another_way_to_sign_in(
    user_client: MediaNestClient,
    plex: FakePlex,
    clock: ManualClock,
    aiohttp_client: Any,
    medianest_app: TestServer,
) -> None:
    # a Plex-only user: their one linked account is their only way in
    carol = plex.tv.add_friend("carol", sections=[1])
    browser: MediaNestClient = await aiohttp_client(medianest_app)
    assert (await sign_in_with_plex(browser, plex, clock, carol)).status == 303
    (only,) = (await (await browser.get("/api/v1/me/identities")).json())["identities"]
    csrf = (await (await browser.get("/api/v1/me")).json())["csrf_token"]
    kept = await browser.delete(
        f"/api/v1/me/identities/{only['id']}", headers={"X-CSRF-Token": csrf}
    )
    assert kept.status == 409
    assert "only way to sign in" in (await kept.json())["error"]["message"]
    # a user with a password may unlink
    dave = plex.tv.add_friend("dave", sections=[1])
    await sign_in_with_plex(user_client, plex, clock, dave)
    (linked,) = (await (await user_client.get("/api/v1/me/identities")).json())["identities"]
    assert (await user_client.delete(f"/api/v1/me/identities/{linked['id']}")).status == 200
    assert (await (await user_client.get("/api/v1/me/identities")).json())["identities"] == []
    # and someone else's is not theirs to unlink
    assert (await user_client.delete(f"/api/v1/me/identities/{only['id']}")).status == 404
