"""MediaNest's Plex plugin: sign in with Plex, the library, collections, refreshes, webhooks."""
