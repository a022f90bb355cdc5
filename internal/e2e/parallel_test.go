//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// watch polls a count in the job store every 10 ms until stopped, and
// returns the highest value seen: how many shards had a batch in flight at
// once, how many MVs held their lock at once. One statement per poll, so
// each value is one consistent snapshot.
func (f *fixture) watch(q string) (stop func() int64) {
	ctx, cancel := context.WithCancel(context.Background())
	var peak int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(ctx, f.pg)
		if err != nil {
			f.t.Errorf("watch %s: %v", q, err)
			return
		}
		defer conn.Close(context.Background())
		for ctx.Err() == nil {
			var n int64
			// Before the first apply has migrated the store the table does
			// not exist yet: keep polling.
			err := conn.QueryRow(ctx, q).Scan(&n)
			if err == nil && n > peak {
				peak = n
			}
			if err != nil && ctx.Err() == nil && !strings.Contains(err.Error(), "does not exist") {
				f.t.Errorf("watch %s: %v", q, err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return func() int64 {
		cancel()
		wg.Wait()
		return peak
	}
}

// shardsInFlight counts the shards with a batch in flight right now.
const shardsInFlight = "SELECT count(*) FROM mv_job_shards WHERE inflight_query_id IS NOT NULL"

// TestClusterShardsInParallel: on the 2x2 cluster, under a writer, apply
// -parallelism=2 backfills both shards at once: both have a batch in flight
// at the same moment, and when it is killed (as with SIGKILL) after its
// 12th recorded batch, both shards have made progress (one after the other,
// shard 1 alone would have: each has about 30 batches). Killed again with
// batches of both shards possibly in flight, the next apply settles them
// and completes; the result is exact.
func TestClusterShardsInParallel(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 600_000
	f.createClusterProducts(c, prefill, true)
	f.writeSpec("by_category", summingSpec+"cluster: auto\nbackfill:\n  initial_batch_rows: 20000\n  max_batch_rows: 20000\n")
	w := f.startWriter("products_dist", prefill, 100, 50*time.Millisecond)

	stop := f.watch(shardsInFlight)
	f.extra = []string{"SHIRATH_CRASH_AT=batch-recorded:12"}
	r := f.run("apply", "--auto-approve", "-parallelism=2", f.dir)
	peak := stop()
	if r.code != -1 || !strings.Contains(r.stderr, "crash point batch-recorded") {
		t.Fatalf("apply with a crash point: exit %d, want a SIGKILL\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s1, s2 := f.shardProcessed("by_category", 1), f.shardProcessed("by_category", 2)
	t.Logf("killed after 12 batches: shard 1 at %d rows, shard 2 at %d; at most %d shards had a batch in flight at once", s1, s2, peak)
	if peak != 2 {
		t.Errorf("at most %d shard had a batch in flight at once, want 2: the shards were not backfilled in parallel", peak)
	}
	if s1 == 0 || s2 == 0 {
		t.Errorf("after 12 batches shard 1 has %d rows and shard 2 %d: one waited for the other", s1, s2)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if strings.Contains(line, "rows in ") && !strings.HasPrefix(line, f.db+".by_category: backfill ") {
			t.Errorf("a progress line does not name its MV: %q", line)
		}
	}

	// Killed when a batch's INSERT has returned: the other shard's stream
	// may be anywhere in its own batch.
	f.extra = []string{"SHIRATH_CRASH_AT=batch-inserted:3"}
	r = f.run("apply", "--auto-approve", "-parallelism=2", f.dir)
	if r.code != -1 {
		t.Fatalf("apply with crash point batch-inserted: exit %d, want a SIGKILL\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var marked int64
	if err := f.pgRow(shardsInFlight, nil, &marked); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after an INSERT returned: %d shards with a batch in flight", marked)
	if marked == 0 {
		t.Fatalf("no batch in flight after a kill right after an INSERT")
	}

	f.extra = nil
	r = f.mustRun("apply", "--auto-approve", "-parallelism=2", f.dir)
	t.Logf("final apply:\n%s", r.stdout)
	if !strings.Contains(r.stdout, "interrupted batch") {
		t.Errorf("the final apply settled no interrupted batch:\n%s", r.stdout)
	}
	time.Sleep(time.Second) // keep writing through the MV after the apply
	w.Stop(t)
	f.settle(c, prefill+w.rows.Load(), "products", "by_category_data")
	f.assertClusterExact()
	if st, p, tot, _ := f.job("by_category"); st != "completed" || p != tot {
		t.Fatalf("after the crashes: %s %d/%d", st, p, tot)
	}
	// The batches settled from their markers put their shards in doubt
	// (so the final apply looked for orphan parts, and found none: it
	// completed), and the completed shards keep no marker.
	if err := f.pgRow(shardsInFlight, nil, &marked); err != nil || marked != 0 || !f.inDoubt() {
		t.Errorf("after the final apply: %d shards with a batch in flight (err %v), in doubt %v; want 0, true", marked, err, f.inDoubt())
	}
}

// TestApplyManyMVsInParallel: six MVs on one source, applied with
// -parallelism=4 under a writer: four hold their lock at once, never more;
// each progress line names its MV; every target is exact.
func TestApplyManyMVsInParallel(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill, mvs = 300_000, 6
		f.createProducts(prefill)
		names := make([]string, mvs)
		for i := range names {
			names[i] = fmt.Sprintf("by_category_%d", i)
			f.writeSpec(names[i], strings.Replace(summingSpec, "name: by_category", "name: "+names[i], 1)+"backfill:\n  initial_batch_rows: 20000\n  max_batch_rows: 20000\n")
		}
		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)
		stop := f.watch("SELECT count(*) FROM mv_locks")
		start := time.Now()
		r := f.mustRun("apply", "--auto-approve", "-parallelism=4", f.dir)
		took := time.Since(start)
		peak := stop()
		time.Sleep(time.Second)
		w.Stop(t)
		t.Logf("%d MVs in %s, at most %d locks held at once", mvs, took.Round(time.Millisecond), peak)
		if peak != 4 {
			t.Errorf("at most %d MVs held their lock at once, want 4 (-parallelism=4, %d MVs)", peak, mvs)
		}
		for _, line := range strings.Split(strings.TrimSpace(r.stdout[strings.Index(r.stdout, "Plan:"):]), "\n") {
			if line == "" || strings.HasPrefix(line, "Plan:") || strings.HasPrefix(line, "Apply complete!") {
				continue
			}
			mv, _, ok := strings.Cut(line, ": ")
			if !ok || !strings.HasPrefix(mv, f.db+".by_category_") {
				t.Errorf("an apply line does not start with its MV: %q", line)
			}
		}
		for _, name := range names {
			if n := strings.Count(r.stdout, f.db+"."+name+": completed"); n != 1 {
				t.Errorf("%s: %d completed lines:\n%s", name, n, r.stdout)
			}
			f.assertSame(name,
				"SELECT category, sum(cnt), sum(total_price) FROM "+name+"_data GROUP BY category ORDER BY category",
				"SELECT category, count(), sum(price) FROM products GROUP BY category ORDER BY category")
		}
	})
}
