"""Devices in words: "Chrome on Linux", "Safari on iPhone", from a session's User-Agent header.

Parsing uses ua-parser (uap-python: the uap-core rules, maintained and pure Python). A parse costs
about a millisecond (the first one in a process about 150 ms, while the rules compile), so
results are cached and only the profile page asks: nothing on a hot path parses a user agent.
"""

from __future__ import annotations

import functools

from ua_parser import parse

# uap-core's family names, as a person would say them
_BROWSERS = {
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Android app",
    "HeadlessChrome": "Headless Chrome",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "iOS app",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
    "Samsung Internet": "Samsung Internet",
}
_SYSTEMS = {
    "Mac OS X": "macOS",
    "Chrome OS": "ChromeOS",
    "Ubuntu": "Linux",
    "Fedora": "Linux",
    "Debian": "Linux",
}
# on iOS the device says more than the system does
_APPLE_DEVICES = ("iPhone", "iPad", "iPod")
UNKNOWN = "Unknown device"


@functools.lru_cache(maxsize=512)
def describe_device(user_agent: str | None) -> str:
    """A session's device as a person would name it: "Firefox on Android", "Safari on iPhone",
    "curl" for a program that is not a browser, "Unknown device" when nothing is known."""
    if not user_agent or not user_agent.strip():
        return UNKNOWN
    result = parse(user_agent[:512])
    family = result.user_agent.family if result.user_agent else "Other"
    if family == "Other":
        return UNKNOWN
    browser = _BROWSERS.get(family, family)
    system = result.os.family if result.os and result.os.family != "Other" else None
    if system == "iOS" and result.device and result.device.family in _APPLE_DEVICES:
        system = result.device.family
    elif system is not None:
        system = _SYSTEMS.get(system, system)
    return f"{browser} on {system}" if system else browser
