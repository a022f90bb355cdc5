//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// clusterChangedSpec is changedSpec on the cluster.
func clusterChangedSpec(k int) string { return changedSpec(k, "cluster: auto\n") }

// assertClusterChangedExact compares the target, read through every shard,
// with version k's query over the whole source.
func (f *fixture) assertClusterChangedExact(k int) {
	f.t.Helper()
	f.assertSame(fmt.Sprintf("by_category_dist for version sum(price * %d)", k),
		"SELECT category, sum(cnt), sum(total_price) FROM by_category_dist GROUP BY category ORDER BY category",
		fmt.Sprintf("SELECT category, count(), sum(price * %d) FROM products_dist GROUP BY category ORDER BY category", k))
}

// tablesOnEveryNode fails the test unless every node holds exactly want.
func (f *fixture) tablesOnEveryNode(want string) {
	f.t.Helper()
	for i, node := range f.cluster.Nodes {
		rows, err := node.Query(context.Background(), "SELECT name FROM system.tables WHERE database = ? ORDER BY name", f.db)
		if err != nil {
			f.t.Fatal(err)
		}
		var names []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				f.t.Fatal(err)
			}
			names = append(names, n)
		}
		rows.Close()
		if got := strings.Join(names, "; "); got != want {
			f.t.Errorf("tables on %s:\n got %s\nwant %s", f.cluster.Addrs[i], got, want)
		}
	}
}

// TestClusterChangeUnderWriterAndReader: a live MV on the 2x2 cluster
// (Replicated source and target, Distributed tables over both) is changed
// twice while a writer inserts 2,000 rows/s through products_dist and two
// readers query by_category_dist (every shard) and by_category_data (one
// node) in a loop. No read fails; afterwards the target read through every
// shard equals the new query over the whole source; every node holds only
// the new version. Then, with a node stopped, a further change is refused
// at plan time naming that node.
func TestClusterChangeUnderWriterAndReader(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 300_000
	f.createClusterProducts(c, prefill, true)
	f.writeSpec("by_category", clusterChangedSpec(1))
	f.mustRun("apply", "--auto-approve", f.dir)
	f.settle(c, prefill, "products", "by_category_data")
	f.assertClusterChangedExact(1)

	w := f.startWriter("products_dist", prefill, 100, 50*time.Millisecond)
	dist := f.startReader("by_category_dist")
	local := f.startReader("by_category_data")
	for k := 2; k <= 3; k++ {
		f.writeSpec("by_category", clusterChangedSpec(k))
		plan := f.mustRun("plan", f.dir)
		for _, want := range []string{fmt.Sprintf("rebuild beside live version %d as version %d", k-1, k), fmt.Sprintf("sum(price * %d)", k)} {
			if !strings.Contains(plan.stdout, want) {
				t.Errorf("plan does not say %q:\n%s", want, plan.stdout)
			}
		}
		start := time.Now()
		r := f.mustRun("apply", "--auto-approve", f.dir)
		t.Logf("change to version %d applied in %s:\n%s", k, time.Since(start).Round(time.Millisecond), r.stdout)
		if v, live := f.versions("by_category"); v != k || live != k {
			t.Fatalf("after the change to %d: version %d, live %d", k, v, live)
		}
	}
	time.Sleep(time.Second) // keep writing through the new MV
	rate := w.Stop(t)
	dist.Stop(t)
	local.Stop(t)
	t.Logf("writer: %.0f rows/s, %d rows, %d INSERTs failed (each checked: it wrote nothing)", rate, w.rows.Load(), w.errs)
	if rate < 1500 {
		t.Errorf("writer reached %.0f rows/s, want about 2,000", rate)
	}
	f.settle(c, prefill+w.rows.Load(), "products", "by_category_data__v3")
	w.checkLost(t)
	f.assertClusterChangedExact(3)
	f.tablesOnEveryNode("by_category__v3; by_category_data; by_category_data__v3; by_category_dist; products; products_dist")
	if r := f.mustRun("plan", f.dir); !strings.Contains(r.stdout, "No changes") {
		t.Errorf("plan after the changes:\n%s", r.stdout)
	}

	// A change while a node is down: refused at plan time, naming it.
	f.env.StopNode(t, "n4")
	f.writeSpec("by_category", clusterChangedSpec(4))
	p := f.run("plan", f.dir)
	t.Logf("plan with %s down: exit %d\n%s%s", c.Addrs[3], p.code, p.stdout, p.stderr)
	if p.code == 0 || !strings.Contains(p.stdout+p.stderr, c.Addrs[3]) || !strings.Contains(p.stdout+p.stderr, "do not answer") {
		t.Fatalf("plan of a change with %s down: exit %d, want it refused naming the node", c.Addrs[3], p.code)
	}
	a := f.run("apply", "--auto-approve", f.dir)
	if a.code == 0 {
		t.Fatalf("apply of a change with %s down succeeded:\n%s", c.Addrs[3], a.stdout)
	}
	if v, live := f.versions("by_category"); v != 3 || live != 3 {
		t.Fatalf("the refused change moved the job to version %d, live %d", v, live)
	}
	f.env.StartNode(t, "n4")
	f.assertClusterChangedExact(3)
}

// TestClusterChangeKilledAtEachStep: on the 2x2 cluster, a change dies (as
// with SIGKILL) at every step in turn under a writer through products_dist;
// every node keeps the readers' table, and the next apply finishes the
// change exactly.
func TestClusterChangeKilledAtEachStep(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 200_000
	f.createClusterProducts(c, prefill, true)
	f.writeSpec("by_category", clusterChangedSpec(1))
	f.mustRun("apply", "--auto-approve", f.dir)
	f.changeKilledAtEachStep(changeCrashPoints, prefill, "products_dist", "cluster: auto\n", func(k int, rows uint64) {
		f.settle(c, rows, "products", fmt.Sprintf("by_category_data__v%d", k))
		f.assertClusterChangedExact(k)
	})
}
