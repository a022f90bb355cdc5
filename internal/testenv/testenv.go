// Package testenv gives integration tests their own isolated databases on the
// real servers of the local stack (`make up`) or on the servers named by the
// SHIRATH_* environment variables.
//
// Every helper fails the test, never skips it, when a server cannot be
// reached: a skipped integration test looks green and proves nothing.
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"

	"github.com/shirath/shirath/internal/chclient"
)

// Env holds the addresses of the servers that integration tests use.
type Env struct {
	PGURL        string   // SHIRATH_PG_URL: a PostgreSQL URL whose user can CREATE DATABASE
	CHAddr       string   // SHIRATH_CH_ADDR: native address of a single ClickHouse node (18.16 in the stack)
	ModernAddr   string   // SHIRATH_CH_MODERN_ADDR: native address of a single modern ClickHouse node (26.7 in the stack)
	ClusterName  string   // SHIRATH_CLUSTER_NAME
	ClusterAddrs []string // SHIRATH_CLUSTER_ADDRS: native addresses of every cluster node, comma separated
	StackDir     string   // SHIRATH_STACK_DIR: the local stack, when tests run against it
	Root         string   // the repository root
}

const hint = "start the local servers with `make up`, or point SHIRATH_PG_URL, SHIRATH_CH_ADDR, SHIRATH_CH_MODERN_ADDR, SHIRATH_CLUSTER_NAME and SHIRATH_CLUSTER_ADDRS at your own"

var (
	loadOnce sync.Once
	loaded   *Env
	loadErr  error
)

// Load reads the environment: variables win over the stack's env file.
func Load(t testing.TB) *Env {
	t.Helper()
	loadOnce.Do(func() { loaded, loadErr = load() })
	if loadErr != nil {
		t.Fatalf("testenv: %v; %s", loadErr, hint)
	}
	return loaded
}

func load() (*Env, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	vals := map[string]string{}
	if f, err := os.Open(filepath.Join(root, ".stack", "env")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if ok {
				vals[k] = v
			}
		}
		f.Close()
	}
	get := func(k string) string {
		if v, ok := os.LookupEnv(k); ok {
			return v
		}
		return vals[k]
	}
	e := &Env{
		PGURL:       get("SHIRATH_PG_URL"),
		CHAddr:      get("SHIRATH_CH_ADDR"),
		ModernAddr:  get("SHIRATH_CH_MODERN_ADDR"),
		ClusterName: get("SHIRATH_CLUSTER_NAME"),
		StackDir:    get("SHIRATH_STACK_DIR"),
		Root:        root,
	}
	for _, a := range strings.Split(get("SHIRATH_CLUSTER_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			e.ClusterAddrs = append(e.ClusterAddrs, a)
		}
	}
	if e.PGURL == "" || e.CHAddr == "" || e.ModernAddr == "" {
		return nil, fmt.Errorf("no server addresses (PostgreSQL, ClickHouse 18.16 and a modern ClickHouse): neither SHIRATH_* variables nor %s", filepath.Join(root, ".stack", "env"))
	}
	return e, nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// UniqueName returns prefix_<random>, a valid identifier for ClickHouse and PostgreSQL.
