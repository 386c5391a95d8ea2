"""Built-in plugin: live events for signed-in people, over Server-Sent Events and WebSocket.

`GET /api/v1/events` streams events as SSE (`id:` the event id, `event:` its type, `data:` the
event as JSON), with `: ping` comments every heartbeat. A client that reconnects with the
`Last-Event-ID` header (or `?last_event_id=`) first gets the buffered events it missed (preceded
by `core.stream.reset` when the buffer no longer holds all of them), then the
live ones, without a gap or a duplicate.

`GET /ws` is a WebSocket. On connect the client is subscribed to every topic it may see and is
told so (`{"type": "subscriptions", "topics": [...]}`); it can narrow or widen that within what
it may see with `{"type": "subscribe" | "unsubscribe", "topics": [...]}` (answered with the new
`subscriptions`), and `{"type": "ping"}` is answered `{"type": "pong"}`. Events arrive as
`{"type": "event", "event": {...}}`. A topic it may not see is refused
(`{"type": "error", "code": "forbidden_topic", "topic": ...}`) and nothing changes; a message
that is not understood gets `{"type": "error", "code": "bad_message", "message": ...}`.

A client only ever receives the topics `topics_for(user)` allows: `user:<own id>`, `all`, and
`admins` for admins. Each connection checks its sign-in again (session, JWT session or API
token, and the user's role and disabled flag) at once when `core.user.changed` for its user
passes by (a revoke, disable or role change, on any instance), and every heartbeat in case
such an event was lost: a revoked session or a disabled
user ends the stream (SSE) or closes the socket with code 4401; a changed role does the same, so
the client reconnects with the topics it may now see. Each connection buffers at most
`MAX_QUEUE` events; a client too slow for that loses the oldest (the bus counts them).

A WebSocket handshake authenticated by the session cookie must come from this site (its Origin
is the Host it was sent to, or `[server] base_url`): browsers attach cookies to cross-site
WebSocket handshakes and no CORS check protects them. SSE needs no such check (CORS does it).

`close_connections` ends every open stream and socket at once (sockets with 1001). `create_app`
registers it in `app.on_shutdown` (no hook hands a plugin its app); without it, a stopping server
would wait out its shutdown grace period for every open stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp_sse import EventSourceResponse
from marshmallow import Schema, fields, validate

from ..appkeys import CONFIG, SERVICES
from ..auth.middleware import AUTH
from ..auth.models import User
from ..auth.services import AUTH_SERVICES
from ..events import Event, Subscription, make_event, topics_for
from ..hookspecs import hookimpl
from ..logs import REQUEST_ID
from ..routing import Routes
from ..usercache import USER_CHANGED
from .access import USER
from .middlewares import REQUEST_ID_HEADER
from .security import HEADERS as SECURITY_HEADERS
from .validation import load_query

log = logging.getLogger("medianest.realtime")

DEFAULT_HEARTBEAT_SECONDS = 15.0
HEARTBEAT_SECONDS = web.AppKey("realtime_heartbeat_seconds", float)
"""Seconds between SSE `: ping` comments and WebSocket pings, and on average between sign-in
re-checks (tests shorten it by setting this key before the app starts)."""

MAX_QUEUE = 256  # events waiting for one slow client; beyond that the oldest are dropped
WS_MAX_MESSAGE_BYTES = 64 * 1024
WS_CLOSE_TIMEOUT_SECONDS = 2.0  # how long a close waits for the client's close frame
WS_SESSION_ENDED = 4401  # close code: the sign-in behind this socket is no longer valid
# sent (to that client only) first on a resumed stream when the buffer cannot replay all it
# missed: reload what the page shows
STREAM_RESET = "core.stream.reset"
CHECK_TIMEOUT_SECONDS = 5.0
MAX_TOPICS_PER_MESSAGE = 32

_EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

StillValid = Callable[[], Awaitable[bool]]

routes = Routes()


# -- open connections: re-checked every heartbeat, closed on shutdown --------------------------


@dataclass(eq=False)
class _LiveConnection:
    """One open stream or socket: its subscription, and a timer that re-checks it every
    heartbeat. Between checks nothing waits but the loop reading the subscription (a timed
    wait per event would cost more than the rest of the fan-out together)."""

    subscription: Subscription
    alive: Callable[[], bool]
    still_valid: StillValid
    heartbeat: float
    forget_cached: Callable[[], None] = lambda: None  # the user's cached sign-in, if any
    close_code: int | None = None  # why the server ended it, for the WebSocket close frame
    _timer: asyncio.TimerHandle | None = None
    _check: asyncio.Task[None] | None = None
    _stopped: bool = False
    _again: bool = False  # a change arrived during a check: check once more

    def start(self) -> None:
        # jittered, so clients that all reconnected together (a restart) are not all re-checked
        # in the same instant, forever; not security relevant
        delay = self.heartbeat * random.uniform(0.75, 1.25)  # noqa: S311
        self._timer = asyncio.get_running_loop().call_later(delay, self._due)

    def end(self, code: int) -> None:
        """End it from the server's side: the loop reading the subscription finishes."""
        if self.close_code is None:
            self.close_code = code
        self.subscription.close()

    def stop(self) -> None:
        """The handler is done with it."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        self.subscription.close()

    def _due(self) -> None:
        self._check = asyncio.create_task(self._recheck(), name="medianest-live-recheck")

    def seen(self, event: Event) -> None:
        """Called with each event on its way out: `core.user.changed` (a revoke, a disable, a
        role change) re-checks the sign-in now, not at the next heartbeat."""
        if event.type != USER_CHANGED or self._stopped:
            return
        self.forget_cached()  # do not trust a cache that may not have heard yet
        if self._check is not None and not self._check.done():
            self._again = True  # the running check may have read before the change
            return
        if self._timer is not None:
            self._timer.cancel()
        self._due()

    async def _recheck(self) -> None:
        while not self._stopped:
            self._again = False
            if not self.alive():  # the client is gone (a write failed)
                self.end(WSCloseCode.GOING_AWAY)
                return
            if not await self.still_valid():
                log.info("live connection ended: its sign-in is no longer valid")
                self.end(WS_SESSION_ENDED)
                return
            if not self._again:
                break
        if not self._stopped:
            self.start()


# aiohttp freezes an app's state and signals when it starts, and no hook hands a plugin its app,
# so open connections are tracked here, per app, rather than under an AppKey
_OPEN: weakref.WeakKeyDictionary[web.Application, set[_LiveConnection]] = (
    weakref.WeakKeyDictionary()
)


def _open(app: web.Application) -> set[_LiveConnection]:
    return _OPEN.setdefault(app, set())


def open_connections(app: web.Application) -> int:
    """How many SSE streams and WebSockets `app` is serving now."""
    return len(_OPEN.get(app, ()))


async def close_connections(app: web.Application) -> None:
    """End every open stream and socket of `app` (sockets with 1001 "going away").

    An `app.on_shutdown` handler: that runs before the server waits for in-flight requests,
    which an open stream would otherwise hold for the whole shutdown grace period.
    """
    connections = list(_OPEN.get(app, ()))
    if connections:
        log.info("closing live connections for shutdown", extra={"count": len(connections)})
    for connection in connections:
        connection.end(WSCloseCode.GOING_AWAY)


# -- what both transports share ---------------------------------------------------------------


def heartbeat_seconds(app: web.Application) -> float:
    return float(app.get(HEARTBEAT_SECONDS, DEFAULT_HEARTBEAT_SECONDS))


@dataclass(frozen=True)
class _Encoded:
    sse: bytes
    ws: str


_encoded: OrderedDict[str, _Encoded] = OrderedDict()


def _encode(event: Event) -> _Encoded:
    """The event as an SSE message and as a WebSocket message, encoded once however many
    connections send it."""
    found = _encoded.get(event.id)
    if found is None:
        data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
        # the id becomes an SSE field: one from another instance that could break the line is
        # left out (the type is already checked, and JSON escapes line breaks)
        id_field = f"id: {event.id}\r\n" if _EVENT_ID.fullmatch(event.id) else ""
        sse = f"{id_field}event: {event.type}\r\ndata: {data}\r\n\r\n".encode()
        found = _encoded[event.id] = _Encoded(sse, '{"type":"event","event":' + data + "}")
        if len(_encoded) > 256:
            _encoded.popitem(last=False)
    return found


def _stream_headers(request: web.Request) -> dict[str, str]:
    # the security-headers middleware cannot touch a response that is already streaming
    return {
        **SECURITY_HEADERS,
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # nginx: pass events through as they come
        REQUEST_ID_HEADER: request.get(REQUEST_ID, ""),
    }


def _forget(request: web.Request, user: User) -> Callable[[], None]:
    cache = request.app[SERVICES].users
    return lambda: cache.forget_user(user.id)


def _sign_in_check(request: web.Request, user: User) -> StillValid:
    """A check that the credentials this request came with still stand for `user` with the
    same rights: the session (cookie or JWT) or API token is live and the user not disabled."""
    auth = request.app[AUTH_SERVICES]
    info = request.get(AUTH)
    visible = topics_for(user.id, user.is_admin)
    credential = request.headers.get("Authorization", "").partition(" ")[2].strip()

    async def current_user() -> User | None:
        if info is None:  # signed in by something other than the auth middleware
            return await auth.users.get(user.id)
        if info.method == "api_token":
            token = await auth.api_tokens.resolve(credential)
            return token[1] if token is not None else None
        if info.session_id is None:
            return None
        session = await auth.sessions.resolve(info.session_id)
        return session[1] if session is not None else None

    warned = False

    async def still_valid() -> bool:
        nonlocal warned
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                now = await current_user()
        except Exception as exc:
            # the database is unreachable: keep serving and check again at the next heartbeat
            if not warned:
                log.warning(
                    "cannot re-check a live connection's sign-in; keeping it open",
                    extra={"user_id": user.id, "error": repr(exc)},
                )
                warned = True
            return True
        return (
            now is not None
            and now.id == user.id
            and not now.disabled
            and topics_for(now.id, now.is_admin) == visible
        )

    return still_valid


# -- Server-Sent Events -----------------------------------------------------------------------


class EventStreamQuery(Schema):
    last_event_id = fields.String(
        validate=validate.Regexp(_EVENT_ID),
        metadata={"description": "resume after this event id (the Last-Event-ID header wins)"},
    )


@routes.get(
    "/api/v1/events",
    access="user",
    query=EventStreamQuery,
    summary="Live events you may see, as Server-Sent Events (resumable with Last-Event-ID)",
)
async def event_stream(request: web.Request) -> web.StreamResponse:
    user = request[USER]
    last_id = request.headers.get("Last-Event-ID") or load_query(request, EventStreamQuery()).get(
        "last_event_id"
    )
    if last_id is not None and not _EVENT_ID.fullmatch(last_id):
        raise web.HTTPBadRequest(text="Last-Event-ID is not an event id.")
    visible = topics_for(user.id, user.is_admin)
    bus = request.app[SERVICES].events
    heartbeat = heartbeat_seconds(request.app)
    # Subscribe and read the history in one step, with no await between: nothing can be
    # dispatched in between, so the replay and the live queue neither overlap nor leave a gap.
    subscription = bus.subscribe(topics=visible, max_queue=MAX_QUEUE)
    missed, complete = bus.replay(after=last_id, topics=visible)
    if not complete:  # say so first: the page reloads what it shows instead of trusting us
        missed.insert(
            0, make_event(STREAM_RESET, {"reason": "missed events"}, topic=f"user:{user.id}")
        )
    # aiohttp-sse pings every heartbeat; a ping it cannot write within its send timeout (120 s)
    # aborts the connection, which is how a stalled client ends (is_connected turns False).
    # Events are written as pre-encoded bytes, not with `send`: one encoding per event for all
    # connections, and no timer per write.
    response = EventSourceResponse(headers=_stream_headers(request), ping_interval=heartbeat)
    live = _LiveConnection(
        subscription,
        response.is_connected,
        _sign_in_check(request, user),
        heartbeat,
        _forget(request, user),
    )
    connections = _open(request.app)
    try:
        await response.prepare(request)
        connections.add(live)
        live.start()
        async with response:  # on exit: stop the pings
            # from a task of its own (cancelled with the handler): resuming the handler, under
            # every middleware, for each event would cost more than writing the event
            await asyncio.create_task(
                _forward_sse(response, missed, live), name="medianest-sse-forwarder"
            )
    except ConnectionError:
        pass  # the client went away, or stalled and aiohttp-sse's ping aborted the connection
    finally:
        connections.discard(live)
        live.stop()
    return response


async def _forward_sse(
    response: EventSourceResponse, missed: list[Event], live: _LiveConnection
) -> None:
    for event in missed:
        await response.write(_encode(event).sse)
    async for event in live.subscription:
        live.seen(event)
        await response.write(_encode(event).sse)


# -- WebSocket --------------------------------------------------------------------------------


_CLOSE_REASONS = {
    WSCloseCode.GOING_AWAY: b"server shutting down",
    WS_SESSION_ENDED: b"sign-in ended",
}


def _origin_allowed(request: web.Request) -> bool:
    """Whether the handshake's Origin is this site: the Host it was sent to, or base_url.

    Browsers send cookies with cross-site WebSocket handshakes (no CORS applies), so a page
    elsewhere could otherwise open a socket as the signed-in visitor. No Origin: not a browser.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {_host_key(request.host), _host_key(_netloc(request.app[CONFIG].server.base_url))}
    return _host_key(_netloc(origin)) in allowed - {""}


