-- One row per materialized view that shirath manages: what was asked for
-- (config, spec_hash), what was applied (applied), and how far its backfill is.
CREATE TABLE mv_jobs (
    id                BIGSERIAL PRIMARY KEY,
    name              VARCHAR(255) NOT NULL,
    database          VARCHAR(255) NOT NULL DEFAULT 'default',
    source_table      VARCHAR(255) NOT NULL,
    target_table      VARCHAR(255) NOT NULL,
    status            VARCHAR(50)  NOT NULL DEFAULT 'pending'
        CONSTRAINT mv_jobs_status_check CHECK (status IN (
            'pending', 'creating', 'waiting', 'backfilling', 'optimizing',
            'completed', 'failed', 'paused', 'needs_attention')),

    -- NULL on a single node.
    cluster_name      VARCHAR(255),
    nodes             JSONB  NOT NULL DEFAULT '[]',

    -- Backfill: rows with id <= cutoff_id existed before the MV and are copied
    -- by the backfill; the MV itself handles everything after.
    cutoff_id         BIGINT,
    total_rows        BIGINT NOT NULL DEFAULT 0,
    processed_rows    BIGINT NOT NULL DEFAULT 0,
    last_processed_id BIGINT,

    -- The spec document and its hash, to tell whether the spec changed.
    config            JSONB  NOT NULL,
    spec_hash         TEXT   NOT NULL DEFAULT '',
    -- object name -> {"sql": generated SQL, "server": create query as the
    -- server printed it}: the planner compares the live server text with
    -- "server" to detect drift, and the generated SQL with "sql" to detect
    -- spec changes, without ever comparing generated text with server text.
    applied           JSONB  NOT NULL DEFAULT '{}',
    fence_verified    BOOLEAN NOT NULL DEFAULT false,
    error_message     TEXT,

    inserted_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),

    CONSTRAINT mv_jobs_database_name_key UNIQUE (database, name)
);

CREATE INDEX idx_mv_jobs_name ON mv_jobs (name);
CREATE INDEX idx_mv_jobs_status ON mv_jobs (status);
