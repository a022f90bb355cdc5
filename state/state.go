// Package state is shirath's job store in PostgreSQL: one row per managed
// materialized view with its backfill progress per shard, the daemon's desired
// specs, and the advisory locks that keep two runs of plan/apply or the daemon
// from working on the same materialized view at once.
//
// Open migrates the database it connects to, so every binary that talks to the
// store brings the schema up to the version it needs.
package state

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned when the job, spec or shard asked for does not exist.
var ErrNotFound = errors.New("state: not found")

// ErrSpecConflict is returned by PutSpec when a different spec is already
// stored under the same database and name and force was not given.
var ErrSpecConflict = errors.New("state: a different spec exists")

// ErrAmbiguous is returned by GetJob when jobs of several deployments in the
// store's scope carry the same database and name.
var ErrAmbiguous = errors.New("state: ambiguous job")

// Store is the PostgreSQL job store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// scope, once set, limits the jobs read to those of these deployments
	// (and those recorded before deployments were): one job store may serve
	// several ClickHouse deployments, and each must see only its own.
	scope atomic.Pointer[[]string]
}

// SetScope limits the jobs that GetJob and ListJobs return to those of the
// given deployments, plus jobs recorded before deployments were (""). An
// empty list shows none of the recorded ones: a daemon that has not yet
// reached its ClickHouse sees no other deployment's jobs. A store whose scope
// was never set sees every job.
func (s *Store) SetScope(deployments []string) {
	d := append([]string{}, deployments...)
	s.scope.Store(&d)
}

// inScope appends the scope to a WHERE clause (which may be empty) whose
// arguments are args.
func (s *Store) inScope(where string, args ...any) (string, []any) {
	p := s.scope.Load()
	if p == nil {
		return where, args
	}
	cond := fmt.Sprintf("(deployment = '' OR deployment = ANY($%d))", len(args)+1)
	if where == "" {
		where = "WHERE " + cond
	} else {
		where += " AND " + cond
	}
	return where, append(args, *p)
}

// deploymentName prints a job's deployment for messages.
func deploymentName(d string) string {
	if d == "" {
		return "(unrecorded)"
	}
	return d
}

// Open connects to the PostgreSQL database at url and applies the pending
// migrations.
func Open(ctx context.Context, url string) (*Store, error) {
	s, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if _, err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// connect opens the pool and checks that the server answers, so that a wrong
// URL fails here with a clear message rather than on the first query.
func connect(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool. Locks still held keep their own connections: release
// them with their unlock functions.
func (s *Store) Close() { s.pool.Close() }
