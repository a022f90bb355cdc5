//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// changedSpec is the summing rollup whose total is sum(price * k): each k is
// another version of the MV's query.
func changedSpec(k int, extra string) string {
	return strings.Replace(summingSpec, "sum(price)", fmt.Sprintf("sum(price * %d)", k), 1) +
		"backfill:\n  initial_batch_rows: 100000\n" + extra
}

func (f *fixture) assertChangedExact(k int) {
	f.t.Helper()
	f.assertSame(fmt.Sprintf("target of version sum(price * %d)", k),
		"SELECT category, sum(cnt), sum(total_price) FROM by_category_data GROUP BY category ORDER BY category",
		fmt.Sprintf("SELECT category, count(), sum(price * %d) FROM products GROUP BY category ORDER BY category", k))
}

// reader queries the target in a loop, as a dashboard does, and counts the
// reads that fail.
type reader struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	first      error
	stop       chan struct{}
	stopOnce   sync.Once
	done       sync.WaitGroup
}

// halt stops the reader's loop (once) and waits for it.
func (r *reader) halt() {
	r.stopOnce.Do(func() { close(r.stop) })
	r.done.Wait()
}

func (f *fixture) startReader(table string) *reader {
	return f.startReaderOf(fmt.Sprintf("SELECT count(), sum(cnt) FROM %s.%s", f.db, table))
}

// startReaderOf reads q (two UInt64 columns) in a loop.
func (f *fixture) startReaderOf(q string) *reader {
	r := &reader{stop: make(chan struct{})}
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		for {
			select {
			case <-r.stop:
				return
			default:
			}
			var rows, cnt uint64
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := f.ch.QueryRow(ctx, q).Scan(&rows, &cnt)
			cancel()
			if err != nil {
				r.failed.Add(1)
				r.mu.Lock()
				if r.first == nil {
					r.first = err
				}
				r.mu.Unlock()
				continue
			}
			r.ok.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return r
}

// Stop stops the reader and fails the test on any failed read.
func (r *reader) Stop(t *testing.T) {
	t.Helper()
	r.halt()
	t.Logf("reader: %d reads, %d failed", r.ok.Load(), r.failed.Load())
	if r.failed.Load() > 0 {
		t.Errorf("reader: %d of %d reads failed, the first with: %v", r.failed.Load(), r.ok.Load()+r.failed.Load(), r.first)
	}
	if r.ok.Load() == 0 {
		t.Error("reader: no read succeeded")
	}
}

// missingOn names the nodes (of the cluster, or the single node) that do
// not have the table; "" when every node has it.
func (f *fixture) missingOn(table string) string {
	f.t.Helper()
	conns, addrs := f.nodes()
	var missing []string
	for i, c := range conns {
		var n uint64
		if err := c.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = ? AND name = ?", f.db, table).Scan(&n); err != nil {
			f.t.Fatalf("%s: %v", addrs[i], err)
		}
		if n != 1 {
			missing = append(missing, addrs[i])
		}
	}
	return strings.Join(missing, ", ")
}

// nodes are the connections to every node under test (the cluster's, or
// the single node) and their addresses.
func (f *fixture) nodes() ([]driver.Conn, []string) {
	if f.cluster != nil {
		return f.cluster.Nodes, f.cluster.Addrs
	}
	return []driver.Conn{f.ch}, []string{f.addr}
}

// tablesOf lists the fixture database's tables with their engines.
func (f *fixture) tablesOf() string {
	return strings.Join(f.rowsOf("SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name"), "; ")
}

func (f *fixture) versions(name string) (version, live int) {
	f.t.Helper()
	if err := f.pgRow("SELECT version, live_version FROM mv_jobs WHERE name = $1", []any{name}, &version, &live); err != nil {
		f.t.Fatal(err)
	}
	return version, live
}

