//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/shirath/shirath/internal/testenv"
)

// Cluster tests run one at a time (no t.Parallel): one of them stops a node,
// which would break ON CLUSTER statements of the others.

func newClusterFixture(t *testing.T) (*fixture, *testenv.Cluster) {
	env := testenv.Load(t)
	c := env.ClusterDB(t)
	return &fixture{t: t, env: env, ch: c.Nodes[0], db: c.DB, pg: env.PostgresDB(t), dir: t.TempDir(), addr: c.Addrs[0], cluster: c}, c
}

// createClusterProducts makes the usual production layout: a
// ReplicatedMergeTree source on every node and a Distributed table over it,
// filled with n rows through the Distributed table.
func (f *fixture) createClusterProducts(c *testenv.Cluster, n int, replicated bool) {
	engine := fmt.Sprintf("ReplicatedMergeTree('/clickhouse/tables/{shard}/%s/products', '{replica}')", f.db)
	if !replicated {
		engine = "MergeTree()"
	}
	f.exec("CREATE TABLE %s.products ON CLUSTER %s (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = %s ORDER BY id", f.db, c.Name, engine)
	f.exec("CREATE TABLE %s.products_dist ON CLUSTER %s AS %s.products ENGINE = Distributed(%s, %s, products, rand())", f.db, c.Name, f.db, c.Name, f.db)
	if n > 0 {
		ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
		q := fmt.Sprintf("INSERT INTO %s.products_dist SELECT number + 1, concat('cat', toString(number %% 97)), toDecimal64(number %% 1000, 2) / 10, toDateTime('2024-01-01 00:00:00') + number FROM numbers(%d)", f.db, n)
		if err := f.ch.Exec(ctx, q); err != nil {
			f.t.Fatal(err)
		}
	}
}

