"""What a person notices about the pages before using them: devices named in words, a favicon,
error pages inside the site's layout, icons drawn as SVG, the theme switch in the top bar."""

from __future__ import annotations

import re

from ..auth.conftest import USER_PASSWORD, MakeSite, hidden_csrf
from .test_devices import CHROME_LINUX, FIREFOX_ANDROID


async def test_the_profile_lists_devices_in_words_with_the_raw_string_kept(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    await site.create_user("alice")
    phone = await site.sign_in("alice", USER_PASSWORD, headers={"User-Agent": FIREFOX_ANDROID})
    assert phone is not None
    laptop = await site.sign_in("alice", USER_PASSWORD, headers={"User-Agent": CHROME_LINUX})
    page = await (await laptop.get("/profile", headers={"User-Agent": CHROME_LINUX})).text()
    assert "Chrome on Linux" in page and "Firefox on Android" in page
    assert f'title="{FIREFOX_ANDROID}"' in page  # the raw string, for whoever wants it
    assert ">Mozilla/5.0" not in page  # never shown as the name
    # the API tokens section says where the API is described
    assert 'href="/api/docs"' in page


async def test_the_favicon_is_linked_and_favicon_ico_answers(make_site: MakeSite) -> None:
    site = await make_site()
    _, client = await site.user("alice")
    page = await (await client.get("/")).text()
    link = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)">', page)
    assert link is not None
    icon = await client.get(link.group(1))
    assert icon.status == 200 and icon.content_type == "image/svg+xml"
    assert (await icon.text()).lstrip().startswith("<svg")
    anonymous = await site.browser()
    ico = await anonymous.get("/favicon.ico")
    assert ico.status == 200 and ico.content_type == "image/svg+xml"


async def test_error_pages_sit_in_the_layout_with_the_menu_for_signed_in_people(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    _, alice = await site.user("alice")
    missing = await alice.get("/no/such/page", headers={"Referer": "http://elsewhere.example/"})
    page = await missing.text()
    assert missing.status == 404
    assert 'nav class="sidebar"' in page and 'href="/notifications"' in page  # the menu
    assert 'href="/profile"' in page and "Sign out" in page  # the user menu
    assert "Page not found" in page and "There is nothing at this address" in page
    assert "Back to MediaNest" in page and 'href="/"' in page
    assert "Go back" not in page  # the referer was another site

    forbidden = await alice.get(
        "/admin/users", headers={"Referer": str(alice.make_url("/notifications"))}
    )
    page = await forbidden.text()
    assert forbidden.status == 403 and 'nav class="sidebar"' in page
    assert "You cannot open this page" in page and "Only admins may do this." in page
    assert 'href="/notifications">' in page and "Go back" in page

    anonymous = await site.browser()
    missing = await anonymous.get("/no/such/page")
    page = await missing.text()
    assert missing.status == 404 and "Page not found" in page and "medianest.css" in page
    assert 'nav class="sidebar"' not in page and "Sign out" not in page
    assert 'href="/login"' in page  # the way in instead of the user menu


async def test_other_errors_are_in_plain_words_too(make_site: MakeSite) -> None:
    site = await make_site()
    _, alice = await site.user("alice")
    broken = await alice.get("/profile/sessions/x/revoke")  # GET on a POST-only route
    assert broken.status == 405
    text = await broken.text()
    assert "This address does not take that kind of request." in text
    assert 'nav class="sidebar"' in text


async def test_icons_are_inline_svg_and_no_glyphs_are_left(make_site: MakeSite) -> None:
    site = await make_site()
    _, admin = await site.admin()
    page = await (await admin.get("/profile")).text()
    nav = page[page.index('<nav class="sidebar"') : page.index("</nav>")]
    assert nav.count("<svg") == nav.count("<li>") >= 4
    assert 'aria-hidden="true"' in nav and 'stroke="currentColor"' in nav
    css = await (await admin.get("/static/medianest.css")).text()
    assert 'content: "⌂"' not in css and "icon-home" not in css


async def test_the_theme_button_switches_and_comes_back_to_the_same_page(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    _, alice = await site.user("alice")
    page = await (await alice.get("/notifications")).text()
    assert 'aria-label="Use the light theme"' in page
    switched = await alice.post(
        "/profile/theme",
        data={"csrf_token": hidden_csrf(page), "theme": "light", "next": "/notifications"},
        allow_redirects=False,
    )
    assert switched.status == 303 and switched.headers["Location"] == "/notifications"
    page = await (await alice.get("/notifications")).text()
    assert 'data-theme="light"' in page and 'aria-label="Use the dark theme"' in page
    elsewhere = await alice.post(
        "/profile/theme",
        data={"csrf_token": hidden_csrf(page), "theme": "dark", "next": "//evil.example/"},
        allow_redirects=False,
    )
    assert elsewhere.status == 400


async def test_an_icon_name_nobody_drew_falls_back_to_a_dot(make_site: MakeSite) -> None:
    import aiohttp_jinja2

    site = await make_site()
    env = aiohttp_jinja2.get_env(site.app)
    dot = str(env.globals["icon"]("dot"))
    assert str(env.globals["icon"]("a-plugins-own-icon")) == dot
    for name in ("home", "film", "library", "download", "status", "request", "bell", "user"):
        drawn = str(env.globals["icon"](name))
        assert drawn != dot and drawn.startswith("<svg") and 'aria-hidden="true"' in drawn
