-- The job claim query orders ready jobs by priority and age; without this index PostgreSQL
-- sorts every queued job on each claim (bench/job_queue.py: 403 -> 824 claims/s).
CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_after, id) WHERE status = 'queued';
