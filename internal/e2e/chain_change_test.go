//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The chain with larger batches than chain_test.go's: the writer adds
// 2,000 rows/s for the whole test, and each change backfills all of them at
// every level. clean backfills in one batch; the rollups in batches of
// 50,000 keys, for a crash point to land in one.
const rollupBackfill = "backfill: {initial_batch_rows: 50000, max_batch_rows: 50000}\n"

var (
	rippleByCat = strings.Replace(byCatSpec, chainBackfill, rollupBackfill, 1)
	rippleByIDs = strings.Replace(byIDsSpec, chainBackfill, rollupBackfill, 1)
)

// cleanAt is clean's spec keeping the rows with price >= min.
func cleanAt(min int) string {
	return strings.Replace(strings.Replace(cleanSpec, chainBackfill, "", 1), "price >= 10", fmt.Sprintf("price >= %d", min), 1)
}

// chainReaders reads every level of the chain in a loop, as dashboards do.
func (f *fixture) chainReaders(tables map[string]string) map[string]*reader {
	out := map[string]*reader{}
	for table, col := range tables {
		r := f.startReaderOf(fmt.Sprintf("SELECT count(), toUInt64(sum(%s)) FROM %s.%s", col, f.db, table))
		f.t.Cleanup(r.halt) // a test that failed half way leaves no reader behind
		out[table] = r
	}
	return out
}

// stopChain keeps writing through the new chain for a second, then stops
// the writer (which must have kept about 2,000 rows/s) and the readers (none
// of whose reads may have failed).
func stopChain(t *testing.T, w *writer, rs map[string]*reader) {
	t.Helper()
	time.Sleep(time.Second)
	rate := w.Stop(t)
	t.Logf("writer: %.0f rows/s, %d rows, %d INSERTs failed (each checked: it wrote nothing)", rate, w.rows.Load(), w.errs)
	if rate < 1500 {
		t.Errorf("writer reached %.0f rows/s, want about 2,000", rate)
	}
	for table, r := range rs {
		t.Logf("reads of %s:", table)
		r.Stop(t)
	}
}

// assertRippleplan checks that the plan of a change of clean rebuilds both
// rollups and says why, in the human and the JSON plan.
func (f *fixture) assertRipplePlan() {
	t := f.t
	t.Helper()
	p := f.mustRun("plan", f.dir)
	for _, n := range []string{"by_cat", "by_ids"} {
		want := fmt.Sprintf("# %s.%s has changed\n  # (must be rebuilt: its source %s.clean_data is rebuilt (%s.clean version", f.db, n, f.db, f.db)
		if !strings.Contains(p.stdout, want) {
			t.Errorf("plan does not say %q:\n%s", want, p.stdout)
		}
	}
	if !strings.Contains(p.stdout, "Plan: 0 to create, 3 to change") {
		t.Errorf("plan does not change the three levels:\n%s", p.stdout)
	}
	j := f.mustRun("plan", "--format", "json", f.dir)
	var plan struct {
		Changes []struct {
			Name, Action, Reason string
			HoldSwitch           string `json:"hold_switch"`
		} `json:"resource_changes"`
	}
	if err := json.Unmarshal([]byte(j.stdout), &plan); err != nil {
		t.Fatalf("plan --format json: %v\n%s", err, j.stdout)
	}
	got := map[string]string{}
	for _, c := range plan.Changes {
		got[c.Name] = c.Action + " | " + c.Reason + " | " + c.HoldSwitch
	}
	for _, n := range []string{"by_cat", "by_ids"} {
		if !strings.HasPrefix(got[n], "change | must be rebuilt: its source "+f.db+".clean_data is rebuilt") {
			t.Errorf("JSON plan of %s: %q", n, got[n])
		}
	}
	if !strings.HasPrefix(got["clean"], "change | the spec changed") || !strings.Contains(got["clean"], "waits until "+f.db+".by_cat, "+f.db+".by_ids") {
		t.Errorf("JSON plan of clean: %q", got["clean"])
	}
}

