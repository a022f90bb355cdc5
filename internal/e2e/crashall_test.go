//go:build integration && crashpoints

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/shirath/shirath/internal/chclient"
)

// The crash-at-every-point test. Test builds pass a crash point before and
// after every ClickHouse statement and every job store commit the executor
// makes (executor/points.go). One apply of each scenario runs with
// SHIRATH_CRASH_TRACE, which records every point it passes, in order; then,
// for every point of that trace (each distinct name at its first hit, and
// at a middle hit where the name repeats, as batches do), a fresh database
// goes through the same scenario under a writer, the apply dies there as
// with SIGKILL, the next apply recovers, and the target is compared with
// the aggregate of the source. So the list of points is the executor's own,
// never a hand-kept one.

const (
	// crashPrefill rows before the writer starts; the writer adds about
	// 200 rows/s. The first batch is 1,000 keys wide and the next ones
	// grow (up to 4x a batch): 2 to 4 batches, however long the waits on a
	// loaded machine let the writer run.
	crashPrefill = 3000
	// crashParallel point runs at once on a single node.
	crashParallel = 3
)

// crashSpec is the summing rollup of version sum(price * k), with small
// batches and short waits.
func crashSpec(k int, extra string) string {
	return strings.Replace(summingSpec, "sum(price)", fmt.Sprintf("sum(price * %d)", k), 1) + extra +
		"backfill:\n  initial_batch_rows: 1000\n  settle_delay: 200ms\n"
}

// crashScenario is what the apply under test does.
type crashScenario struct {
	name string
	// live is the version applied (without a crash) before the apply under
	// test; 0: none.
	live int
	// want is the version the apply under test builds; 0: it destroys.
	want int
}

var crashScenarios = []crashScenario{
	{name: "create", want: 1},
	{name: "change", live: 1, want: 2},
	{name: "destroy", live: 1},
}

// crashHit is one place to die: the nth hit of a named point.
type crashHit struct {
	name string
	nth  int
}

func (h crashHit) String() string { return fmt.Sprintf("%s:%d", h.name, h.nth) }

// crashHits picks from a trace every distinct point at its first hit, and
// at a middle one where it repeats (hit n/2+1 of n: both hits of a pair).
func crashHits(trace []string) []crashHit {
	count := map[string]int{}
	var order []string
	for _, p := range trace {
		if count[p] == 0 {
			order = append(order, p)
		}
		count[p]++
	}
	var out []crashHit
	for _, p := range order {
		out = append(out, crashHit{p, 1})
		if n := count[p]; n > 1 {
			out = append(out, crashHit{p, n/2 + 1})
		}
	}
	return out
}

// crashStates keeps, of a trace, the points that leave distinct states: the
// point before each write (a statement that is not a read, or a commit) and
// the last point. A point after a write, or around a read, leaves the
// servers and the job store as the point before the next write does: only
// the source moves meanwhile, by the writer.
func crashStates(trace []string) []string {
	var out []string
	for i, p := range trace {
		if (strings.HasPrefix(p, "before:") && !strings.Contains(p, "/read-")) || i == len(trace)-1 {
			out = append(out, p)
		}
	}
	return out
}

// crashOutcome is what became of one point run.
type crashOutcome struct {
	hit     crashHit
	outcome string
	ok      bool
	took    time.Duration
}

// crashWorld makes the fixture of one point run: a fresh database (on a
// single node, or on the cluster) with the products source filled.
type crashWorld struct {
	fixture func(t *testing.T) *fixture
	source  string // what the writer inserts into
	extra   string // spec lines (cluster: auto)
	// writeSettings are the writer's INSERT settings (the cluster's:
	// insert_distributed_sync, so that an acknowledged INSERT is on its
	// shards when it returns).
	writeSettings clickhouse.Settings
	// settle waits until the rows written are where the comparison reads
	// them (the cluster: every replica has fetched its peer's parts).
	settle func(f *fixture, w *writer, tables ...string)
}

// crashTimed are the steps an apply takes or not by timing: a fence
// retried, an interrupted batch settled, a failure recorded.
var crashTimed = regexp.MustCompile(`:(fence-retry|settle|record-failure|resume)/`)

