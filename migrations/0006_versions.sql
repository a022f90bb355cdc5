-- A change of a live MV builds a new version beside the live one, then
-- switches readers to it (see executor/swap.go). version is the version the
-- job's objects, fence and backfill progress describe; live_version is the
-- one readers see. version > live_version while a change is under way.
-- Version 1 uses the spec's names; version N >= 2 the physical names
-- {name}__vN and {target_table}__vN, with {target_table} a Merge table over
-- the live one. previous_config is the spec of the version replaced last.
ALTER TABLE mv_jobs ADD COLUMN version INT NOT NULL DEFAULT 1 CHECK (version >= 1);
ALTER TABLE mv_jobs ADD COLUMN live_version INT NOT NULL DEFAULT 1 CHECK (live_version >= 1 AND live_version <= version);
ALTER TABLE mv_jobs ADD COLUMN previous_config JSONB;
ALTER TABLE mv_jobs ADD COLUMN switched_at TIMESTAMPTZ;
