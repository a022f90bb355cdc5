package state

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/shirath/shirath/migrations"
)

// Advisory lock classes: the first key of the two-int4 advisory lock form, so
// that shirath's locks do not collide with other users of advisory locks in
// the same database, nor with each other.
const (
	lockClassMigrate int32 = 0x73686d67 // "shmg"
	lockClassMV      int32 = 0x73686972 // "shir"
)

type migration struct {
	version int
	name    string // file name without .sql, e.g. "0001_mv_jobs"
	sql     string
}

// loadMigrations reads and orders the embedded migration files.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", e.Name())
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s have the same version %d", prev, name, v)
		}
		seen[v] = name
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// Migrate applies the pending migrations and returns the names of those it
// applied (none when the schema is current).
//
// Each migration runs in its own transaction together with its row in
// schema_migrations, so a failed migration leaves nothing behind. Every
// transaction first takes a transaction-level advisory lock: processes that
// start together (several daemons, or a CLI run next to a daemon) queue on it,
// and each re-reads schema_migrations after getting it, so a migration runs
// once whoever gets there first.
func (s *Store) Migrate(ctx context.Context) (applied []string, err error) {
	ms, err := loadMigrations(migrations.FS)
	if err != nil {
		return nil, err
	}
	for {
		var ran string
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, lockClassMigrate); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
			// Created here rather than by a migration because it must exist
			// before the first migration can be recorded; under the lock so
			// that concurrent CREATE TABLE IF NOT EXISTS cannot race.
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version    INT PRIMARY KEY,
				name       TEXT NOT NULL,
				applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
				return fmt.Errorf("create schema_migrations: %w", err)
			}
			done, err := appliedVersions(ctx, tx)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if name, ok := done[m.version]; ok {
					// A renumbered or renamed file would otherwise be taken
					// for applied while its SQL never ran.
					if name != m.name {
						return fmt.Errorf("version %d is recorded as %s but the binary has %s", m.version, name, m.name)
					}
					continue
				}
				if _, err := tx.Exec(ctx, m.sql); err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
				if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
					return fmt.Errorf("record %s: %w", m.name, err)
				}
				ran = m.name
				return nil
			}
			return nil
		})
		if err != nil {
			return applied, fmt.Errorf("migrate: %w", err)
		}
		if ran == "" {
			return applied, nil
		}
		applied = append(applied, ran)
	}
}

func appliedVersions(ctx context.Context, tx pgx.Tx) (map[int]string, error) {
	rows, err := tx.Query(ctx, `SELECT version, name FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	done := map[int]string{}
	var (
		v    int
		name string
	)
	_, err = pgx.ForEachRow(rows, []any{&v, &name}, func() error {
		done[v] = name
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return done, nil
}
