"""MediaNest: a self-hosted portal for the people who share a Plex server."""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # the one name plugins need most

__all__ = ["__version__", "hookimpl"]
