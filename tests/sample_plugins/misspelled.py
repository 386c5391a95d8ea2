from medianest_server.plugin_api import NavItem, hookimpl


@hookimpl
def medianest_nav_item() -> list[NavItem]:
    return [NavItem("Typo", "/typo/")]
