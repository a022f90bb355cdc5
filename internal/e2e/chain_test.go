//go:build integration

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A chain: products -> clean (the rows with price >= 10, a MergeTree by id)
// -> by_cat (per-category totals) and by_ids (per-category sums of ids).
// Batches of 10,000 ids: the rollups' backfills take a while, for the crash
// test to land in one.
const chainBackfill = "backfill: {initial_batch_rows: 10000, max_batch_rows: 10000}\n"

const cleanSpec = `name: clean
source_table: products
engine: MergeTree()
order_by: [id]
columns:
  - {name: id, type: UInt64}
  - {name: category, type: String}
  - {name: price, type: "Decimal(18,2)"}
select_query: "SELECT id, category, price FROM {source_table} WHERE price >= 10"
` + chainBackfill

const byCatSpec = `name: by_cat
source_table: clean_data
engine: SummingMergeTree()
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: cnt, type: UInt64}
  - {name: total_price, type: "Decimal(18,2)"}
select_query: "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY category"
` + chainBackfill

const byIDsSpec = `name: by_ids
source_table: clean_data
engine: SummingMergeTree()
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: id_sum, type: UInt64}
select_query: "SELECT category, sum(id) AS id_sum FROM {source_table} GROUP BY category"
` + chainBackfill

func (f *fixture) writeChain() {
	f.writeSpec("clean", cleanSpec)
	f.writeSpec("by_cat", byCatSpec)
	f.writeSpec("by_ids", byIDsSpec)
}

// assertChainExact compares every level with its query over the whole
// source.
func (f *fixture) assertChainExact() {
	f.t.Helper()
	f.assertChainExactAt(10)
}

// assertChainExactAt is assertChainExact for clean's query keeping the rows
// with price >= min.
func (f *fixture) assertChainExactAt(min int) {
	f.t.Helper()
	f.assertLevels(min, "_data", "products")
}

// assertLevels compares every level (its table named with suffix) with its
// query over the whole source, clean's keeping the rows with price >= min.
func (f *fixture) assertLevels(min int, suffix, source string) {
	f.t.Helper()
	f.assertSame("clean"+suffix, "SELECT count(), uniqExact(id), sum(id), sum(price) FROM clean"+suffix,
		fmt.Sprintf("SELECT count(), uniqExact(id), sum(id), sum(price) FROM %s WHERE price >= %d", source, min))
	f.assertSame("by_cat"+suffix, "SELECT category, sum(cnt), sum(total_price) FROM by_cat"+suffix+" GROUP BY category ORDER BY category",
		fmt.Sprintf("SELECT category, count(), sum(price) FROM %s WHERE price >= %d GROUP BY category ORDER BY category", source, min))
	f.assertSame("by_ids"+suffix, "SELECT category, sum(id_sum) FROM by_ids"+suffix+" GROUP BY category ORDER BY category",
		fmt.Sprintf("SELECT category, sum(id) FROM %s WHERE price >= %d GROUP BY category ORDER BY category", source, min))
}