// TestChangeRebuildUnderWriterAndReader: a live MV is changed twice (its
// query, then its columns) while a writer inserts 2,000 rows/s into the
// source and a reader queries the target in a loop. Each change is built
// beside the live version and switched to at once: no read fails, the
// target equals the new query over the whole source, and the old version's
// objects are gone.
func TestChangeRebuildUnderWriterAndReader(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill = 300_000
		f.createProducts(prefill)
		f.writeSpec("by_category", changedSpec(1, ""))
		f.mustRun("apply", "--auto-approve", f.dir)
		f.assertChangedExact(1)

		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)
		rd := f.startReader("by_category_data")

		f.writeSpec("by_category", changedSpec(2, ""))
		plan := f.mustRun("plan", f.dir)
		for _, want := range []string{"rebuild beside live version 1 as version 2", "sum(price * 2)"} {
			if !strings.Contains(plan.stdout, want) {
				t.Errorf("plan does not say %q:\n%s", want, plan.stdout)
			}
		}
		f.mustRun("apply", "--auto-approve", f.dir)
		if v, live := f.versions("by_category"); v != 2 || live != 2 {
			t.Fatalf("after the first change: version %d, live %d; want 2, 2", v, live)
		}
		t.Logf("tables after the first change: %s", f.tablesOf())
		if got := f.scalar("SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'by_category_data'"); got != "Merge" {
			t.Errorf("readers' by_category_data is a %s, want the Merge table over version 2", got)
		}

		f.writeSpec("by_category", changedSpec(3, ""))
		f.mustRun("apply", "--auto-approve", f.dir)
		time.Sleep(time.Second) // keep writing through the new MV
		rate := w.Stop(t)
		rd.Stop(t)
		t.Logf("writer: %.0f rows/s, %d INSERTs failed (each checked: it wrote nothing)", rate, w.errs)
		if rate < 1500 {
			t.Errorf("writer reached %.0f rows/s, want about 2,000", rate)
		}
		f.assertChangedExact(3)
		if v, live := f.versions("by_category"); v != 3 || live != 3 {
			t.Fatalf("after the second change: version %d, live %d; want 3, 3", v, live)
		}
		want := "by_category__v3; by_category_data; by_category_data__v3; products"
		got := strings.Join(f.rowsOf("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"), "; ")
		if got != want {
			t.Errorf("tables after the second change:\n got %s\nwant %s", got, want)
		}
		if r := f.mustRun("plan", f.dir); !strings.Contains(r.stdout, "No changes") {
			t.Errorf("plan after the changes:\n%s", r.stdout)
		}
		var prev string
		if err := f.pgRow("SELECT previous_config->>'select_query' FROM mv_jobs WHERE name = 'by_category'", nil, &prev); err != nil || !strings.Contains(prev, "price * 2") {
			t.Errorf("previous spec recorded: %q (%v), want the version-2 query", prev, err)
		}
	})
}

// TestChangeKilledAtEachStep: a change dies (as with SIGKILL) at every step
// in turn, under a writer; the next apply finishes it, and the target is
// exact for the new query.
func TestChangeKilledAtEachStep(t *testing.T) {
	t.Parallel()
	eachServerKilling(t, func(t *testing.T, f *fixture) {
		const prefill = 200_000
		f.createProducts(prefill)
		f.writeSpec("by_category", changedSpec(1, ""))
		f.mustRun("apply", "--auto-approve", f.dir)
		f.changeKilledAtEachStep(changeCrashPoints, prefill, "products", "", func(k int, _ uint64) { f.assertChangedExact(k) })
	})
}

// changeCrashPoints are the steps of a change, in their order.
var changeCrashPoints = []string{"change-recorded", "batch-recorded", "swap-prepared", "swap-distributed", "swap-old-mv-dropped", "swap-switched", "swap-cleaned", "swap-recorded"}

// changeKilledAtEachStep changes the live MV of changedSpec(1, extra) to
// version k = 2, 3, ... and kills the apply at the k-1st crash point, under
// a writer into source (from id prefill+1 on) that runs through the killed
// apply and the one that follows. Readers' table must exist after each kill;
// after the next apply, the change is finished and assertExact(k, rows)
// compares the target with version k's query (rows: the source's row count).
func (f *fixture) changeKilledAtEachStep(points []string, prefill uint64, source, extra string, assertExact func(k int, rows uint64)) {
	t := f.t
	next, rows := prefill, prefill
	for i, p := range points {
		k := i + 2
		// The writer is stopped before the comparison: no row is in flight.
		w := f.startWriter(source, next, 100, 50*time.Millisecond)
		f.writeSpec("by_category", changedSpec(k, extra))
		f.extra = []string{"SHIRATH_CRASH_AT=" + p}
		r := f.run("apply", "--auto-approve", f.dir)
		if r.code != -1 || !strings.Contains(r.stderr, "crash point "+p) {
			w.Stop(t)
			t.Fatalf("apply with crash point %s: exit %d, want a SIGKILL there\n%s\n%s", p, r.code, r.stdout, r.stderr)
		}
		v, live := f.versions("by_category")
		t.Logf("killed at %s: version %d, live %d; tables: %s", p, v, live, f.tablesOf())
		// Readers still see a complete version: the old one, or the new one.
		if missing := f.missingOn("by_category_data"); missing != "" {
			w.Stop(t)
			t.Fatalf("killed at %s: readers' table by_category_data is missing on %s", p, missing)
		}
		f.extra = nil
		f.mustRun("apply", "--auto-approve", f.dir)
		time.Sleep(300 * time.Millisecond)
		w.Stop(t)
		next = w.next.Load()
		rows += w.rows.Load()
		if v, live := f.versions("by_category"); v != live || v != k {
			t.Fatalf("after the apply that followed %s: version %d, live %d, want %d", p, v, live, k)
		}
		if n := f.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND (name LIKE '%\\_\\_prev' OR name LIKE '%\\_\\_next')"); n != "0" {
			t.Errorf("after %s: switch tables left: %s", p, f.tablesOf())
		}
		assertExact(k, rows) // on a cluster, after the rows settled:
		if f.cluster != nil {
			w.checkLost(t)
		}
	}
}