// TestChainChangeRipples: the three-level chain under a writer at 2,000
// rows/s into products, readers in a loop on every level. clean's query
// changes: the plan rebuilds both rollups, saying why; the apply is killed
// at the first switch (a rollup's: its old MV dropped, its readers' name not
// yet switched), and the next apply finishes the chain: every level exact,
// no read failed. A second change of clean, killed in a rollup's backfill,
// ripples again from the versions the first one built; then a change of
// by_cat alone builds over clean's live version.
func TestChainChangeRipples(t *testing.T) {
	t.Parallel()
	eachServerKilling(t, func(t *testing.T, f *fixture) {
		f.runTimeout = 15 * time.Minute // a change builds every level in rounds
		const prefill = 100_000
		f.createProducts(prefill)
		f.writeSpec("clean", cleanAt(10))
		f.writeSpec("by_cat", rippleByCat)
		f.writeSpec("by_ids", rippleByIDs)
		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)
		f.mustRun("apply", "--auto-approve", f.dir)
		rs := f.chainReaders(map[string]string{"clean_data": "id", "by_cat_data": "cnt", "by_ids_data": "id_sum"})

		f.writeSpec("clean", cleanAt(20))
		f.assertRipplePlan()
		f.extra = []string{"SHIRATH_CRASH_AT=swap-old-mv-dropped"}
		if r := f.run("apply", "--auto-approve", f.dir); r.code != -1 || !strings.Contains(r.stderr, "crash point swap-old-mv-dropped") {
			t.Fatalf("apply with crash point swap-old-mv-dropped: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		f.extra = nil
		f.afterKill()
		t.Logf("killed at the first switch; tables: %s", f.tablesOf())
		if _, live := f.versions("clean"); live != 1 {
			t.Errorf("clean switched (live version %d) before its rollups", live)
		}
		r := f.mustRun("apply", "--auto-approve", f.dir)
		t.Logf("apply after the kill:\n%s", r.stdout)
		for _, n := range []string{"clean", "by_cat", "by_ids"} {
			if v, live := f.versions(n); v != 2 || live != 2 {
				t.Errorf("%s after the change: version %d, live %d; want 2, 2", n, v, live)
			}
		}

		// Again, killed in a rollup's backfill over clean's version 3:
		// clean's one batch is recorded, then the rollups' (both at once).
		f.writeSpec("clean", cleanAt(30))
		f.extra = []string{"SHIRATH_CRASH_AT=batch-recorded:4"}
		if r := f.run("apply", "--auto-approve", f.dir); r.code != -1 || !strings.Contains(r.stdout, "by_cat: backfill") && !strings.Contains(r.stdout, "by_ids: backfill") {
			t.Fatalf("apply with a crash in a rollup's backfill: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		f.extra = nil
		f.afterKill()
		var states []string
		for _, n := range []string{"clean", "by_cat", "by_ids"} {
			st, done, total, _ := f.job(n)
			v, live := f.versions(n)
			states = append(states, fmt.Sprintf("%s %s %d/%d v%d live %d", n, st, done, total, v, live))
		}
		t.Logf("killed: %s", strings.Join(states, "; "))
		for _, n := range []string{"clean", "by_cat", "by_ids"} {
			if v, live := f.versions(n); v != 3 || live != 2 {
				t.Errorf("%s when killed: version %d, live %d; want 3 being built", n, v, live)
			}
		}
		f.mustRun("apply", "--auto-approve", f.dir)

		// by_cat alone: built over clean's live version 3.
		f.writeSpec("by_cat", strings.Replace(rippleByCat, "max_batch_rows: 50000", "max_batch_rows: 60000", 1))
		p := f.mustRun("plan", f.dir)
		if strings.Contains(p.stdout, "must be rebuilt") || !strings.Contains(p.stdout, "Plan: 0 to create, 1 to change") {
			t.Errorf("plan of a change of by_cat alone:\n%s", p.stdout)
		}
		f.mustRun("apply", "--auto-approve", f.dir)
		stopChain(t, w, rs)
		f.assertChainExactAt(30)
		if v, live := f.versions("by_cat"); v != 4 || live != 4 {
			t.Errorf("by_cat: version %d, live %d; want 4, 4", v, live)
		}
		if p := f.run("plan", "--detailed-exitcode", f.dir); p.code != 0 {
			t.Errorf("plan after the changes: exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
		t.Logf("tables: %s", f.tablesOf())
		for _, old := range []string{"clean_data__v2", "by_cat_data__v2", "by_cat_data__v3", "clean__v2"} {
			if n := f.scalar(fmt.Sprintf("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = '%s'", old)); n != "0" {
				t.Errorf("%s is left after the changes", old)
			}
		}
	})
}

// TestClusterChainChangeRipples: the chain on the 2x2 cluster (a Replicated
// source written through products_dist at 2,000 rows/s), readers in a loop
// on every level's Distributed table; clean's query changes: the plan
// rebuilds both rollups, saying why; the apply is killed (SIGKILL) in the
// middle of by_cat's new backfill, and the next apply finishes the three
// levels: every level exact through its Distributed table, no read failed,
// every node left with the new versions only.
func TestClusterChainChangeRipples(t *testing.T) {
	f, c := newClusterFixture(t)
	f.runTimeout = 15 * time.Minute // a change builds every level in rounds
	const prefill = 100_000
	f.createClusterProducts(c, prefill, true)
	// The rollups in batches of 10,000 keys, for the kill to land in one.
	f.writeClusterChain(cleanAt(10), byCatSpec, byIDsSpec)
	w := f.startWriter("products_dist", prefill, 100, 50*time.Millisecond)
	f.mustRun("apply", "--auto-approve", f.dir)
	rs := f.chainReaders(map[string]string{"clean_dist": "id", "by_cat_dist": "cnt", "by_ids_dist": "id_sum"})

	f.writeSpec("clean", cleanAt(20)+"cluster: auto\n")
	f.assertRipplePlan()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	f.startApply(ctx, "by_cat's new version in its backfill", 10*time.Minute, func() bool {
		st, done, _, ok := f.job("by_cat")
		v, _ := f.versions("by_cat")
		return ok && v == 2 && st == "backfilling" && done > 0
	}).kill()
	var states []string
	for _, n := range []string{"clean", "by_cat", "by_ids"} {
		st, done, total, _ := f.job(n)
		v, live := f.versions(n)
		states = append(states, fmt.Sprintf("%s %s %d/%d v%d live %d", n, st, done, total, v, live))
	}
	t.Logf("killed in the middle of the chain's backfill: %s", strings.Join(states, "; "))
	if _, live := f.versions("clean"); live != 1 {
		t.Errorf("clean switched (live version %d) before its rollups were built", live)
	}
	r := f.mustRun("apply", "--auto-approve", f.dir)
	t.Logf("apply after the kill:\n%s", r.stdout)
	stopChain(t, w, rs)
	f.settle(c, prefill+w.rows.Load(), "products", "clean_data__v2", "by_cat_data__v2", "by_ids_data__v2")
	w.checkLost(t)
	f.assertClusterChainExact(20)
	for _, n := range []string{"clean", "by_cat", "by_ids"} {
		if v, live := f.versions(n); v != 2 || live != 2 {
			t.Errorf("%s after the change: version %d, live %d; want 2, 2", n, v, live)
		}
	}
	f.tablesOnEveryNode("by_cat__v2; by_cat_data; by_cat_data__v2; by_cat_dist; by_ids__v2; by_ids_data; by_ids_data__v2; by_ids_dist; " +
		"clean__v2; clean_data; clean_data__v2; clean_dist; products; products_dist")
	if p := f.run("plan", "--detailed-exitcode", f.dir); p.code != 0 {
		t.Errorf("plan after the change: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
}