def _netloc(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return rest.split("/", 1)[0] if sep and scheme else ""


def _host_key(netloc: str) -> str:
    """`host[:port]` in lower case, without the port browsers leave out (80, 443)."""
    netloc = netloc.strip().lower()
    for default in (":80", ":443"):
        if netloc.endswith(default):
            return netloc[: -len(default)]
    return netloc


@routes.get("/ws", access="user", summary="Live events you may see, over a WebSocket")
async def websocket(request: web.Request) -> web.StreamResponse:
    user = request[USER]
    info = request.get(AUTH)
    if (info is None or info.method == "cookie") and not _origin_allowed(request):
        log.warning(
            "WebSocket handshake from another site refused",
            extra={"origin": request.headers.get("Origin"), "user_id": user.id},
        )
        raise web.HTTPForbidden(text="This WebSocket handshake came from another site.")
    heartbeat = heartbeat_seconds(request.app)
    ws = web.WebSocketResponse(
        heartbeat=heartbeat,
        timeout=WS_CLOSE_TIMEOUT_SECONDS,
        max_msg_size=WS_MAX_MESSAGE_BYTES,
        compress=False,  # a deflate context per socket costs far more memory than it saves
    )
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="Expected a WebSocket upgrade.")
    ws.headers.update(_stream_headers(request))
    visible = topics_for(user.id, user.is_admin)
    wanted = set(visible)
    # one subscription to everything visible, filtered by `wanted` on the way out: changing
    # what the client wants never re-subscribes, so no event slips between two subscriptions
    subscription = request.app[SERVICES].events.subscribe(topics=visible, max_queue=MAX_QUEUE)
    live = _LiveConnection(
        subscription,
        lambda: not ws.closed,
        _sign_in_check(request, user),
        heartbeat,
        _forget(request, user),
    )
    connections = _open(request.app)
    forwarder: asyncio.Task[None] | None = None
    try:
        await ws.prepare(request)
        connections.add(live)
        live.start()
        await ws.send_str(_subscriptions(wanted))
        forwarder = asyncio.create_task(
            _forward_ws(ws, live, wanted), name="medianest-ws-forwarder"
        )
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                for reply in _answer(message.data, visible, wanted):
                    await ws.send_str(reply)
            elif message.type == WSMsgType.BINARY:
                await ws.send_str(_error("bad_message", message="send JSON text messages"))
            else:  # an error on the connection: nothing more will come
                break
    except ConnectionError:
        pass  # the client went away mid-send
    finally:
        connections.discard(live)
        live.stop()  # ends the forwarder's loop
        if forwarder is not None:
            await asyncio.wait([forwarder], timeout=WS_CLOSE_TIMEOUT_SECONDS)
            forwarder.cancel()
    return ws


