"""The web interface as a signed-in person uses it, without JavaScript: plain forms and links."""

from __future__ import annotations

import importlib
import re
import tomllib

from medianest_server.appkeys import SERVICES
from medianest_server.plugins.loader import Candidate

from ..auth.conftest import MakeSite, hidden_csrf


def sample(name: str) -> Candidate:
    return Candidate(name, lambda: importlib.import_module(f"tests.sample_plugins.{name}"))


WIDGET_PLUGINS = [sample("good"), sample("bad_widget"), sample("hanging_health")]


def widget_keys(page: str) -> list[str]:
    return re.findall(r'data-widget-key="([^"]+)"', page)


async def test_dashboard_renders_each_widget_alone_and_failures_as_cards(
    make_site: MakeSite,
) -> None:
    site = await make_site(plugins=WIDGET_PLUGINS)
    _, client = await site.user("alice")
    response = await client.get("/")
    assert response.status == 200
    page = await response.text()
    assert "Hello alice" in page  # the good plugin's widget, through its namespaced template
    # people read plain words; the exception is for admins (and the log)
    assert "This card cannot be shown right now." in page and "RuntimeError" not in page
    assert widget_keys(page) == ["good:greeting", "good:second", "bad_widget:broken"]
    _, admin = await site.admin()
    admin_page = await (await admin.get("/")).text()
    assert "The bad_widget plugin could not show this: RuntimeError: widget data exploded" in (
        admin_page
    )
    assert 'data-refresh-on="other.thing.happened"' in page
    # the plugins' nav items: good's entry is there, bad_widget's hook raised and is left out
    assert 'href="/good/"' in page


