-- Collections MediaNest made for a person (a downloaded playlist): whose they are, so each
-- person's playlists stay their own and their library view can show them as theirs.
CREATE TABLE plex_collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    section_key TEXT NOT NULL,
    collection_key TEXT NOT NULL,
    playlist TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (user_id, section_key, playlist),
    UNIQUE (collection_key)
);
CREATE INDEX plex_collections_user ON plex_collections (user_id);
