package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// shardsLastID is the job-level last_processed_id derived from its shards
// (job id in $1): the id up to which every shard has copied, so that it never
// claims more than was done. It is NULL while a shard that still has work has
// not checkpointed yet; a completed shard with no id (nothing to copy) does
// not hold it back.
const shardsLastID = `SELECT CASE WHEN bool_and(last_processed_id IS NOT NULL OR status = 'completed')
	THEN MIN(last_processed_id) END FROM mv_job_shards WHERE job_id = $1`

// UpsertShard writes every field of one shard's progress (the row is keyed
// by job, shard and replica) and recomputes the job's processed_rows and
// last_processed_id from its shards. An empty Status is stored as pending.
// It returns ErrNotFound when the job does not exist.
func (s *Store) UpsertShard(ctx context.Context, jobID int64, p ShardProgress) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockJob(ctx, tx, jobID); err != nil {
			return err
		}
		if err := upsertShard(ctx, tx, jobID, &p); err != nil {
			return err
		}
		return refreshJobProgress(ctx, tx, jobID, nil, nil)
	})
	if err != nil {
		return fmt.Errorf("upsert shard %d/%s of job %d: %w", p.Shard, p.Replica, jobID, err)
	}
	return nil
}

// DeleteShards deletes every shard row of the job, to restart its backfill
// from scratch. The job's own progress columns are left as they are: the
// caller resets them with UpdateJob, which writes them as given once the job
// has no shards.
func (s *Store) DeleteShards(ctx context.Context, jobID int64) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM mv_job_shards WHERE job_id = $1`, jobID); err != nil {
		return fmt.Errorf("delete shards of job %d: %w", jobID, err)
	}
	return nil
}

// BeginBatch records that the batch of ids [lo, hi] is about to be copied on
// the shard, with the ClickHouse query id that will run it, creating the shard
// row (as backfilling) if there is none. It returns ErrNotFound when the job
// does not exist. It returns only once the marker is
// durable: after a crash the executor finds it and checks whether the batch
// landed before running it again, so an INSERT ... SELECT must never run
// without it.
func (s *Store) BeginBatch(ctx context.Context, jobID int64, shard int, replica string, lo, hi int64, queryID string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := syncCommit(ctx, tx); err != nil {
			return err
		}
		if err := lockJob(ctx, tx, jobID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO mv_job_shards (job_id, shard, replica, status, inflight_lo, inflight_hi, inflight_query_id)
			VALUES ($1, $2, $3, 'backfilling', $4, $5, $6)
			ON CONFLICT (job_id, shard, replica) DO UPDATE SET
				inflight_lo = EXCLUDED.inflight_lo, inflight_hi = EXCLUDED.inflight_hi,
				inflight_query_id = EXCLUDED.inflight_query_id, updated_at = now()`,
			jobID, shard, replica, lo, hi, nullString(queryID))
		if err != nil {
			return err
		}
		// A new shard holds the job's last_processed_id back until it
		// checkpoints.
		return refreshJobProgress(ctx, tx, jobID, nil, nil)
	})
	if err != nil {
		return fmt.Errorf("begin batch [%d, %d] on shard %d/%s of job %d: %w", lo, hi, shard, replica, jobID, err)
	}
	return nil
}

// MarkInDoubt records that a batch of the shard ended without its outcome
// being seen (in_doubt; see ShardProgress.InDoubt). It leaves updated_at
// alone: while an in-flight marker is set, updated_at is when the batch was
// marked, and resolving the batch compares the server's boot time with it.
// It returns ErrNotFound when the shard has no row.
func (s *Store) MarkInDoubt(ctx context.Context, jobID int64, shard int, replica string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := syncCommit(ctx, tx); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE mv_job_shards SET in_doubt = true WHERE job_id = $1 AND shard = $2 AND replica = $3`, jobID, shard, replica)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark shard %d/%s of job %d in doubt: %w", shard, replica, jobID, err)
	}
	return nil
}

// CompleteBatch checkpoints a batch that ended at id hi and copied rows rows:
// in one transaction it clears the shard's in-flight marker, advances the
// shard's last_processed_id and processed_rows, and recomputes the job's
// aggregate. It is idempotent: a batch at or below the shard's
// last_processed_id was already counted and only its marker is cleared, so a
// retry after an uncertain commit does not count the rows twice. It returns
// ErrNotFound when the shard has no row (BeginBatch or UpsertShard makes it).
func (s *Store) CompleteBatch(ctx context.Context, jobID int64, shard int, replica string, hi int64, rows int64) error {
	if rows < 0 {
		return fmt.Errorf("complete batch up to %d on shard %d/%s of job %d: negative row count %d", hi, shard, replica, jobID, rows)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := syncCommit(ctx, tx); err != nil {
			return err
		}
		if err := lockJob(ctx, tx, jobID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE mv_job_shards SET
				processed_rows = processed_rows + CASE WHEN last_processed_id IS NULL OR last_processed_id < $4 THEN $5 ELSE 0 END,
				last_processed_id = GREATEST(last_processed_id, $4),
				-- A marker for a later batch (a late confirmation of an old one) stays.
				inflight_lo       = CASE WHEN inflight_hi <= $4 THEN NULL ELSE inflight_lo END,
				inflight_query_id = CASE WHEN inflight_hi <= $4 THEN NULL ELSE inflight_query_id END,
				inflight_hi       = CASE WHEN inflight_hi <= $4 THEN NULL ELSE inflight_hi END,
				updated_at = now()
			WHERE job_id = $1 AND shard = $2 AND replica = $3`,
			jobID, shard, replica, hi, rows)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return refreshJobProgress(ctx, tx, jobID, nil, nil)
	})
	if err != nil {
		return fmt.Errorf("complete batch up to %d on shard %d/%s of job %d: %w", hi, shard, replica, jobID, err)
	}
	return nil
}

