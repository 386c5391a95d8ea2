"""What a person does to their own account, with its audit line: one place for API and pages."""

from __future__ import annotations

from ..errors import InvalidInput
from .limits import LoginLimits
from .models import User
from .services import AuthServices
from .tokens import ApiTokenInfo


async def change_password(
    auth: AuthServices,
    user: User,
    current: str,
    new: str,
    *,
    keep_session: str | None,
    ip: str | None,
) -> int:
    """Change the password; every other session and every personal API token ends. Returns
    how many sessions ended.

    Wrong current passwords count like failed sign-ins, so a stolen session cannot be used to
    guess the password at the API's pace.
    """
    limits = LoginLimits(auth.limiter, scope="password-change")

    def wrong_current(exc: Exception) -> bool:
        return isinstance(exc, InvalidInput) and "current_password" in (exc.details or {})

    async with limits.attempt(user.username, None, counts=wrong_current):
        await auth.users.change_password(user, current, new)
    ended = await auth.sessions.revoke_all(user.id, except_id=keep_session)
    tokens = await auth.api_tokens.revoke_all(user.id)  # a leaked token dies with the password
    await auth.audit.record(
        "auth.password.changed",
        actor=user,
        ip=ip,
        details={"sessions_ended": ended, "tokens_revoked": tokens},
    )
    return ended


async def revoke_session(auth: AuthServices, user: User, session_id: str, ip: str | None) -> bool:
    if not await auth.sessions.revoke(session_id, user_id=user.id):
        return False
    await auth.audit.record(
        "auth.session.revoked",
        actor=user,
        ip=ip,
        target_type="session",
        target_id=session_id[:12],
    )
    return True


async def create_token(
    auth: AuthServices, user: User, name: str, ip: str | None
) -> tuple[str, ApiTokenInfo]:
    raw, info = await auth.api_tokens.create(user.id, name)
    await auth.audit.record(
        "auth.token.created",
        actor=user,
        ip=ip,
        target_type="api_token",
        target_id=info.id,
        details={"name": info.name},
    )
    return raw, info


async def revoke_token(auth: AuthServices, user: User, token_id: int, ip: str | None) -> bool:
    if not await auth.api_tokens.revoke(token_id, user_id=user.id):
        return False
    await auth.audit.record(
        "auth.token.revoked", actor=user, ip=ip, target_type="api_token", target_id=token_id
    )
    return True
