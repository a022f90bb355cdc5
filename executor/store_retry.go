package executor

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shirath/shirath/state"
)

// retryStore retries the job store's calls that fail because PostgreSQL
// cannot be reached (refused, reset, shut down), with a backoff that doubles
// up to 10 s, for at most max. The executor records every step before it
// runs it (a batch's in-flight marker before its INSERT), so while
// PostgreSQL is away no ClickHouse work starts whose progress could not be
// recorded; a batch that finished meanwhile is recorded once it is back
// (CompleteBatch is idempotent), or settled by the next apply if the wait
// ran out.
type retryStore struct {
	Store
	max    time.Duration
	onWait func(what string, err error, delay time.Duration)
}

func (s retryStore) do(ctx context.Context, what string, f func() error) error {
	deadline := time.Now().Add(s.max)
	delay := 200 * time.Millisecond
	for {
		err := f()
		if err == nil || !transientStoreError(err) || time.Now().Add(delay).After(deadline) {
			return err
		}
		if s.onWait != nil {
			s.onWait(what, err, delay)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// transientStoreError: PostgreSQL could not be reached or went away; the
// same call may succeed once it is back.
func transientStoreError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// 08: connection exception; 57P: admin or crash shutdown.
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "conn closed")
}

func (s retryStore) GetJob(ctx context.Context, database, name string) (j *state.Job, err error) {
	err = s.do(ctx, "read the job", func() error { j, err = s.Store.GetJob(ctx, database, name); return err })
	return j, err
}

func (s retryStore) CreateJob(ctx context.Context, j *state.Job) error {
	return s.do(ctx, "create the job", func() error { return s.Store.CreateJob(ctx, j) })
}

func (s retryStore) UpdateJob(ctx context.Context, j *state.Job) error {
	return s.do(ctx, "record the job", func() error { return s.Store.UpdateJob(ctx, j) })
}

func (s retryStore) DeleteJob(ctx context.Context, id int64) error {
	return s.do(ctx, "delete the job", func() error { return s.Store.DeleteJob(ctx, id) })
}

func (s retryStore) UpsertShard(ctx context.Context, jobID int64, p state.ShardProgress) error {
	return s.do(ctx, "record a shard", func() error { return s.Store.UpsertShard(ctx, jobID, p) })
}

func (s retryStore) DeleteShards(ctx context.Context, jobID int64) error {
	return s.do(ctx, "delete the shards", func() error { return s.Store.DeleteShards(ctx, jobID) })
}

func (s retryStore) BeginBatch(ctx context.Context, jobID int64, shard int, replica string, lo, hi int64, queryID string) error {
	return s.do(ctx, "record a batch before it runs", func() error {
		return s.Store.BeginBatch(ctx, jobID, shard, replica, lo, hi, queryID)
	})
}

func (s retryStore) MarkInDoubt(ctx context.Context, jobID int64, shard int, replica string) error {
	return s.do(ctx, "mark a shard in doubt", func() error { return s.Store.MarkInDoubt(ctx, jobID, shard, replica) })
}

func (s retryStore) CompleteBatch(ctx context.Context, jobID int64, shard int, replica string, hi int64, rows int64) error {
	return s.do(ctx, "record a finished batch", func() error {
		return s.Store.CompleteBatch(ctx, jobID, shard, replica, hi, rows)
	})
}

func (s retryStore) ListJobs(ctx context.Context) (js []*state.Job, err error) {
	err = s.do(ctx, "list the jobs", func() error { js, err = s.Store.ListJobs(ctx); return err })
	return js, err
}
