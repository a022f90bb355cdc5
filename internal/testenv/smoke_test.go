//go:build integration

package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
)

// TestSmokeCluster proves the cluster: ON CLUSTER DDL reaches every node, rows
// written through a Distributed table land on both shards, and each shard's
// second replica receives its rows by replication.
func TestSmokeCluster(t *testing.T) {
	t.Parallel()
	env := Load(t)
	c := env.ClusterDB(t)
	if err := checkCluster(c, c.Name); err != nil {
		t.Fatal(err)
	}
}

// TestSmokeDetectsBrokenCluster: the same check against a cluster name that
// is not configured must fail, or the smoke test could never catch a broken
// cluster.
func TestSmokeDetectsBrokenCluster(t *testing.T) {
	t.Parallel()
	env := Load(t)
	c := env.ClusterDB(t)
	err := checkCluster(c, "no_such_cluster")
	if err == nil {
		t.Fatal("the cluster check passed with a wrong cluster name")
	}
	t.Logf("as expected: %v", err)
}

func checkCluster(c *Cluster, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	n0 := c.Nodes[0]
	ddl := []string{
		fmt.Sprintf("CREATE TABLE %s.events ON CLUSTER %s (id UInt64, v UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/%s/events', '{replica}') ORDER BY id", c.DB, name, c.DB),
		fmt.Sprintf("CREATE TABLE %s.events_dist ON CLUSTER %s AS %s.events ENGINE = Distributed(%s, %s, events, rand())", c.DB, name, c.DB, name, c.DB),
	}
	for _, q := range ddl {
		if err := n0.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	const rows = 10000
	insertCtx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	if err := n0.Exec(insertCtx, fmt.Sprintf("INSERT INTO %s.events_dist SELECT number, number FROM numbers(%d)", c.DB, rows)); err != nil {
		return err
	}
	var wantSum uint64 = rows * (rows - 1) / 2

	// A read through the Distributed table picks any replica of each shard,
	// which may not have fetched the rows yet: poll.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var gotCount, gotSum uint64
		if err := n0.QueryRow(ctx, fmt.Sprintf("SELECT count(), sum(v) FROM %s.events_dist", c.DB)).Scan(&gotCount, &gotSum); err != nil {
			return err
		}
		if gotCount == rows && gotSum == wantSum {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("through the Distributed table: count %d sum %d, want %d and %d", gotCount, gotSum, rows, wantSum)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Which node holds which shard, as the cluster itself says.
	shardOf := map[string]uint32{}
	r, err := n0.Query(ctx, "SELECT shard_num, host_address, port FROM system.clusters WHERE cluster = ?", name)
	if err != nil {
		return err
	}
	for r.Next() {
		var shard uint32
		var host string
		var port uint16
		if err := r.Scan(&shard, &host, &port); err != nil {
			return err
		}
		shardOf[fmt.Sprintf("%s:%d", host, port)] = shard
	}
	r.Close()

	// Replication is asynchronous: poll until every replica has its shard's rows.
	deadline = time.Now().Add(30 * time.Second)
	for {
		perShard := map[uint32][]uint64{}
		for i, node := range c.Nodes {
			var n uint64
			if err := node.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.events", c.DB)).Scan(&n); err != nil {
				return err
			}
			shard, ok := shardOf[c.Addrs[i]]
			if !ok {
				return fmt.Errorf("node %s is not in cluster %s", c.Addrs[i], name)
			}
			perShard[shard] = append(perShard[shard], n)
		}
		ok := len(perShard) >= 2
		var total uint64
		for _, counts := range perShard {
			if len(counts) < 2 || counts[0] == 0 {
				ok = false
			}
			for _, n := range counts {
				if n != counts[0] {
					ok = false
				}
			}
			total += counts[0]
		}
		if ok && total == rows {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rows per shard and replica %v: want 2 or more shards, each non-empty, replicas equal, shard totals %d", perShard, rows)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSmokeSingle checks each single node answers in its own database, and
// that the matrix is what it claims: its servers are distinct, each subtest
// talks to the server its name says, and a database is Atomic exactly on
// the servers that have Atomic databases.
func TestSmokeSingle(t *testing.T) {
	t.Parallel()
	env := Load(t)
	singles := env.Singles(t)
	if len(singles) != 2 || singles[0].Name() == singles[1].Name() {
		var names []string
		for _, s := range singles {
			names = append(names, s.Name()+" at "+s.Addr)
		}
		t.Fatalf("want two single nodes of different versions, have %v", names)
	}
	env.EachSingle(t, func(t *testing.T, s *Single) {
		t.Parallel()
		smokeSingle(t, s)
	})
}

func smokeSingle(t *testing.T, s *Single) {
	conn, db := s.DB(t)
	ctx := context.Background()
	var version, engine string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(version, s.Version.String()) {
		t.Errorf("server at %s says version %s, the matrix says %s", s.Addr, version, s.Version)
	}
	if err := conn.QueryRow(ctx, "SELECT engine FROM system.databases WHERE name = ?", db).Scan(&engine); err != nil {
		t.Fatal(err)
	}
	if want := map[bool]string{true: "Atomic", false: "Ordinary"}[s.Atomic]; engine != want {
		t.Errorf("database %s has engine %s, want %s", db, engine, want)
	}
	if err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.t (id UInt64) ENGINE = MergeTree() ORDER BY id", db)); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s.t SELECT number FROM numbers(100)", db)); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.t", db)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Fatalf("count %d, want 100", n)
	}
}

// TestSmokePostgres writes a row and reads it back.
func TestSmokePostgres(t *testing.T) {
	t.Parallel()
	env := Load(t)
	u := env.PostgresDB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE smoke (id int PRIMARY KEY, note text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO smoke VALUES (1, 'shirath')"); err != nil {
		t.Fatal(err)
	}
	var note string
	if err := conn.QueryRow(ctx, "SELECT note FROM smoke WHERE id = 1").Scan(&note); err != nil {
		t.Fatal(err)
	}
	if note != "shirath" {
		t.Fatalf("read %q", note)
	}
}
