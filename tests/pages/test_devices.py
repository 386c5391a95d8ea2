"""Devices named as a person would name them, from the User-Agent header of their session."""

from __future__ import annotations

from medianest_server.web.devices import describe_device

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_ANDROID = "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def test_user_agents_are_named_as_a_person_would() -> None:
    assert describe_device(CHROME_LINUX) == "Chrome on Linux"
    assert describe_device(FIREFOX_ANDROID) == "Firefox on Android"
    assert describe_device(SAFARI_IPHONE) == "Safari on iPhone"
    assert describe_device(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
    ) == ("Safari on macOS")
    assert describe_device("curl/8.5.0") == "curl"
    assert describe_device(None) == describe_device("") == "Unknown device"
    assert describe_device("}{ not a browser") == "Unknown device"