// settle waits until every row reached its shard (the Distributed table
// sends asynchronously) and every replica caught up.
func (f *fixture) settle(c *testenv.Cluster, want uint64, tables ...string) {
	f.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var n uint64
		if err := f.ch.QueryRow(context.Background(), fmt.Sprintf("SELECT count() FROM %s.products_dist", f.db)).Scan(&n); err != nil {
			f.t.Fatal(err)
		}
		if n == want {
			break
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("products_dist has %d rows, want %d", n, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.syncReplicas(c, tables...)
}

// syncReplicas waits until every replica of the tables has fetched what
// its peers have.
func (f *fixture) syncReplicas(c *testenv.Cluster, tables ...string) {
	f.t.Helper()
	for i, node := range c.Nodes {
		for _, t := range tables {
			if err := node.Exec(context.Background(), fmt.Sprintf("SYSTEM SYNC REPLICA %s.%s", f.db, t)); err != nil {
				f.t.Fatalf("sync replica %s on %s: %v", t, c.Addrs[i], err)
			}
		}
	}
}

func (f *fixture) assertClusterExact() {
	f.t.Helper()
	f.assertSame("through by_category_dist",
		"SELECT category, sum(cnt), sum(total_price) FROM by_category_dist GROUP BY category ORDER BY category",
		"SELECT category, count(), sum(price) FROM products_dist GROUP BY category ORDER BY category")
}

// TestClusterApplyExactUnderWrites: a writer inserts through a Distributed
// table over a ReplicatedMergeTree source during the whole apply; the result
// read through by_category_dist equals the aggregate of the source over all
// shards, exactly. Then a plan is empty, a Distributed table dropped by hand
// on one node shows as drift, and apply repairs it.
func TestClusterApplyExactUnderWrites(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 400_000
	f.createClusterProducts(c, prefill, true)
	f.writeSpec("by_category", summingSpec+"cluster: auto\nbackfill:\n  initial_batch_rows: 50000\n  batch_duration: 300ms\n")

	w := f.startWriter("products_dist", prefill, 200, 50*time.Millisecond)
	r := f.mustRun("apply", "--auto-approve", f.dir)
	time.Sleep(time.Second)
	rate := w.Stop(t)
	t.Logf("writer %.0f rows/s; apply:\n%s", rate, r.stdout)
	if !strings.Contains(r.stdout, "on cluster "+c.Name) || !strings.Contains(r.stdout, "ReplicatedSummingMergeTree") {
		t.Fatalf("expected a clustered plan with a Replicated target:\n%s", r.stdout)
	}
	f.settle(c, prefill+w.rows.Load(), "products", "by_category_data")
	w.checkLost(t)
	f.assertClusterExact()

	st := f.mustRun("status", "by_category")
	for _, want := range []string{"completed", "SHARD", "\n1 ", "\n2 "} {
		if !strings.Contains(st.stdout, want) {
			t.Fatalf("status lacks %q:\n%s", want, st.stdout)
		}
	}
	// Every node has every object.
	for i, node := range c.Nodes {
		var n uint64
		if err := node.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = ? AND name IN ('by_category', 'by_category_data', 'by_category_dist')", f.db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Fatalf("%s has %d of the 3 objects", c.Addrs[i], n)
		}
	}

	p := f.run("plan", "--detailed-exitcode", f.dir)
	if p.code != 0 || !strings.Contains(p.stdout, "No changes") {
		t.Fatalf("plan after apply: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}

	// Drift: the Distributed table dropped by hand on the third node.
	if err := c.Nodes[2].Exec(context.Background(), fmt.Sprintf("DROP TABLE %s.by_category_dist", f.db)); err != nil {
		t.Fatal(err)
	}
	p = f.run("plan", "--detailed-exitcode", f.dir)
	if p.code != 2 || !strings.Contains(p.stdout, "missing on "+c.Addrs[2]) {
		t.Fatalf("plan with drift: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
	f.mustRun("apply", "--auto-approve", f.dir)
	p = f.run("plan", "--detailed-exitcode", f.dir)
	if p.code != 0 {
		t.Fatalf("plan after repair: exit %d\n%s", p.code, p.stdout)
	}
	f.assertClusterExact()
}

// TestClusterNonReplicatedSource: when the source is not replicated, each
// node computes its own copy and the target stays non-replicated.
func TestClusterNonReplicatedSource(t *testing.T) {
	f, c := newClusterFixture(t)
	f.createClusterProducts(c, 0, false)
	// Different rows on every node, written to the local tables directly.
	for i, node := range c.Nodes {
		q := fmt.Sprintf("INSERT INTO %s.products SELECT number + 1, concat('cat', toString(number %% 7)), toDecimal64(number %% 100, 2), now() FROM numbers(%d)", f.db, 10_000*(i+1))
		if err := node.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	f.writeSpec("by_category", summingSpec+"cluster: "+c.Name+"\n")
	r := f.mustRun("apply", "--auto-approve", f.dir)
	if strings.Contains(r.stdout, "ReplicatedSummingMergeTree") {
		t.Fatalf("a non-replicated source got a replicated target:\n%s", r.stdout)
	}
	for i, node := range c.Nodes {
		var engine string
		if err := node.QueryRow(context.Background(), "SELECT engine FROM system.tables WHERE database = ? AND name = 'by_category_data'", f.db).Scan(&engine); err != nil {
			t.Fatal(err)
		}
		if engine != "SummingMergeTree" {
			t.Fatalf("%s: target engine %s", c.Addrs[i], engine)
		}
		nf := &fixture{t: t, db: f.db, addr: c.Addrs[i]}
		nf.assertSummingExact()
	}
}

// TestClusterNodeStoppedDuringApply: a node that runs a shard's backfill is
// stopped in the middle; the apply fails naming it (or fails over to the
// other replica), a plan names the node as unreachable, and once the node is
// back a later apply completes with an exact result.
func TestClusterNodeStoppedDuringApply(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 800_000
	f.createClusterProducts(c, prefill, true)
	// Tiny batches: the backfill of shard 2 must still run when the node,
	// which takes seconds to shut down, goes away.
	f.writeSpec("by_category", summingSpec+"cluster: auto\nbackfill:\n  initial_batch_rows: 2000\n  max_batch_rows: 2000\n")

	victim, victimAddr := "n3", c.Addrs[2] // shard 2, first replica: where shard 2's backfill runs
	w := f.startWriter("products_dist", prefill, 100, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Stop the node once shard 2 (backfilled after shard 1) is under way.
	apply := f.startApply(ctx, "the backfill of shard 2", 3*time.Minute, func() bool {
		st, _, _, _ := f.job("by_category")
		return st == "backfilling" && f.shardProcessed("by_category", 2) > 0
	})
	f.env.StopNode(t, victim)
	err := apply.wait()
	t.Logf("first apply (err %v):\n%s\n%s", err, apply.stdout.String(), apply.stderr.String())
	if err != nil && !strings.Contains(apply.stderr.String(), victimAddr) {
		t.Fatalf("the failed apply does not name the stopped node %s", victimAddr)
	}

	p := f.run("plan", f.dir)
	t.Logf("plan with %s down:\n%s%s", victimAddr, p.stdout, p.stderr)
	if !strings.Contains(p.stdout+p.stderr, victimAddr) {
		t.Fatalf("the plan does not name the stopped node %s", victimAddr)
	}

	// Dropping needs every node: refused at once, naming the node, and
	// nothing is dropped anywhere.
	start := time.Now()
	d := f.run("mv", "drop", f.db+".by_category")
	if d.code != 1 || !strings.Contains(d.stderr, victimAddr) || time.Since(start) > 20*time.Second {
		t.Fatalf("destroy with %s down: exit %d after %s\n%s%s", victimAddr, d.code, time.Since(start), d.stdout, d.stderr)
	}
	if n := f.scalar(fmt.Sprintf("SELECT count() FROM system.tables WHERE database = '%s' AND name = 'by_category'", f.db)); n != "1" {
		t.Fatalf("the refused destroy dropped the MV on the node it ran on")
	}

	f.env.StartNode(t, victim)
	w.Stop(t)
	r := f.mustRun("apply", "--auto-approve", "--wait-lock", f.dir)
	t.Logf("apply after the node came back:\n%s", r.stdout)
	f.settle(c, prefill+w.rows.Load(), "products", "by_category_data")
	w.checkLost(t)
	f.assertClusterExact()
	if st, p, tot, _ := f.job("by_category"); st != "completed" || p != tot {
		t.Fatalf("job after the second apply: %s %d/%d", st, p, tot)
	}
}

// shardProcessed reads one shard's backfilled rows from PostgreSQL.
func (f *fixture) shardProcessed(name string, shard int) int64 {
	f.t.Helper()
	var n int64
	err := f.pgRow("SELECT coalesce(sum(s.processed_rows), 0) FROM mv_job_shards s JOIN mv_jobs j ON j.id = s.job_id WHERE j.name = $1 AND s.shard = $2", []any{name, shard}, &n)
	if err != nil && !strings.Contains(err.Error(), "does not exist") {
		f.t.Fatal(err)
	}
	return n
}

// TestClusterWholeShardDown: both replicas of shard 2 stop while shard 1 is
// being backfilled. The apply fails naming shard 2's node; shard 1 is
// finished and recorded; once shard 2 is back, a later apply backfills just
// shard 2, and the result is exact.
func TestClusterWholeShardDown(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 800_000
	f.createClusterProducts(c, prefill, true)
	f.writeSpec("by_category", summingSpec+"cluster: auto\nbackfill:\n  initial_batch_rows: 2000\n  max_batch_rows: 2000\n")

	w := f.startWriter("products_dist", prefill, 100, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	apply := f.startApply(ctx, "the backfill of shard 1", 3*time.Minute, func() bool {
		return f.shardProcessed("by_category", 1) > 0
	})
	done := make(chan struct{})
	go func() { defer close(done); f.env.StopNode(t, "n4") }()
	f.env.StopNode(t, "n3")
	<-done
	err := apply.wait()
	t.Logf("first apply (err %v):\n%s\n%s", err, apply.stdout.String(), apply.stderr.String())
	if err == nil {
		t.Fatal("the apply succeeded with shard 2 down")
	}
	if !strings.Contains(apply.stderr.String(), c.Addrs[2]) && !strings.Contains(apply.stderr.String(), "shard 2") {
		t.Fatalf("the failure names neither shard 2 nor %s", c.Addrs[2])
	}
	shard1 := f.shardProcessed("by_category", 1)

	f.env.StartNode(t, "n3")
	f.env.StartNode(t, "n4")
	w.Stop(t)
	r := f.mustRun("apply", "--auto-approve", "--wait-lock", f.dir)
	t.Logf("apply after shard 2 came back:\n%s", r.stdout)
	if strings.Contains(r.stdout, "on "+c.Addrs[0]) || strings.Contains(r.stdout, "on "+c.Addrs[1]+"\n") {
		t.Fatalf("the later apply backfilled shard 1 again:\n%s", r.stdout)
	}
	if got := f.shardProcessed("by_category", 1); got != shard1 {
		t.Fatalf("shard 1 progress moved from %d to %d", shard1, got)
	}
	f.settle(c, prefill+w.rows.Load(), "products", "by_category_data")
	w.checkLost(t)
	f.assertClusterExact()
}

// TestClusterIdenticalBatches: batches whose output is byte for byte the same
// (one category, one price, equal key ranges) would be dropped by Replicated
// block deduplication as repeats of the first one. shirath sees that no block
// was recorded and writes them without deduplication: the result is exact.
func TestClusterIdenticalBatches(t *testing.T) {
	f, c := newClusterFixture(t)
	f.createClusterProducts(c, 0, true)
	// Contiguous ids on each shard, written to the local tables.
	for i, node := range []int{0, 2} {
		q := fmt.Sprintf("INSERT INTO %s.products SELECT %d + number + 1, 'c', toDecimal64(1, 2), now() FROM numbers(20000)", f.db, i*20000)
		if err := c.Nodes[node].Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	f.writeSpec("by_category", summingSpec+"cluster: auto\nbackfill:\n  initial_batch_rows: 2000\n  max_batch_rows: 2000\n")
	r := f.mustRun("apply", "--auto-approve", f.dir)
	f.settle(c, 40000, "products", "by_category_data")
	f.assertClusterExact()
	if !strings.Contains(r.stderr, "equals an earlier batch") {
		t.Fatalf("no batch was caught as a duplicate of another; the test did not test anything:\n%s", r.stderr)
	}
	if got := f.scalar("SELECT sum(cnt) FROM by_category_dist"); got != "40000" {
		t.Fatalf("sum(cnt) %s, want 40000\n%s", got, r.stdout)
	}
}
