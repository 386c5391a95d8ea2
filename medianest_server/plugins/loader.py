"""Plugin discovery, validation and isolation: one bad plugin never takes the server down.

Each plugin goes through the stages import → register (hook names checked) → config → routes →
migrations → startup. A failure at any stage disables that plugin alone, is logged once with
the reason, and shows on `medianest plugins`, `GET /api/v1/admin/plugins` and `/health/ready`.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.metadata
import inspect
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, cast

import pluggy
from marshmallow import RAISE, Schema, ValidationError, fields

from .. import hookspecs
from ..config import Config
from ..db import Database, DatabaseError, Migration, apply_migrations, load_migrations
from ..logs import redactor
from ..looplag import PluginCall, running, watched
from .context import PluginContext
from .startup_retry import PluginNotReady

log = logging.getLogger("medianest.plugins")
trace_log = logging.getLogger("medianest.hooks")

ENTRY_POINT_GROUP = "medianest"
ENV_ALLOW = "MEDIANEST_PLUGINS"
ENV_TRACE = "MEDIANEST_TRACE_HOOKS"
STARTUP_TIMEOUT_SECONDS = 30.0

# names a plugin cannot take: its pages would shadow the core's
RESERVED_NAMES = frozenset(
    {
        "api",
        "static",
        "health",
        "setup",
        "login",
        "logout",
        "admin",
        "ws",
        "profile",
        "notifications",
        "search",
        "core",
        "webhooks",
        "dashboard",
    }
)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CREATE_TABLE = re.compile(
    r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"`]?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE
)

# not_configured: loaded and mounted, but a setting it cannot work without (a schema field with
# metadata `setup: True`) is empty; it starts as soon as an admin fills those in
# retrying: its startup raised PluginNotReady; it is mounted and started again in the background
Status = Literal["active", "not_configured", "retrying", "failed", "disabled"]
HOOK_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith("medianest_"))


class PluginFailure(Exception):
    """A plugin failed at one stage; the message is what the admin sees."""


@dataclass
class PluginRecord:
    """One plugin as the server knows it."""

    name: str
    module: ModuleType | None = None
    builtin: bool = False
    distribution: str | None = None
    version: str | None = None
    status: Status = "active"
    stage: str | None = None
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    ctx: PluginContext | None = None
    migrations: list[Migration] = field(default_factory=list)
    secret_keys: set[str] = field(default_factory=set)
    setup_keys: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    impls: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # startups in a row that raised PluginNotReady
    next_attempt_at: datetime | None = None  # while retrying
    _cleanup: AsyncGenerator[Any, None] | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def usable(self) -> bool:
        """Loaded and mounted: active, waiting for its setup settings, or for its upstream."""
        return self.status in ("active", "not_configured", "retrying")

    @property
    def title(self) -> str:
        """What people read: the module's `PLUGIN_TITLE` (`"YouTube"`), else from the name."""
        given = getattr(self.module, "PLUGIN_TITLE", None)
        if isinstance(given, str) and given:
            return given
        return self.name.replace("_", " ").title()

    @property
    def hooks(self) -> list[str]:
        if self.module is None:
            return []
        return sorted(name for name in HOOK_NAMES if callable(getattr(self.module, name, None)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "builtin": self.builtin,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "stage": self.stage,
            "error": self.error,
            "missing": list(self.missing),
            "hooks": self.hooks,
            "attempts": self.attempts,
            "next_attempt_at": (
                self.next_attempt_at.isoformat() if self.next_attempt_at is not None else None
            ),
        }


@dataclass(frozen=True)
class Candidate:
    """A plugin found but not yet imported."""

    name: str
    load: Any  # () -> module
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False


def discover_entry_points() -> list[Candidate]:
    """Every `medianest` entry point of the installed distributions, sorted by name."""
    found = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        found.append(
            Candidate(
                entry_point.name,
                entry_point.load,
                dist.name if dist else None,
                dist.version if dist else None,
            )
        )
    return sorted(found, key=lambda c: c.name)


class PluginManager:
    """Loads plugins, keeps their status, and calls their hooks one plugin at a time."""

    def __init__(
        self,
        config: Config,
        *,
        builtins: Sequence[tuple[str, ModuleType]] = (),
        candidates: Sequence[Candidate] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.environ = environ
        self.config = config
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.trace = environ.get(ENV_TRACE, "") not in ("", "0", "false")
        self.allow = _parse_allow(environ.get(ENV_ALLOW))
        self.records: dict[str, PluginRecord] = {}
        self.reload_locks: dict[str, asyncio.Lock] = {}  # one settings change at a time
        self._builtins = [
            Candidate(name, lambda m=module: m, "medianest", None, builtin=True)
            for name, module in builtins
        ]
        self._candidates = list(candidates) if candidates is not None else None

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Import, register and configure every selected plugin (no I/O beyond imports)."""
        candidates = self._candidates if self._candidates is not None else discover_entry_points()
        for candidate in [*self._builtins, *candidates]:
            self._load_one(candidate)
        for problem in self.unknown_sections():
            log.error("%s", problem, extra={"plugin": problem.split(":")[0]})

    def unknown_sections(self) -> list[str]:
        """`[plugins.<name>]` sections no installed plugin answers to, each with a "did you
        mean" (a misspelt section would otherwise leave its plugin silently unconfigured)."""
        installed = sorted(r.name for r in self.records.values() if not r.builtin)
        problems = []
        for name in sorted(set(self.config.plugins.settings) - set(self.records)):
            close = difflib.get_close_matches(name, installed, n=1, cutoff=0.6)
            hint = f"; did you mean [plugins.{close[0]}]?" if close else ""
            known = f" (installed: {', '.join(installed)})" if installed and not close else ""
            problems.append(f"plugins.{name}: no plugin of that name is installed{hint}{known}")
        return problems

    def _load_one(self, candidate: Candidate) -> None:
        record = PluginRecord(
            candidate.name,
            builtin=candidate.builtin,
            distribution=candidate.distribution,
            version=candidate.version,
        )
        if candidate.name in self.records:
            other = self.records[candidate.name]
            record.status, record.stage = "failed", "import"
            record.error = (
                f"another plugin is already named {candidate.name!r} "
                f"(distribution {other.distribution})"
            )
            record.name = f"{candidate.name} ({candidate.distribution})"
            self.records[record.name] = record
            log.error("plugin disabled: %s", record.error, extra={"plugin": candidate.name})
            return
        self.records[candidate.name] = record
        if not candidate.builtin:
            reason = self._deselected(candidate.name)
            if reason:
                record.status, record.error = "disabled", reason
                return
        try:
            if not candidate.builtin:
                _check_name(candidate.name)
            record.module = candidate.load()
            self._register(record)
            self._configure(record, self.config.plugins.settings.get(record.name, {}))
        except PluginFailure as exc:
            self.fail(record, _stage_of(record), str(exc))
        except Exception as exc:
            self.fail(record, _stage_of(record), f"{type(exc).__name__}: {exc}")

    def _deselected(self, name: str) -> str | None:
        settings = self.config.plugins
        if self.allow is not None and name not in self.allow:
            return f"not in {ENV_ALLOW}"
        if settings.enabled and name not in settings.enabled:
            return "not in [plugins] enabled"
        if name in settings.disabled:
            return "in [plugins] disabled"
        section = settings.settings.get(name, {})
        if "enabled" in section:
            try:
                enabled = fields.Boolean().deserialize(section["enabled"])
            except ValidationError:
                return None  # reported by the config stage, which names the key
            if not enabled:
                return f"[plugins.{name}] enabled = false"
        return None

    def _register(self, record: PluginRecord) -> None:
        module = record.module
        assert module is not None
        problems = []
        for attr in dir(module):
            if not attr.startswith("medianest_") or not callable(getattr(module, attr)):
                continue
            marked = self.pm.parse_hookimpl_opts(module, attr) is not None
            if attr not in HOOK_NAMES:
                close = difflib.get_close_matches(attr, sorted(HOOK_NAMES), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append(f"unknown hook {attr}{hint}")
            elif not marked:
                problems.append(f"{attr} is not marked with @hookimpl")
        if problems:
            raise PluginFailure("; ".join(problems))
        try:
            self.pm.register(module, name=record.name)
        except pluggy.PluginValidationError as exc:
            raise PluginFailure(str(exc)) from exc
        for caller in self.pm.get_hookcallers(module) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin_name == record.name:
                    record.impls[caller.name] = impl

    def _configure(self, record: PluginRecord, section: Mapping[str, Any]) -> None:
        """Validate `section` and make it the plugin's config (the same dict, updated in place,
        so `ctx.config` follows); the status becomes active or not_configured."""
        loaded = self._validate_config(record, section)
        record.config.clear()
        record.config.update(loaded)
        record.missing = [key for key in record.setup_keys if _empty(loaded.get(key))]
        record.status = "not_configured" if record.missing else "active"
        record.attempts, record.next_attempt_at, record.error = 0, None, None

    def reconfigure(self, record: PluginRecord, section: Mapping[str, Any]) -> None:
        """Apply a new `[plugins.<name>]` section to a loaded plugin that is not running.

        A section the schema refuses fails the plugin (stage `config`)."""
        try:
            self._configure(record, section)
        except PluginFailure as exc:
            self.fail(record, "config", str(exc))
        except Exception as exc:
            self.fail(record, "config", f"{type(exc).__name__}: {exc}")

    def check_config(self, record: PluginRecord, section: Mapping[str, Any]) -> dict[str, Any]:
        """Validate `section` with the plugin's schema without applying it (raises
        PluginFailure naming every bad key)."""
        stage = record.stage
        try:
            return self._validate_config(record, section)
        finally:
            record.stage = stage

    def _validate_config(self, record: PluginRecord, given: Mapping[str, Any]) -> dict[str, Any]:
        record.stage = "config"
        section = dict(given)
        enabled = section.pop("enabled", True)
        try:
            fields.Boolean().deserialize(enabled)
        except ValidationError as exc:
            raise PluginFailure(f"plugins.{record.name}.enabled: Not a valid boolean.") from exc
        schema = self.call_sync(record, "medianest_config_schema")
        if schema is None:
            if section:
                raise PluginFailure(
                    f"plugins.{record.name}: this plugin has no settings, "
                    f"but {', '.join(sorted(section))} given"
                )
            record.stage = None
            return {"enabled": True}
        instance: Schema = schema() if isinstance(schema, type) else schema
        _read_secret_files(record.name, instance, section, self.config.base_dir)
        try:
            loaded = instance.load(section, unknown=RAISE)
        except ValidationError as exc:
            raise PluginFailure(
                "; ".join(_flatten(f"plugins.{record.name}", exc.messages, instance))
            ) from exc
        record.secret_keys = secret_fields(instance)
        record.setup_keys = setup_fields(instance)
        redactor.add(*(str(loaded.get(key) or "") for key in record.secret_keys))
        record.stage = None
        return {**loaded, "enabled": True}

    # -- calling hooks ---------------------------------------------------------------------

    def active(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.active]

    def usable(self) -> list[PluginRecord]:
        """Active plugins and those waiting for their setup settings: both are mounted."""
        return [r for r in self.records.values() if r.usable]

    def is_active(self, name: str) -> bool:
        record = self.records.get(name)
        return record is not None and record.active

    def implements(self, record: PluginRecord, hook: str) -> bool:
        return hook in record.impls

    def _impl(self, record: PluginRecord, hook: str) -> Any:
        return record.impls.get(hook)

    def _kwargs(self, record: PluginRecord, impl: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        available = {"ctx": record.ctx, **kwargs}
        return {name: available[name] for name in impl.argnames}

    def call_sync(self, record: PluginRecord, hook: str, **kwargs: Any) -> Any:
        """Call a hook that must not be async (config schema, migrations, routes, webhooks)."""
        impl = self._impl(record, hook)
        if impl is None:
            return None
        started = time.perf_counter()
        try:
            result = impl.function(**self._kwargs(record, impl, kwargs))
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close:
                    close()
                raise PluginFailure(f"{hook} must not be async")
            return result
        finally:
            self._trace(record, hook, started)

    async def call(
        self, record: PluginRecord, hook: str, *, budget: float | None = None, **kwargs: Any
    ) -> Any:
        """Call one plugin's implementation of `hook`; awaits it if needed, within `budget`.

        Raises whatever the plugin raised, or TimeoutError when it overran the budget.
        """
        impl = self._impl(record, hook)
        if impl is None:
            return None
        call = PluginCall(record.name, "hook", hook)  # named if it blocks the event loop
        started = time.perf_counter()
        try:
            with running(call):
                result = impl.function(**self._kwargs(record, impl, kwargs))
            if inspect.isawaitable(result):
                async with asyncio.timeout(budget):
                    result = await watched(call, result)
            return result
        finally:
            self._trace(record, hook, started)

    async def call_each(
        self, hook: str, *, budget: float | None = None, **kwargs: Any
    ) -> list[HookOutcome]:
        """Call `hook` on every active plugin, each isolated within `budget`.

        Plain functions are called in turn (they cannot be interrupted, so keep them cheap);
        coroutines run concurrently, each cut off at `budget`. One outcome per implementing
        plugin, in plugin order: its result, or the error that replaced it (logged once).
        """
        outcomes: list[HookOutcome | None] = []
        pending: dict[int, tuple[PluginRecord, Any]] = {}
        for record in self.active():
            impl = record.impls.get(hook)
            if impl is None:
                continue
            started = time.perf_counter()
            try:
                with running(PluginCall(record.name, "hook", hook)):
                    result = impl.function(**self._kwargs(record, impl, kwargs))
            except Exception as exc:
                outcomes.append(self._failed(record, hook, f"{type(exc).__name__}: {exc}"))
                continue
            finally:
                self._trace(record, hook, started)
            if inspect.isawaitable(result):
                pending[len(outcomes)] = (record, result)
                outcomes.append(None)
            else:
                outcomes.append(HookOutcome(record, result))
        if pending:

            async def settle(record: PluginRecord, awaitable: Any) -> HookOutcome:
                try:
                    async with asyncio.timeout(budget):
                        call = PluginCall(record.name, "hook", hook)
                        return HookOutcome(record, await watched(call, awaitable))
                except TimeoutError:
                    return self._failed(record, hook, f"took longer than {budget:g} s")
                except Exception as exc:
                    return self._failed(record, hook, f"{type(exc).__name__}: {exc}")

            settled = await asyncio.gather(*(settle(r, a) for r, a in pending.values()))
            for index, outcome in zip(pending, settled, strict=True):
                outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    def _failed(self, record: PluginRecord, hook: str, message: str) -> HookOutcome:
        log.warning("plugin hook failed: %s", message, extra={"plugin": record.name, "hook": hook})
        return HookOutcome(record, None, message)

    def _trace(self, record: PluginRecord, hook: str, started: float) -> None:
        if self.trace:
            trace_log.info(
                "hook call",
                extra={
                    "plugin": record.name,
                    "hook": hook,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )

    # -- lifecycle -------------------------------------------------------------------------

    def fail(self, record: PluginRecord, stage: str, error: str) -> None:
        """Disable a plugin; logged once, kept for the status page."""
        record.status, record.stage, record.error = "failed", stage, error
        log.error("plugin disabled: %s", error, extra={"plugin": record.name, "stage": stage})
        if record.module is not None and self.pm.is_registered(record.module):
            self.pm.unregister(record.module)

    def collect_migrations(self, dialect: str) -> list[tuple[PluginRecord, list[Migration]]]:
        """Each usable plugin's migrations; a plugin whose files are invalid is disabled."""
        collected: list[tuple[PluginRecord, list[Migration]]] = []
        for record in self.usable():
            if record.builtin or not self.implements(record, "medianest_migrations"):
                continue
            try:
                folder = self.call_sync(record, "medianest_migrations")
                if folder is None:
                    continue
                migrations = load_migrations(record.name, Path(folder), dialect)
                _check_table_prefixes(record.name, migrations)
            except Exception as exc:
                self.fail(record, "migrations", _describe(exc))
                continue
            record.migrations = migrations
            if migrations:
                collected.append((record, migrations))
        return collected

    async def apply_migrations(self, db: Database) -> list[Migration]:
        """Apply every active plugin's migrations; a plugin whose migration fails (it rolls
        back whole) is disabled alone. Returns the migrations applied now."""
        applied: list[Migration] = []
        for record, migrations in self.collect_migrations(db.dialect):
            try:
                applied += await apply_migrations(db, migrations)
            except DatabaseError as exc:
                self.fail(record, "migrations", str(exc))
        return applied

    def known_migrations(self) -> list[Migration]:
        """The migrations of the usable plugins (what readiness expects to find applied)."""
        return [m for record in self.usable() for m in record.migrations]

    async def start(self) -> None:
        """Run every active plugin's `medianest_startup`, one at a time, each isolated."""
        for record in self.active():
            await self.start_one(record)

    async def start_one(self, record: PluginRecord) -> None:
        """Run one plugin's `medianest_startup`; a failure disables it (stage `startup`).

        `PluginNotReady` makes it `retrying` instead, with the reason (see `startup_retry`);
        a plugin that was retrying and now starts is active again."""
        if not self.implements(record, "medianest_startup"):
            self._started(record)
            return
        try:
            result = await self.call(record, "medianest_startup", budget=STARTUP_TIMEOUT_SECONDS)
            if inspect.isasyncgen(result):
                async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
                    await result.__anext__()
                record._cleanup = cast(AsyncGenerator[Any, None], result)
        except PluginNotReady as exc:
            self._not_ready(record, exc)
        except StopAsyncIteration:
            self.fail(record, "startup", "medianest_startup must yield once")
        except TimeoutError:
            self.fail(record, "startup", f"did not start within {STARTUP_TIMEOUT_SECONDS:g} s")
        except Exception as exc:
            self.fail(record, "startup", _describe(exc))
        else:
            self._started(record)

    def _not_ready(self, record: PluginRecord, exc: PluginNotReady) -> None:
        reason = exc.reason or f"{record.title} is not ready yet"
        first = record.status != "retrying"
        record.status, record.stage, record.error = "retrying", "startup", reason
        record.attempts += 1
        if first:  # once per streak; the status shows every later attempt
            log.warning(
                "plugin not ready, starting it again later: %s",
                reason,
                extra={"plugin": record.name, "stage": "startup"},
            )

    def _started(self, record: PluginRecord) -> None:
        if record.status == "retrying":
            log.info(
                "plugin started after %d attempts",
                record.attempts + 1,
                extra={"plugin": record.name},
            )
            record.status, record.stage, record.error = "active", None, None
        record.attempts, record.next_attempt_at = 0, None

    async def stop(self) -> None:
        """Run the code after `yield` of every started plugin, in reverse order."""
        for record in reversed(list(self.records.values())):
            await self.stop_one(record)

    async def stop_one(self, record: PluginRecord) -> None:
        """Run the code after `yield` of one plugin's startup, if it started."""
        generator, record._cleanup = record._cleanup, None
        if generator is None:
            return
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
                await generator.__anext__()
        except StopAsyncIteration:
            pass
        except Exception:
            log.exception("plugin shutdown failed", extra={"plugin": record.name})
        else:
            log.error("medianest_startup yielded twice", extra={"plugin": record.name})

    def statuses(self) -> list[dict[str, Any]]:
        return [record.as_dict() for record in self.records.values()]

    def failed_names(self) -> list[str]:
        return [r.name for r in self.records.values() if r.status == "failed"]


@dataclass(frozen=True)
class HookOutcome:
    record: PluginRecord
    result: Any
    error: str | None = None


def _parse_allow(value: str | None) -> frozenset[str] | None:
    if value is None or value.strip() == "":
        return None
    if value.strip().lower() == "none":
        return frozenset()
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def valid_plugin_name(name: str) -> bool:
    """A name a plugin may have (its URL prefixes and table prefix)."""
    return bool(_NAME.match(name)) and name not in RESERVED_NAMES


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise PluginFailure(
            f"plugin name {name!r} must be lower case letters, digits and _ (max 40)"
        )
    if name in RESERVED_NAMES:
        raise PluginFailure(f"plugin name {name!r} is reserved by the core")


def _stage_of(record: PluginRecord) -> str:
    if record.module is None:
        return "import"
    return record.stage or "register"


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, PluginFailure) else f"{type(exc).__name__}: {exc}"


def _flatten(prefix: str, messages: Any, schema: Schema | None = None) -> list[str]:
    if isinstance(messages, list):
        return [f"{prefix}: {' '.join(map(str, messages))}"]
    lines = []
    for key, value in messages.items():
        if value == ["Unknown field."]:
            known = sorted(schema.fields) if schema is not None else []
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            value = [f"unknown key{hint}"]
        lines += _flatten(f"{prefix}.{key}", value)
    return lines


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, dict)) and not value)


def _read_secret_files(
    plugin: str, schema: Schema, section: dict[str, Any], base_dir: Path
) -> None:
    """`token_file = "/run/secrets/plex"` for fields marked secret, as in the core's sections."""
    for key in [k for k in section if k.endswith("_file")]:
        base = key.removesuffix("_file")
        schema_field = schema.fields.get(base)
        if schema_field is None or not schema_field.metadata.get("secret"):
            continue
        if base in section:
            raise PluginFailure(f"plugins.{plugin}.{key}: give either {base} or {key}, not both")
        path = base_dir / str(section.pop(key))
        try:
            section[base] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PluginFailure(
                f"plugins.{plugin}.{key}: cannot read {path}: {exc.strerror}"
            ) from exc


def _check_table_prefixes(plugin: str, migrations: Iterable[Migration]) -> None:
    for migration in migrations:
        for table in _CREATE_TABLE.findall(migration.sql):
            if not table.lower().startswith(f"{plugin}_"):
                raise PluginFailure(
                    f"{migration.name} creates table {table!r}; "
                    f"plugin tables must be named {plugin}_<noun>"
                )


def secret_fields(schema: Schema) -> set[str]:
    """Names of the fields a plugin marked `secret` (masked in forms, redacted in logs)."""
    return {name for name, f in schema.fields.items() if f.metadata.get("secret")}


def setup_fields(schema: Schema) -> list[str]:
    """Names of the fields a plugin marked `setup` (it cannot work while one is empty), in
    schema order: what the dashboard's "Connect your services" card asks for."""
    return [name for name, f in schema.fields.items() if f.metadata.get("setup")]
