"""The one outgoing HTTP client: plugins reach Plex, plex.tv, Overseerr and Uptime Kuma through it.

One `aiohttp.ClientSession` per app, a connect and a read timeout on every attempt, retries with
backoff for idempotent calls only, a circuit breaker per upstream, and per-upstream statistics for
the health page. Callers get fully read `HttpResponse`s (or a `StreamingResponse` for proxying
images), never aiohttp objects, and errors they can raise as they are: `UpstreamError` (502) when
the upstream failed, `UpstreamUnavailable` (503) while its circuit is open. Messages and log lines
name the upstream and the path, never a query string or a header, because tokens travel there.
"""

from __future__ import annotations

import asyncio
import codecs
import json as jsonlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any, TypedDict, TypeVar, Unpack

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from medianest_server import __version__
from medianest_server.circuit import LATENCY_SAMPLES, CircuitBreaker, UpstreamStats
from medianest_server.clock import SYSTEM_CLOCK, Clock
from medianest_server.errors import MediaNestError, UpstreamUnavailable
from medianest_server.singleflight import SingleFlight

logger = logging.getLogger("medianest.http")

Params = Mapping[str, str | int | float] | Sequence[tuple[str, str | int | float]]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({502, 503, 504})
CHUNK_SIZE = 64 * 1024
MAX_BODY_BYTES = 20 * 2**20
_Sent = TypeVar("_Sent")
MAX_BACKOFF_SECONDS = 5.0

# the upstream is down or slow: retried (idempotent calls), counted as a breaker failure
_TRANSIENT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class UpstreamError(MediaNestError):
    """An upstream could not be reached, timed out, or answered with something unusable (502).

    `upstream` is the upstream's name ("Plex"); `http_status` is the status it answered with, or
    None when it did not answer. The message names the upstream and never carries a query string
    or header, so it is safe to show and to log.
    """

    status = 502
    code = "upstream_error"

    def __init__(
        self, upstream: str, message: str, *, http_status: int | None = None, details: Any = None
    ) -> None:
        if details is None:
            details = {"upstream": upstream, "http_status": http_status}
        super().__init__(message, details=details)
        self.upstream = upstream
        self.http_status = http_status


def _safe_target(url: str | URL) -> str:
    """The path of `url` alone: no user info, query string or fragment (tokens travel there)."""
    try:
        return URL(url).path or "/"
    except (TypeError, ValueError):
        return "(invalid URL)"


