"""The plugin loader through the assembled app: one bad plugin never takes the server down."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from medianest_server.app import create_app
from medianest_server.appkeys import HEALTH, PLUGINS, SERVICES
from medianest_server.auth.models import User
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.config import Config, load_config
from medianest_server.events import make_event
from medianest_server.plugins.loader import Candidate

from .sample_plugins import good

ALICE = User(id=1, username="alice", role="user")


def sample(name: str, module: str | None = None, dist: str = "sample-plugins") -> Candidate:
    """A plugin as an entry point would present it: importing happens when the loader asks."""
    path = f"tests.sample_plugins.{module or name}"
    return Candidate(name, lambda: importlib.import_module(path), dist, "1.2.3")


EVERY_BROKEN_KIND = [
    sample("good"),
    sample("bad_import"),
    sample("bad_config"),
    sample("bad_startup"),
    sample("bad_widget"),
    sample("hanging_health"),
    sample("misspelled"),
    sample("bad_migration"),
]


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def plugin_config(write_config: Callable[..., Path], database_url: str) -> Config:
    path = write_config(database={"url": database_url})
    path.write_text(
        path.read_text()
        + '\n[plugins.good]\ngreeting = "hi there"\napi_key = "good-secret-value-123"\n'
        + '\n[plugins.bad_config]\nurl = "not a url"\ntimeot_seconds = 3\n'
    )
    return load_config(path, environ={})


@pytest.fixture
async def client(plugin_config: Config, aiohttp_client) -> TestClient:
    good.started.clear()
    good.stopped.clear()
    good.task_runs.clear()
    good.seen_events.clear()
    app = create_app(plugin_config, plugins=EVERY_BROKEN_KIND, environ={})
    return await aiohttp_client(app)


def status_of(client: TestClient, name: str) -> dict[str, object]:
    return next(p for p in client.app[PLUGINS].statuses() if p["name"] == name)


async def test_server_serves_and_reports_each_broken_plugin_with_its_reason(
    client: TestClient,
) -> None:
    assert (await client.get("/health/live")).status == 200
    ready = await client.get("/health/ready")
    assert ready.status == 200
    body = await ready.json()
    assert sorted(body["failed_plugins"]) == [
        "bad_config",
        "bad_import",
        "bad_migration",
        "bad_startup",
        "misspelled",
    ]

    imp = status_of(client, "bad_import")
    assert imp["stage"] == "import"
    assert "ModuleNotFoundError" in str(imp["error"]) and "medianest_no_such_dependency" in str(
        imp["error"]
    )
    config = status_of(client, "bad_config")
    assert config["stage"] == "config"
    assert "plugins.bad_config.url: Not a valid URL." in str(config["error"])
    assert "plugins.bad_config.timeot_seconds: unknown key" in str(config["error"])
    startup = status_of(client, "bad_startup")
    assert startup["stage"] == "startup"
    assert "ConnectionError: cannot reach the upstream" in str(startup["error"])
    typo = status_of(client, "misspelled")
    assert typo["error"] == ("unknown hook medianest_nav_item; did you mean medianest_nav_items?")
    migration = status_of(client, "bad_migration")
    assert migration["stage"] == "migrations"
    assert "0001_oops.sql" in str(migration["error"])

    assert status_of(client, "good")["status"] == "active"
    assert status_of(client, "good")["version"] == "1.2.3"
    assert status_of(client, "bad_widget")["status"] == "active"


async def test_good_plugin_routes_config_migrations_and_startup_work(client: TestClient) -> None:
    response = await client.get("/api/v1/good/hello")
    assert await response.json() == {"greeting": "hello"}
    page = await client.get("/good/")
    assert "good page" in await page.text()
    assert good.started == ["hi there"]
    db = client.app[SERVICES].db
    assert await db.fetch_val("SELECT count(*) FROM good_greetings") == 0
    # the failed migration rolled back whole: its first table does not exist
    tables = await db.fetch_all(
        "SELECT name FROM sqlite_master WHERE name = 'bad_migration_things'"
        if db.dialect == "sqlite"
        else "SELECT tablename AS name FROM pg_tables WHERE tablename = 'bad_migration_things'"
    )
    assert tables == []


async def test_routes_of_a_plugin_that_failed_to_start_answer_503(client: TestClient) -> None:
    response = await client.get("/api/v1/bad_startup/status")
    assert response.status == 503
    # plain words: the plugin by its title, never a stage or a setting name
    assert (await response.json())["error"]["message"].startswith(
        "Bad Startup is not working right now."
    )


async def test_user_routes_refuse_anonymous_callers(client: TestClient) -> None:
    response = await client.get("/api/v1/good/private")
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


async def test_per_request_hooks_isolate_failures_and_overruns(client: TestClient) -> None:
    manager = client.app[PLUGINS]
    nav = await manager.call_each("medianest_nav_items", budget=0.5, user=ALICE)
    by_plugin = {o.record.name: o for o in nav}
    assert [item.title for item in by_plugin["good"].result] == ["Good"]
    assert by_plugin["bad_widget"].error == "RuntimeError: nav exploded"
    assert "misspelled" not in by_plugin  # disabled plugins are never called

    search = await manager.call_each("medianest_search", budget=0.3, user=ALICE, query="dune")
    by_plugin = {o.record.name: o for o in search}
    assert by_plugin["good"].result.results[0].title == "dune result"
    assert by_plugin["hanging_health"].error == "took longer than 0.3 s"
    assert by_plugin["bad_widget"].error == "RuntimeError: search exploded"


async def test_health_checks_run_alone_and_a_hang_is_down(client: TestClient) -> None:
    outcomes = {(o.plugin, o.name): o for o in await client.app[HEALTH].run()}
    assert outcomes[("good", "upstream")].status == "up"
    assert outcomes[("hanging_health", "forever")].status == "down"
    assert outcomes[("hanging_health", "forever")].message == "timed out after 0.2 s"
    assert outcomes[("core.health", "database")].status == "up"
    assert outcomes[("core.health", "cache")].status == "up"


async def test_background_tasks_and_event_handlers_run_in_the_assembled_app(
    client: TestClient,
) -> None:
    await wait_for(lambda: len(good.task_runs) >= 2)
    await client.app[SERVICES].events.publish(make_event("other.thing.happened", {"n": 1}))
    await wait_for(lambda: len(good.seen_events) == 1)
    assert good.seen_events[0].data == {"n": 1}


async def test_startup_cleanup_runs_at_shutdown(plugin_config: Config, aiohttp_client) -> None:
    good.stopped.clear()
    client = await aiohttp_client(create_app(plugin_config, plugins=[sample("good")], environ={}))
    await client.close()
    assert good.stopped == ["good"]


def test_selection_by_enabled_disabled_and_environment(plugin_config: Config) -> None:
    from dataclasses import replace

    candidates = [sample("good"), sample("bad_widget"), sample("hanging_health")]

    def statuses(config: Config, environ: dict[str, str]) -> dict[str, str]:
        app = create_app(config, plugins=candidates, environ=environ)
        return {p["name"]: p["status"] for p in app[PLUGINS].statuses() if not p["builtin"]}

    assert statuses(plugin_config, {"MEDIANEST_PLUGINS": "good"}) == {
        "good": "active",
        "bad_widget": "disabled",
        "hanging_health": "disabled",
    }
    assert set(statuses(plugin_config, {"MEDIANEST_PLUGINS": "none"}).values()) == {"disabled"}
    only = replace(plugin_config, plugins=replace(plugin_config.plugins, enabled=("bad_widget",)))
    assert statuses(only, {})["bad_widget"] == "active"
    assert statuses(only, {})["good"] == "disabled"
    off = replace(plugin_config, plugins=replace(plugin_config.plugins, disabled=("good",)))
    assert statuses(off, {})["good"] == "disabled"


def test_two_distributions_with_one_plugin_name(plugin_config: Config) -> None:
    app = create_app(
        plugin_config,
        plugins=[sample("good"), sample("good", "collider", dist="other-dist")],
        environ={},
    )
    records = app[PLUGINS].statuses()
    second = next(p for p in records if p["distribution"] == "other-dist")
    assert second["status"] == "failed"
    assert "already named 'good'" in str(second["error"])
    assert next(p for p in records if p["distribution"] == "sample-plugins")["status"] == "active"


def test_trace_logs_every_hook_call_with_its_duration(
    plugin_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="medianest.hooks"):
        create_app(plugin_config, plugins=[sample("good")], environ={"MEDIANEST_TRACE_HOOKS": "1"})
    calls = [r for r in caplog.records if r.name == "medianest.hooks"]
    assert {(r.plugin, r.hook) for r in calls} >= {  # type: ignore[attr-defined]
        ("good", "medianest_config_schema"),
        ("good", "medianest_routes"),
    }
    assert all(r.duration_ms >= 0 for r in calls)  # type: ignore[attr-defined]


async def test_plugin_secrets_never_reach_the_log(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    from medianest_server.logs import redactor

    assert redactor("calling with good-secret-value-123") == "calling with ***"


async def test_leader_only_task_runs_on_one_of_two_instances_sharing_redis(
    write_config: Callable[..., Path], tmp_path: Path, aiohttp_server
) -> None:
    import redis.asyncio as aioredis

    from .conftest import REDIS_URL, service_missing
    from .sample_plugins import leader_task

    probe = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await probe.ping()
        await probe.delete("medianest:leader")
    except (aioredis.RedisError, OSError) as exc:
        service_missing("Redis", exc)
    finally:
        await probe.aclose()
    leader_task.runs.clear()
    servers = []
    for name in ("one", "two"):
        path = write_config(
            server={"data_dir": f"data-{name}"},
            database={"url": f"sqlite:///{tmp_path}/{name}.db"},
            redis={"url": REDIS_URL},
        )
        path = path.rename(tmp_path / f"{name}.toml")
        config = load_config(path, environ={})
        app = create_app(config, plugins=[sample("leader_task")], environ={})
        servers.append(await aiohttp_server(app))
    await wait_for(lambda: len(leader_task.runs) >= 5)
    assert len(set(leader_task.runs)) == 1, "both instances ran a leader-only task"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # prose that names a key keeps its words
        (
            "plugins.sonarr.api_key: Missing data for required field.",
            "plugins.sonarr.api_key: Missing data for required field.",
        ),
        ("the token was refused (/)", "the token was refused (/)"),
        # values go, in every structured form
        ("GET /x?X-Plex-Token=abc123def&y=1", "GET /x?X-Plex-Token=***&y=1"),
        ('{"password": "hunter2", "user": "a"}', '{"password": "***", "user": "a"}'),
        ("api_key=0123456789abcdef status=401", "api_key=*** status=401"),
        ("Authorization: Bearer abcdefghijklmn", "Authorization: Bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
        ("postgresql://u:pw123@host/db", "postgresql://u:***@host/db"),
    ],
)
def test_log_redaction_blanks_values_never_message_words(line: str, expected: str) -> None:
    from medianest_server.logs import redactor

    assert redactor(line) == expected


async def test_a_plugin_that_failed_early_still_answers_503_and_shows_admins_why(
    client: TestClient,
) -> None:
    """Failed at import or config: its routes were never known, yet its URL prefixes answer
    503 (not 404), with the reason for admins, and the admin's dashboard has a card."""
    auth = client.app[AUTH_SERVICES]
    admin = await auth.users.create("admin", role="admin")
    user = await auth.users.create("alice", role="user")
    admin_token, _ = await auth.api_tokens.create(admin.id, "t")
    user_token, _ = await auth.api_tokens.create(user.id, "t")
    as_admin = {"Authorization": f"Bearer {admin_token}"}
    as_user = {"Authorization": f"Bearer {user_token}"}
    for name in ("bad_import", "bad_config"):
        api = await client.get(f"/api/v1/{name}/anything", headers=as_user)
        assert api.status == 503, name
        message = (await api.json())["error"]["message"]
        assert message.endswith("is not working right now. Please try again later.")
        page = await client.get(f"/{name}/", headers=as_user)
        assert page.status == 503
        detailed = await client.get(f"/api/v1/{name}/anything", headers=as_admin)
        assert "It failed at" in (await detailed.json())["error"]["message"]
    dashboard = await (await client.get("/", headers=as_admin)).text()
    assert "Bad Config is not working" in dashboard and "timeot_seconds" in dashboard
    assert "Bad Import is not working" in dashboard
    assert "is not working</h2>" not in await (await client.get("/", headers=as_user)).text()