// TestChainBuiltByOneApply: a three-level chain is built from nothing by one
// apply, under a writer at 2,000 rows/s into the source: the plan shows the
// edges and defers the rollups until clean is complete; apply builds clean,
// plans the rollups again and builds them; every level is exact. Then
// destroying clean while by_cat's spec reads it is refused, naming it, and
// destroying the whole chain drops it downstream first.
func TestChainBuiltByOneApply(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill = 200_000
		f.createProducts(prefill)
		f.writeChain()
		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)

		p := f.mustRun("plan", f.dir)
		for _, want := range []string{
			fmt.Sprintf("reads %s.clean_data, built by %s.clean", f.db, f.db),
			fmt.Sprintf("wait_for_upstream: waits for %s.clean (%s.clean_data): this apply must first create it", f.db, f.db),
			"Plan: 3 to create",
		} {
			if !strings.Contains(p.stdout, want) {
				t.Errorf("plan does not say %q:\n%s", want, p.stdout)
			}
		}
		if i, k := strings.Index(p.stdout, ".clean will be created"), strings.Index(p.stdout, ".by_cat will be created"); i < 0 || k < i {
			t.Errorf("plan does not list clean before by_cat:\n%s", p.stdout)
		}
		r := f.mustRun("apply", "--auto-approve", f.dir)
		t.Logf("apply:\n%s", r.stdout)
		if !strings.Contains(r.stdout, "Planned again, now that what") {
			t.Errorf("apply did not plan the rollups again after clean:\n%s", r.stdout)
		}
		time.Sleep(time.Second) // keep writing through the chain
		rate := w.Stop(t)
		t.Logf("writer: %.0f rows/s, %d INSERTs failed (each checked: it wrote nothing)", rate, w.errs)
		if rate < 1500 {
			t.Errorf("writer reached %.0f rows/s, want about 2,000", rate)
		}
		f.assertChainExact()
		if p := f.run("plan", "--detailed-exitcode", f.dir); p.code != 0 {
			t.Errorf("plan after the apply: exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}

		// A change of clean rebuilds the rollups along (chain_change_test.go).
		f.writeSpec("clean", strings.Replace(cleanSpec, "price >= 10", "price >= 20", 1))
		if p := f.run("plan", f.dir); p.code != 0 || !strings.Contains(p.stdout, "# "+f.db+".by_cat has changed\n  # (must be rebuilt: its source "+f.db+".clean_data is rebuilt") {
			t.Fatalf("plan of a change of clean: exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
		f.writeSpec("clean", cleanSpec)
		// Dropping clean by hand is refused too, naming its readers.
		if r := f.run("mv", "drop", f.db+".clean"); r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("%s.by_cat, %s.by_ids reads what %s.clean builds", f.db, f.db, f.db)) {
			t.Fatalf("mv drop of clean while the rollups read it: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// clean's spec removed while by_cat and by_ids still read it.
		if err := os.Remove(filepath.Join(f.dir, "clean.yaml")); err != nil {
			t.Fatal(err)
		}
		d := f.run("apply", "-destroy", "--auto-approve", f.dir)
		if d.code != 1 || !strings.Contains(d.stdout+d.stderr, fmt.Sprintf("%s.by_cat, %s.by_ids reads what %s.clean builds", f.db, f.db, f.db)) {
			t.Fatalf("destroy of clean while the rollups read it: exit %d\n%s%s", d.code, d.stdout, d.stderr)
		}
		if n := f.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'clean'"); n != "1" {
			t.Fatal("the refused destroy dropped clean")
		}
		// Every spec of the chain removed (an unrelated one stays: an
		// empty directory is refused): downstream first.
		for _, n := range []string{"by_cat", "by_ids"} {
			if err := os.Remove(filepath.Join(f.dir, n+".yaml")); err != nil {
				t.Fatal(err)
			}
		}
		f.writeSpec("by_category", summingSpec)
		d = f.mustRun("apply", "-destroy", "--auto-approve", f.dir)
		if i, k := strings.Index(d.stdout, ".by_ids will be destroyed"), strings.Index(d.stdout, ".clean will be destroyed"); i < 0 || k < i {
			t.Errorf("destroy does not drop the rollups before clean:\n%s", d.stdout)
		}
		if got := strings.Join(f.rowsOf("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"), " "); got != "by_category by_category_data products" {
			t.Errorf("tables after destroying the chain: %s", got)
		}
	})
}

// TestChainKilledMidBackfill: the apply that builds the chain is killed
// (SIGKILL) in the middle of a rollup's backfill, after clean completed,
// under a writer; the next apply finishes the chain exactly.
func TestChainKilledMidBackfill(t *testing.T) {
	t.Parallel()
	eachServerKilling(t, func(t *testing.T, f *fixture) {
		const prefill = 200_000
		f.createProducts(prefill)
		f.writeChain()
		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		f.startApply(ctx, "a rollup's backfill", 8*time.Minute, func() bool {
			st, done, _, ok := f.job("by_cat")
			return ok && st == "backfilling" && done > 0
		}).kill()
		var states []string
		for _, n := range []string{"clean", "by_cat", "by_ids"} {
			st, done, total, ok := f.job(n)
			states = append(states, fmt.Sprintf("%s %s %d/%d (job: %v)", n, st, done, total, ok))
		}
		t.Logf("killed: %s", strings.Join(states, "; "))
		if st, done, total, _ := f.job("by_cat"); st != "backfilling" || done >= total {
			t.Fatalf("the kill did not land in by_cat's backfill: %s %d/%d", st, done, total)
		}
		r := f.mustRun("apply", "--auto-approve", f.dir)
		t.Logf("apply after the kill:\n%s", r.stdout)
		time.Sleep(500 * time.Millisecond)
		w.Stop(t)
		f.assertChainExact()
	})
}

func (f *fixture) writeClusterChain(clean, byCat, byIDs string) {
	for name, body := range map[string]string{"clean": clean, "by_cat": byCat, "by_ids": byIDs} {
		f.writeSpec(name, body+"cluster: auto\n")
	}
}

// assertClusterChainExact compares every level, read through its
// Distributed table, with its query over the whole source.
func (f *fixture) assertClusterChainExact(min int) {
	f.t.Helper()
	f.assertLevels(min, "_dist", "products_dist")
}

// TestClusterChainBuiltByOneApply: the chain on the 2x2 cluster (a
// Replicated source written through products_dist at 2,000 rows/s), built
// by one apply: every level, read through its Distributed table, equals its
// query over the whole source.
func TestClusterChainBuiltByOneApply(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 200_000
	f.createClusterProducts(c, prefill, true)
	f.writeClusterChain(cleanSpec, byCatSpec, byIDsSpec)
	w := f.startWriter("products_dist", prefill, 100, 50*time.Millisecond)
	r := f.mustRun("apply", "--auto-approve", f.dir)
	t.Logf("apply:\n%s", r.stdout)
	time.Sleep(time.Second)
	rate := w.Stop(t)
	t.Logf("writer: %.0f rows/s, %d INSERTs failed", rate, w.errs)
	f.settle(c, prefill+w.rows.Load(), "products", "clean_data", "by_cat_data", "by_ids_data")
	w.checkLost(t)
	f.assertClusterChainExact(10)
	if p := f.run("plan", "--detailed-exitcode", f.dir); p.code != 0 {
		t.Errorf("plan after the apply: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
}
