//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/shirath/shirath/internal/testenv"
)

// TestClusterOrphanPartStopsBackfill: a replica of the target holds a part
// that ZooKeeper does not know, the state an INSERT with an unknown status
// (code 319, ZooKeeper lost during its commit) leaves behind; CI once saw a
// batch so, run again, counted twice on one replica. The state is made by
// deleting the part's node in ZooKeeper while the apply is down mid-backfill,
// with merges stopped on that replica so that the part stays. The next apply
// finishes the batches and stops, naming the part and its replica, and
// leaves the job to resume; `mv backfill --restart` rebuilds it exact under
// a writer.
func TestClusterOrphanPartStopsBackfill(t *testing.T) {
	f, c, w, apply := backfillUnderWriter(t, "the backfill", func(f *fixture) bool {
		st, p, _, _ := f.job("by_category")
		return st == "backfilling" && p > 0
	})
	apply.kill()
	w.Stop(t)
	ctx := context.Background()
	n0, addr := c.Nodes[0], c.Addrs[0]
	target := f.db + ".by_category_data"
	if err := n0.Exec(ctx, "SYSTEM STOP MERGES "+target); err != nil {
		t.Fatal(err)
	}
	defer n0.Exec(ctx, "SYSTEM START MERGES "+target)
	var part, zk, replica string
	err := n0.QueryRow(ctx, "SELECT name FROM system.parts WHERE database = ? AND table = 'by_category_data' AND active ORDER BY modification_time LIMIT 1", f.db).Scan(&part)
	if err != nil {
		t.Fatal(err)
	}
	if err := n0.QueryRow(ctx, "SELECT zookeeper_path, replica_name FROM system.replicas WHERE database = ? AND table = 'by_category_data'", f.db).Scan(&zk, &replica); err != nil {
		t.Fatal(err)
	}
	f.env.DeleteZooKeeperNode(t, n0, zk+"/replicas/"+replica+"/parts/"+part)
	// The other half of that state: the batch whose commit broke off has
	// an outcome shirath did not see, so its shard is in doubt (the next
	// run finds its in-flight marker). The apply killed above may have died
	// between two batches, so the test marks it, as resolving the marker
	// would.
	var marked int
	if err := f.pgRow("WITH u AS (UPDATE mv_job_shards SET in_doubt = true WHERE job_id = (SELECT id FROM mv_jobs WHERE name = $1) RETURNING 1) SELECT count(*) FROM u", []any{"by_category"}, &marked); err != nil || marked == 0 {
		t.Fatalf("mark the job's shards in doubt: %d rows, %v", marked, err)
	}

	// Were the part not seen, the apply would go on to OPTIMIZE FINAL,
	// which waits for the merges stopped above.
	f.runTimeout = 2 * time.Minute
	r := f.run("apply", "--auto-approve", f.dir)
	f.runTimeout = 0
	t.Logf("apply with an orphan part (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	var active uint64
	if err := n0.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = 'by_category_data' AND name = ? AND active", f.db, part).Scan(&active); err != nil || active != 1 {
		t.Fatalf("%s is no longer active on %s (%v): the test lost its premise", part, addr, err)
	}
	if r.code != 1 || !strings.Contains(r.stderr, "ZooKeeper does not know") || !strings.Contains(r.stderr, part+" on "+addr) ||
		!strings.Contains(r.stderr, "mv backfill "+f.db+".by_category --restart") {
		t.Fatalf("the apply must stop naming %s on %s and the rebuild", part, addr)
	}
	if st, p, tot, _ := f.job("by_category"); st == "completed" || st == "optimizing" || p != tot {
		t.Fatalf("job after the apply that found the orphan: %s, %d/%d rows; want every batch done and the job not past the backfill", st, p, tot)
	}
	// Stopped again, the same way, until the part is gone.
	if r := f.run("apply", "--auto-approve", f.dir); r.code != 1 || !strings.Contains(r.stderr, part+" on "+addr) {
		t.Fatalf("a second apply must stop on the same part (exit %d):\n%s", r.code, r.stderr)
	}
	if err := n0.Exec(ctx, "SYSTEM START MERGES "+target); err != nil {
		t.Fatal(err)
	}

	w2 := f.startWriterWith(clickhouse.Settings{"insert_distributed_sync": 1}, "products_dist", w.next.Load(), 100, 50*time.Millisecond)
	f.mustRun("mv", "backfill", f.db+".by_category", "--restart")
	f.mustRun("apply", "--auto-approve", f.dir)
	if st, _, _, _ := f.job("by_category"); st != "completed" {
		t.Fatalf("after the rebuild: %s", st)
	}
	w2.Stop(t)
	// An INSERT through products_dist that races the view's creation on
	// 18.16 may fail on one shard and be written on the other: the source
	// keeps those rows, and so must the target.
	kept, _ := strconv.ParseUint(f.scalar(fmt.Sprintf("SELECT count() FROM products_dist WHERE %s OR %s", w.failedRows(), w2.failedRows())), 10, 64)
	t.Logf("the source kept %d rows of failed INSERTs", kept)
	f.settle(c, faultPrefill+w.rows.Load()+w2.rows.Load()+kept, "products", "by_category_data")
	f.assertClusterExact()
	f.assertReplicasExact(c)
}

// assertReplicasExact checks every node's copy of the target against its
// own source: a replica that counts rows twice shows here, where a read
// through the Distributed table may pick the other replica.
func (f *fixture) assertReplicasExact(c *testenv.Cluster) {
	f.t.Helper()
	for i, node := range c.Nodes {
		src, tgt, err := f.nodeCounts(node)
		if err != nil || src != tgt {
			f.t.Errorf("%s: the source has %d rows, the target counts %d (err %v)", c.Addrs[i], src, tgt, err)
		}
	}
}
