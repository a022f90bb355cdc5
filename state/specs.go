package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Where a desired spec came from.
const (
	OriginAPI  = "api"
	OriginFile = "file"
)

// SpecRecord is one desired spec of the daemon.
type SpecRecord struct {
	Database string
	Name     string
	// The spec document. PostgreSQL stores it as jsonb, which normalises
	// whitespace and key order: compare specs by SpecHash, not by these bytes.
	Spec      json.RawMessage
	SpecHash  string
	Origin    string // OriginAPI or OriginFile
	CreatedAt time.Time
	UpdatedAt time.Time
}

// PutSpec stores rec as the desired spec of rec.Database.rec.Name and
// reports whether it created a new record. Putting the same hash again
// changes nothing. A different hash under the same name is refused with
// ErrSpecConflict unless force is set, so that two writers (an API client
// and a spec file, or two clients) do not silently overwrite each other.
func (s *Store) PutSpec(ctx context.Context, rec SpecRecord, force bool) (created bool, err error) {
	if rec.Database == "" || rec.Name == "" || rec.SpecHash == "" || len(rec.Spec) == 0 {
		return false, fmt.Errorf("put spec %s.%s: database, name, spec and spec hash are required", rec.Database, rec.Name)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Insert first: with a SELECT first, two writers of a new name
		// would both see nothing and one would fail on the primary key.
		tag, err := tx.Exec(ctx, `INSERT INTO mv_specs (database, name, spec, spec_hash, origin)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (database, name) DO NOTHING`,
			rec.Database, rec.Name, rec.Spec, rec.SpecHash, rec.Origin)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			created = true
			return nil
		}
		var hash string
		err = tx.QueryRow(ctx, `SELECT spec_hash FROM mv_specs WHERE database = $1 AND name = $2 FOR UPDATE`,
			rec.Database, rec.Name).Scan(&hash)
		if errors.Is(err, pgx.ErrNoRows) {
			// Deleted between the two statements: a retry inserts it.
			return errors.New("spec deleted concurrently, retry")
		}
		if err != nil {
			return err
		}
		if hash == rec.SpecHash {
			return nil
		}
		if !force {
			return fmt.Errorf("%w (stored hash %s, new hash %s)", ErrSpecConflict, hash, rec.SpecHash)
		}
		_, err = tx.Exec(ctx, `UPDATE mv_specs SET spec = $3, spec_hash = $4, origin = $5, updated_at = now()
			WHERE database = $1 AND name = $2`,
			rec.Database, rec.Name, rec.Spec, rec.SpecHash, rec.Origin)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("put spec %s.%s: %w", rec.Database, rec.Name, err)
	}
	return created, nil
}

// GetSpec returns the desired spec of database.name, or ErrNotFound.
func (s *Store) GetSpec(ctx context.Context, database, name string) (*SpecRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+specColumns+` FROM mv_specs WHERE database = $1 AND name = $2`, database, name)
	if err != nil {
		return nil, fmt.Errorf("get spec %s.%s: %w", database, name, err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, scanSpec)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get spec %s.%s: %w", database, name, err)
	}
	return rec, nil
}

// ListSpecs returns every desired spec, ordered by database and name.
func (s *Store) ListSpecs(ctx context.Context) ([]*SpecRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+specColumns+` FROM mv_specs ORDER BY database, name`)
	if err != nil {
		return nil, fmt.Errorf("list specs: %w", err)
	}
	recs, err := pgx.CollectRows(rows, scanSpec)
	if err != nil {
		return nil, fmt.Errorf("list specs: %w", err)
	}
	return recs, nil
}

// DeleteSpec deletes the desired spec of database.name, or returns ErrNotFound.
func (s *Store) DeleteSpec(ctx context.Context, database, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mv_specs WHERE database = $1 AND name = $2`, database, name)
	if err != nil {
		return fmt.Errorf("delete spec %s.%s: %w", database, name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete spec %s.%s: %w", database, name, ErrNotFound)
	}
	return nil
}

const specColumns = `database, name, spec, spec_hash, origin, created_at, updated_at`

func scanSpec(row pgx.CollectableRow) (*SpecRecord, error) {
	var r SpecRecord
	err := row.Scan(&r.Database, &r.Name, &r.Spec, &r.SpecHash, &r.Origin, &r.CreatedAt, &r.UpdatedAt)
	return &r, err
}
