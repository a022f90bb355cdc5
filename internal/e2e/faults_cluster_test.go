//go:build integration

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// Lost dependencies on the cluster (issue 12, point 2): ZooKeeper stopped
// during ON CLUSTER DDL and during a Replicated backfill, and a node
// restarted during a batch. Each first apply fails naming the cause, or
// finishes; the next apply ends exact. These tests stop what every cluster
// test needs: like the other cluster tests they never run in parallel.

// readyz returns the daemon's /readyz status and body.
func readyz(t *testing.T, d *servertest.Daemon) (int, string) {
	t.Helper()
	resp, err := servertest.HTTPClient(t).Get(d.URL + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestClusterZooKeeperLostDuringDDL: with ZooKeeper down, apply of a new MV
// on the cluster fails naming ZooKeeper and the daemon's /readyz says 503
// naming it; once ZooKeeper is back, /readyz is 200 and an apply builds the
// MV exactly.
func TestClusterZooKeeperLostDuringDDL(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 50_000
	f.createClusterProducts(c, prefill, true)
	f.writeSpec("by_category", summingSpec+"cluster: auto\n")
	d := servertest.Start(t, binary, servertest.Env{CHAddr: c.Addrs[0], PGURL: f.pg})
	if code, body := readyz(t, d); code != http.StatusOK {
		t.Fatalf("readyz with every dependency up: %d %s", code, body)
	}

	f.env.StopZooKeeper(t)
	start := time.Now()
	r := f.run("apply", "--auto-approve", f.dir)
	t.Logf("apply with ZooKeeper down: exit %d after %s\n%s%s", r.code, time.Since(start).Round(time.Millisecond), r.stdout, r.stderr)
	if r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "zookeeper") {
		t.Fatalf("apply with ZooKeeper down: exit %d; want a failure naming ZooKeeper", r.code)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := readyz(t, d)
		if code == http.StatusServiceUnavailable && strings.Contains(strings.ToLower(body), "zookeeper") {
			t.Logf("readyz with ZooKeeper down: %d %s", code, strings.TrimSpace(body))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz with ZooKeeper down: %d %s; want 503 naming ZooKeeper", code, body)
		}
		time.Sleep(time.Second)
	}

	f.env.StartZooKeeper(t)
	deadline = time.Now().Add(60 * time.Second)
	for {
		code, body := readyz(t, d)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz 60 s after ZooKeeper came back: %d %s", code, body)
		}
		time.Sleep(time.Second)
	}
	r = f.applyUntilDone(2 * time.Minute)
	t.Logf("apply once ZooKeeper is back:\n%s", r.stdout)
	f.settle(c, prefill, "products", "by_category_data")
	f.assertClusterExact()
}

// applyUntilDone applies until an apply succeeds: the first one after a
// dependency came back may still meet its sessions expiring (a node's
// Replicated tables are read-only until it has reconnected to ZooKeeper),
// and fails saying so; the test then applies again, as an operator would.
func (f *fixture) applyUntilDone(within time.Duration) result {
	f.t.Helper()
	return f.applyUntilDoneOr(within, "")
}

