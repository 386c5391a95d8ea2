"""What admins do to other people's accounts, with its audit line: one place for API and pages."""

from __future__ import annotations

from .models import Role, User
from .services import AuthServices
from .users import UserDetails


async def create_user(
    auth: AuthServices,
    actor: User,
    username: str,
    password: str,
    *,
    role: Role = "user",
    display_name: str | None = None,
    email: str | None = None,
    ip: str | None,
) -> UserDetails:
    user = await auth.users.create(
        username, password=password, role=role, display_name=display_name, email=email
    )
    await auth.audit.record(
        "user.created",
        actor=actor,
        ip=ip,
        target_type="user",
        target_id=user.id,
        details={"username": user.username, "role": user.role},
    )
    return await auth.users.details(user.id)


async def update_user(
    auth: AuthServices,
    actor: User,
    user_id: int,
    *,
    role: Role | None = None,
    disabled: bool | None = None,
    ip: str | None,
) -> UserDetails:
    """Change role and/or disabled; disabling ends every session and API token of that user
    at once."""
    before = await auth.users.details(user_id)
    user = await auth.users.update(actor, user_id, role=role, disabled=disabled)
    if user.role != before.user.role:
        await auth.audit.record(
            "user.role.changed",
            actor=actor,
            ip=ip,
            target_type="user",
            target_id=user_id,
            details={"from": before.user.role, "to": user.role},
        )
    if user.disabled != before.user.disabled:
        await auth.audit.record(
            "user.disabled" if user.disabled else "user.enabled",
            actor=actor,
            ip=ip,
            target_type="user",
            target_id=user_id,
        )
        if user.disabled:  # every way in ends: sessions and personal API tokens
            await auth.sessions.revoke_all(user_id)
            await auth.api_tokens.revoke_all(user_id)
    return await auth.users.details(user_id)


async def delete_user(auth: AuthServices, actor: User, user_id: int, *, ip: str | None) -> User:
    removed = await auth.users.delete(actor, user_id)
    await auth.audit.record(
        "user.deleted",
        actor=actor,
        ip=ip,
        target_type="user",
        target_id=user_id,
        details={"username": removed.username},
    )
    return removed


async def revoke_user_sessions(
    auth: AuthServices, actor: User, user_id: int, *, ip: str | None
) -> int:
    await auth.users.details(user_id)  # NotFound for an unknown user
    ended = await auth.sessions.revoke_all(user_id)
    await auth.audit.record(
        "user.sessions.revoked",
        actor=actor,
        ip=ip,
        target_type="user",
        target_id=user_id,
        details={"sessions_ended": ended},
    )
    return ended
