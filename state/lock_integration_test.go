//go:build integration

package state

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func lockRow(t *testing.T, s *Store, key string) (holder string, found bool) {
	t.Helper()
	rows, err := s.pool.Query(testCtx(t), `SELECT holder FROM mv_locks WHERE lock_key = $1`, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&holder); err != nil {
			t.Fatal(err)
		}
		found = true
	}
	return holder, found
}

func TestLockExclusive(t *testing.T) {
	s, url := openStore(t)
	ctx := testCtx(t)
	// A second store plays the second process.
	s2, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()

	const key = "default.x"
	unlock, err := s.Lock(ctx, key, "apply pid 1 on host a", false, nil)
	if err != nil {
		t.Fatalf("first Lock: %v", err)
	}
	taken := time.Now()
	if h, ok := lockRow(t, s, key); !ok || h != "apply pid 1 on host a" {
		t.Errorf("mv_locks row = %q, %v", h, ok)
	}

	_, err = s2.Lock(ctx, key, "apply pid 2 on host b", false, nil)
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second Lock without wait: err = %v, want *LockedError", err)
	}
	if le.Key != key || le.Holder != "apply pid 1 on host a" || le.Since.Sub(taken).Abs() > 5*time.Second {
		t.Errorf("LockedError = %+v", le)
	}
	if want := "mv default.x is locked by apply pid 1 on host a since "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message = %q, want prefix %q", err.Error(), want)
	}
	// The same store (same process) is not let in either: the lock is per
	// session, and each Lock has its own.
	if _, err := s.Lock(ctx, key, "again", false, nil); !errors.As(err, &le) {
		t.Errorf("Lock from the same store: err = %v, want *LockedError", err)
	}

	// Other keys are independent.
	unlockY, err := s2.Lock(ctx, "default.y", "apply pid 2 on host b", false, nil)
	if err != nil {
		t.Fatalf("Lock of another key: %v", err)
	}
	unlockY()

	// With wait: onWait is told who holds it, once, and the lock comes when
	// the holder lets go.
	var waits atomic.Int32
	var waitedFor atomic.Value
	type result struct {
		unlock func()
		err    error
	}
	done := make(chan result, 1)
	go func() {
		u, err := s2.Lock(ctx, key, "apply pid 2 on host b", true, func(holder string, since time.Time) {
			waits.Add(1)
			waitedFor.Store(holder)
		})
		done <- result{u, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("waiting Lock returned while the lock was held: %v", r.err)
	case <-time.After(1500 * time.Millisecond):
	}
	unlock()
	unlock() // a second call is harmless
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("waiting Lock did not get the lock after unlock")
	}
	if r.err != nil {
		t.Fatalf("waiting Lock: %v", r.err)
	}
	if n := waits.Load(); n != 1 {
		t.Errorf("onWait called %d times, want 1", n)
	}
	if h, _ := waitedFor.Load().(string); h != "apply pid 1 on host a" {
		t.Errorf("onWait holder = %q", h)
	}
	if h, ok := lockRow(t, s, key); !ok || h != "apply pid 2 on host b" {
		t.Errorf("mv_locks row after handover = %q, %v", h, ok)
	}
	r.unlock()
	if h, ok := lockRow(t, s, key); ok {
		t.Errorf("mv_locks row %q left after unlock", h)
	}

	// The lock is free again.
	u, err := s.Lock(ctx, key, "apply pid 3", false, nil)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	defer u()

	// A waiting Lock gives up when its context ends.
	short, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	if _, err := s2.Lock(short, key, "impatient", true, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting Lock with an expired context: err = %v, want DeadlineExceeded", err)
	}
}