var batchRange = regexp.MustCompile(`batch id in \(\d+, \d+\]`)

// runCrashPoint runs the scenario on a fresh database: with hit.name "",
// without a crash and with trace set, to learn the points; otherwise dying
// at hit and recovering with the next apply.
func runCrashPoint(t *testing.T, w crashWorld, sc crashScenario, hit crashHit, trace string) crashOutcome {
	start := time.Now()
	out := crashOutcome{hit: hit}
	f := w.fixture(t)
	wr := f.startWriterWith(w.writeSettings, w.source, crashPrefill, 10, 50*time.Millisecond)
	stopped := false
	defer func() {
		if !stopped {
			wr.Stop(t)
		}
	}()
	spec := ""
	if sc.live > 0 {
		spec = f.writeSpec("by_category", crashSpec(sc.live, w.extra))
		if sc.want == 0 {
			// Another MV stays: apply refuses a directory without specs.
			f.writeSpec("other", strings.Replace(crashSpec(1, w.extra), "name: by_category", "name: other", 1))
		}
		f.mustRun("apply", "--auto-approve", f.dir)
	}
	args := []string{"apply", "--auto-approve"}
	if sc.want > 0 {
		f.writeSpec("by_category", crashSpec(sc.want, w.extra))
	} else {
		os.Remove(spec)
		args = append(args, "-destroy")
	}
	args = append(args, f.dir)

	if hit.name == "" {
		f.extra = []string{"SHIRATH_CRASH_TRACE=" + trace}
		f.mustRun(args...)
	} else {
		f.extra = []string{"SHIRATH_CRASH_AT=" + hit.String()}
		r := f.run(args...)
		if r.code != -1 || !strings.Contains(r.stderr, fmt.Sprintf("crash point %s (hit %d)", hit.name, hit.nth)) {
			if r.code == 0 && (hit.nth > 1 || crashTimed.MatchString(hit.name)) {
				// The number of batches varies from run to run, and so do
				// the paths that timing takes (a fence retried when the
				// writer outran its headroom, a batch settled by the next
				// apply): a later hit, or such a path, may not come.
				out.outcome, out.ok = fmt.Sprintf("not reached in this run (exit 0): %d hits, or another path", hit.nth), true
				return out
			}
			out.outcome = fmt.Sprintf("not killed there: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			return out
		}
		if sc.live > 0 {
			// Readers always have a table, whatever the crash.
			if m := f.missingOn("by_category_data"); m != "" && sc.want > 0 {
				out.outcome = "readers' by_category_data missing after the kill on " + m
				return out
			}
		}
		f.extra = nil
		if r := f.run(args...); r.code != 0 {
			var st, msg string
			if err := f.pgRow("SELECT status, coalesce(error_message, '') FROM mv_jobs WHERE name = 'by_category'", nil, &st, &msg); err == nil && st == "needs_attention" {
				if m := batchRange.FindString(msg); m != "" {
					out.outcome, out.ok = "needs_attention naming the "+m, true
					return out
				}
				out.outcome = "needs_attention without naming the batch: " + msg
				return out
			}
			out.outcome = fmt.Sprintf("the apply after the kill failed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			return out
		}
	}
	time.Sleep(300 * time.Millisecond) // rows through the MV after the apply
	// Stopped before its rows are counted: an INSERT that ends between the
	// count and the stop would be in the source and not in the count.
	wr.Stop(t)
	stopped = true
	rows := crashPrefill + wr.rows.Load()
	if w.settle != nil {
		tables := []string{"products"}
		if sc.want == 1 {
			tables = append(tables, "by_category_data")
		} else if sc.want > 1 {
			tables = append(tables, fmt.Sprintf("by_category_data__v%d", sc.want))
		}
		w.settle(f, wr, tables...)
	}
	out.outcome, out.ok = crashCheck(f, sc, rows)
	out.took = time.Since(start)
	return out
}

// crashCheck compares what the scenario must leave with what is there.
func crashCheck(f *fixture, sc crashScenario, rows uint64) (string, bool) {
	if sc.want == 0 {
		if left := f.tablesLeft("name LIKE 'by\\_category%' OR name LIKE '%stage%'"); len(left) > 0 {
			return "objects left after the destroy: " + strings.Join(left, ", "), false
		}
		if _, _, _, ok := f.job("by_category"); ok {
			return "the job is still recorded after the destroy", false
		}
		return "destroyed", true
	}
	if st, p, tot, _ := f.job("by_category"); st != "completed" || p != tot {
		return fmt.Sprintf("job %s at %d/%d after the recovery", st, p, tot), false
	}
	if v, live := f.versions("by_category"); v != sc.want || live != sc.want {
		return fmt.Sprintf("version %d, live %d after the recovery; want %d", v, live, sc.want), false
	}
	if left := f.tablesLeft("name LIKE '%\\_\\_prev' OR name LIKE '%\\_\\_next' OR name LIKE '%stage%'"); len(left) > 0 {
		return "switch or stage tables left: " + strings.Join(left, ", "), false
	}
	read, src := "by_category_data", "products"
	if f.cluster != nil {
		read, src = "by_category_dist", "products_dist"
	}
	got := f.rowsOf(fmt.Sprintf("SELECT category, sum(cnt), sum(total_price) FROM %s GROUP BY category ORDER BY category", read))
	want := f.rowsOf(fmt.Sprintf("SELECT category, count(), sum(price * %d) FROM %s GROUP BY category ORDER BY category", sc.want, src))
	if strings.Join(got, "\n") == strings.Join(want, "\n") {
		return "exact", true
	}
	counted := f.scalar("SELECT sum(cnt) FROM " + read)
	return fmt.Sprintf("WRONG: %d of %d groups differ; the target counts %s rows, the source has %d", diffRows(got, want), len(want), counted, rows), false
}

// tablesLeft lists the tables of the fixture's database that match where, on
// every node.
func (f *fixture) tablesLeft(where string) []string {
	f.t.Helper()
	conns, addrs := f.nodes()
	var out []string
	for i, c := range conns {
		names, err := chclient.Strings(context.Background(), c, "SELECT name FROM system.tables WHERE database = ? AND ("+where+") ORDER BY name", f.db)
		if err != nil {
			f.t.Fatalf("%s: %v", addrs[i], err)
		}
		for _, n := range names {
			out = append(out, n+" on "+addrs[i])
		}
	}
	return out
}

func diffRows(got, want []string) int {
	in := map[string]bool{}
	for _, g := range got {
		in[g] = true
	}
	n := 0
	for _, x := range want {
		if !in[x] {
			n++
		}
	}
	return n
}

// crashEveryPoint learns the points of each scenario from a traced run, then
// kills a run at each of them, parallel runs at once, and prints the table.
// It kills at one point per state the servers and the job store can be left
// in (crashStates: before every statement that writes and every commit, and
// the last point); with SHIRATH_CRASH_EVERY_NAME=1 at every point of the
// trace, reads and after: points included, which leave the same states
// and cost about twice the time.
func crashEveryPoint(t *testing.T, w crashWorld, parallel int) {
	for _, sc := range crashScenarios {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			trace := filepath.Join(t.TempDir(), "trace")
			var learned crashOutcome
			t.Run("trace", func(t *testing.T) { learned = runCrashPoint(t, w, sc, crashHit{}, trace) })
			if !learned.ok {
				t.Fatalf("the traced %s without a crash: %s", sc.name, learned.outcome)
			}
			data, err := os.ReadFile(trace)
			if err != nil {
				t.Fatalf("the traced apply wrote no trace: %v", err)
			}
			points := strings.Fields(string(data))
			if os.Getenv("SHIRATH_CRASH_EVERY_NAME") == "" {
				points = crashStates(points)
			}
			hits := crashHits(points)
			if len(hits) < 10 {
				t.Fatalf("the trace has %d points, fewer than a %s passes:\n%s", len(hits), sc.name, data)
			}
			outcomes := make([]crashOutcome, len(hits))
			sem := make(chan struct{}, parallel)
			var wg sync.WaitGroup
			for i, h := range hits {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					outcomes[i] = crashOutcome{hit: h, outcome: "the run stopped (see its log)"}
					t.Run(h.String(), func(t *testing.T) {
						// Released before the cleanups: dropping the databases
						// takes long on a loaded 18.16.
						defer func() { <-sem }()
						outcomes[i] = runCrashPoint(t, w, sc, h, "")
						if !outcomes[i].ok {
							t.Errorf("killed at %s: %s", h, outcomes[i].outcome)
						}
					})
				}()
			}
			wg.Wait()
			t.Log(crashTable(sc.name, outcomes, time.Since(start)))
		})
	}
}

