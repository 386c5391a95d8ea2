"""What the core's JSON routes answer, as marshmallow schemas for the API description.

Handlers build their answers with `as_dict()` and friends; these schemas only describe them
(`response=` on a route), so a field added to an answer belongs here too. Secrets never
appear: no password or token hash, and a personal API token only in the answer that creates it.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from ..auth.models import ROLES


class Answer(Schema):
    """Base of the answer schemas: clients should ignore fields they do not know, so the
    description does not promise that no other field will ever be added."""

    class Meta:
        unknown = EXCLUDE


def _nullable_string(description: str) -> fields.String:
    return fields.String(allow_none=True, metadata={"description": description})


def _timestamp(description: str, *, nullable: bool = False) -> fields.DateTime:
    return fields.DateTime(allow_none=nullable, metadata={"description": description})


class ErrorDetail(Answer):
    code = fields.String(
        required=True,
        metadata={"description": "Stable code clients branch on (`invalid_input`, `not_found`…)"},
    )
    message = fields.String(required=True, metadata={"description": "What went wrong, for people"})
    details = fields.Raw(
        allow_none=True,
        metadata={"description": "For invalid input: each field and what is wrong with it"},
    )
    request_id = _nullable_string("Quote it when reporting a problem (also `X-Request-ID`)")


class ErrorResponse(Answer):
    """The one shape of every error answer of `/api/…` and `/health/…`."""

    error = fields.Nested(ErrorDetail, required=True)


class UserSummary(Answer):
    """A MediaNest account as other people and the person themselves see it."""

    id = fields.Integer(required=True)
    username = fields.String(required=True)
    display_name = _nullable_string("The name shown on pages, when set")
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    avatar_url = _nullable_string("Picture, e.g. from Plex")
    disabled = fields.Boolean(required=True, metadata={"description": "Cannot sign in"})


class Me(UserSummary):
    auth = fields.String(
        required=True,
        validate=validate.OneOf(("cookie", "api_token", "jwt")),
        metadata={"description": "How this request authenticated"},
    )
    csrf_token = fields.String(
        metadata={"description": "Only with the session cookie: send it as `X-CSRF-Token`"}
    )


class UserDetails(UserSummary):
    """A user with what admins see about them."""

    email = _nullable_string("Contact address, when known")
    created_at = _timestamp("When the account was made")
    last_login_at = _timestamp("Last successful sign-in", nullable=True)
    has_password = fields.Boolean(
        metadata={"description": "False for accounts that sign in with Plex only"}
    )


class UserPage(Answer):
    users = fields.List(fields.Nested(UserDetails), required=True)
    total = fields.Integer(required=True, metadata={"description": "Matches on every page"})
    page = fields.Integer(required=True)


class Device(Answer):
    """A signed-in session: a browser or an API client holding a refresh token."""

    id = fields.String(required=True)
    kind = fields.String(
        required=True,
        validate=validate.OneOf(("browser", "api")),
        metadata={"description": "`api`: signed in for a token pair"},
    )
    created_at = _timestamp("Signed in at")
    last_seen_at = _timestamp("Last request")
    expires_at = _timestamp("Ends at the latest")
    ip = _nullable_string("Address it signed in from")
    user_agent = _nullable_string("Browser or client")
    current = fields.Boolean(metadata={"description": "The session making this request"})


class DeviceList(Answer):
    sessions = fields.List(fields.Nested(Device), required=True)


class ApiToken(Answer):
    """A personal API token, without the token itself."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    prefix = fields.String(
        required=True, metadata={"description": "Its first characters, to recognise it"}
    )
    created_at = _timestamp("Created at")
    last_used_at = _timestamp("Last request made with it", nullable=True)


class CreatedApiToken(ApiToken):
    token = fields.String(
        required=True,
        metadata={"description": "The token: shown in this answer only, never again"},
    )


class ApiTokenList(Answer):
    tokens = fields.List(fields.Nested(ApiToken), required=True)


class TokenPair(Answer):
    access_token = fields.String(
        required=True, metadata={"description": "JWT for `Authorization: Bearer …`"}
    )
    refresh_token = fields.String(
        required=True,
        metadata={"description": "For /api/v1/auth/refresh; each one works once"},
    )
    token_type = fields.String(required=True, validate=validate.OneOf(("Bearer",)))
    expires_in = fields.Integer(
        required=True, metadata={"description": "Seconds the access token stays valid"}
    )