async def _forward_ws(ws: web.WebSocketResponse, live: _LiveConnection, wanted: set[str]) -> None:
    """Send the events the client wants; when the server ends the socket, say why."""
    try:
        async for event in live.subscription:
            live.seen(event)
            if event.topic in wanted:
                await ws.send_str(_encode(event).ws)
        if live.close_code is not None:
            reason = _CLOSE_REASONS.get(live.close_code, b"")
            await ws.close(code=live.close_code, message=reason)
    except ConnectionError:
        return  # the client went away; the handler's receive loop ends too


def _answer(text: str, visible: frozenset[str], wanted: set[str]) -> list[str]:
    """The replies to one client message; changes `wanted` for a valid (un)subscribe."""
    try:
        message = json.loads(text)
    except ValueError:
        return [_error("bad_message", message="not JSON")]
    if not isinstance(message, dict):
        return [_error("bad_message", message="send a JSON object with a 'type'")]
    kind = message.get("type")
    if kind == "ping":
        return [json.dumps({"type": "pong"})]
    if kind not in ("subscribe", "unsubscribe"):
        return [_error("bad_message", message="type must be subscribe, unsubscribe or ping")]
    topics = message.get("topics")
    if (
        not isinstance(topics, list)
        or not 0 < len(topics) <= MAX_TOPICS_PER_MESSAGE
        or not all(isinstance(t, str) for t in topics)
    ):
        return [
            _error(
                "bad_message",
                message=f"topics must be a list of 1 to {MAX_TOPICS_PER_MESSAGE} strings",
            )
        ]
    if kind == "unsubscribe":
        wanted.difference_update(topics)
        return [_subscriptions(wanted)]
    forbidden = [t for t in dict.fromkeys(topics) if t not in visible]
    if forbidden:  # all or nothing: a refused topic leaves the subscriptions as they were
        return [_error("forbidden_topic", topic=t) for t in forbidden]
    wanted.update(topics)
    return [_subscriptions(wanted)]


def _subscriptions(wanted: set[str]) -> str:
    return json.dumps({"type": "subscriptions", "topics": sorted(wanted)})


def _error(code: str, **details: Any) -> str:
    return json.dumps({"type": "error", "code": code, **details})


@hookimpl
def medianest_routes() -> Routes:
    return routes
