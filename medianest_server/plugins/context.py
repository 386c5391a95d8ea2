"""`PluginContext`: what each plugin gets to work with, its own instance per plugin."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from aiohttp import web

from ..audit import AuditLog
from ..cache import Cache
from ..clock import Clock
from ..db import Database
from ..events import Event, EventBus, make_event
from ..http import HttpClient
from ..images import signing as image_signing
from ..jobs import JobQueue
from ..notifications import Notifications
from ..ratelimit import RateLimiter
from ..secretbox import SecretBox

if TYPE_CHECKING:
    from ..auth.models import User
    from .types import ExternalIdentity, LinkedIdentity

T = TypeVar("T")


class AccountLinks(Protocol):
    """How a login provider hands a person to the core (set by the app)."""

    async def sign_in(self, request: web.Request, identity: ExternalIdentity) -> User: ...

    async def secret(self, user_id: int, provider: str) -> str | None: ...

    async def user(self, user_id: int) -> User | None: ...

    def return_url(self, request: web.Request) -> str: ...

    async def identity(self, user_id: int, provider: str) -> LinkedIdentity | None: ...


class SettingsWriter(Protocol):
    """How a plugin saves its own settings (set by the app)."""

    async def save(self, plugin: str, values: Mapping[str, str]) -> str: ...


class ServiceRegistry:
    """Typed services plugins publish for each other (`plex` publishes its library service)."""

    def __init__(self) -> None:
        self._services: dict[str, object] = {}

    def publish(self, name: str, service: object) -> None:
        self._services[name] = service

    def get(self, name: str, kind: type[T]) -> T | None:
        """The service published under `name` if it is a `kind`, else None (plugin absent)."""
        service = self._services.get(name)
        return service if isinstance(service, kind) else None

    def remove(self, name: str) -> None:
        self._services.pop(name, None)


@dataclass
class PluginContext:
    """Everything a plugin needs, handed to every hook that takes `ctx`.

    - `name`: the plugin's name (its entry point name); `config`: its validated settings;
    - `db`: the database; `cache`: a cache whose keys are private to this plugin;
    - `events`: the event bus; `jobs`: the durable job queue; `http`: the outgoing HTTP client
      (timeouts, retries, circuit breaker per upstream); `secrets`: encrypt/decrypt at rest;
      `ratelimiter`: the shared rate limiter; `clock`: the time (tests move it);
    - `data_dir`: a folder of the plugin's own, created at start;
    - `log`: a logger named `medianest.plugins.<name>`;
    - `services`: services other plugins publish (`ctx.services.get("plex", PlexLibrary)`);
    - `base_url`: the address people use (`[server] base_url`); build absolute URLs with
      `ctx.absolute_url(path)`, never from a request's Host header, which anyone can set.
    """

    name: str
    config: Mapping[str, Any]
    db: Database
    cache: Cache
    events: EventBus
    jobs: JobQueue
    http: HttpClient
    secrets: SecretBox
    ratelimiter: RateLimiter
    clock: Clock
    data_dir: Path
    services: ServiceRegistry
    accounts: AccountLinks | None = None
    notifications: Notifications | None = None
    settings_writer: SettingsWriter | None = None
    base_url: str = "http://127.0.0.1:8080"
    log: logging.Logger = field(init=False)

    def __post_init__(self) -> None:
        self.log = logging.getLogger(f"medianest.plugins.{self.name}")

    async def complete_login(self, request: web.Request, identity: ExternalIdentity) -> User:
        """Sign the browser of `request` in as the person `identity` describes.

        Call it from your login provider's route once you know who they are and that they may
        enter. A known `(provider, subject)` signs in its user (name, avatar and `secret`
        refreshed); a new one creates a user with `identity.role`. `identity.secret` (an
        upstream token) is stored encrypted: read it back with `ctx.user_secret`. Then
        answer with a redirect to `ctx.return_url(request)` (the session cookie rides on your
        response). Raises Unauthorized for a disabled user.

        When the browser is already signed in (the person pressed "Link" on their profile),
        the account is linked to them instead and their session stays (Conflict, 409, if it is
        linked to someone else); if they already have another account at this provider, it is
        a sign-in as that account.
        """
        if self.accounts is None:
            raise RuntimeError("sign-in is not available in this context")
        return await self.accounts.sign_in(request, identity)

    def absolute_url(self, path: str) -> str:
        """`path` (with its query) as an absolute URL on `[server] base_url`: for addresses
        handed to another site (a sign-in's return address, a webhook to register)."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        return self.base_url.rstrip("/") + path

    def image_url(self, url: str | None) -> str | None:
        """The address to put in an `<img src>` for an image on another host (a TMDB poster,
        a YouTube thumbnail): `/images/proxy?...&sig=...`, signed so that MediaNest fetches
        only addresses it put on its own pages. None for an empty `url`; ValueError for one
        that is not an absolute http(s) URL. The host must be one your
        `medianest_image_hosts` declares, or the proxy refuses the image (403).
        """
        if not url:
            return None
        key = self.secrets.derive_key(image_signing.KEY_PURPOSE)
        return image_signing.proxy_url(key, self.name, url)

    async def save_settings(self, values: Mapping[str, str]) -> str:
        """Save some of this plugin's settings to `medianest.toml` and apply them now.

        `values` are keys of your schema as a form would send them (strings; lists comma
        separated); other keys keep what the file says. They are validated by your schema
        (InvalidInput naming the bad keys; nothing is written), written atomically with the
        previous file kept as `.bak`, and the plugin is restarted on them (a plugin waiting
        for its setup settings starts). Returns the new status: `active`, `not_configured` or
        `failed`. For a setup page such as Plex's server picker.
        """
        if self.settings_writer is None:
            raise RuntimeError("settings cannot be saved in this context")
        return await self.settings_writer.save(self.name, values)

    def return_url(self, request: web.Request) -> str:
        """Where to send the browser after `complete_login`: `/`, or `/profile` when the flow
        linked an account to someone already signed in."""
        return self.accounts.return_url(request) if self.accounts is not None else "/"

    async def identity(self, user_id: int, provider: str) -> LinkedIdentity | None:
        """The person's linked account at `provider` (`provider`, `subject`, `username`,
        `email`; never its secret), or None: how another service knows them (Overseerr finds
        a person's Overseerr user by their Plex account id, `ctx.identity(uid, "plex")`)."""
        if self.accounts is None:
            return None
        return await self.accounts.identity(user_id, provider)

    async def user_secret(self, user_id: int, provider: str) -> str | None:
        """The upstream secret stored at sign-in for this user's `provider` account, or None."""
        if self.accounts is None:
            return None
        return await self.accounts.secret(user_id, provider)

    async def user(self, user_id: int) -> User | None:
        """The user with this id (events and jobs carry ids), or None if there is none."""
        if self.accounts is None:
            return None
        return await self.accounts.user(user_id)

    async def emit(
        self, type: str, data: Mapping[str, Any] | None = None, *, topic: str = "all"
    ) -> Event:
        """Publish an event of this plugin (`type` must start with `<name>.`) to `topic`.

        Topics: `all`, `admins`, or `user:<id>` for one person.
        """
        if not type.startswith(f"{self.name}."):
            raise ValueError(f"event type {type!r} must start with {self.name + '.'!r}")
        event = make_event(type, data, topic=topic, clock=self.clock)
        await self.events.publish(event)
        return event

    async def audit(
        self,
        action: str,
        *,
        actor: User | None,
        request: web.Request | None = None,
        target_type: str | None = None,
        target_id: object = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record in the audit log (admin page Audit) that `actor` did `action` (it must start
        with `<name>.`, e.g. `overseerr.request.approved`), from `request`'s address, to
        `target_type`/`target_id`. For what an admin may later ask about: approvals, deletions,
        changes made on someone's behalf. Never put a secret in `details`."""
        if not action.startswith(f"{self.name}."):
            raise ValueError(f"audit action {action!r} must start with {self.name + '.'!r}")
        await AuditLog(self.db, clock=self.clock).record(
            action,
            actor=actor,
            ip=request.remote if request is not None else None,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )

    async def notify(
        self,
        user_id: int | Literal["admins"],
        title: str,
        *,
        body: str = "",
        link: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Store a notification for a user, or for every admin with `"admins"`, and push it to
        their open pages (the bell counts it). Returns the notification's id, or with
        `"admins"` how many admins got it.

        Unlike an event on the `admins` topic (live only: lost for anyone not connected), a
        notification waits in the bell: use it for what an admin must not miss (a service
        down, a request to approve)."""
        notifications = self.notifications or Notifications(self.db, self.events, clock=self.clock)
        if user_id == "admins":
            sent = await notifications.create_for_admins(
                type=self.name, title=title, body=body, link=link, data=data
            )
            return len(sent)
        return await notifications.create(
            user_id=user_id, type=self.name, title=title, body=body, link=link, data=data
        )