class Notification(Answer):
    id = fields.Integer(required=True)
    type = fields.String(required=True, metadata={"description": "What it is about"})
    title = fields.String(required=True)
    body = fields.String()
    link = _nullable_string("Where its subject is")
    data = fields.Dict(metadata={"description": "Extra facts the sender attached"})
    created_at = _timestamp("When it was sent")
    read = fields.Boolean(required=True)


class NotificationPage(Answer):
    notifications = fields.List(fields.Nested(Notification), required=True)
    total = fields.Integer(required=True, metadata={"description": "Matches on every page"})
    unread = fields.Integer(required=True, metadata={"description": "Unread, on every page"})


class AuditEntry(Answer):
    id = fields.Integer(required=True)
    at = _timestamp("When it happened")
    actor_user_id = fields.Integer(allow_none=True)
    actor_name = _nullable_string("Who did it (or tried to)")
    action = fields.String(required=True, metadata={"description": "e.g. `user.created`"})
    target_type = _nullable_string("Kind of thing acted on")
    target_id = _nullable_string("Which one")
    ip = _nullable_string("Address of the request")
    details = fields.Dict()


class AuditPage(Answer):
    entries = fields.List(fields.Nested(AuditEntry), required=True)
    total = fields.Integer(required=True)
    page = fields.Integer(required=True)


class TaskState(Answer):
    name = fields.String(required=True)
    runs = fields.Integer(required=True)
    failures = fields.Integer(required=True)
    last_error = _nullable_string("The last failure's message")


class PluginStatus(Answer):
    name = fields.String(required=True)
    builtin = fields.Boolean(required=True)
    distribution = _nullable_string("The installed package it came from")
    version = _nullable_string("Its version")
    title = fields.String(metadata={"description": "Its name for people (`Uptime Kuma`)"})
    status = fields.String(
        required=True,
        validate=validate.OneOf(("active", "not_configured", "retrying", "failed", "disabled")),
        metadata={
            "description": "not_configured: installed, waiting for the settings listed in "
            "`missing` (an admin connects it from the dashboard); retrying: its upstream was "
            "not reachable at start (`error` says why), started again at `next_attempt_at`"
        },
    )
    stage = _nullable_string("Where it failed (import, config, migrations, startup…)")
    error = _nullable_string("Why it failed, or why it is retrying, for the admin")
    missing = fields.List(
        fields.String(), metadata={"description": "Setup settings still empty (not_configured)"}
    )
    attempts = fields.Integer(
        metadata={"description": "Startups in a row that found the upstream not ready"}
    )
    next_attempt_at = _timestamp("When its startup is tried again (retrying)", nullable=True)
    hooks = fields.List(fields.String(), metadata={"description": "Hooks it implements"})
    tasks = fields.List(fields.Nested(TaskState))


class PluginList(Answer):
    plugins = fields.List(fields.Nested(PluginStatus), required=True)


class HealthLive(Answer):
    status = fields.String(required=True, validate=validate.OneOf(("ok",)))


class HealthReady(Answer):
    status = fields.String(required=True, validate=validate.OneOf(("ready", "unavailable")))
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(("up", "down"))),
        metadata={"description": "`database` and `migrations`: up or down"},
    )
    failed_plugins = fields.List(fields.String(), metadata={"description": "Names only"})


# small acknowledgements
class SignedOut(Answer):
    signed_out = fields.Boolean(required=True)


class PasswordChanged(Answer):
    changed = fields.Boolean(required=True)
    other_sessions_ended = fields.Integer(required=True)


class Identity(Answer):
    id = fields.Integer(required=True)
    provider = fields.String(required=True, metadata={"description": "The login provider"})
    subject = fields.String(required=True, metadata={"description": "Their id there"})
    username = _nullable_string("Their name there")
    email = _nullable_string("Their email there")


class IdentityList(Answer):
    identities = fields.List(fields.Nested(Identity), required=True)


class Unlinked(Answer):
    unlinked = fields.Boolean(required=True)


class Revoked(Answer):
    revoked = fields.Boolean(required=True)


class Deleted(Answer):
    deleted = fields.Boolean(required=True)


class SessionsEnded(Answer):
    sessions_ended = fields.Integer(required=True)


class MarkedRead(Answer):
    read = fields.Boolean(required=True)


class MarkedAllRead(Answer):
    read = fields.Integer(required=True, metadata={"description": "How many were unread"})
