"""Typed keys for what the application holds (never string keys on the app)."""

from __future__ import annotations

from aiohttp import web

from .config import Config
from .db import Database, Migration
from .healthchecks import HealthRegistry
from .plugins.dispatch import EventDispatcher
from .plugins.loader import PluginManager
from .services import Services

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", Database)
MIGRATIONS = web.AppKey("migrations", list[Migration])
SERVICES = web.AppKey("services", Services)
PLUGINS = web.AppKey("plugins", PluginManager)
HEALTH = web.AppKey("health", HealthRegistry)
DISPATCHER = web.AppKey("event_dispatcher", EventDispatcher)
