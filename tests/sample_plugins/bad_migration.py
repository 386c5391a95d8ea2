from pathlib import Path

from medianest_server.plugin_api import hookimpl


@hookimpl
def medianest_migrations() -> Path:
    return Path(__file__).parent / "bad_migrations"
