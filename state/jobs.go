package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const jobColumns = `id, name, database, source_table, target_table, status, cluster_name, nodes,
	cutoff_id, total_rows, processed_rows, last_processed_id, config, spec_hash, applied,
	fence_verified, error_message, inserted_at, updated_at, deployment,
	version, live_version, previous_config, switched_at, verified_at, last_verify, adopted_at, reads`

const shardColumns = `job_id, shard, replica, status, total_rows, processed_rows, last_processed_id,
	inflight_lo, inflight_hi, inflight_query_id, error_message, updated_at, in_doubt`

// CreateJob inserts j with its Shards in one transaction and fills j.ID,
// j.InsertedAt and j.UpdatedAt. An empty Status is stored as pending. When
// Shards are given, ProcessedRows and LastProcessedID become their aggregate,
// as UpsertShard keeps them.
func (s *Store) CreateJob(ctx context.Context, j *Job) error {
	if err := checkJob(j); err != nil {
		return fmt.Errorf("create job %s.%s: %w", j.Database, j.Name, err)
	}
	if j.Status == "" {
		j.Status = StatusPending
	}
	j.Version, j.LiveVersion = version(j.Version), version(j.LiveVersion)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO mv_jobs (name, database, source_table, target_table, status,
				cluster_name, nodes, cutoff_id, total_rows, processed_rows, last_processed_id, config,
				spec_hash, applied, fence_verified, error_message, deployment,
				version, live_version, previous_config, switched_at, adopted_at, reads)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
			RETURNING id, inserted_at, updated_at`,
			j.Name, j.Database, j.SourceTable, j.TargetTable, j.Status, nullString(j.ClusterName),
			nonNilNodes(j.Nodes), j.CutoffID, j.TotalRows, j.ProcessedRows, j.LastProcessedID, j.Config,
			j.SpecHash, nonNilApplied(j.Applied), j.FenceVerified, nullString(j.ErrorMessage), j.Deployment,
			version(j.Version), version(j.LiveVersion), nullJSON(j.PreviousConfig), j.SwitchedAt, j.AdoptedAt, j.Reads,
		).Scan(&j.ID, &j.InsertedAt, &j.UpdatedAt)
		if err != nil {
			return err
		}
		if len(j.Shards) == 0 {
			return nil
		}
		for i := range j.Shards {
			if err := upsertShard(ctx, tx, j.ID, &j.Shards[i]); err != nil {
				return err
			}
		}
		// The same rule as UpsertShard: a job with shards shows their aggregate.
		return refreshJobProgress(ctx, tx, j.ID, &j.ProcessedRows, &j.LastProcessedID)
	})
	if err != nil {
		j.ID = 0 // rolled back: the id was never committed
		return fmt.Errorf("create job %s.%s: %w", j.Database, j.Name, err)
	}
	return nil
}

// GetJob returns the job of the materialized view database.name with its
// shards, or ErrNotFound.
func (s *Store) GetJob(ctx context.Context, database, name string) (*Job, error) {
	var j *Job
	err := readTx(ctx, s, func(tx pgx.Tx) error {
		var err error
		where, args := s.inScope(`WHERE database = $1 AND name = $2`, database, name)
		rows, err := tx.Query(ctx, `SELECT `+jobColumns+` FROM mv_jobs `+where+` ORDER BY deployment DESC`, args...)
		if err != nil {
			return err
		}
		var found []*Job
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				rows.Close()
				return err
			}
			found = append(found, j)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		switch len(found) {
		case 0:
			return ErrNotFound
		case 1:
			j = found[0]
		default:
			var ds []string
			for _, f := range found {
				ds = append(ds, deploymentName(f.Deployment))
			}
			return fmt.Errorf("%w: jobs of deployments %s are all in scope", ErrAmbiguous, strings.Join(ds, ", "))
		}
		return loadShards(ctx, tx, map[int64]*Job{j.ID: j}, `WHERE job_id = $1`, j.ID)
	})
	if err != nil {
		return nil, fmt.Errorf("get job %s.%s: %w", database, name, err)
	}
	return j, nil
}

// ListJobs returns every job with its shards, ordered by database and name.
// It runs two queries whatever the number of jobs, in one snapshot so that
// the shards match the jobs.
func (s *Store) ListJobs(ctx context.Context) ([]*Job, error) {
	var jobs []*Job
	err := readTx(ctx, s, func(tx pgx.Tx) error {
		jobs = nil
		where, args := s.inScope(``)
		rows, err := tx.Query(ctx, `SELECT `+jobColumns+` FROM mv_jobs `+where+` ORDER BY database, name, deployment`, args...)
		if err != nil {
			return err
		}
		byID := map[int64]*Job{}
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				rows.Close()
				return err
			}
			jobs = append(jobs, j)
			byID[j.ID] = j
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return loadShards(ctx, tx, byID, ``)
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return jobs, nil
}

// UpdateJob writes every mutable field of j (not its Shards, which have their
// own methods) and refreshes j.UpdatedAt. It returns ErrNotFound when no job
// has j.ID.
//
// ProcessedRows and LastProcessedID are the exception: while the job has
// shard rows they are the aggregate that UpsertShard and CompleteBatch keep
// from the shards, and j's values are replaced by it. Otherwise a caller that
// loaded the job, ran batches and then changed its status would write back
// the progress it loaded and undo the batches' checkpoints.
func (s *Store) UpdateJob(ctx context.Context, j *Job) error {
	err := checkJob(j)
	if err == nil && j.Status == "" {
		err = errors.New("status is empty")
	}
	if err != nil {
		return fmt.Errorf("update job %s.%s: %w", j.Database, j.Name, err)
	}
	// The job row is locked before the shard aggregate is read, for the
	// reason given at lockJob.
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockJob(ctx, tx, j.ID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `UPDATE mv_jobs SET
				name = $2, database = $3, source_table = $4, target_table = $5, status = $6,
				cluster_name = $7, nodes = $8, cutoff_id = $9, total_rows = $10,
				processed_rows = COALESCE((SELECT SUM(processed_rows) FROM mv_job_shards WHERE job_id = $1), $11),
				last_processed_id = CASE WHEN EXISTS (SELECT 1 FROM mv_job_shards WHERE job_id = $1)
					THEN (`+shardsLastID+`) ELSE $12 END,
				config = $13, spec_hash = $14, applied = $15, fence_verified = $16, error_message = $17,
				deployment = CASE WHEN deployment = '' THEN $18 ELSE deployment END,
				version = $19, live_version = $20, previous_config = $21, switched_at = $22, adopted_at = $23, reads = $24,
				updated_at = now()
			WHERE id = $1
			RETURNING processed_rows, last_processed_id, updated_at`,
			j.ID, j.Name, j.Database, j.SourceTable, j.TargetTable, j.Status, nullString(j.ClusterName),
			nonNilNodes(j.Nodes), j.CutoffID, j.TotalRows, j.ProcessedRows, j.LastProcessedID, j.Config,
			j.SpecHash, nonNilApplied(j.Applied), j.FenceVerified, nullString(j.ErrorMessage), j.Deployment,
			version(j.Version), version(j.LiveVersion), nullJSON(j.PreviousConfig), j.SwitchedAt, j.AdoptedAt, j.Reads,
		).Scan(&j.ProcessedRows, &j.LastProcessedID, &j.UpdatedAt)
	})
	if err != nil {
		return fmt.Errorf("update job %s.%s: %w", j.Database, j.Name, err)
	}
	return nil
}

// RecordVerify records the outcome of a verify of job id: always as its
// last verify, and as its verified_at when it found no difference. It
// touches nothing else, so that it cannot undo an apply's progress.
func (s *Store) RecordVerify(ctx context.Context, id int64, sum VerifySummary) error {
	tag, err := s.pool.Exec(ctx, `UPDATE mv_jobs SET last_verify = $2,
			verified_at = CASE WHEN $3 THEN $4::timestamptz ELSE verified_at END
		WHERE id = $1`, id, sum, sum.OK, sum.At)
	if err != nil {
		return fmt.Errorf("record verify of job %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("record verify of job %d: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteJob deletes the job and its shards, or returns ErrNotFound.
func (s *Store) DeleteJob(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mv_jobs WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete job %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete job %d: %w", id, ErrNotFound)
	}
	return nil
}

// version stores an unset version as 1.
func version(v int) int {
	if v < 1 {
		return 1
	}
	return v
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

// checkJob refuses what the schema would refuse with a less helpful message.
func checkJob(j *Job) error {
	if j.Database == "" || j.Name == "" {
		return errors.New("database and name are required")
	}
	if len(j.Config) == 0 {
		return errors.New("config is empty")
	}
	if j.Status != "" && !j.Status.Valid() {
		return fmt.Errorf("unknown status %q", j.Status)
	}
	return nil
}

// readTx runs fn in a read-only REPEATABLE READ transaction, so that several
// queries see one snapshot.
func readTx(ctx context.Context, s *Store, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

func scanJob(row pgx.Row) (*Job, error) {
	var (
		j                 Job
		cluster, errMsg   *string
		status            string
		inserted, updated time.Time
	)
	err := row.Scan(&j.ID, &j.Name, &j.Database, &j.SourceTable, &j.TargetTable, &status, &cluster, &j.Nodes,
		&j.CutoffID, &j.TotalRows, &j.ProcessedRows, &j.LastProcessedID, &j.Config, &j.SpecHash, &j.Applied,
		&j.FenceVerified, &errMsg, &inserted, &updated, &j.Deployment,
		&j.Version, &j.LiveVersion, &j.PreviousConfig, &j.SwitchedAt, &j.VerifiedAt, &j.LastVerify, &j.AdoptedAt, &j.Reads)
	if err != nil {
		return nil, err
	}
	j.Status = Status(status)
	j.ClusterName = deref(cluster)
	j.ErrorMessage = deref(errMsg)
	j.InsertedAt, j.UpdatedAt = inserted, updated
	if j.Applied == nil {
		j.Applied = map[string]AppliedObject{}
	}
	return &j, nil
}

// loadShards reads the shards selected by where (all of them when empty) and
// attaches them to their jobs in byID; shards of other jobs are ignored.
func loadShards(ctx context.Context, tx pgx.Tx, byID map[int64]*Job, where string, args ...any) error {
	rows, err := tx.Query(ctx, `SELECT `+shardColumns+` FROM mv_job_shards `+where+` ORDER BY job_id, shard, replica`, args...)
	if err != nil {
		return fmt.Errorf("read shards: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			jobID       int64
			p           ShardProgress
			status      string
			qid, errMsg *string
		)
		if err := rows.Scan(&jobID, &p.Shard, &p.Replica, &status, &p.TotalRows, &p.ProcessedRows,
			&p.LastProcessedID, &p.InflightLo, &p.InflightHi, &qid, &errMsg, &p.UpdatedAt, &p.InDoubt); err != nil {
			return fmt.Errorf("read shards: %w", err)
		}
		p.Status = Status(status)
		p.InflightQueryID = deref(qid)
		p.ErrorMessage = deref(errMsg)
		if j, ok := byID[jobID]; ok {
			j.Shards = append(j.Shards, p)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read shards: %w", err)
	}
	return nil
}

// The columns are NOT NULL: an empty list or map is stored as such, not as
// JSON null.
func nonNilNodes(n []string) []string {
	if n == nil {
		return []string{}
	}
	return n
}

func nonNilApplied(a map[string]AppliedObject) map[string]AppliedObject {
	if a == nil {
		return map[string]AppliedObject{}
	}
	return a
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
