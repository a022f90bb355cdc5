-- The daemon's desired specs, as written through its REST API (or loaded
-- from files); the daemon reconciles the jobs toward them.
CREATE TABLE mv_specs (
    database   VARCHAR(255) NOT NULL,
    name       VARCHAR(255) NOT NULL,
    spec       JSONB        NOT NULL,
    spec_hash  TEXT         NOT NULL,
    origin     TEXT         NOT NULL
        CONSTRAINT mv_specs_origin_check CHECK (origin IN ('api', 'file')),
    created_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ  NOT NULL DEFAULT now(),

    PRIMARY KEY (database, name)
);