// crashTable prints the points and their outcomes, in the trace's order.
func crashTable(scenario string, outs []crashOutcome, took time.Duration) string {
	var b strings.Builder
	tally := map[string]int{}
	fmt.Fprintf(&b, "%s: %d points killed in %s\n", scenario, len(outs), took.Round(time.Second))
	fmt.Fprintf(&b, "%-58s %4s  %-6s %s\n", "point", "hit", "took", "outcome")
	for _, o := range outs {
		first, _, _ := strings.Cut(o.outcome, "\n")
		fmt.Fprintf(&b, "%-58s %4d  %5.1fs %s\n", o.hit.name, o.hit.nth, o.took.Seconds(), first)
		kind := first
		if !o.ok {
			kind = "FAILED"
		} else if strings.HasPrefix(first, "needs_attention") {
			kind = "needs_attention"
		}
		tally[kind]++
	}
	var kinds []string
	for k := range tally {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, tally[k]))
	}
	sort.Strings(kinds)
	fmt.Fprintf(&b, "%s", strings.Join(kinds, ", "))
	return b.String()
}

// TestCrashAtEveryPoint: on each single node, for the creation of an MV, a
// change (rebuilt beside the live version, then switched) and a destroy,
// the apply dies at every crash point of the executor in turn under a
// writer; the next apply recovers, and the target equals the aggregate of
// the source (or the job stops as needs_attention naming the batch).
func TestCrashAtEveryPoint(t *testing.T) {
	t.Parallel()
	eachServerKilling(t, func(t *testing.T, f *fixture) {
		s := f.server
		crashEveryPoint(t, crashWorld{
			fixture: func(t *testing.T) *fixture {
				g := newFixture(t, s)
				g.createProducts(crashPrefill)
				return g
			},
			source: "products",
		}, crashParallel)
	})
}

