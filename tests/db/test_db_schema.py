"""The core schema (migrations/core) as the auth, jobs and audit stores will use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from medianest_server.db import Database, IntegrityError

NOW = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)


async def add_user(db: Database, username: str) -> int:
    user_id: int = await db.fetch_val(
        "INSERT INTO users (username, created_at, updated_at) "
        "VALUES (:username, :now, :now) RETURNING id",
        {"username": username, "now": NOW},
    )
    return user_id


async def test_a_new_user_gets_the_defaults(db: Database) -> None:
    user_id = await add_user(db, "alice")
    user = await db.fetch_one("SELECT * FROM users WHERE id = :id", {"id": user_id})
    assert user is not None
    assert user["role"] == "user"
    assert user["disabled"] is False
    assert user["preferences"] == {}
    assert user["password_hash"] is None and user["last_login_at"] is None
    assert user["created_at"] == NOW


async def test_usernames_are_unique_ignoring_case(db: Database) -> None:
    await add_user(db, "Alice")
    with pytest.raises(IntegrityError):
        await add_user(db, "aLICE")
    await add_user(db, "alice2")
    assert await db.fetch_val("SELECT count(*) FROM users") == 2


async def test_roles_and_session_kinds_are_checked(db: Database) -> None:
    with pytest.raises(IntegrityError):
        await db.execute(
            "INSERT INTO users (username, role, created_at, updated_at) "
            "VALUES ('root', 'superuser', :now, :now)",
            {"now": NOW},
        )
    user_id = await add_user(db, "bob")
    with pytest.raises(IntegrityError):
        await db.execute(
            "INSERT INTO sessions (id, user_id, kind, created_at, last_seen_at, expires_at, "
            "idle_expires_at) VALUES ('s', :user_id, 'tv', :now, :now, :now, :now)",
            {"user_id": user_id, "now": NOW},
        )


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        await db.execute(
            "INSERT INTO identities (user_id, provider, subject, created_at, updated_at) "
            "VALUES (12345, 'plex', '1', :now, :now)",
            {"now": NOW},
        )


async def test_one_external_account_links_to_one_user(db: Database) -> None:
    alice, bob = await add_user(db, "alice"), await add_user(db, "bob")
    insert = (
        "INSERT INTO identities (user_id, provider, subject, created_at, updated_at) "
        "VALUES (:user_id, 'plex', '42', :now, :now)"
    )
    await db.execute(insert, {"user_id": alice, "now": NOW})
    with pytest.raises(IntegrityError):
        await db.execute(insert, {"user_id": bob, "now": NOW})


async def test_deleting_a_user_leaves_nothing_behind_but_the_audit_trail(db: Database) -> None:
    user_id = await add_user(db, "carol")
    keep_id = await add_user(db, "dave")
    later = NOW + timedelta(days=30)
    for owner in (user_id, keep_id):
        values = {"user_id": owner, "now": NOW, "later": later, "sid": f"{owner:064x}"}
        await db.execute_many(
            "INSERT INTO identities (user_id, provider, subject, data, created_at, updated_at) "
            "VALUES (:user_id, 'plex', :sid, :data, :now, :now)",
            [values | {"data": {"token_scope": "all"}}],
        )
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO sessions (id, user_id, kind, created_at, last_seen_at, expires_at, "
                "idle_expires_at, ip, user_agent) VALUES (:sid, :user_id, 'browser', :now, :now, "
                ":later, :later, '127.0.0.1', 'Firefox')",
                values,
            )
            await tx.execute(
                "INSERT INTO api_tokens (user_id, name, token_hash, token_prefix, created_at) "
                "VALUES (:user_id, 'cli', :sid, 'mn_1234', :now)",
                values,
            )
            await tx.execute(
                "INSERT INTO notifications (user_id, type, title, created_at) "
                "VALUES (:user_id, 'request.available', 'Dune is available', :now)",
                values,
            )
            await tx.execute(
                "INSERT INTO jobs (queue, kind, payload, run_after, user_id, created_at, "
                "updated_at) VALUES ('downloads', 'youtube', :payload, :now, :user_id, :now, :now)",
                values | {"payload": {"url": "http://127.0.0.1/v"}},
            )
            await tx.execute(
                "INSERT INTO audit_log (at, actor_user_id, actor_name, action, details) "
                "VALUES (:now, :user_id, :name, 'user.login', :details)",
                values | {"name": f"user{owner}", "details": {"ok": True}},
            )
    await db.execute(
        "INSERT INTO settings (key, value, updated_at, updated_by) "
        "VALUES ('theme', :value, :now, :user_id)",
        {"value": {"name": "dark"}, "now": NOW, "user_id": user_id},
    )

    assert await db.execute("DELETE FROM users WHERE id = :id", {"id": user_id}) == 1

    for table in ("identities", "sessions", "api_tokens", "notifications", "jobs"):
        owners = await db.fetch_all(f"SELECT user_id FROM {table}")
        assert owners == [{"user_id": keep_id}], table
    audit = await db.fetch_all(
        "SELECT actor_user_id, actor_name, details FROM audit_log ORDER BY id"
    )
    assert audit == [
        {"actor_user_id": None, "actor_name": f"user{user_id}", "details": {"ok": True}},
        {"actor_user_id": keep_id, "actor_name": f"user{keep_id}", "details": {"ok": True}},
    ]
    setting = await db.fetch_one("SELECT value, updated_by FROM settings WHERE key = 'theme'")
    assert setting == {"value": {"name": "dark"}, "updated_by": None}
