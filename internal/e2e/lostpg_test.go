//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPostgresLostMidBackfill: PostgreSQL crashes (immediate shutdown) in
// the middle of a backfill, under a writer, and comes back 8 s later. The
// apply waits and retries with backoff instead of failing, no batch
// finishes while PostgreSQL is away but the one in flight, and the apply
// then ends with an exact target (on 18.16, no batch finished twice).
func TestPostgresLostMidBackfill(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		pg := f.env.PrivatePostgres(t)
		f.pg = pg.URL
		const prefill = 400_000
		f.createProducts(prefill)
		f.writeSpec("by_category", summingSpec+"backfill:\n  initial_batch_rows: 4000\n  max_batch_rows: 4000\n")
		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		apply := f.startApply(ctx, "the backfill", 5*time.Minute, func() bool {
			st, done, _, ok := f.job("by_category")
			return ok && st == "backfilling" && done > 0
		})
		pg.Kill(t)
		t.Log("PostgreSQL killed")
		before, wrote := f.scalar("SELECT sum(cnt) FROM by_category_data"), w.rows.Load()
		time.Sleep(8 * time.Second)
		after, wrote2 := f.scalar("SELECT sum(cnt) FROM by_category_data"), w.rows.Load()
		// Rows reach the target through the MV (what the writer wrote) and
		// the batch in flight (4,000 keys) only; one more batch would be
		// work whose progress cannot be recorded.
		var b, a int64
		fmt.Sscan(before, &b)
		fmt.Sscan(after, &a)
		if grew, allowed := a-b, int64(wrote2-wrote)+4000+200; grew > allowed {
			t.Errorf("the target grew by %d rows while PostgreSQL was away, more than the writer's %d and one batch: a batch ran unrecorded", grew, wrote2-wrote)
		}
		select {
		case <-apply.done:
			t.Fatalf("the apply ended while PostgreSQL was away (%v):\n%s\n%s", apply.err, apply.stdout.String(), apply.stderr.String())
		default:
		}
		pg.Start(t)
		t.Logf("PostgreSQL back; the target grew from %s to %s rows while it was away (the MV's own inserts, and at most the batch in flight)", before, after)
		if err := apply.wait(); err != nil {
			t.Fatalf("the apply failed after PostgreSQL came back: %v\n%s\n%s", err, apply.stdout.String(), apply.stderr.String())
		}
		if !strings.Contains(apply.stdout.String(), "PostgreSQL does not answer") {
			t.Errorf("the apply did not say it was waiting for PostgreSQL:\n%s", apply.stdout.String())
		}
		time.Sleep(500 * time.Millisecond)
		w.Stop(t)
		f.assertSummingExact()
		if !f.server.ChDB {
			f.assertEachBatchOnce()
		}
	})
}
