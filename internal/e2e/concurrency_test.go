//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEightAppliesAndADaemon: 8 `apply --wait-lock` processes and a daemon
// reading the same spec directory start together on two new MVs, under a
// writer. Each MV is worked by one of them at a time (the others wait for
// its lock, then find nothing to do or continue from its recorded
// progress); every apply ends well, both targets are exact, and on 18.16
// (which has a query log) no backfill batch ran twice.
func TestEightAppliesAndADaemon(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill = 400_000
		f.createProducts(prefill)
		small := "backfill:\n  initial_batch_rows: 20000\n  max_batch_rows: 20000\n"
		f.writeSpec("by_category", summingSpec+small)
		f.writeSpec("stats", aggregatingSpec+small)
		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		daemon := f.command(ctx, "serve", "--listen", "127.0.0.1:0", "--specs", f.dir, "--scan-interval", "1s")
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); daemon.Wait() }()

		var wg sync.WaitGroup
		results := make([]result, 8)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = f.run("apply", "--auto-approve", "--wait-lock", f.dir)
			}()
		}
		wg.Wait()
		for i, r := range results {
			if r.code != 0 {
				t.Errorf("apply %d: exit %d\n%s\n%s", i, r.code, r.stdout, r.stderr)
			}
		}
		time.Sleep(time.Second)
		w.Stop(t)
		f.assertSummingExact()
		f.assertAggregatingExact()
		if f.server.ChDB {
			return // no query log
		}
		f.assertEachBatchOnce()
	})
}

// TestTwoDaemons: two daemons on one job table and one spec directory, under
// a writer: each MV is reconciled by one of them at a time (the MV's lock),
// both end completed and exact, and no batch finished twice.
func TestTwoDaemons(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill = 400_000
		f.createProducts(prefill)
		small := "backfill:\n  initial_batch_rows: 20000\n  max_batch_rows: 20000\n"
		f.writeSpec("by_category", summingSpec+small)
		f.writeSpec("stats", aggregatingSpec+small)
		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		for i := 0; i < 2; i++ {
			d := f.command(ctx, "serve", "--listen", "127.0.0.1:0", "--specs", f.dir, "--scan-interval", "1s")
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); d.Wait() }()
		}
		deadline := time.Now().Add(5 * time.Minute)
		for {
			a, _, _, _ := f.job("by_category")
			b, _, _, _ := f.job("stats")
			if a == "completed" && b == "completed" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 5 minutes: by_category %s, stats %s", a, b)
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Second)
		w.Stop(t)
		f.assertSummingExact()
		f.assertAggregatingExact()
		if f.server.ChDB {
			return // no query log
		}
		f.assertEachBatchOnce()
	})
}

// assertEachBatchOnce fails the test if a backfill batch finished twice, by
// the server's query log. A batch's query id is
// shirath-<job>-<shard>-<lo>-<hi>-<nanos>: the same range finished twice
// would count its rows twice.
func (f *fixture) assertEachBatchOnce() {
	f.t.Helper()
	f.exec("SYSTEM FLUSH LOGS")
	rows := f.rowsOf(fmt.Sprintf(`SELECT arrayStringConcat(arraySlice(splitByChar('-', query_id), 1, 5), '-') AS batch, count() AS n
		FROM system.query_log WHERE type = 2 AND startsWith(query_id, 'shirath-') AND query LIKE 'INSERT INTO %%%s%%'
		GROUP BY batch ORDER BY n DESC, batch`, f.db))
	if len(rows) == 0 {
		f.t.Fatal("no backfill batch in the query log: the check would prove nothing")
	}
	for _, r := range rows {
		if !strings.HasSuffix(r, "\t1") {
			f.t.Errorf("a batch ran more than once: %s", r)
		}
	}
	f.t.Logf("%d batches, each finished once", len(rows))
}

// TestApplyIsolatesFailures: in one apply, an MV whose source does not
// exist and one whose cluster the server does not know fail, each named,
// and the good MV beside them is built exactly anyway.
func TestApplyIsolatesFailures(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		f.createProducts(50_000)
		f.writeSpec("by_category", summingSpec)
		f.writeSpec("no_source", strings.Replace(strings.Replace(summingSpec, "name: by_category", "name: no_source", 1), "source_table: products", "source_table: gone", 1))
		f.writeSpec("no_cluster", strings.Replace(summingSpec, "name: by_category", "name: no_cluster", 1)+"cluster: no_such_cluster\n")
		r := f.run("apply", "--auto-approve", f.dir)
		if r.code != 1 {
			t.Fatalf("apply with two broken MVs: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{f.db + ".no_source", "gone does not exist", f.db + ".no_cluster", "no_such_cluster"} {
			if !strings.Contains(r.stdout+r.stderr, want) {
				t.Errorf("apply does not say %q:\n%s%s", want, r.stdout, r.stderr)
			}
		}
		f.assertSummingExact()
		if st, _, _, _ := f.job("by_category"); st != "completed" {
			t.Errorf("the good MV: %s", st)
		}
	})
}