func upsertShard(ctx context.Context, tx pgx.Tx, jobID int64, p *ShardProgress) error {
	if p.Status == "" {
		p.Status = StatusPending
	}
	if !p.Status.Valid() {
		return fmt.Errorf("unknown status %q", p.Status)
	}
	err := tx.QueryRow(ctx, `INSERT INTO mv_job_shards (job_id, shard, replica, status, total_rows, processed_rows,
			last_processed_id, inflight_lo, inflight_hi, inflight_query_id, error_message)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (job_id, shard, replica) DO UPDATE SET
			status = EXCLUDED.status, total_rows = EXCLUDED.total_rows, processed_rows = EXCLUDED.processed_rows,
			last_processed_id = EXCLUDED.last_processed_id, inflight_lo = EXCLUDED.inflight_lo,
			inflight_hi = EXCLUDED.inflight_hi, inflight_query_id = EXCLUDED.inflight_query_id,
			error_message = EXCLUDED.error_message, updated_at = now()
		RETURNING updated_at`,
		jobID, p.Shard, p.Replica, p.Status, p.TotalRows, p.ProcessedRows, p.LastProcessedID,
		p.InflightLo, p.InflightHi, nullString(p.InflightQueryID), nullString(p.ErrorMessage),
	).Scan(&p.UpdatedAt)
	return notFoundOnFK(err)
}

// lockJob locks the job row before its shards change. Without it two
// checkpoints of different shards could each recompute the job's aggregate
// from a snapshot that misses the other's shard, and the last to commit would
// lose the other's rows: under READ COMMITTED an UPDATE that waited for a row
// lock re-reads the row but not its subqueries. Taken first, the lock
// serialises them and the recomputation, a later statement, sees the other's
// committed shard.
func lockJob(ctx context.Context, tx pgx.Tx, jobID int64) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM mv_jobs WHERE id = $1 FOR NO KEY UPDATE`, jobID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// refreshJobProgress sets the job's processed_rows and last_processed_id to
// the aggregate of its shards and stores them in processed and last when not
// nil. The job row must be locked (lockJob) or new in this transaction.
func refreshJobProgress(ctx context.Context, tx pgx.Tx, jobID int64, processed *int64, last **int64) error {
	var p int64
	var l *int64
	err := tx.QueryRow(ctx, `UPDATE mv_jobs SET
			processed_rows = (SELECT COALESCE(SUM(processed_rows), 0) FROM mv_job_shards WHERE job_id = $1),
			last_processed_id = (`+shardsLastID+`),
			updated_at = now()
		WHERE id = $1
		RETURNING processed_rows, last_processed_id`, jobID).Scan(&p, &l)
	if processed != nil {
		*processed = p
	}
	if last != nil {
		*last = l
	}
	if err != nil {
		return fmt.Errorf("update job progress: %w", err)
	}
	return nil
}

// syncCommit makes the transaction's commit wait for the WAL flush even where
// the server or role runs with synchronous_commit off: checkpoints and
// in-flight markers are what keeps a resumed backfill from copying rows twice.
func syncCommit(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`)
	return err
}

// notFoundOnFK turns the foreign key violation of a shard row whose job does
// not exist into ErrNotFound.
func notFoundOnFK(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" {
		return ErrNotFound
	}
	return err
}
