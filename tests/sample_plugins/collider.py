"""Claims the same name as `good` from another distribution: the second one is refused."""

from medianest_server.plugin_api import hookimpl


@hookimpl
def medianest_diagnostics() -> dict[str, str]:
    return {}
