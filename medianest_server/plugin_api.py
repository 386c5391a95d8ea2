"""Everything MediaNest promises to plugins. Import from here (or `medianest_server`), nothing else.

    from medianest_server.plugin_api import hookimpl, Routes, Widget, NavItem

The hooks themselves are documented in `medianest_server.hookspecs` and docs/plugins.md.
"""

from __future__ import annotations

from .auth.models import User
from .cache import Cache
from .clock import Clock, ManualClock, SystemClock
from .connections import ConnectionLink, LiveConnection
from .db import Connection, Database, DatabaseError, IntegrityError, Row
from .errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    MediaNestError,
    NotConfigured,
    NotFound,
    Unauthorized,
    UpstreamUnavailable,
)
from .events import Event, EventBus, make_event
from .hookspecs import hookimpl
from .http import HttpClient, HttpResponse, UpstreamError
from .jobs import Job, JobContext, JobQueue, JobSpec, Worker, run_process_group
from .plugins.context import PluginContext, ServiceRegistry
from .plugins.startup_retry import PluginNotReady
from .plugins.types import (
    EventHandler,
    ExternalIdentity,
    HealthCheck,
    HealthResult,
    LinkedIdentity,
    LoginProvider,
    NavItem,
    SearchGroup,
    SearchResult,
    SetupAction,
    Webhook,
    Widget,
)
from .ratelimit import RateLimiter, RateLimitResult
from .routing import Access, Routes
from .secretbox import SecretBox, SecretBoxError
from .tasks import Task
from .web.access import current_user
from .web.templating import render_page
from .web.validation import (
    MAX_ID,
    Id,
    WholeNumber,
    load_form,
    load_json,
    load_query,
    parse_int,
    path_id,
)

__all__ = [
    "MAX_ID",
    "Access",
    "Cache",
    "Clock",
    "Conflict",
    "Connection",
    "ConnectionLink",
    "Database",
    "DatabaseError",
    "Event",
    "EventBus",
    "EventHandler",
    "ExternalIdentity",
    "Forbidden",
    "HealthCheck",
    "HealthResult",
    "HttpClient",
    "HttpResponse",
    "Id",
    "IntegrityError",
    "InvalidInput",
    "Job",
    "JobContext",
    "JobQueue",
    "JobSpec",
    "LinkedIdentity",
    "LiveConnection",
    "LoginProvider",
    "ManualClock",
    "MediaNestError",
    "NavItem",
    "NotConfigured",
    "NotFound",
    "PluginContext",
    "PluginNotReady",
    "RateLimitResult",
    "RateLimiter",
    "Routes",
    "Row",
    "SearchGroup",
    "SearchResult",
    "SecretBox",
    "SecretBoxError",
    "ServiceRegistry",
    "SetupAction",
    "SystemClock",
    "Task",
    "Unauthorized",
    "UpstreamError",
    "UpstreamUnavailable",
    "User",
    "Webhook",
    "WholeNumber",
    "Widget",
    "Worker",
    "current_user",
    "hookimpl",
    "load_form",
    "load_json",
    "load_query",
    "make_event",
    "parse_int",
    "path_id",
    "render_page",
    "run_process_group",
]
