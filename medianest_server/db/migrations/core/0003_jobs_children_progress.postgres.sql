-- Jobs with children (a playlist and its videos) and progress kept on the job row.
-- A parent is never claimed by a worker: its state and progress follow its children's.
ALTER TABLE jobs
    ADD COLUMN parent_id BIGINT REFERENCES jobs (id) ON DELETE CASCADE,
    ADD COLUMN is_parent BOOLEAN NOT NULL DEFAULT false,
    -- percent done, 0..100; NULL until the handler reports
    ADD COLUMN progress DOUBLE PRECISION CHECK (progress BETWEEN 0 AND 100),
    -- what the handler last reported (bytes, speed, …); a parent's counts of children per status
    ADD COLUMN progress_data JSONB;
CREATE INDEX jobs_parent_id_idx ON jobs (parent_id) WHERE parent_id IS NOT NULL;
