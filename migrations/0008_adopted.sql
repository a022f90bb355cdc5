-- An MV that existed before shirath managed it (created by hand, or by
-- another tool) is adopted: its job is recorded as completed at version 1,
-- with no fence and no backfill, and adopted_at says when. Its target was
-- filled by whoever created it: shirath shows it as "data not verified"
-- until `shirath verify` passes after adopted_at (0007's verified_at).
ALTER TABLE mv_jobs ADD COLUMN adopted_at TIMESTAMPTZ;
