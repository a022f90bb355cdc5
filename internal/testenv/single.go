package testenv

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/chclient"
)

// Single is one single-node ClickHouse server of the test matrix: every
// single-node integration test runs once on each, as a subtest named by the
// server's version, so that a failure says which server.
type Single struct {
	Addr    string
	Version chclient.Version
	// Atomic: the server has Atomic databases (20.x and later); test
	// databases are created with ENGINE = Atomic there, as a real modern
	// server creates them.
	Atomic bool
	// ChDB: the server is chDB's engine (its default database has chDB's
	// own Overlay engine). The engine aborts when a client connection is
	// reset (NetException "Connection reset by peer" uncaught,
	// std::terminate), which a SIGKILLed shirath does; the stack's
	// chdbserver relays its native port so that the engine never sees a
	// reset, and starts it again if it dies all the same.
	ChDB bool
	env  *Env
}

// Name is the subtest name: "ch18.16", "ch26.7".
func (s *Single) Name() string { return fmt.Sprintf("ch%d.%d", s.Version.Major, s.Version.Minor) }

var (
	singlesOnce sync.Once
	singles     []*Single
	singlesErr  error
)

// Singles connects to every single node of the matrix (18.16 and the modern
// one) and reads what each is. A server that does not answer fails the test.
func (e *Env) Singles(t testing.TB) []*Single {
	t.Helper()
	singlesOnce.Do(func() {
		for _, addr := range []string{e.CHAddr, e.ModernAddr} {
			s, err := e.probeSingle(addr)
			if err != nil {
				singlesErr = err
				return
			}
			singles = append(singles, s)
		}
	})
	if singlesErr != nil {
		t.Fatalf("testenv: %v; %s", singlesErr, hint)
	}
	return singles
}

func (e *Env) probeSingle(addr string) (*Single, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chclient.Open(ctx, addr, chclient.Options{})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	v, err := chclient.ServerVersion(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	// Atomic databases came with the uuid column of system.databases.
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = 'system' AND table = 'databases' AND name = 'uuid'").Scan(&n); err != nil {
		return nil, fmt.Errorf("%s: read system.columns: %w", addr, err)
	}
	var engine string
	if err := conn.QueryRow(ctx, "SELECT engine FROM system.databases WHERE name = 'default'").Scan(&engine); err != nil {
		return nil, fmt.Errorf("%s: read system.databases: %w", addr, err)
	}
	return &Single{Addr: addr, Version: v, Atomic: n > 0, ChDB: engine == "Overlay", env: e}, nil
}

// EachSingle runs f as a subtest on every single node of the matrix.
func (e *Env) EachSingle(t *testing.T, f func(t *testing.T, s *Single)) {
	t.Helper()
	for _, s := range e.Singles(t) {
		t.Run(s.Name(), func(t *testing.T) { f(t, s) })
	}
}

// Conn connects to the server; the connection is closed when the test ends.
func (s *Single) Conn(t testing.TB) driver.Conn {
	t.Helper()
	conn, err := chclient.Open(ctx(t), s.Addr, chclient.Options{})
	if err != nil {
		t.Fatalf("testenv: %v; %s", err, hint)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// DB creates a fresh database on the server, dropped when the test ends.
func (s *Single) DB(t testing.TB) (driver.Conn, string) {
	t.Helper()
	conn := s.Conn(t)
	db := UniqueName("t")
	q := "CREATE DATABASE " + db
	if s.Atomic {
		q += " ENGINE = Atomic"
	}
	if err := conn.Exec(ctx(t), q); err != nil {
		t.Fatalf("testenv: create database %s on %s: %v", db, s.Addr, err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		drop := "DROP DATABASE IF EXISTS " + db
		if s.Atomic {
			drop += " SYNC"
		}
		err := conn.Exec(c, drop)
		if err != nil && s.ChDB {
			// The test's last client may have made chDB's engine abort.
			s.Settle(t)
			err = conn.Exec(c, drop)
		}
		if err != nil {
			// Left on the server, as ClusterDB does: the test's checks are
			// done, and a slow DROP on a loaded server is not their result.
			t.Logf("testenv: drop database %s on %s: %v", db, s.Addr, err)
		}
	})
	return conn, db
}

// Settle is called after a client process of the server has exited in the
// middle of a test (a daemon stopped, a command killed): on chDB's engine,
// which may abort a second or two later when it reads the closed
// connection (see ChDB), it waits long enough for that to happen and then
// until the server answers again. On a real server it returns at once.
func (s *Single) Settle(t testing.TB) {
	t.Helper()
	if !s.ChDB {
		return
	}
	time.Sleep(3 * time.Second)
	s.WaitAnswer(t)
}

// WaitAnswer waits until the server answers, for up to 90s: chDB's engine
// may be restarting after an abort (see ChDB).
func (s *Single) WaitAnswer(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		conn, err := chclient.Open(c, s.Addr, chclient.Options{})
		if err == nil {
			err = conn.Ping(c)
			conn.Close()
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s does not answer: %v", s.Addr, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
