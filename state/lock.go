package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// lockPollInterval is how often a waiting Lock tries again.
const lockPollInterval = 500 * time.Millisecond

// LockedError is returned by Lock without wait when another session holds
// the lock.
type LockedError struct {
	Key    string
	Holder string    // as the holder described itself; "" when unknown
	Since  time.Time // zero when unknown
}

func (e *LockedError) Error() string {
	who := e.Holder
	if who == "" {
		who = "another process"
	}
	// Callers may namespace keys as "mv:db.name"; the message says "mv" once.
	msg := fmt.Sprintf("mv %s is locked by %s", strings.TrimPrefix(e.Key, "mv:"), who)
	if !e.Since.IsZero() {
		layout := "15:04:05"
		if time.Since(e.Since) > 24*time.Hour {
			layout = "2006-01-02 15:04:05"
		}
		msg += " since " + e.Since.Local().Format(layout)
	}
	return msg
}

// Lock takes the lock named key (an MV as "database.name", or namespaced as
// "mv:database.name") for holder, a description for other processes'
// messages such as "apply pid 1234 on host x". When another session holds
// it, Lock returns a *LockedError, or with wait calls onWait (if not nil)
// once with the current holder and tries again every 500ms until it gets the
// lock or ctx ends.
//
// The lock is a session-level PostgreSQL advisory lock on a connection taken
// out of the pool for as long as it is held. Because it belongs to the
// session, PostgreSQL releases it by itself when the holder's process dies or
// its connection drops: no lock outlives its holder and there is nothing to
// clean up by hand. The flip side is that the lock is lost if that
// connection is cut (network failure, idle_session_timeout on the server).
//
// The returned unlock releases the lock and closes the connection; it is
// safe to call more than once.
func (s *Store) Lock(ctx context.Context, key, holder string, wait bool, onWait func(holder string, since time.Time)) (unlock func(), err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	// Hijacked rather than released later: a pooled connection still holding
	// the lock, handed to another caller, would keep it forever.
	conn := pc.Hijack()
	fail := func(err error) (func(), error) {
		closeConn(conn)
		return nil, err
	}

	waited := false
	for {
		ok, err := tryLock(ctx, conn, key)
		if err != nil {
			return fail(fmt.Errorf("lock %s: %w", key, err))
		}
		if ok {
			break
		}
		if !waited {
			h, since, found, err := lockHolder(ctx, conn, key)
			if err != nil {
				return fail(fmt.Errorf("lock %s: %w", key, err))
			}
			if !found {
				// Released between the two queries: try again at once.
				continue
			}
			if !wait {
				return fail(&LockedError{Key: key, Holder: h, Since: since})
			}
			waited = true
			if onWait != nil {
				onWait(h, since)
			}
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("wait for lock %s: %w", key, ctx.Err()))
		case <-time.After(lockPollInterval):
		}
	}

	_, err = conn.Exec(ctx, `INSERT INTO mv_locks (lock_key, holder, pid, acquired_at)
		VALUES ($1, $2, pg_backend_pid(), now())
		ON CONFLICT (lock_key) DO UPDATE SET holder = EXCLUDED.holder, pid = EXCLUDED.pid, acquired_at = EXCLUDED.acquired_at`,
		key, holder)
	if err != nil {
		// Closing the session drops the advisory lock too.
		return fail(fmt.Errorf("lock %s: record holder: %w", key, err))
	}

	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// Errors are ignored: whatever happens, closing the session
			// below releases the lock, and a row left behind is stale,
			// recognised as such and overwritten by the next holder. The
			// pid condition keeps a row that is no longer ours.
			_, _ = conn.Exec(ctx, `DELETE FROM mv_locks WHERE lock_key = $1 AND pid = pg_backend_pid()`, key)
			_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockClassMV, key)
			closeConn(conn)
		})
	}, nil
}

func tryLock(ctx context.Context, conn *pgx.Conn, key string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClassMV, key).Scan(&ok)
	return ok, err
}

// lockHolder describes the session that holds the lock key. It starts from
// pg_locks, the truth, and takes the description from mv_locks only when the
// row's pid is that session's: a row left by a dead holder is not reported.
// found is false when nobody holds the lock any more.
func lockHolder(ctx context.Context, conn *pgx.Conn, key string) (holder string, since time.Time, found bool, err error) {
	var (
		pid int32
		h   *string
		at  *time.Time
	)
	err = conn.QueryRow(ctx, `SELECT l.pid, m.holder, m.acquired_at
		FROM pg_locks l
		LEFT JOIN mv_locks m ON m.lock_key = $2 AND m.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND l.classid = $1::int4::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2
		LIMIT 1`, lockClassMV, key).Scan(&pid, &h, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, false, nil
	}
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("read lock holder: %w", err)
	}
	if h == nil {
		// Holding the lock but not yet recorded (or recorded by an older
		// binary): name the session at least.
		return fmt.Sprintf("PostgreSQL session pid %d", pid), time.Time{}, true, nil
	}
	if at != nil {
		since = *at
	}
	return *h, since, true, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
