-- Jobs with children (a playlist and its videos) and progress kept on the job row.
-- A parent is never claimed by a worker: its state and progress follow its children's.
ALTER TABLE jobs ADD COLUMN parent_id INTEGER REFERENCES jobs (id) ON DELETE CASCADE;
ALTER TABLE jobs ADD COLUMN is_parent BOOLEAN NOT NULL DEFAULT FALSE CHECK (is_parent IN (0, 1));
-- percent done, 0..100; NULL until the handler reports
ALTER TABLE jobs ADD COLUMN progress REAL CHECK (progress BETWEEN 0 AND 100);
-- what the handler last reported (bytes, speed, …); a parent's counts of children per status
ALTER TABLE jobs ADD COLUMN progress_data JSON;
CREATE INDEX jobs_parent_id_idx ON jobs (parent_id) WHERE parent_id IS NOT NULL;
