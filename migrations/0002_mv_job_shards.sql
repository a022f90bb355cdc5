-- Backfill progress per shard (per node on a cluster without replication;
-- shard 0 on a single node), so that a resumed backfill restarts each shard
-- where that shard stopped.
CREATE TABLE mv_job_shards (
    job_id            BIGINT NOT NULL REFERENCES mv_jobs (id) ON DELETE CASCADE,
    shard             INT    NOT NULL,
    -- The node address that runs or ran the batches.
    replica           TEXT   NOT NULL DEFAULT '',
    status            VARCHAR(50) NOT NULL DEFAULT 'pending'
        CONSTRAINT mv_job_shards_status_check CHECK (status IN (
            'pending', 'creating', 'waiting', 'backfilling', 'optimizing',
            'completed', 'failed', 'paused', 'needs_attention')),
    total_rows        BIGINT NOT NULL DEFAULT 0,
    processed_rows    BIGINT NOT NULL DEFAULT 0,
    last_processed_id BIGINT,
    -- A batch that was started and not yet confirmed. It is written before
    -- the INSERT ... SELECT runs, so that after a crash the executor knows a
    -- batch may have landed and checks (by query id or by counting) before
    -- running it again, instead of inserting its rows twice.
    inflight_lo       BIGINT,
    inflight_hi       BIGINT,
    inflight_query_id TEXT,
    error_message     TEXT,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (job_id, shard, replica)
);