async def test_a_plugin_notifies_every_admin_and_the_bell_keeps_it(
    client: TestClient,
) -> None:
    """`ctx.notify("admins", ...)`: stored for each admin (not disabled), counted in their
    bell even if they were not connected, pushed live to those who were; users get nothing."""
    auth = client.app[AUTH_SERVICES]
    first = await auth.users.create("admin1", role="admin")
    second = await auth.users.create("admin2", role="admin")
    gone = await auth.users.create("admin3", role="admin")
    await auth.users.update(first, gone.id, disabled=True)
    user = await auth.users.create("bob", role="user")
    live = client.app[SERVICES].events.subscribe(topics=[f"user:{first.id}"])
    ctx = client.app[PLUGINS].records["good"].ctx
    assert ctx is not None
    assert await ctx.notify("admins", "Overseerr is down", link="/admin/health") == 2
    for person, expected in ((first, 1), (second, 1), (user, 0)):
        token, _ = await auth.api_tokens.create(person.id, "t")
        page = await client.get(
            "/api/v1/notifications", headers={"Authorization": f"Bearer {token}"}
        )
        assert (await page.json())["unread"] == expected, person.username
    db = client.app[SERVICES].db
    stored = await db.fetch_val(
        "SELECT count(*) FROM notifications WHERE user_id = :u", {"u": gone.id}
    )
    assert stored == 0  # a disabled admin gets nothing
    event = await asyncio.wait_for(live.__anext__(), timeout=5)
    assert event.type == "core.notification.created" and event.data["title"] == "Overseerr is down"
    live.close()


async def test_a_jobs_progress_reaches_its_owner_live_in_the_assembled_app(
    client: TestClient,
) -> None:
    """ctx.jobs of a running app publishes core.job.updated to the owner's topic."""
    from medianest_server.plugin_api import Job, JobContext, Worker

    auth = client.app[AUTH_SERVICES]
    owner = await auth.users.create("owner", role="user")
    ctx = client.app[PLUGINS].records["good"].ctx
    assert ctx is not None
    live = client.app[SERVICES].events.subscribe(topics=[f"user:{owner.id}"])

    async def download(job: Job, context: JobContext) -> dict[str, int]:
        await context.progress({"percent": 50})
        return {"done": 1}

    job = await ctx.jobs.enqueue("good", "download", {}, user_id=owner.id)
    worker = Worker(ctx.jobs, queues=["good"], handlers={"download": download})
    await worker.run_until_idle()
    progress: list[object] = []
    async with asyncio.timeout(5):
        while 50 not in progress:
            event = await live.__anext__()
            if event.type == "core.job.updated" and event.data["job_id"] == job.id:
                progress.append(event.data["progress"])
    live.close()
    stored = await ctx.jobs.get(job.id)
    assert stored is not None and stored.status == "succeeded"
