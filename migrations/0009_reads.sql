-- A chain: an MV whose source is another MV's target reads a physical
-- version of it (the upstream's {target_table}__vN, or on 18.16 its MV's
-- name). reads records which one the job's version reads (NULL for an MV
-- reading a plain table, and for one recorded before this column, which
-- reads version 1's names), so that a change of the upstream rebuilds the
-- MVs reading it, and a change of only the downstream builds over the
-- upstream's live version (see planner/ripple.go).
ALTER TABLE mv_jobs ADD COLUMN reads JSONB;
