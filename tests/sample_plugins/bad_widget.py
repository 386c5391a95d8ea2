from medianest_server.plugin_api import NavItem, SearchGroup, Widget, hookimpl


@hookimpl
def medianest_dashboard_widgets() -> list[Widget]:
    async def load() -> dict[str, str]:
        raise RuntimeError("widget data exploded")

    return [Widget("broken", "Broken", "bad_widget/widget.html", load)]


@hookimpl
def medianest_nav_items() -> list[NavItem]:
    raise RuntimeError("nav exploded")


@hookimpl
async def medianest_search(query: str) -> SearchGroup:
    raise RuntimeError("search exploded")
