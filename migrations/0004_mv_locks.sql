-- Who holds each shirath advisory lock, only so that "locked by ..." messages
-- can name the holder: the lock itself is the PostgreSQL advisory lock, which
-- the server drops with the holder's session. A row whose session is gone is
-- stale; pid (the holder's backend pid) lets readers tell a live row from a
-- stale one by joining pg_locks, and the next holder overwrites it.
CREATE TABLE mv_locks (
    lock_key    TEXT        PRIMARY KEY,
    holder      TEXT        NOT NULL,
    pid         INT         NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
