//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const summingSpec = `name: by_category
source_table: products
engine: SummingMergeTree()
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: cnt, type: UInt64}
  - {name: total_price, type: "Decimal(18,2)"}
select_query: "SELECT category, count() as cnt, sum(price) as total_price FROM {source_table} GROUP BY category"
`

const aggregatingSpec = `name: stats
source_table: products
engine: AggregatingMergeTree()
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: ids, type: "AggregateFunction(uniqExact, UInt64)"}
  - {name: total, type: "AggregateFunction(sum, Decimal(18, 2))"}
  - {name: n, type: AggregateFunction(count)}
select_query: |
  SELECT category, uniqExactState(id) AS ids, sumState(price) AS total, countState() AS n
  FROM {source_table}
  GROUP BY category
`

// smallBatches makes a backfill of many short batches, so that a test can
// interrupt it in the middle.
const smallBatches = `backfill:
  initial_batch_rows: 20000
  max_batch_rows: 20000
`

func (f *fixture) assertSummingExact() {
	f.t.Helper()
	f.assertSame("SummingMergeTree target",
		"SELECT category, sum(cnt), sum(total_price) FROM by_category_data GROUP BY category ORDER BY category",
		"SELECT category, count(), sum(price) FROM products GROUP BY category ORDER BY category")
}

func (f *fixture) assertAggregatingExact() {
	f.t.Helper()
	f.assertSame("AggregatingMergeTree target",
		"SELECT category, uniqExactMerge(ids), sumMerge(total), countMerge(n) FROM stats_data GROUP BY category ORDER BY category",
		"SELECT category, uniqExact(id), sum(price), count() FROM products GROUP BY category ORDER BY category")
}

// job reads a job row straight from PostgreSQL.
func (f *fixture) job(name string) (status string, processed, total int64, ok bool) {
	f.t.Helper()
	err := f.pgRow("SELECT status, processed_rows, total_rows FROM mv_jobs WHERE name = $1", []any{name}, &status, &processed, &total)
	if err == pgx.ErrNoRows {
		return "", 0, 0, false
	}
	if err != nil {
		// The table does not exist before the first migration.
		if strings.Contains(err.Error(), "does not exist") {
			return "", 0, 0, false
		}
		f.t.Fatal(err)
	}
	return status, processed, total, true
}

// TestApplyExactUnderConcurrentWrites: a writer inserts at 2,000 rows/s or
// more during the whole apply (fence and backfill); afterwards both targets
// equal the aggregate recomputed from the source, exactly.
func TestApplyExactUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill = 1_000_000
		f.createProducts(prefill)
		f.writeSpec("by_category", summingSpec+"backfill:\n  initial_batch_rows: 100000\n  batch_duration: 300ms\n")
		f.writeSpec("stats", aggregatingSpec+"backfill:\n  initial_batch_rows: 100000\n  batch_duration: 300ms\n")

		// 500 rows per INSERT: one INSERT at a time takes up to ~0.2 s on a
		// loaded machine, and the test needs 2,000 rows/s or more.
		w := f.startWriter("products", prefill, 500, 50*time.Millisecond)
		r := f.mustRun("apply", "--auto-approve", f.dir)
		time.Sleep(time.Second) // keep writing after the apply, through the MV
		rate := w.Stop(t)
		if rate < 2000 {
			t.Fatalf("the writer reached only %.0f rows/s; the test needs 2,000 or more", rate)
		}
		t.Logf("writer: %.0f rows/s; apply output:\n%s", rate, r.stdout)
		if !strings.Contains(r.stdout, "Apply complete!") {
			t.Fatalf("no completion in output:\n%s", r.stdout)
		}
		// The fence must have been placed above the prefill: the writer was live.
		if !strings.Contains(r.stdout, "headroom") {
			t.Fatalf("no fence in output:\n%s", r.stdout)
		}
		f.assertSummingExact()
		f.assertAggregatingExact()
		for _, name := range []string{"by_category", "stats"} {
			if st, p, tot, _ := f.job(name); st != "completed" || p != tot || tot < prefill {
				t.Fatalf("job %s: status %s, %d of %d rows", name, st, p, tot)
			}
		}

		// A plan right after a successful apply has nothing to do.
		r = f.run("plan", "--detailed-exitcode", f.dir)
		if r.code != 0 || !strings.Contains(r.stdout, "No changes") {
			t.Fatalf("plan after apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}

// TestApplyKilledMidBackfill: apply is SIGKILLed in the middle of the
// backfill, with a writer running; a second apply resumes from the recorded
// progress and the result is exact.
func TestApplyKilledMidBackfill(t *testing.T) {
	t.Parallel()
	eachServerKilling(t, func(t *testing.T, f *fixture) {
		const prefill = 2_000_000
		f.createProducts(prefill)
		f.writeSpec("by_category", summingSpec+smallBatches)
		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// Kill three times, at growing progress, each time in a new apply.
		for _, frac := range []float64{0.2, 0.45, 0.7} {
			f.startApply(ctx, fmt.Sprintf("backfill at %.0f%%", frac*100), 3*time.Minute, func() bool {
				st, processed, total, ok := f.job("by_category")
				return ok && st == "backfilling" && total > 0 && float64(processed) >= frac*float64(total)
			}).kill()
			st, p, tot, _ := f.job("by_category")
			t.Logf("killed at %s %d/%d", st, p, tot)
			if st != "backfilling" || p >= tot {
				t.Fatalf("the kill did not land mid-backfill: %s %d/%d", st, p, tot)
			}
		}

		r := f.mustRun("apply", "--auto-approve", f.dir)
		t.Logf("second apply:\n%s\n%s", r.stdout, r.stderr)
		if !strings.Contains(r.stdout, "backfill backfilling at") {
			t.Fatalf("the second apply did not resume the backfill:\n%s", r.stdout)
		}
		w.Stop(t)
		f.assertSummingExact()
		if st, p, tot, _ := f.job("by_category"); st != "completed" || p != tot {
			t.Fatalf("after resume: %s %d/%d", st, p, tot)
		}
	})
}

// TestApplyKilledDuringCreation: a kill before the fence is verified makes
// the next apply start over, and the result is still exact.
func TestApplyKilledDuringCreation(t *testing.T) {
	t.Parallel()
	eachServerKilling(t, func(t *testing.T, f *fixture) {
		f.createProducts(300_000)
		f.writeSpec("by_category", summingSpec)
		w := f.startWriter("products", 300_000, 100, 50*time.Millisecond)

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		f.startApply(ctx, "status creating", time.Minute, func() bool {
			st, _, _, ok := f.job("by_category")
			return ok && st == "creating"
		}).kill()

		r := f.mustRun("apply", "--auto-approve", f.dir)
		if !strings.Contains(r.stdout, "never verified") {
			t.Fatalf("expected the second apply to start over:\n%s", r.stdout)
		}
		w.Stop(t)
		f.assertSummingExact()
	})
}

// TestTwoAppliesAtOnce: a second apply refuses, naming the holder of the
// lock; a third one with --wait-lock waits for it. The result is exact.
func TestTwoAppliesAtOnce(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		f.createProducts(1_000_000)
		f.writeSpec("by_category", summingSpec+smallBatches)

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		first := f.startApply(ctx, "the backfill", time.Minute, func() bool {
			st, _, _, ok := f.job("by_category")
			return ok && st == "backfilling"
		})
		second := f.run("apply", "--auto-approve", f.dir)
		if second.code != 1 || !strings.Contains(second.stderr, "is locked by apply pid") {
			t.Fatalf("second apply: exit %d, want 1 naming the lock holder\nstdout:\n%s\nstderr:\n%s", second.code, second.stdout, second.stderr)
		}
		third := f.mustRun("apply", "--auto-approve", "--wait-lock", f.dir)
		if err := first.wait(); err != nil {
			t.Fatalf("first apply: %v\n%s", err, first.stdout.String())
		}
		t.Logf("third apply:\n%s", third.stdout)
		f.assertSummingExact()
	})
}

// TestPlanExitCodesAndSavedPlans covers --detailed-exitcode, saved plans and
// their staleness, and confirmation without a terminal.
func TestPlanExitCodesAndSavedPlans(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		f.createProducts(10_000)
		spec := f.writeSpec("by_category", summingSpec)

		r := f.run("plan", "--detailed-exitcode", spec)
		if r.code != 2 || !strings.Contains(r.stdout, "Plan: 1 to create, 0 to change, 0 to destroy.") {
			t.Fatalf("plan before apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = f.run("plan", spec)
		if r.code != 0 {
			t.Fatalf("plan without --detailed-exitcode: exit %d", r.code)
		}
		stale := f.dir + "/stale.plan"
		f.mustRun("plan", "-out", stale, spec)

		// Without a terminal and without --auto-approve, apply must not hang.
		r = f.run("apply", spec)
		if r.code != 1 || !strings.Contains(r.stderr, "not a terminal") {
			t.Fatalf("apply without a terminal: exit %d\n%s", r.code, r.stderr)
		}

		fresh := f.dir + "/fresh.plan"
		f.mustRun("plan", "-out", fresh, spec)
		f.mustRun("apply", fresh)
		f.assertSummingExact()

		r = f.run("apply", stale)
		if r.code != 1 || !strings.Contains(r.stderr, "saved plan is stale") {
			t.Fatalf("stale plan: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = f.run("plan", "--detailed-exitcode", spec)
		if r.code != 0 || !strings.Contains(r.stdout, "No changes") {
			t.Fatalf("plan after apply: exit %d\n%s", r.code, r.stdout)
		}
		r = f.run("plan", "--detailed-exitcode", f.dir+"/missing.yaml")
		if r.code != 1 {
			t.Fatalf("plan of a missing file: exit %d, want 1", r.code)
		}
		// A changed query shows a line diff of the applied and the new SQL.
		f.writeSpec("by_category", strings.Replace(summingSpec, "GROUP BY category", "WHERE price > 0 GROUP BY category", 1))
		r = f.run("plan", "--detailed-exitcode", spec)
		if r.code != 2 || !strings.Contains(r.stdout, "diff (applied -> spec)") {
			t.Fatalf("plan of a changed spec: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		var minus, plus []string
		for _, l := range strings.Split(r.stdout, "\n") {
			switch l = strings.TrimSpace(l); {
			case strings.HasPrefix(l, "- "):
				minus = append(minus, l)
			case strings.HasPrefix(l, "+ ") && strings.Contains(l, "WHERE"):
				plus = append(plus, l)
			}
		}
		if len(minus) != 1 || len(plus) != 1 || !strings.Contains(plus[0], "price > 0") {
			t.Fatalf("the diff should change exactly the WHERE line, got - %q + %q:\n%s", minus, plus, r.stdout)
		}
		// Apply rebuilds it beside the live version and switches to it.
		f.mustRun("apply", "--auto-approve", spec)
		if v, live := f.versions("by_category"); v != 2 || live != 2 {
			t.Fatalf("after applying the changed spec: version %d, live %d; want 2, 2", v, live)
		}
		f.assertSame("target of the changed query",
			"SELECT category, sum(cnt), sum(total_price) FROM by_category_data GROUP BY category ORDER BY category",
			"SELECT category, count(), sum(price) FROM products WHERE price > 0 GROUP BY category ORDER BY category")

		r = f.run("status", "by_category")
		if r.code != 0 || !strings.Contains(r.stdout, "completed") || !strings.Contains(r.stdout, "100.0%") {
			t.Fatalf("status: exit %d\n%s", r.code, r.stdout)
		}

		// A drop is synchronous where the server can make it so: in an
		// Atomic database a plain DROP leaves the table's data (and a
		// Replicated table's ZooKeeper path) for minutes.
		f.mustRun("mv", "drop", f.db+".by_category")
		if n := f.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE 'by_category%'"); n != "0" {
			t.Fatalf("%s objects of by_category left after mv drop", n)
		}
		if f.server.Atomic {
			if n := f.scalar("SELECT count() FROM system.dropped_tables WHERE database = currentDatabase()"); n != "0" {
				t.Fatalf("%s dropped tables still held by the server: the drop was not SYNC", n)
			}
		}
	})
}

// TestMutableSourceRefused: an MV over a ReplacingMergeTree source counts
// every update as a new row; plan refuses it unless the spec opts in.
func TestMutableSourceRefused(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		f.exec("CREATE TABLE %s.products (id UInt64, category String, price Decimal(18,2), created_at DateTime, version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY id", f.db)
		f.exec("INSERT INTO %s.products SELECT number + 1, 'a', toDecimal64(1.5, 2), now(), 1 FROM numbers(10)", f.db)
		spec := f.writeSpec("by_category", summingSpec)
		r := f.run("apply", "--auto-approve", spec)
		if r.code != 1 || !strings.Contains(r.stdout, "ReplacingMergeTree") || !strings.Contains(r.stdout, "allow_mutable_source") {
			t.Fatalf("apply over a ReplacingMergeTree source: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		f.writeSpec("by_category", summingSpec+"allow_mutable_source: true\n")
		f.mustRun("apply", "--auto-approve", spec)
		f.assertSummingExact()
	})
}

// TestUnsortedSourceSinglePass: a source sorted by (category, id) would be
// scanned whole by every key-range batch; the backfill takes one pass, and
// is exact.
func TestUnsortedSourceSinglePass(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		f.exec("CREATE TABLE %s.products (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = MergeTree() ORDER BY (category, id)", f.db)
		f.exec("INSERT INTO %s.products SELECT number + 1, concat('cat', toString(number %% 97)), toDecimal64(number %% 1000, 2) / 10, now() FROM numbers(500000)", f.db)
		f.writeSpec("by_category", summingSpec+smallBatches)
		r := f.mustRun("apply", "--auto-approve", f.dir)
		if !strings.Contains(r.stdout, "one server-side pass") || strings.Count(r.stdout, "backfill 100.0%") != 1 || strings.Contains(r.stdout, "backfill 50") {
			t.Fatalf("expected one pass over the unsorted source:\n%s", r.stdout)
		}
		f.assertSummingExact()
	})
}

// TestAmbiguousBatchNeedsAttention: a batch that was started and whose fate
// the server cannot tell (here: not in the query log, and the marker is older
// than the server's last start, as after a server crash) stops the job as
// needs_attention naming the range; nothing is guessed. A rebuild then gives
// an exact result.
func TestAmbiguousBatchNeedsAttention(t *testing.T) {
	t.Parallel()
	eachServerKilling(t, func(t *testing.T, f *fixture) {
		f.createProducts(600_000)
		f.writeSpec("by_category", summingSpec+smallBatches)

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		f.startApply(ctx, "the first batches", 3*time.Minute, func() bool {
			st, p, tot, _ := f.job("by_category")
			return st == "backfilling" && p > 0 && p < tot/2
		}).kill()

		// Forge an unresolvable in-flight batch just above the recorded progress.
		conn, err := pgx.Connect(ctx, f.pg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var lo int64
		err = conn.QueryRow(ctx, `UPDATE mv_job_shards SET inflight_lo = last_processed_id, inflight_hi = last_processed_id + 20000,
			inflight_query_id = 'shirath-forged@' || $1, updated_at = now() - interval '1 day' RETURNING inflight_lo`, f.addr).Scan(&lo)
		if err != nil {
			t.Fatal(err)
		}
		before := f.scalar("SELECT sum(cnt) FROM by_category_data")

		r := f.run("apply", "--auto-approve", f.dir)
		wantRange := fmt.Sprintf("(%d, %d]", lo, lo+20000)
		if r.code != 1 || !strings.Contains(r.stderr, "needs attention") || !strings.Contains(r.stderr, wantRange) {
			t.Fatalf("apply with an ambiguous batch: exit %d, want 1 naming %s\n%s%s", r.code, wantRange, r.stdout, r.stderr)
		}
		if st, _, _, _ := f.job("by_category"); st != "needs_attention" {
			t.Fatalf("status %s, want needs_attention", st)
		}
		if after := f.scalar("SELECT sum(cnt) FROM by_category_data"); after != before {
			t.Fatalf("the target changed while the job needed attention: %s -> %s rows", before, after)
		}
		p := f.run("plan", "--detailed-exitcode", f.dir)
		if !strings.Contains(p.stdout, "needs attention") || !strings.Contains(p.stdout, "cannot apply") {
			t.Fatalf("plan of a job that needs attention:\n%s", p.stdout)
		}

		f.mustRun("mv", "backfill", f.db+".by_category", "--restart")
		f.mustRun("apply", "--auto-approve", f.dir)
		f.assertSummingExact()
		if st, _, _, _ := f.job("by_category"); st != "completed" {
			t.Fatalf("after the rebuild: %s", st)
		}
	})
}

// TestClusterResolution: on a server whose only clusters are ClickHouse's
// built-in examples, cluster: auto fails and asks for a name, and a named
// cluster must exist.
func TestClusterResolution(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		f.createProducts(100)
		f.writeSpec("by_category", summingSpec+"cluster: auto\n")
		r := f.run("apply", "--auto-approve", f.dir)
		// The 18.16 node lists ClickHouse's example cluster, which auto
		// skips and names; chDB's engine has no cluster at all.
		builtin := f.scalar("SELECT count() FROM system.clusters WHERE cluster = 'test_shard_localhost'") != "0"
		if r.code != 1 || !strings.Contains(r.stdout, "found no cluster") || builtin != strings.Contains(r.stdout, "test_shard_localhost") {
			t.Fatalf("cluster: auto on a single node: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		f.writeSpec("by_category", summingSpec+"cluster: no_such_cluster\n")
		r = f.run("apply", "--auto-approve", f.dir)
		if r.code != 1 || !strings.Contains(r.stdout, `cluster "no_such_cluster" is not in system.clusters`) {
			t.Fatalf("a cluster that does not exist: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if _, _, _, ok := f.job("by_category"); ok {
			t.Fatal("a job was created for a spec whose cluster cannot be resolved")
		}
	})
}
