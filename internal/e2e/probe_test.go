//go:build integration

package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// firstBatch matches a backfill progress line's key range: "(lo, hi]".
var firstBatch = regexp.MustCompile(`by_category: backfill [0-9.]+% \(\d+/\d+ rows\) shard \d+ \((\d+), (\d+)\]`)

// TestFirstBatchSizedByProbe: with backfill.initial_batch_rows left out, the
// first batch of a key-range backfill is sized from a read-only probe of the
// query's pace, here much wider than the 1,000,000 keys it used to be; with
// another initial_batch_rows written, the first batch is exactly that range. A
// writer runs through both applies, and both targets are exact.
func TestFirstBatchSizedByProbe(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill = 4_000_000
		f.createProducts(prefill)
		w := f.startWriter("products", prefill, 500, 50*time.Millisecond)
		f.writeSpec("by_category", summingSpec)
		r := f.mustRun("apply", "--auto-approve", f.dir)
		time.Sleep(500 * time.Millisecond)
		w.Stop(t)
		lo, hi := firstRange(t, r.stdout)
		if hi-lo <= 1_000_000 {
			t.Errorf("default settings: the first batch is (%d, %d], %d keys; the probe should have widened it past 1,000,000:\n%s", lo, hi, hi-lo, r.stdout)
		}
		f.assertSummingExact()

		f.mustRun("mv", "drop", f.db+".by_category")
		f.writeSpec("by_category", summingSpec+"backfill:\n  initial_batch_rows: 500000\n")
		top, err := strconv.ParseUint(f.scalar("SELECT max(id) FROM products"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		w = f.startWriter("products", top, 500, 50*time.Millisecond)
		r = f.mustRun("apply", "--auto-approve", f.dir)
		lo, hi = firstRange(t, r.stdout)
		if hi-lo != 500_000 {
			t.Errorf("initial_batch_rows 500000 written: the first batch is (%d, %d], want 500,000 keys:\n%s", lo, hi, r.stdout)
		}
		time.Sleep(500 * time.Millisecond)
		w.Stop(t)
		f.assertSummingExact()
	})
}

func firstRange(t *testing.T, out string) (lo, hi int64) {
	t.Helper()
	m := firstBatch.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no backfill batch line:\n%s", out)
	}
	lo, _ = strconv.ParseInt(m[1], 10, 64)
	hi, _ = strconv.ParseInt(m[2], 10, 64)
	if !strings.Contains(out, "Apply complete!") {
		t.Fatalf("no completion:\n%s", out)
	}
	return lo, hi
}
