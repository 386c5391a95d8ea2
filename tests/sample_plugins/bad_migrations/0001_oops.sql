CREATE TABLE bad_migration_things (id INTEGER PRIMARY KEY);
INSERT INTO no_such_table VALUES (1);