// TestClusterCrashAtEveryPoint is TestCrashAtEveryPoint on the 2x2 cluster
// (ReplicatedMergeTree source written through a Distributed table,
// Replicated target), one point run at a time: ON CLUSTER statements of
// several databases queue behind each other.
func TestClusterCrashAtEveryPoint(t *testing.T) {
	crashEveryPoint(t, crashWorld{
		fixture: func(t *testing.T) *fixture {
			f, c := newClusterFixture(t)
			f.createClusterProducts(c, crashPrefill, true)
			return f
		},
		source:        "products_dist",
		extra:         "cluster: auto\n",
		writeSettings: clickhouse.Settings{"insert_distributed_sync": 1},
		settle:        crashSettleCluster,
	}, 1)
}

// crashSettleCluster waits until every replica has what its peer has, and
// checks the source against the writer: every acknowledged INSERT is in it
// (synchronous INSERTs through products_dist), and a failed one may have
// left rows on the shards that took their part (an INSERT through a
// Distributed table is not atomic across shards; code 60 for the view being
// created fails a node's part before anything is written there). The
// comparison then reads the source as it is.
func crashSettleCluster(f *fixture, w *writer, tables ...string) {
	f.t.Helper()
	f.syncReplicas(f.cluster, tables...)
	acked := crashPrefill + w.rows.Load()
	var n, failed uint64
	q := fmt.Sprintf("SELECT count(), countIf(%s) FROM %s.products_dist", w.failedRows(), f.db)
	if err := f.ch.QueryRow(context.Background(), q).Scan(&n, &failed); err != nil {
		f.t.Fatal(err)
	}
	if n-failed != acked {
		f.t.Fatalf("products_dist has %d rows of acknowledged INSERTs (and %d of failed ones), want %d: the writer's rows are not all there", n-failed, failed, acked)
	}
	if failed > 0 {
		f.t.Logf("products_dist keeps %d rows of failed INSERTs (their part on the shards that took it)", failed)
	}
}