async def test_widget_order_is_the_users_own_and_survives_reload(make_site: MakeSite) -> None:
    site = await make_site(plugins=WIDGET_PLUGINS)
    _, alice = await site.user("alice")
    _, bob = await site.user("bob")
    page = await (await alice.get("/")).text()
    moved = await alice.post(
        "/dashboard/move",
        data={"csrf_token": hidden_csrf(page), "key": "good:greeting", "direction": "down"},
        allow_redirects=False,
    )
    assert moved.status == 303
    assert widget_keys(await (await alice.get("/")).text())[:2] == ["good:second", "good:greeting"]
    assert widget_keys(await (await bob.get("/")).text())[:2] == ["good:greeting", "good:second"]

    csrf = (await (await alice.get("/api/v1/me")).json())["csrf_token"]
    saved = await alice.put(
        "/api/v1/me/dashboard",
        json={"order": ["bad_widget:broken", "good:greeting", "good:second"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert saved.status == 200
    assert widget_keys(await (await alice.get("/")).text()) == [
        "bad_widget:broken",
        "good:greeting",
        "good:second",
    ]


async def test_widget_fragment_for_live_refresh(make_site: MakeSite) -> None:
    site = await make_site(plugins=WIDGET_PLUGINS)
    _, client = await site.user("alice")
    fragment = await client.get("/dashboard/widgets/good/greeting")
    assert fragment.status == 200
    text = await fragment.text()
    assert 'data-widget="good/greeting"' in text and "<html" not in text
    assert (await client.get("/dashboard/widgets/good/nope")).status == 404


async def test_admin_without_plugins_sees_the_onboarding_card(make_site: MakeSite) -> None:
    site = await make_site()
    _, admin = await site.admin()
    page = await (await admin.get("/")).text()
    assert "Connect your services" in page and "No service plugins are installed" in page
    _, user = await site.user("alice")
    assert "Connect your services" not in await (await user.get("/")).text()


async def test_search_groups_results_by_plugin_and_shows_failures(make_site: MakeSite) -> None:
    site = await make_site(plugins=WIDGET_PLUGINS)
    _, client = await site.user("alice")
    page = await (await client.get("/search", params={"q": "dune"})).text()
    assert "dune result" in page
    assert "This source could not answer: RuntimeError: search exploded" in page
    assert "took longer than 3 s" in page  # hanging_health's search hook never answers
    api = await (await client.get("/api/v1/search", params={"q": "dune"})).json()
    titles = {g["title"]: g for g in api["groups"]}
    assert titles["Good"]["results"][0]["title"] == "dune result"


async def test_notifications_bell_list_and_mark_read(make_site: MakeSite) -> None:
    site = await make_site()
    alice, client = await site.user("alice")
    services = site.app[SERVICES]
    for title in ("Dune is available", "Download finished"):
        await services.notifications.create(
            user_id=alice.id,
            type="test",
            title=title,
            link="/somewhere",
        )
    page = await (await client.get("/notifications")).text()
    assert "Notifications, 2 unread" in page
    assert "Dune is available" in page and 'href="/somewhere"' in page
    marked = await client.post(
        "/notifications/read-all", data={"csrf_token": hidden_csrf(page)}, allow_redirects=False
    )
    assert marked.status == 303
    assert "Notifications, 0 unread" in await (await client.get("/notifications")).text()


async def test_profile_theme_devices_and_a_token_shown_once(make_site: MakeSite) -> None:
    site = await make_site()
    _, client = await site.user("alice")
    page = await (await client.get("/profile")).text()
    assert 'data-theme="dark"' in page and "this device" in page
    csrf = hidden_csrf(page)
    await client.post("/profile/theme", data={"csrf_token": csrf, "theme": "light"})
    assert 'data-theme="light"' in await (await client.get("/profile")).text()

    created = await (
        await client.post("/profile/tokens", data={"csrf_token": csrf, "name": "Home"})
    ).text()
    token = re.search(r'value="(mn_[^"]+)"', created)
    assert token is not None
    again = await (await client.get("/profile")).text()
    assert token.group(1) not in again and "Home" in again


async def test_admin_pages_users_audit_health(make_site: MakeSite) -> None:
    site = await make_site(plugins=[sample("good")])
    admin_user, admin = await site.admin()
    alice, _ = await site.user("alice")
    users = await (await admin.get("/admin/users", params={"q": "ali"})).text()
    assert "alice" in users and "admin" not in re.findall(r"<strong>([^<]+)</strong>", users)
    csrf = hidden_csrf(users)
    refused = await admin.post(
        f"/admin/users/{admin_user.id}/role", data={"csrf_token": csrf, "role": "user"}
    )
    assert refused.status == 403
    assert "you cannot demote or disable yourself" in await refused.text()
    promoted = await admin.post(
        f"/admin/users/{alice.id}/role", data={"csrf_token": csrf, "role": "admin"}
    )
    assert "alice is now admin." in await promoted.text()
    audit = await (await admin.get("/admin/audit", params={"action": "user.role"})).text()
    assert "<code>user.role.changed</code>" in audit
    assert "<code>auth.login.succeeded</code>" not in audit  # filtered out
    health = await (await admin.get("/admin/health")).text()
    assert "upstream" in health and "database" in health


async def test_plugin_settings_form_masks_secrets_and_saves_atomically(
    make_site: MakeSite,
) -> None:
    site = await make_site(plugins=[sample("good")])
    config_path = site.app[SERVICES].config.path
    assert config_path is not None
    _, admin = await site.admin()
    page = await (await admin.get("/admin/plugins")).text()
    assert 'name="greeting"' in page and 'value="hello"' in page
    assert 'name="api_key" type="password"' in page
    csrf = hidden_csrf(page)

    saved = await admin.post(
        "/admin/plugins/good/settings",
        data={
            "csrf_token": csrf,
            "greeting": "hi all",
            "api_key": "s3cret-value-987",
            "poll_interval_seconds": "5",
        },
    )
    text = await saved.text()
    assert saved.status == 200 and "Saved. Good is connected and running" in text
    assert "s3cret-value-987" not in text  # never sent back
    document = tomllib.loads(config_path.read_text())
    assert document["plugins"]["good"] == {
        "greeting": "hi all",
        "api_key": "s3cret-value-987",
        "poll_interval_seconds": 5.0,
    }
    assert config_path.with_name("medianest.toml.bak").exists()
    # applied at once: the plugin was stopped and started again on the new values
    good = importlib.import_module("tests.sample_plugins.good")
    assert good.started[-1] == "hi all" and good.stopped[-1] == "good"

    before = config_path.read_text()
    bad = await admin.post(
        "/admin/plugins/good/settings",
        data={"csrf_token": csrf, "greeting": "x", "poll_interval_seconds": "soon"},
    )
    assert bad.status == 400
    assert "Not a valid number." in await bad.text()
    assert config_path.read_text() == before  # nothing written

    kept = await admin.post(
        "/admin/plugins/good/settings",
        data={"csrf_token": csrf, "greeting": "again", "api_key": "", "poll_interval_seconds": "5"},
    )
    assert kept.status == 200
    assert (
        tomllib.loads(config_path.read_text())["plugins"]["good"]["api_key"] == "s3cret-value-987"
    )

    tested = await (await admin.post("/admin/plugins/good/test", data={"csrf_token": csrf})).text()
    assert "upstream" in tested and "all good" in tested

    await admin.post("/admin/plugins/good/enabled", data={"csrf_token": csrf, "enabled": "false"})
    assert tomllib.loads(config_path.read_text())["plugins"]["disabled"] == ["good"]


async def test_error_pages_are_styled_and_carry_the_request_id(make_site: MakeSite) -> None:
    site = await make_site()
    _, client = await site.user("alice")
    forbidden = await client.get("/admin/users", headers={"X-Request-ID": "req-403"})
    assert forbidden.status == 403
    text = await forbidden.text()
    assert "req-403" in text and "medianest.css" in text
    missing = await client.get("/no/such/page", headers={"X-Request-ID": "req-404"})
    assert missing.status == 404 and "req-404" in await missing.text()


async def test_admins_see_each_plugins_webhook_address_with_its_secret(
    make_site: MakeSite,
) -> None:
    from medianest_server.web.webhooks import webhook_secret

    site = await make_site(plugins=[sample("hooks_demo")])
    _, admin = await site.admin()
    page = await (await admin.get("/admin/plugins")).text()
    secret = webhook_secret(site.app, "hooks_demo", "ping")
    assert f"/api/v1/webhooks/hooks_demo/ping/{secret}" in page
    _, user = await site.user("alice")
    assert secret not in await (await user.get("/admin/plugins")).text()


async def test_a_new_local_account_is_a_user_unless_the_admin_says_otherwise(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    _, admin = await site.admin()
    page = await (await admin.get("/admin/users")).text()
    new_role = page[page.index('id="new-role"') :]
    new_role = new_role[: new_role.index("</select>")]
    assert '<option value="user" selected>' in new_role
    assert '<option value="admin">' in new_role
