"""The auth services of one app, built from the configuration and the shared services."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from ..audit import AuditLog
from ..config import Config
from ..ratelimit import RateLimiter
from ..secretbox import SecretBox
from ..services import Services
from .csrf import CsrfTokens
from .limits import LoginLimits
from .models import User
from .sessions import SESSION_COOKIE, SessionService
from .setup import SetupService
from .tokens import AccessTokens, ApiTokenService
from .users import PreferenceStore, UserService


@dataclass
class AuthServices:
    users: UserService
    preferences: PreferenceStore
    sessions: SessionService
    api_tokens: ApiTokenService
    access_tokens: AccessTokens
    csrf: CsrfTokens
    audit: AuditLog
    login_limits: LoginLimits
    setup: SetupService
    limiter: RateLimiter
    secrets: SecretBox
    api_requests_per_minute: int
    secure_cookies: bool

    def session_cookie_present(self, request: web.Request) -> bool:
        return bool(request.cookies.get(SESSION_COOKIE))

    def csrf_ok_for_session(self, session_id: str, given: str) -> bool:
        return hmac.compare_digest(self.csrf.for_session(session_id), given)


def build_auth(config: Config, services: Services, *, on_remove: object = None) -> AuthServices:
    db, clock = services.db, services.clock
    cached = services.users
    users = UserService(
        db,
        clock=clock,
        on_remove=on_remove,  # type: ignore[arg-type]
        cache=cached,
    )
    sessions = SessionService(
        db,
        idle=timedelta(days=config.auth.session_idle_days),
        absolute=timedelta(days=config.auth.session_absolute_days),
        clock=clock,
        refresh_key=services.secrets.derive_key("refresh tokens v1"),
        cache=cached,
    )
    return AuthServices(
        users=users,
        preferences=PreferenceStore(db, clock=clock, cache=cached),
        sessions=sessions,
        api_tokens=ApiTokenService(db, clock=clock, cache=cached),
        access_tokens=AccessTokens(services.secrets, clock=clock),
        csrf=CsrfTokens(services.secrets),
        audit=AuditLog(db, clock=clock),
        login_limits=LoginLimits(services.ratelimiter),
        setup=SetupService(db, services.secrets, users, clock=clock),
        limiter=services.ratelimiter,
        secrets=services.secrets,
        api_requests_per_minute=config.auth.api_requests_per_minute,
        secure_cookies=config.server.base_url.startswith("https://"),
    )


AUTH_SERVICES = web.AppKey("auth_services", AuthServices)

__all__ = ["AUTH_SERVICES", "AuthServices", "User", "build_auth"]
