"""Test helpers for plugin authors; the fixtures are in `medianest_server.testing.plugin`,
registered with pytest through the `pytest11` entry point when MediaNest is installed."""

from .harness import PluginHarness
from .plugin import FakeUpstream, MediaNestClient

__all__ = ["FakeUpstream", "MediaNestClient", "PluginHarness"]