func UniqueName(prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// Cluster is a fresh database on every node of the test cluster.
type Cluster struct {
	Name  string
	DB    string
	Addrs []string
	Nodes []driver.Conn // one connection per node, in the order of Addrs
}

// ClusterDB creates a fresh database ON CLUSTER, dropped ON CLUSTER when the test ends.
func (e *Env) ClusterDB(t testing.TB) *Cluster {
	t.Helper()
	if e.ClusterName == "" || len(e.ClusterAddrs) == 0 {
		t.Fatalf("testenv: no cluster configured; %s", hint)
	}
	c := &Cluster{Name: e.ClusterName, DB: UniqueName("t"), Addrs: e.ClusterAddrs}
	for _, a := range e.ClusterAddrs {
		conn, err := chclient.Open(ctx(t), a, chclient.Options{})
		if err != nil {
			t.Fatalf("testenv: cluster node: %v; %s", err, hint)
		}
		t.Cleanup(func() { conn.Close() })
		c.Nodes = append(c.Nodes, conn)
	}
	if err := c.Nodes[0].Exec(ctx(t), fmt.Sprintf("CREATE DATABASE %s ON CLUSTER %s", c.DB, c.Name)); err != nil {
		t.Fatalf("testenv: create database %s on cluster %s: %v", c.DB, c.Name, err)
	}
	t.Cleanup(func() {
		cc, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Dropped node by node: ON CLUSTER would fail while a test has a node stopped.
		for i, n := range c.Nodes {
			if err := n.Exec(cc, "DROP DATABASE IF EXISTS "+c.DB); err != nil {
				t.Logf("testenv: drop database %s on %s: %v", c.DB, c.Addrs[i], err)
			}
		}
	})
	return c
}

// PostgresDB creates a fresh PostgreSQL database, dropped when the test ends,
// and returns its URL.
func (e *Env) PostgresDB(t testing.TB) string {
	t.Helper()
	admin, err := pgx.Connect(ctx(t), e.PGURL)
	if err != nil {
		t.Fatalf("testenv: connect to postgres: %v; %s", err, hint)
	}
	name := UniqueName("t")
	if _, err := admin.Exec(ctx(t), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	admin.Close(ctx(t))
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, err := pgx.Connect(c, e.PGURL)
		if err != nil {
			t.Errorf("testenv: connect to postgres: %v", err)
			return
		}
		defer a.Close(c)
		if _, err := a.Exec(c, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(e.PGURL)
	if err != nil {
		t.Fatalf("testenv: parse SHIRATH_PG_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// StopNode stops one node of the local stack's cluster (n1..n4) and starts it
// again when the test ends, whatever happens. It works only on the local stack.
func (e *Env) StopNode(t testing.TB, node string) {
	t.Helper()
	if e.StackDir == "" {
		t.Fatalf("testenv: stopping a node needs the local stack (make up)")
	}
	e.stack(t, "stop-node", node)
	t.Cleanup(func() { e.StartNode(t, node) })
}

// RestartNode stops one node of the local stack's cluster and starts it
// again at once, waiting until it answers.
func (e *Env) RestartNode(t testing.TB, node string) {
	t.Helper()
	if e.StackDir == "" {
		t.Fatalf("testenv: restarting a node needs the local stack (make up)")
	}
	e.stack(t, "restart-node", node)
}

// StopZooKeeper stops the local stack's ZooKeeper and starts it again when
// the test ends, whatever happens. Every Replicated table and ON CLUSTER
// statement of the cluster depends on it: only a test that runs alone (no
// t.Parallel, as the cluster tests do) may call it.
func (e *Env) StopZooKeeper(t testing.TB) {
	t.Helper()
	if e.StackDir == "" {
		t.Fatalf("testenv: stopping ZooKeeper needs the local stack (make up)")
	}
	e.stack(t, "zk-stop")
	t.Cleanup(func() { e.StartZooKeeper(t) })
}

// StartZooKeeper starts ZooKeeper again and waits until it answers and every
// cluster node has a session with it again (until then their Replicated
// tables are read-only and ON CLUSTER fails).
func (e *Env) StartZooKeeper(t testing.TB) {
	t.Helper()
	e.stack(t, "zk-start")
	deadline := time.Now().Add(90 * time.Second)
	for _, a := range e.ClusterAddrs {
		for {
			err := zkSession(a)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: %s has no ZooKeeper session 90 s after ZooKeeper started: %v", a, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// zkSession reads ZooKeeper's root through a node: it fails while the node
// has no session.
func zkSession(addr string) error {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := chclient.Open(c, addr, chclient.Options{})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = chclient.Strings(c, conn, "SELECT name FROM system.zookeeper WHERE path = '/'")
	return err
}

// DeleteZooKeeperNode deletes a node and its children in the local stack's
// ZooKeeper with zkCli.sh (for a test that puts ZooKeeper in a state a
// fault leaves), and waits until the ClickHouse node conn no longer sees it.
func (e *Env) DeleteZooKeeperNode(t testing.TB, conn driver.Conn, path string) {
	t.Helper()
	if e.StackDir == "" {
		t.Fatalf("testenv: ZooKeeper's client needs the local stack (make up)")
	}
	parent, name := filepath.Dir(path), filepath.Base(path)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := e.stackCmd("zk-cli", "deleteall", path).CombinedOutput()
		// zkCli.sh exits 0 also when it could not connect: ask ClickHouse.
		var n uint64
		if qerr := conn.QueryRow(ctx(t), "SELECT count() FROM system.zookeeper WHERE path = ? AND name = ?", parent, name).Scan(&n); qerr != nil {
			t.Fatalf("testenv: read %s in ZooKeeper: %v", path, qerr)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: zkCli.sh deleteall %s left the node (err %v):\n%s", path, err, out)
		}
		time.Sleep(time.Second)
	}
}

// StartNode starts a node stopped by StopNode and waits until it answers.
func (e *Env) StartNode(t testing.TB, node string) { t.Helper(); e.stack(t, "start-node", node) }

func (e *Env) stack(t testing.TB, args ...string) {
	t.Helper()
	if out, err := e.stackCmd(args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: stack.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// stackCmd is the command of stack.sh with args, on the test's stack.
func (e *Env) stackCmd(args ...string) *exec.Cmd {
	cmd := exec.Command("bash", append([]string{filepath.Join(e.Root, "internal", "stack", "stack.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "STACK_DIR="+e.StackDir)
	return cmd
}

// Postgres is a PostgreSQL server of a test's own, for a test that stops it
// (the stack's is shared by every test running beside it).
type Postgres struct {
	URL  string
	dir  string
	port int
	env  *Env
}

// PrivatePostgres starts a PostgreSQL of the test's own under the local
// stack's directory; it is stopped and removed when the test ends.
func (e *Env) PrivatePostgres(t testing.TB) *Postgres {
	t.Helper()
	if e.StackDir == "" {
		t.Fatalf("testenv: a PostgreSQL of a test's own needs the local stack (make up)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p := &Postgres{dir: filepath.Join(e.StackDir, UniqueName("pg")), port: port, env: e,
		URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	t.Cleanup(func() {
		p.Kill(t)
		os.RemoveAll(p.dir)
	})
	p.Start(t)
	return p
}

// Kill stops it at once, as a crash would (pg_ctl -m immediate).
func (p *Postgres) Kill(t testing.TB) { t.Helper(); p.env.stack(t, "pg-kill", p.dir) }

// Start starts it (again) and waits until it answers.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	p.env.stack(t, "pg-up", p.dir, fmt.Sprint(p.port))
}
