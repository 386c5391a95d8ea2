"""The credential cache: signed-in requests skip the database, and changes still hold at once.

On every instance: a revoke, disable, role change or deletion made on one instance is seen by
the next request on another (the event `core.user.changed`, over Redis). What no event reports
(a hand edit of the database) holds within the cache's `ttl`.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from medianest_server.appkeys import SERVICES
from medianest_server.clock import ManualClock
from medianest_server.usercache import DEFAULT_TTL, UserCache

from ..conftest import eventually
from .conftest import ADMIN_PASSWORD, USER_PASSWORD, MakeSite, Site, bearer, me_status

# -- the cache itself -----------------------------------------------------------------------


def test_entries_live_for_ttl_seconds_of_the_clock() -> None:
    clock = ManualClock()
    cache = UserCache(clock=clock, ttl=5)
    cache.put("k", "value", user_id=1, generation=cache.generation)
    clock.advance(4.9)
    assert cache.get("k") == "value"
    clock.advance(0.1)
    assert cache.get("k") is None
    assert len(cache) == 0


def test_forget_user_drops_only_that_users_entries() -> None:
    cache = UserCache(clock=ManualClock())
    for key, user in (("a1", 1), ("a2", 1), ("b", 2)):
        cache.put(key, key, user_id=user, generation=cache.generation)
    cache.forget_user(1)
    assert (cache.get("a1"), cache.get("a2"), cache.get("b")) == (None, None, "b")


def test_a_lookup_that_started_before_a_change_does_not_put_its_stale_answer_back() -> None:
    cache = UserCache(clock=ManualClock())
    before = cache.generation
    cache.forget_user(7)  # the change lands while the lookup is at the database
    cache.put("session", "stale", user_id=7, generation=before)
    assert cache.get("session") is None
    cache.put("session", "fresh", user_id=7, generation=cache.generation)
    assert cache.get("session") == "fresh"


def test_the_oldest_entry_goes_when_the_cache_is_full() -> None:
    cache = UserCache(clock=ManualClock(), max_entries=2)
    for key in ("one", "two", "three"):
        cache.put(key, key, user_id=1, generation=cache.generation)
    assert (cache.get("one"), cache.get("two"), cache.get("three")) == (None, "two", "three")


def test_ttl_zero_keeps_nothing_and_bad_sizes_are_refused() -> None:
    cache = UserCache(clock=ManualClock(), ttl=0)
    cache.put("k", "v", user_id=1, generation=cache.generation)
    assert cache.get("k") is None
    with pytest.raises(ValueError, match="max_entries"):
        UserCache(max_entries=0)


async def test_changed_still_forgets_locally_when_telling_others_fails() -> None:
    async def broken(user_id: int) -> None:
        raise ConnectionError("redis is down")

    cache = UserCache(clock=ManualClock(), publish=broken)
    cache.put("k", "v", user_id=3, generation=cache.generation)
    await cache.changed(3)
    assert cache.get("k") is None


# -- through the app, on each database ------------------------------------------------------


async def test_a_hand_edit_of_the_database_holds_within_the_ttl(
    make_site: MakeSite, redis_url: str
) -> None:
    """Proves the cache is in the path (the edit is not seen at once) and bounded (it is
    seen once `ttl` has passed), for the cookie, an API token and a JWT alike. (With Redis, so
    that PostgreSQL caches too.)"""
    site = await make_site(redis={"url": redis_url})
    alice = await site.create_user("alice")
    browser = await site.sign_in("alice", USER_PASSWORD)
    raw, _ = await site.auth.api_tokens.create(alice.id, "script")
    access = (await site.tokens("alice", USER_PASSWORD))["access_token"]
    api = await site.browser()
    for headers in (None, bearer(raw), bearer(access)):
        client = browser if headers is None else api
        assert await me_status(client, headers) == 200

    await site.db.execute("UPDATE users SET disabled = true WHERE id = :id", {"id": alice.id})
    assert await me_status(browser) == 200  # served from the cache
    site.clock.advance(DEFAULT_TTL)
    assert await me_status(browser) == 401
    assert await me_status(api, bearer(raw)) == 401
    assert await me_status(api, bearer(access)) == 401


async def test_changes_made_through_the_app_hold_at_once_despite_the_cache(site: Site) -> None:
    admin, admin_browser = await site.admin()

    alice = await site.create_user("alice")
    browser = await site.sign_in("alice", USER_PASSWORD)
    raw, _ = await site.auth.api_tokens.create(alice.id, "script")
    api = await site.browser()
    assert await me_status(browser) == 200
    assert await me_status(api, bearer(raw)) == 200

    await site.auth.users.update(admin, alice.id, role="admin")
    me = await (await browser.get("/api/v1/me")).json()
    assert me["role"] == "admin"  # the cached user is not served stale
    await site.auth.users.update(admin, alice.id, disabled=True)
    assert await me_status(browser) == 401
    assert await me_status(api, bearer(raw)) == 401
    assert await me_status(admin_browser) == 200  # and nobody else was affected


async def test_the_last_seen_time_is_still_written_while_cached(site: Site) -> None:
    await site.create_user("alice")
    site.app[SERVICES].users.ttl = 3600  # still cached when the minute has passed
    browser = await site.sign_in("alice", USER_PASSWORD)
    assert await me_status(browser) == 200
    assert len(site.app[SERVICES].users) >= 1
    seen = await site.db.fetch_val("SELECT last_seen_at FROM sessions")
    site.clock.advance(61)
    assert await me_status(browser) == 200
    later = await site.db.fetch_val("SELECT last_seen_at FROM sessions")
    assert (later - seen).total_seconds() == pytest.approx(61, abs=1)


async def test_an_idle_session_ends_even_while_cached(make_site: MakeSite) -> None:
    site = await make_site(auth={"session_idle_days": 1})
    site.app[SERVICES].users.ttl = 2 * 86_400  # still cached when the day has passed
    await site.create_user("alice")
    browser = await site.sign_in("alice", USER_PASSWORD)
    assert await me_status(browser) == 200
    site.clock.advance(86_400)
    assert await me_status(browser) == 401


# -- across instances -----------------------------------------------------------------------


async def test_a_change_on_one_instance_holds_on_the_other_at_once(
    make_site: MakeSite, redis_url: str
) -> None:
    """Two instances on one database and one Redis: each has the credentials cached; a
    revoke or a disable on the first ends them on the second, with neither clock moving (so
    not by the ttl)."""
    shared = {"redis": {"url": redis_url}}
    first, second = await make_site(**shared), await make_site(**shared)
    suffix = uuid.uuid4().hex[:8]
    admin = await first.create_user(f"admin-{suffix}", password=ADMIN_PASSWORD, role="admin")
    alice = await first.create_user(f"alice-{suffix}")
    on_second = await second.sign_in(f"alice-{suffix}", USER_PASSWORD)
    raw, _ = await first.auth.api_tokens.create(alice.id, "script")
    api = await second.browser()
    assert await me_status(on_second) == 200
    assert await me_status(api, bearer(raw)) == 200

    tokens = await first.auth.api_tokens.list_for_user(alice.id)
    await first.auth.api_tokens.revoke(tokens[0].id, user_id=alice.id)

    async def token_refused() -> bool:
        return await me_status(api, bearer(raw)) == 401

    await eventually(token_refused)
    assert await me_status(on_second) == 200  # the session was not touched

    await first.auth.users.update(admin, alice.id, disabled=True)

    async def session_refused() -> bool:
        return await me_status(on_second) == 401

    await eventually(session_refused)


async def test_unread_counts_and_preferences_follow_changes_on_another_instance(
    make_site: MakeSite, redis_url: str
) -> None:
    shared = {"redis": {"url": redis_url}}
    first, second = await make_site(**shared), await make_site(**shared)
    alice = await first.create_user(f"alice-{uuid.uuid4().hex[:8]}")
    browser = await second.sign_in(alice.username, USER_PASSWORD)

    async def unread() -> int:
        count: int = (await (await browser.get("/api/v1/notifications")).json())["unread"]
        return count

    assert await unread() == 0  # now cached on the second instance
    await first.app[SERVICES].notifications.create(user_id=alice.id, type="test", title="hi")

    async def one_unread() -> bool:
        return await unread() == 1

    await eventually(one_unread)
    assert await second.auth.preferences.get(alice.id) == {}
    await first.auth.preferences.update(alice.id, theme="light")

    async def light() -> bool:
        return (await second.auth.preferences.get(alice.id)).get("theme") == "light"

    await eventually(light)


async def test_reading_a_notification_updates_the_cached_count_at_once(site: Site) -> None:
    alice = await site.create_user("alice")
    browser = await site.sign_in("alice", USER_PASSWORD)
    notifications = site.app[SERVICES].notifications
    first = await notifications.create(user_id=alice.id, type="test", title="one")
    await notifications.create(user_id=alice.id, type="test", title="two")
    assert await notifications.unread(alice.id) == 2
    assert (await (await browser.get("/api/v1/notifications")).json())["unread"] == 2
    assert await notifications.mark_read(alice.id, first) == 1
    assert (await (await browser.get("/api/v1/notifications")).json())["unread"] == 1
    assert await notifications.mark_read(alice.id, None) == 1
    assert await notifications.unread(alice.id) == 0


async def test_a_touch_that_was_under_way_during_a_demotion_does_not_restore_the_old_role(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that read Alice as admin is writing her last_seen when she is demoted and
    another request reads her afresh; when the first one finishes, the cache keeps `user`."""
    admin, _ = await site.admin()
    alice = await site.create_user("alice", role="admin")
    browser = await site.sign_in("alice", USER_PASSWORD)
    assert (await (await browser.get("/api/v1/me")).json())["role"] == "admin"
    sessions = site.auth.sessions
    [session] = await sessions.list_for_user(alice.id)
    site.app[SERVICES].users.ttl = 3600  # the entry stays while the clock passes the touch
    site.clock.advance(61)
    real_execute, touching, release = sessions.db.execute, asyncio.Event(), asyncio.Event()

    async def paused_touch(sql: str, params: object = None) -> int:
        if sql.startswith("UPDATE sessions SET last_seen_at") and not touching.is_set():
            touching.set()
            await release.wait()
        return await real_execute(sql, params)  # type: ignore[arg-type]

    monkeypatch.setattr(sessions.db, "execute", paused_touch)
    stale = asyncio.create_task(sessions.resolve(session.id))  # read as admin, now touching
    await touching.wait()
    await site.auth.users.update(admin, alice.id, role="user")
    fresh = await sessions.resolve(session.id)
    assert fresh is not None and fresh[1].role == "user"
    release.set()
    await stale
    assert (await (await browser.get("/api/v1/me")).json())["role"] == "user"


async def test_nothing_is_cached_on_postgresql_without_redis(
    make_site: MakeSite, database_url: str
) -> None:
    """Instances sharing PostgreSQL without Redis cannot tell each other of a revoke: a hand
    edit (standing for another instance's change) must be seen by the very next request."""
    site = await make_site()
    cache = site.app[SERVICES].users
    await site.create_user("alice")
    browser = await site.sign_in("alice", USER_PASSWORD)
    assert await me_status(browser) == 200
    await site.db.execute("UPDATE users SET disabled = true WHERE username = 'alice'")
    if database_url.startswith("postgresql"):
        assert cache.ttl == 0 and len(cache) == 0
        assert await me_status(browser) == 401
    else:
        assert cache.ttl == DEFAULT_TTL
        assert await me_status(browser) == 200
