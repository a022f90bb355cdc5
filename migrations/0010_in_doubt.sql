-- in_doubt records that a batch of this shard ended without shirath seeing
-- its outcome (an in-flight marker found by a later run: a crash, a lost
-- connection, an error such as ClickHouse's "Unknown status"). Only such a
-- batch can leave a part on one replica that ZooKeeper does not know, so
-- the end of a backfill checks for those parts only when a shard of the job
-- was in doubt (executor/orphans.go). Rows from before this column may have
-- had such a batch: they read true; new rows start false.
ALTER TABLE mv_job_shards ADD COLUMN in_doubt BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE mv_job_shards ALTER COLUMN in_doubt SET DEFAULT false;
