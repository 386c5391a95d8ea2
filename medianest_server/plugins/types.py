"""What hooks return: small frozen dataclasses, documented for plugin authors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from ..events import Event

HealthState = Literal["up", "degraded", "down"]
WidgetSize = Literal["small", "medium", "large"]
EventHandler = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True)
class HealthResult:
    """The outcome of one health check."""

    status: HealthState
    message: str = ""
    latency_ms: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthCheck:
    """`check` is a coroutine returning a HealthResult; it is cut off after `timeout_seconds`."""

    name: str
    check: Callable[[], Awaitable[HealthResult]]
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class Widget:
    """A dashboard card. `load` returns the data `template` renders (as `data`).

    `template` is a namespaced template name (`plex/widgets/recent.html`). `refresh_on` lists event
    types that make open dashboards reload this widget.
    """

    id: str
    title: str
    template: str
    load: Callable[[], Awaitable[Mapping[str, Any]]]
    size: WidgetSize = "medium"
    order: int = 100
    refresh_on: Sequence[str] = ()


@dataclass(frozen=True)
class NavItem:
    """A menu entry. `icon` names one of the core's icons (`home`, `film`, `download`, …)."""

    title: str
    url: str
    icon: str = ""
    order: int = 100


@dataclass(frozen=True)
class SearchResult:
    title: str
    url: str
    subtitle: str = ""
    image_url: str | None = None
    kind: str = ""


@dataclass(frozen=True)
class SearchGroup:
    """One plugin's results for a search; `error` is set by the core when the plugin failed."""

    title: str
    results: Sequence[SearchResult] = ()
    more_url: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Webhook:
    """An inbound webhook at /api/v1/webhooks/<plugin>/<name>.

    The core checks the secret before `handler` runs: it is accepted as the last path segment
    (/api/v1/webhooks/<plugin>/<name>/<secret>) or, when `secret_header` is set, in that header.
    """

    name: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    secret_header: str | None = None


@dataclass(frozen=True)
class ExternalIdentity:
    """Who a login provider says the person is, and what they may be."""

    provider: str
    subject: str
    username: str
    role: Literal["admin", "user"] = "user"
    email: str | None = None
    display_name: str | None = None
    avatar_url: str | None = None
    secret: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LinkedIdentity:
    """A person's account at a login provider, as MediaNest keeps it (`ctx.identity`): who
    they are there, never their secret. `subject` is the provider's id for them (a Plex
    account id), what another service (Overseerr) knows them by."""

    id: int
    provider: str
    subject: str
    username: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class LoginProvider:
    """A sign-in method listed on the sign-in page; `start_url` begins its flow.

    With `popup=True` the sign-in page runs the flow in a popup and stays where it is:
    `start_url` must answer `Accept: application/json` with `{"popup_url", "poll_url"}` (what
    to open in the popup, and what to poll: `{"state": "waiting"}`, `{"redirect": "/"}` once
    signed in, or `{"state": "failed", "title", "message"}`), and `start_url?redirect=1` with
    a redirect to the provider that comes back signed in (used when popups are blocked).
    Without JavaScript the link is simply followed.
    """

    id: str
    title: str
    start_url: str
    icon: str = ""
    popup: bool = False


@dataclass(frozen=True)
class SetupAction:
    """A button on a plugin's "Connect" card: `url` (a `setup=True` page of the plugin) does the
    setting up for the admin, e.g. signs in with Plex and lets them pick their server."""

    title: str
    url: str
    description: str = ""
    icon: str = ""
