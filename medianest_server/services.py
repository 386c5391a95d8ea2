"""The shared services, chosen by configuration: in-process by default, Redis when configured.

One place decides which implementation runs; everything else sees the interfaces (Cache,
EventBus, RateLimiter, LeaderElection). Built in `create_app`, started and stopped by the app.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .cache import Cache, MemoryCache, RedisCache
from .clock import SYSTEM_CLOCK, Clock
from .config import Config
from .db import Database, open_database
from .events import EventBus, MemoryEventBus, RedisEventBus
from .http import HttpClient
from .jobs import JobQueue
from .leader import AlwaysLeader, LeaderElection, PostgresLeader, RedisLeader
from .notifications import Notifications
from .plugins.context import ServiceRegistry
from .ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from .secretbox import SecretBox
from .tasks import TaskRunner
from .usercache import DEFAULT_TTL, UserCache, event_publisher

log = logging.getLogger("medianest.services")


@dataclass
class Services:
    config: Config
    clock: Clock
    db: Database
    cache: Cache
    events: EventBus
    ratelimiter: RateLimiter
    jobs: JobQueue
    http: HttpClient
    secrets: SecretBox
    leader: LeaderElection
    tasks: TaskRunner
    users: UserCache
    notifications: Notifications
    registry: ServiceRegistry = field(default_factory=ServiceRegistry)
    redis: Any = None  # redis.asyncio.Redis when [redis] url is set

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None else "in-process"

    async def start(self) -> None:
        """Connect what needs connecting (the database is connected by the caller)."""
        await self.events.start()
        await self.http.start()

    async def start_background(self) -> None:
        await self.leader.start()
        await self.tasks.start()

    async def close(self) -> None:
        """Stop everything in reverse order; one failure does not keep the rest open."""
        for name, closer in (
            ("tasks", self.tasks.stop),
            ("leader", self.leader.stop),
            ("http", self.http.close),
            ("events", self.events.close),
            ("cache", self.cache.close),
            ("rate limiter", self.ratelimiter.close),
        ):
            try:
                await closer()
            except Exception:
                log.exception("closing %s failed", name)
        if self.redis is not None:
            await self.redis.aclose()


def build_services(config: Config, *, clock: Clock = SYSTEM_CLOCK) -> Services:
    """Create (not start) the services for `config`. Raises UnknownDatabaseURL."""
    db = open_database(
        config.database.url,
        base_dir=config.base_dir,
        pool_size=config.database.pool_size,
        busy_timeout_ms=config.database.busy_timeout_ms,
    )
    redis_client = None
    cache: Cache
    events: EventBus
    ratelimiter: RateLimiter
    leader: LeaderElection
    if config.redis.url:
        import redis.asyncio as aioredis

        redis_client = aioredis.from_url(
            config.redis.url,
            socket_connect_timeout=5,
            socket_timeout=10,
            health_check_interval=30,
            max_connections=500,
        )
        cache = RedisCache(redis_client, clock=clock)
        events = RedisEventBus(redis_client)
        ratelimiter = RedisRateLimiter(redis_client, clock=clock)
        leader = RedisLeader(redis_client)
    else:
        cache = MemoryCache(clock=clock)
        events = MemoryEventBus()
        ratelimiter = MemoryRateLimiter(clock=clock)
        leader = PostgresLeader(db) if db.dialect == "postgresql" else AlwaysLeader()
    from . import __version__

    # Several instances share PostgreSQL; without Redis they cannot tell each other of a
    # revoke, so each would trust its cache for the TTL: then nothing is cached.
    alone_or_told = redis_client is not None or db.dialect == "sqlite"
    users = UserCache(
        clock=clock, ttl=DEFAULT_TTL if alone_or_told else 0, publish=event_publisher(events, clock)
    )
    return Services(
        config=config,
        clock=clock,
        db=db,
        cache=cache,
        events=events,
        ratelimiter=ratelimiter,
        jobs=JobQueue(db, clock=clock, events=events),  # progress reaches the owner live
        http=HttpClient(clock=clock, user_agent=f"MediaNest/{__version__}"),
        secrets=SecretBox(config.server.secret_key),
        leader=leader,
        tasks=TaskRunner(leader=leader, clock=clock),
        users=users,
        notifications=Notifications(db, events, cache=users, clock=clock),
        redis=redis_client,
    )
