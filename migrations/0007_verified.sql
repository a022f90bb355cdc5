-- shirath verify compares an MV's target with its query over the whole
-- source. verified_at is when the last verify that found no difference
-- ended (NULL: never); last_verify is the summary of the last verify,
-- passed or not: {"at", "ok", "version", "groups", "differences"}.
ALTER TABLE mv_jobs ADD COLUMN verified_at TIMESTAMPTZ;
ALTER TABLE mv_jobs ADD COLUMN last_verify JSONB;