// applyUntilDoneOr is applyUntilDone that also returns the first failed
// apply whose error says stop (when stop is not empty).
func (f *fixture) applyUntilDoneOr(within time.Duration, stop string) result {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := f.run("apply", "--auto-approve", "--wait-lock", f.dir)
		if r.code == 0 || (stop != "" && strings.Contains(r.stderr, stop)) {
			return r
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("no apply succeeded within %s; the last: exit %d\n%s%s", within, r.code, r.stdout, r.stderr)
		}
		f.t.Logf("apply failed (exit %d), again in 5 s:\n%s", r.code, lastLines(r.stderr, 5))
		time.Sleep(5 * time.Second)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestClusterZooKeeperLostDuringBackfill: ZooKeeper stops while the
// Replicated target is backfilled in small batches under a writer: the
// apply fails naming ZooKeeper (or finishes, if its last batch was done),
// and once ZooKeeper is back the next apply completes. shirath's part is
// exact: the batch that was in flight is neither lost nor counted twice. If
// the batch's INSERT ended with an unknown status and left its part on one
// replica only, the apply stops naming the part instead, and
// `mv backfill --restart` rebuilds the MV exact.
//
// The writer's INSERTs are not all clean. ClickHouse writes an INSERT's
// block into the source and then pushes it to the MV; with ZooKeeper gone,
// the push into the Replicated target fails ("Cannot allocate block number
// in ZooKeeper ... while pushing to view") after the source has its rows, so
// a failed INSERT can leave rows in the source that never reach the target
// (measured: 43 to 198 rows per shard in a run). ClickHouse does not make an
// INSERT and its MVs atomic, and no tool can undo that after the fact. The
// writer inserts synchronously, so that it knows which INSERTs failed; the
// test proves that shirath lost and doubled nothing (per group, the target
// lies between the query over the source without those INSERTs' rows and
// over the whole source), that `verify` finds the difference the failed
// INSERTs left, naming the shard, and that `apply -replace` rebuilds the
// target exactly beside the live one, under the writer.
func TestClusterZooKeeperLostDuringBackfill(t *testing.T) {
	f, c, w, apply := backfillUnderWriter(t, "the backfill", func(f *fixture) bool {
		st, p, _, _ := f.job("by_category")
		return st == "backfilling" && p > 0
	})
	f.env.StopZooKeeper(t)
	err := apply.wait()
	t.Logf("apply with ZooKeeper stopped mid-backfill (err %v):\n%s\n%s", err, apply.stdout.String(), lastLines(apply.stderr.String(), 10))
	if err != nil && !strings.Contains(strings.ToLower(apply.stderr.String()), "zookeeper") {
		t.Fatalf("the failed apply does not name ZooKeeper")
	}
	st, p, tot, _ := f.job("by_category")
	t.Logf("job after it: %s, %d/%d rows", st, p, tot)
	f.env.StartZooKeeper(t)
	r := f.applyUntilDoneOr(3*time.Minute, "ZooKeeper does not know")
	t.Logf("apply once ZooKeeper is back (exit %d):\n%s%s", r.code, r.stdout, lastLines(r.stderr, 3))
	if r.code != 0 {
		// An INSERT of a batch ended with an unknown status and its part
		// stayed on one replica only (see executor/orphans.go; seen once
		// in CI): the apply stops naming it, and the rebuild is exact.
		f.mustRun("mv", "backfill", f.db+".by_category", "--restart")
		r = f.applyUntilDone(3 * time.Minute)
		t.Logf("apply after mv backfill --restart:\n%s", r.stdout)
	}
	defer f.logPerNode(c)

	w.Stop(t)
	f.waitReplicasAgree(c, "products", 7*time.Minute)
	failed := w.failedRows()
	kept, _ := strconv.ParseUint(f.scalar(fmt.Sprintf("SELECT count() FROM products_dist WHERE %s", failed)), 10, 64)
	t.Logf("%d INSERTs failed; the source kept %d of their rows", len(w.lost), kept)
	rows := w.rows.Load()
	f.settle(c, faultPrefill+rows+kept, "products", "by_category_data")
	// A failed INSERT's part on one shard may have reached the source and
	// the target, the source alone, or neither: per group, the target must
	// lie between the query over the source without the failed INSERTs'
	// rows (less would be a row lost) and over the whole source (more would
	// be a row counted twice).
	const target = "SELECT category, sum(cnt), sum(total_price) FROM by_category_dist GROUP BY category ORDER BY category"
	const query = "SELECT category, count(), sum(price) FROM products_dist %s GROUP BY category ORDER BY category"
	got, clean, all := f.rowsOf(target), f.rowsOf(fmt.Sprintf(query, "WHERE NOT "+failed)), f.rowsOf(fmt.Sprintf(query, ""))
	if err := between(got, clean, all); err != nil {
		t.Fatalf("the target is not between the source without the failed INSERTs' rows and the whole source: %v", err)
	}
	v := f.run("verify", "by_category")
	t.Logf("verify (exit %d):\n%s%s", v.code, v.stdout, v.stderr)
	switch same := strings.Join(got, "\n") == strings.Join(all, "\n"); {
	case same && v.code != 0:
		t.Fatalf("verify of a target equal to the source's aggregate: exit %d", v.code)
	case !same && (v.code != 1 || !strings.Contains(v.stdout, "SHARD")):
		t.Fatalf("verify must find the rows the source kept from failed INSERTs (exit 1, naming the shard), got exit %d", v.code)
	case !same && !strings.Contains(v.stdout, "shirath apply -replace "+f.db+".by_category"):
		t.Errorf("verify does not say how to rebuild")
	}
	// Rebuilt beside the live version under the writer, readers switched
	// at once (also when the failed INSERTs happened to leave nothing
	// behind, so that the rebuild always runs on the cluster).
	w = f.startWriterWith(clickhouse.Settings{"insert_distributed_sync": 1}, "products_dist", w.next.Load(), 100, 50*time.Millisecond)
	rd := f.startReader("by_category_dist")
	b := f.mustRun("apply", "--auto-approve", "-replace", "by_category", f.dir)
	t.Logf("apply -replace:\n%s", b.stdout)
	w.Stop(t)
	rd.Stop(t)
	f.settle(c, faultPrefill+kept+rows+w.rows.Load(), "products", "by_category_data__v2")
	w.checkLost(t) // an INSERT racing the MVs' creation or drop fails whole
	f.assertClusterExact()
	if v := f.run("verify", "by_category"); v.code != 0 {
		t.Fatalf("verify after the rebuild (exit %d):\n%s%s", v.code, v.stdout, v.stderr)
	}
	if v, live := f.versions("by_category"); v != 2 || live != 2 {
		t.Errorf("after -replace: version %d, live %d; want 2, 2", v, live)
	}
}

// waitReplicasAgree waits until the replicas of each shard hold as many
// rows of table. An INSERT that failed with "Unknown status, client must
// retry" (code 319: ZooKeeper lost while its part was committed) leaves
// its part on the replica that wrote it, not registered in ZooKeeper: that
// replica serves the rows until its part check removes the part (seen on
// 18.16: one replica of shard 2 had 190 rows more than the other), so a
// read through the Distributed table depends on the replica it picks.
func (f *fixture) waitReplicasAgree(c *testenv.Cluster, table string, timeout time.Duration) {
	f.t.Helper()
	start := time.Now()
	for {
		f.syncReplicas(c, table)
		rows := map[uint32]map[uint64][]string{} // shard -> count -> nodes
		for i, node := range c.Nodes {
			_, port, _ := strings.Cut(c.Addrs[i], ":")
			var shard uint32
			var n uint64
			q := fmt.Sprintf("SELECT (SELECT any(shard_num) FROM system.clusters WHERE cluster = '%s' AND port = %s), (SELECT count() FROM %s.%s)", c.Name, port, f.db, table)
			if err := node.QueryRow(context.Background(), q).Scan(&shard, &n); err != nil {
				f.t.Fatalf("count %s on %s: %v", table, c.Addrs[i], err)
			}
			if rows[shard] == nil {
				rows[shard] = map[uint64][]string{}
			}
			rows[shard][n] = append(rows[shard][n], c.Addrs[i])
		}
		var differ []string
		for shard, counts := range rows {
			if len(counts) > 1 {
				differ = append(differ, fmt.Sprintf("shard %d: %v", shard, counts))
			}
		}
		if len(differ) == 0 {
			if d := time.Since(start); d > time.Second {
				f.t.Logf("the replicas of %s agree after %s", table, d.Round(time.Second))
			}
			return
		}
		if time.Since(start) > timeout {
			f.t.Fatalf("the replicas of %s still differ after %s (rows: nodes): %s", table, timeout, strings.Join(differ, "; "))
		}
		if time.Since(start) < 3*time.Second {
			f.t.Logf("the replicas of %s differ, waiting: %s", table, strings.Join(differ, "; "))
		}
		time.Sleep(5 * time.Second)
	}
}

// between checks, per row "group count sum" (sum with 2 decimals), that
// lo <= got <= hi in count and in sum, the groups the same.
func between(got, lo, hi []string) error {
	if len(got) != len(lo) || len(got) != len(hi) {
		return fmt.Errorf("%d groups, want %d (and %d)", len(got), len(lo), len(hi))
	}
	parse := func(row string) (string, int64, int64, error) {
		f := strings.Split(row, "\t")
		if len(f) != 3 {
			return "", 0, 0, fmt.Errorf("row %q", row)
		}
		n, err1 := strconv.ParseInt(f[1], 10, 64)
		c, err2 := strconv.ParseInt(strings.Replace(f[2], ".", "", 1), 10, 64)
		return f[0], n, c, errors.Join(err1, err2)
	}
	for i := range got {
		g, gn, gc, err1 := parse(got[i])
		l, ln, lc, err2 := parse(lo[i])
		h, hn, hc, err3 := parse(hi[i])
		if err := errors.Join(err1, err2, err3); err != nil {
			return err
		}
		if g != l || g != h {
			return fmt.Errorf("group %s against %s and %s", g, l, h)
		}
		if gn < ln || gn > hn || gc < lc || gc > hc {
			return fmt.Errorf("group %s: %s, want between %s and %s", g, got[i], lo[i], hi[i])
		}
	}
	return nil
}

// logPerNode logs, per node, the source's rows and the rows the target
// counts, to tell which shard or replica a difference is on.
func (f *fixture) logPerNode(c *testenv.Cluster) {
	for i, node := range c.Nodes {
		src, tgt, err := f.nodeCounts(node)
		f.t.Logf("%s: source %d rows, target counts %d (err %v)", c.Addrs[i], src, tgt, err)
	}
}

// nodeCounts reads, on one node, the source's rows and the rows its copy of
// the target counts.
func (f *fixture) nodeCounts(node driver.Conn) (src, tgt uint64, err error) {
	err = node.QueryRow(context.Background(), fmt.Sprintf("SELECT (SELECT count() FROM %[1]s.products), (SELECT toUInt64(sum(cnt)) FROM %[1]s.by_category_data)", f.db)).Scan(&src, &tgt)
	return src, tgt, err
}

// TestClusterNodeRestartedDuringBatch: the node that runs shard 2's
// backfill is restarted (stopped and started at once, as an upgrade or an
// OOM kill and its supervisor do) while its batches run under a writer.
// The apply fails naming the node, or rides it out; the next apply ends
// exact.
func TestClusterNodeRestartedDuringBatch(t *testing.T) {
	f, c, w, apply := backfillUnderWriter(t, "the backfill of shard 2", func(f *fixture) bool {
		st, _, _, _ := f.job("by_category")
		return st == "backfilling" && f.shardProcessed("by_category", 2) > 0
	})
	victim, victimAddr := "n3", c.Addrs[2] // shard 2, first replica: where shard 2's backfill runs
	start := time.Now()
	f.env.RestartNode(t, victim)
	t.Logf("%s restarted in %s", victimAddr, time.Since(start).Round(time.Millisecond))
	err := apply.wait()
	t.Logf("apply across the restart (err %v):\n%s\n%s", err, apply.stdout.String(), lastLines(apply.stderr.String(), 10))
	if err != nil && !strings.Contains(apply.stderr.String(), victimAddr) {
		t.Fatalf("the failed apply does not name the restarted node %s", victimAddr)
	}
	r := f.applyUntilDone(3 * time.Minute)
	t.Logf("apply after the restart:\n%s", r.stdout)
	f.assertExactOnceSettled(c, w)
}

// faultPrefill is the source's size before the writer starts.
const faultPrefill = 300_000

// backfillUnderWriter builds the cluster source, a spec backfilled in
// 5,000-key batches and a writer through products_dist, and starts an apply
// that returns once ready holds (see startApply).
func backfillUnderWriter(t *testing.T, what string, ready func(f *fixture) bool) (*fixture, *testenv.Cluster, *writer, *background) {
	f, c := newClusterFixture(t)
	f.createClusterProducts(c, faultPrefill, true)
	f.writeSpec("by_category", summingSpec+"cluster: auto\nbackfill:\n  initial_batch_rows: 5000\n  max_batch_rows: 5000\n")
	// Synchronous, so that a failure of a shard's part fails the INSERT:
	// asynchronously, a block whose push to the MV failed on its shard is
	// sent again and deduplicated by the Replicated source, and the writer
	// never learns that its rows missed the target (see
	// TestClusterZooKeeperLostDuringBackfill).
	w := f.startWriterWith(clickhouse.Settings{"insert_distributed_sync": 1}, "products_dist", faultPrefill, 100, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return f, c, w, f.startApply(ctx, what, 3*time.Minute, func() bool { return ready(f) })
}

// assertExactOnceSettled stops the writer, waits until every row reached its
// shard, checks that the failed INSERTs wrote nothing, and compares the
// target with the source.
func (f *fixture) assertExactOnceSettled(c *testenv.Cluster, w *writer) {
	f.t.Helper()
	w.Stop(f.t)
	f.settle(c, faultPrefill+w.rows.Load(), "products", "by_category_data")
	w.checkLost(f.t)
	f.assertClusterExact()
}