// Each lock has its own session, which unlock must close: a hundred
// lock/unlock cycles must not leave a hundred sessions behind.
func TestLockClosesItsSession(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	for i := range 100 {
		u, err := s.Lock(ctx, "default.loop", "loop", false, nil)
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		u()
	}
	// Backends exit asynchronously after the client says goodbye.
	var sessions int
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()`).Scan(&sessions); err != nil {
			t.Fatal(err)
		}
		if sessions <= int(s.pool.Stat().TotalConns()) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pool := int(s.pool.Stat().TotalConns()); sessions > pool {
		t.Errorf("%d sessions on the database for a pool of %d: lock sessions leak", sessions, pool)
	}
}

// The holder is found in pg_locks whatever the sign of the key's hash
// (hashtext is an int4, pg_locks.objid an oid).
func TestLockHolderBothHashSigns(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	signs := map[bool]string{}
	for i := 0; len(signs) < 2; i++ {
		key := fmt.Sprintf("default.mv%d", i)
		var h int32
		if err := s.pool.QueryRow(ctx, `SELECT hashtext($1)`, key).Scan(&h); err != nil {
			t.Fatal(err)
		}
		if _, ok := signs[h < 0]; !ok {
			signs[h < 0] = key
		}
	}
	for negative, key := range signs {
		u, err := s.Lock(ctx, key, "holder of "+key, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Lock(ctx, key, "other", false, nil)
		var le *LockedError
		if !errors.As(err, &le) || le.Holder != "holder of "+key {
			t.Errorf("key %s (negative hash %v): err = %v, want the holder named", key, negative, err)
		}
		u()
	}
}

const lockHelperEnv = "SHIRATH_STATE_LOCK_HELPER_URL"

// TestLockHelperProcess is not a test: TestLockReleasedWhenHolderDies runs
// the test binary again with this test only, as a process that takes a lock
// and is then killed.
func TestLockHelperProcess(t *testing.T) {
	url := os.Getenv(lockHelperEnv)
	if url == "" {
		return
	}
	s, err := Open(context.Background(), url)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if _, err := s.Lock(context.Background(), "default.x", fmt.Sprintf("apply pid %d on host test", os.Getpid()), false, nil); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("LOCKED")
	time.Sleep(time.Hour)
}

// When the holder dies without unlocking, PostgreSQL ends its session and
// drops the advisory lock: the next Lock succeeds without anyone cleaning up.
func TestLockReleasedWhenHolderDies(t *testing.T) {
	t.Run("process killed", func(t *testing.T) {
		s, url := openStore(t)
		ctx := testCtx(t)

		cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
		cmd.Env = append(os.Environ(), lockHelperEnv+"="+url)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "LOCKED" {
			t.Fatalf("helper process: %q, %v", line, err)
		}

		_, err = s.Lock(ctx, "default.x", "apply pid 2", false, nil)
		var le *LockedError
		if want := fmt.Sprintf("apply pid %d on host test", cmd.Process.Pid); !errors.As(err, &le) || le.Holder != want {
			t.Fatalf("Lock while the helper holds it: err = %v, want a LockedError naming %q", err, want)
		}

		// SIGKILL: no unlock, no deferred function, no goodbye to the server.
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()

		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		u, err := s.Lock(wctx, "default.x", "apply pid 2", true, nil)
		if err != nil {
			t.Fatalf("Lock after the holder died: %v", err)
		}
		defer u()
		if h, _ := lockRow(t, s, "default.x"); h != "apply pid 2" {
			t.Errorf("the dead holder's row was not replaced: %q", h)
		}
	})

	t.Run("session terminated", func(t *testing.T) {
		s, _ := openStore(t)
		ctx := testCtx(t)
		unlock, err := s.Lock(ctx, "default.x", "doomed", false, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Cut the holder's session from the server side, as a network
		// failure or a crashed host would.
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM mv_locks WHERE lock_key = 'default.x'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("terminate the holder's session: %d, %v", n, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		u, err := s.Lock(wctx, "default.x", "survivor", true, nil)
		if err != nil {
			t.Fatalf("Lock after the holder's session ended: %v", err)
		}
		// The dead holder's unlock must not remove the new holder's row.
		unlock()
		if h, ok := lockRow(t, s, "default.x"); !ok || h != "survivor" {
			t.Errorf("row after the dead holder's unlock = %q, %v; want survivor", h, ok)
		}
		u()
	})
}