// TestChangeModifyQuery: change_strategy: modify_query replaces the view's
// query in place where the server has ALTER TABLE ... MODIFY QUERY (rows
// already in the target keep the old query's result, the plan says so),
// and is refused, naming the node, where it does not.
func TestChangeModifyQuery(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		f.createProducts(10_000)
		f.writeSpec("by_category", changedSpec(1, "change_strategy: modify_query\n"))
		f.mustRun("apply", "--auto-approve", f.dir)
		f.writeSpec("by_category", changedSpec(2, "change_strategy: modify_query\n"))
		r := f.run("plan", f.dir)
		if f.server.Version.Major < 21 {
			if !strings.Contains(r.stdout+r.stderr, "does not have") || !strings.Contains(r.stdout+r.stderr, f.addr) {
				t.Fatalf("plan of modify_query on %s: exit %d, want it refused naming the node\n%s%s", f.server.Version, r.code, r.stdout, r.stderr)
			}
			return
		}
		if !strings.Contains(r.stdout, "keep the old query's result") {
			t.Fatalf("plan does not say that old rows keep the old result:\n%s%s", r.stdout, r.stderr)
		}
		f.mustRun("apply", "--auto-approve", f.dir)
		f.exec("INSERT INTO %s.products SELECT 10000 + number + 1, 'new', toDecimal64(5, 2), now() FROM numbers(10)", f.db)
		// Old rows as the old query made them, new rows by the new one.
		f.assertSame("target after MODIFY QUERY",
			"SELECT category, sum(cnt), sum(total_price) FROM by_category_data GROUP BY category ORDER BY category",
			"SELECT category, count(), sum(if(id > 10000, price * 2, price)) FROM products GROUP BY category ORDER BY category")
		if v, live := f.versions("by_category"); v != 1 || live != 1 {
			t.Errorf("modify_query moved the version to %d (live %d): it replaces in place", v, live)
		}
		if r := f.mustRun("plan", f.dir); !strings.Contains(r.stdout, "No changes") {
			t.Errorf("plan after MODIFY QUERY:\n%s", r.stdout)
		}
	})
}

// TestReplaceRebuildsWhatVerifyFound: a target that differs from its query
// (a row written into it by hand, as a failed INSERT whose source part was
// kept leaves one the other way) is found by verify, which says how to
// rebuild it; apply -replace rebuilds it beside the live version under a
// writer and a reader, and the target is exact again, with 0 failed reads.
func TestReplaceRebuildsWhatVerifyFound(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill = 200_000
		f.createProducts(prefill)
		f.writeSpec("by_category", changedSpec(1, ""))
		f.mustRun("apply", "--auto-approve", f.dir)
		f.exec("INSERT INTO %s.by_category_data SELECT 'cat5', toUInt64(1), toDecimal64(1000, 2)", f.db)
		v := f.run("verify", "by_category")
		if v.code != 1 || !strings.Contains(v.stdout, "shirath apply -replace "+f.db+".by_category") {
			t.Fatalf("verify of a target with a row too many: exit %d, want 1 and how to rebuild:\n%s%s", v.code, v.stdout, v.stderr)
		}
		if r := f.run("plan", "-replace", "nosuch", f.dir); r.code != 1 || !strings.Contains(r.stderr, "-replace nosuch: no spec") {
			t.Errorf("plan -replace of no spec: exit %d\n%s", r.code, r.stderr)
		}

		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)
		rd := f.startReader("by_category_data")
		plan := f.mustRun("plan", "-replace", "by_category", f.dir)
		if !strings.Contains(plan.stdout, "-replace: rebuild beside live version 1 as version 2") {
			t.Errorf("plan -replace:\n%s", plan.stdout)
		}
		f.mustRun("apply", "--auto-approve", "-replace", f.db+".by_category", f.dir)
		time.Sleep(time.Second) // keep writing through the new MV
		w.Stop(t)
		rd.Stop(t)
		f.assertChangedExact(1)
		if v, live := f.versions("by_category"); v != 2 || live != 2 {
			t.Fatalf("after -replace: version %d, live %d; want 2, 2", v, live)
		}
		if v := f.run("verify", "by_category"); v.code != 0 {
			t.Errorf("verify after -replace: exit %d\n%s", v.code, v.stdout)
		}
		if r := f.mustRun("plan", f.dir); !strings.Contains(r.stdout, "No changes") {
			t.Errorf("plan after -replace:\n%s", r.stdout)
		}
	})
}