@dataclass(frozen=True)
class HttpResponse:
    """An upstream's answer, fully read. `url` is the final URL without its query string."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str
    elapsed_ms: float
    upstream: str

    @property
    def ok(self) -> bool:
        """True for 200-299."""
        return 200 <= self.status < 300

    def text(self) -> str:
        """The body decoded with the charset the upstream declared (UTF-8 otherwise)."""
        return self.body.decode(_charset(self.headers), errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; `UpstreamError` when it is not JSON."""
        try:
            return jsonlib.loads(self.body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise UpstreamError(
                self.upstream,
                f"{self.upstream} sent invalid JSON ({_safe_target(self.url)}, HTTP {self.status})",
                http_status=self.status,
            ) from exc

    def raise_for_status(self) -> HttpResponse:
        """Return self for 2xx; raise `UpstreamError` naming the status otherwise."""
        if not self.ok:
            raise UpstreamError(
                self.upstream,
                f"{self.upstream} answered {self.status} {_reason(self.status)} "
                f"({_safe_target(self.url)})",
                http_status=self.status,
            )
        return self


def _charset(headers: Mapping[str, str]) -> str:
    for part in headers.get("Content-Type", "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip('"')).name
            except LookupError:
                break
    return "utf-8"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class RequestOptions(TypedDict, total=False):
    params: Params | None
    headers: Mapping[str, str] | None
    json: Any
    data: Any
    timeout: float | None
    retries: int | None
    max_body_bytes: int
    allow_redirects: bool
    single_flight: bool


class StreamingResponse:
    """An upstream's answer whose body is read chunk by chunk (image proxying); no aiohttp leaks."""

    def __init__(
        self,
        upstream: str,
        response: aiohttp.ClientResponse,
        max_body_bytes: int | None,
        fail: Callable[[BaseException], UpstreamError],
    ) -> None:
        self.upstream = upstream
        self.status = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self.url = _strip_url(response.url)
        self._response = response
        self._max_body_bytes = max_body_bytes
        self._fail = fail  # records the failure against the upstream, returns the error to raise

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_length(self) -> int | None:
        return self._response.content_length

    async def iter_chunked(self, size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The body in chunks of at most `size` bytes; `UpstreamError` if the upstream fails."""
        total = 0
        try:
            async for chunk in self._response.content.iter_chunked(size):
                total += len(chunk)
                if self._max_body_bytes is not None and total > self._max_body_bytes:
                    raise _too_large(self.upstream, self.url, self.status, self._max_body_bytes)
                yield chunk
        except _TRANSIENT_ERRORS as exc:
            raise self._fail(exc) from exc


def _strip_url(url: URL) -> str:
    return str(url.with_query(None).with_fragment(None).with_user(None))


def _too_large(upstream: str, url: str | URL, status: int, limit: int) -> UpstreamError:
    return UpstreamError(
        upstream,
        f"{upstream} sent a response larger than {limit} bytes ({_safe_target(url)})",
        http_status=status,
    )


def _freeze(value: Params | Mapping[str, str] | None) -> Hashable:
    if value is None:
        return None
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


class HttpClient:
    """The shared outgoing HTTP client; `start()` it once per app and `close()` it on shutdown.

    connect_timeout bounds opening a connection, read_timeout the wait for each piece of the
    answer. `retries` extra attempts are made for idempotent methods (GET, HEAD, OPTIONS, PUT,
    DELETE) on connection errors, timeouts and 502/503/504, after an exponential backoff with
    jitter starting at `backoff_seconds`. Each upstream name gets its own `CircuitBreaker`.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        retries: int = 2,
        backoff_seconds: float = 0.2,
        clock: Clock = SYSTEM_CLOCK,
        user_agent: str = f"MediaNest/{__version__}",
        failure_threshold: int = 5,
        reset_timeout_seconds: float = 30.0,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.user_agent = user_agent
        self._clock = clock
        self._failure_threshold = failure_threshold
        self._reset_timeout_seconds = reset_timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._stats: dict[str, UpstreamStats] = {}
        self._flights: SingleFlight[Hashable, HttpResponse] = SingleFlight()

    async def start(self) -> None:
        """Open the one `ClientSession` every call shares (idempotent)."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(limit=100, limit_per_host=20, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.user_agent},
            trust_env=False,  # proxies come from our config, not from the environment
            raise_for_status=False,
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> HttpClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def breaker(self, upstream: str) -> CircuitBreaker:
        """The circuit breaker of `upstream` (created on first use)."""
        breaker = self._breakers.get(upstream)
        if breaker is None:
            breaker = CircuitBreaker(
                failure_threshold=self._failure_threshold,
                reset_timeout_seconds=self._reset_timeout_seconds,
                clock=self._clock,
            )
            self._breakers[upstream] = breaker
            self._stats[upstream] = UpstreamStats()
        return breaker

    def stats(self) -> dict[str, UpstreamStats]:
        """A snapshot of every upstream's statistics, by upstream name."""
        return {
            name: replace(
                stats,
                circuit=self._breakers[name].state,
                latencies_ms=deque(stats.latencies_ms, maxlen=LATENCY_SAMPLES),
            )
            for name, stats in self._stats.items()
        }

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        upstream: str,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a per-call read timeout, as documented)
        retries: int | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        allow_redirects: bool = True,
        single_flight: bool = False,
    ) -> HttpResponse:
        """Send a request to `upstream` (its display name, e.g. "Plex") and read the answer.

        `url` is a string, or a `yarl.URL` built with `encoded=True` when the upstream needs
        its query exactly as you percent-encoded it (a string is re-quoted: `%27` becomes `'`).
        Non-2xx answers are returned, not raised (`response.raise_for_status()` raises).
        `timeout` overrides the read timeout for this call, `retries` the number of retries.
        `single_flight=True` (GET/HEAD without a body) lets concurrent identical calls share one
        upstream request. Raises `UpstreamError` when the upstream cannot be reached, times out
        or sends more than `max_body_bytes`; `UpstreamUnavailable` while its circuit is open.
        """
        method = method.upper()

        async def fetch(
            session: aiohttp.ClientSession, client_timeout: aiohttp.ClientTimeout
        ) -> tuple[aiohttp.ClientResponse, bytes]:
            async with session.request(
                method,
                url,
                params=params,
                headers=headers,
                json=json,
                data=data,
                timeout=client_timeout,
                allow_redirects=allow_redirects,
            ) as resp:
                return resp, await _read_body(resp, upstream, max_body_bytes)

        async def send() -> HttpResponse:
            (resp, body), elapsed_ms = await self._attempts(
                method, url, upstream, timeout, retries, fetch, lambda sent: sent[0].status
            )
            return HttpResponse(
                status=resp.status,
                headers=resp.headers,
                body=body,
                url=_strip_url(resp.url),
                elapsed_ms=elapsed_ms,
                upstream=upstream,
            )

        if not (single_flight and method in ("GET", "HEAD") and json is None and data is None):
            return await send()
        key = (upstream, method, url, _freeze(params), _freeze(headers), timeout, retries)
        return await self._flights.run((*key, max_body_bytes, allow_redirects), send)

    async def get(
        self, url: str | URL, *, upstream: str, **options: Unpack[RequestOptions]
    ) -> HttpResponse:
        """`request("GET", …)`."""
        return await self.request("GET", url, upstream=upstream, **options)

    async def post(
        self, url: str | URL, *, upstream: str, **options: Unpack[RequestOptions]
    ) -> HttpResponse:
        """`request("POST", …)`: never retried."""
        return await self.request("POST", url, upstream=upstream, **options)

    def stream(
        self,
        method: str,
        url: str | URL,
        *,
        upstream: str,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        max_body_bytes: int | None = None,
    ) -> AbstractAsyncContextManager[StreamingResponse]:
        """`async with client.stream("GET", url, upstream="Plex") as resp:` then
        `async for chunk in resp.iter_chunked()`: the body is never held whole (image proxying).
        Same breaker and timeouts as `request`; retried (idempotent methods) only until the
        status line arrives, never once body bytes were read.
        """
        return self._stream(
            method.upper(), url, upstream, params, headers, timeout, retries, max_body_bytes
        )

    @asynccontextmanager
    async def _stream(
        self,
        method: str,
        url: str | URL,
        upstream: str,
        params: Params | None,
        headers: Mapping[str, str] | None,
        read_timeout: float | None,
        retries: int | None,
        max_body_bytes: int | None,
    ) -> AsyncIterator[StreamingResponse]:
        async def open_response(
            session: aiohttp.ClientSession, client_timeout: aiohttp.ClientTimeout
        ) -> aiohttp.ClientResponse:
            return await session.request(
                method, url, params=params, headers=headers, timeout=client_timeout
            )

        resp, _ = await self._attempts(
            method, url, upstream, read_timeout, retries, open_response, lambda r: r.status
        )

        def fail(exc: BaseException) -> UpstreamError:
            seconds = self.read_timeout if read_timeout is None else read_timeout
            error = self._describe_error(upstream, method, url, exc, seconds)
            self._finish(upstream, self.breaker(upstream), None, upstream_failed=True, error=error)
            return error

        try:
            yield StreamingResponse(upstream, resp, max_body_bytes, fail)
        finally:
            resp.release()  # closes the connection instead if the body was not read to the end

    async def _attempts(
        self,
        method: str,
        url: str | URL,
        upstream: str,
        read_timeout: float | None,
        retries: int | None,
        send: Callable[[aiohttp.ClientSession, aiohttp.ClientTimeout], Awaitable[_Sent]],
        status_of: Callable[[_Sent], int],
    ) -> tuple[_Sent, float]:
        """Run `send` through the breaker, retrying as the method allows; (result, latency ms)."""
        session = self._require_session()
        seconds = self.read_timeout if read_timeout is None else read_timeout
        client_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=seconds
        )
        retries = self.retries if retries is None else max(retries, 0)
        attempts = 1 + (retries if method in IDEMPOTENT_METHODS else 0)
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._backoff(attempt))
            breaker = self._admit(upstream)
            started = time.perf_counter()
            try:
                sent = await send(session, client_timeout)
            except _TRANSIENT_ERRORS as exc:
                error = self._describe_error(upstream, method, url, exc, seconds)
                self._finish(upstream, breaker, started, upstream_failed=True, error=error)
                if self._last_attempt(attempt, attempts, breaker):
                    raise error from exc
                continue
            except UpstreamError as exc:  # the body was too large: still, the upstream answered
                self._finish(upstream, breaker, started, upstream_failed=False, error=exc)
                raise
            except aiohttp.ClientError as exc:  # an invalid URL, too many redirects: not retried
                error = self._describe_error(upstream, method, url, exc, seconds)
                self._finish(upstream, breaker, started, upstream_failed=None, error=error)
                raise error from exc
            except BaseException:  # cancelled: no verdict on the upstream
                breaker.release()
                raise
            status = status_of(sent)
            failed = status >= 500
            answer = f"{upstream} answered {status} ({method} {_safe_target(url)})"
            elapsed_ms = self._finish(
                upstream, breaker, started, upstream_failed=failed, error=answer if failed else None
            )
            if status in RETRY_STATUSES and not self._last_attempt(attempt, attempts, breaker):
                if isinstance(sent, aiohttp.ClientResponse):  # stream(): not read, let it go
                    sent.release()
                continue
            return sent, elapsed_ms
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _last_attempt(attempt: int, attempts: int, breaker: CircuitBreaker) -> bool:
        # once this call's failures opened the circuit, its own outcome says more than "open"
        return attempt == attempts - 1 or breaker.state != "closed"

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpClient is not started: await client.start() first")
        return self._session

    def _backoff(self, attempt: int) -> float:
        base = self.backoff_seconds * 2 ** (attempt - 1)
        # jitter spreads the retries of many callers; not a security use of random
        return float(min(base * random.uniform(0.5, 1.5), MAX_BACKOFF_SECONDS))  # noqa: S311

    def _admit(self, upstream: str) -> CircuitBreaker:
        breaker = self.breaker(upstream)
        if breaker.allow():
            return breaker
        self._stats[upstream].rejected += 1
        if breaker.state == "open":
            wait = math.ceil(breaker.retry_after_seconds())
            when = f"retrying in {wait} s"
        else:
            wait, when = 0, "a probe is checking whether it is back"
        raise UpstreamUnavailable(
            f"{upstream} is unavailable (circuit open after "
            f"{_failures(breaker.consecutive_failures)}; {when})",
            details={"upstream": upstream, "retry_after_seconds": wait},
        )

    def _finish(
        self,
        upstream: str,
        breaker: CircuitBreaker,
        started: float | None,
        *,
        upstream_failed: bool | None,
        error: UpstreamError | str | None,
    ) -> float:
        """Record one attempt in the stats and the breaker; returns its latency in ms.

        `upstream_failed` None: the attempt says nothing about the upstream's health.
        """
        stats = self._stats[upstream]
        elapsed_ms = 0.0
        if started is not None:
            elapsed_ms = (time.perf_counter() - started) * 1000
            stats.requests += 1
            stats.last_latency_ms = elapsed_ms
            stats.latencies_ms.append(elapsed_ms)
        if error is not None:
            stats.failures += 1
            stats.last_error = error.message if isinstance(error, UpstreamError) else error
            stats.last_error_at = self._clock.now()
        before = breaker.state
        if upstream_failed is None:
            breaker.release()
        elif upstream_failed:
            breaker.record_failure()
        else:
            breaker.record_success()
        after = breaker.state
        if before == "closed" and after != "closed":
            logger.warning(
                "%s circuit opened after %s: %s",
                upstream,
                _failures(breaker.consecutive_failures),
                stats.last_error,
                extra={"upstream": upstream, "retry_in_seconds": breaker.reset_timeout_seconds},
            )
        elif before != "closed" and after == "closed":
            logger.info(
                "%s circuit closed: it answers again", upstream, extra={"upstream": upstream}
            )
        return elapsed_ms

    def _describe_error(
        self, upstream: str, method: str, url: str | URL, exc: BaseException, read_timeout: float
    ) -> UpstreamError:
        target = f"{method} {_safe_target(url)}"
        if isinstance(exc, TimeoutError):
            seconds = (
                self.connect_timeout
                if isinstance(exc, aiohttp.ConnectionTimeoutError)
                else read_timeout
            )
            return UpstreamError(upstream, f"{upstream} timed out after {seconds:g} s ({target})")
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            return UpstreamError(upstream, f"{upstream} cannot be reached ({target}): {reason}")
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return UpstreamError(upstream, f"{upstream} closed the connection ({target})")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamError(upstream, f"{upstream} sent a broken response body ({target})")
        if isinstance(exc, aiohttp.InvalidURL):
            return UpstreamError(upstream, f"{upstream} has an invalid URL ({target})")
        # other aiohttp errors may carry the full URL in their text: only their kind is shown
        return UpstreamError(
            upstream, f"{upstream} request failed ({target}): {type(exc).__name__}"
        )


def _failures(count: int) -> str:
    return f"{count} failure" if count == 1 else f"{count} failures"


async def _read_body(resp: aiohttp.ClientResponse, upstream: str, limit: int) -> bytes:
    """The whole body, refusing (and dropping the connection) past `limit` decoded bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        resp.close()
        raise _too_large(upstream, resp.url, resp.status, limit)
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
        body += chunk
        if len(body) > limit:
            resp.close()
            raise _too_large(upstream, resp.url, resp.status, limit)
    return bytes(body)
