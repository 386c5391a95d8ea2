"""MediaNest: a self-hosted portal for the people who share a Plex server."""

__version__ = "0.1.0"
