//go:build integration

package e2e

// Scale benchmark of issue 11 (points 3 and 5): sources of 5M, 20M and 80M
// rows, sorted by the key and not, on the 18.16 node. Each iteration runs,
// side by side on each source, the single INSERT ... SELECT over the whole
// source and `shirath apply` of the same rollup, and checks both targets
// against the aggregate of the source.

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/internal/testenv"
)

// scaleSizes are the source sizes of BenchmarkScale; scaleOrders its two
// sorting keys (by the key: batches; not: one pass).
var (
	scaleSizes  = []int{5_000_000, 20_000_000, 80_000_000}
	scaleOrders = []struct{ name, orderBy string }{{"sorted", "id"}, {"unsorted", "(category, id)"}}
)

// scaleWorld holds the sources of BenchmarkScale. They take minutes to
// fill, so every run of the benchmark (-count 3) shares them; they are
// dropped when the test binary ends (benchCleanups, TestMain).
var scaleWorld struct {
	once sync.Once
	err  error
	conn driver.Conn
	addr string
	db   string
	fill time.Duration
	want map[string]sourceDigest // by source table
}

var (
	benchCleanupMu sync.Mutex
	benchCleanups  []func()
)

// afterBenchmarks registers f to run when the test binary ends.
func afterBenchmarks(f func()) {
	benchCleanupMu.Lock()
	defer benchCleanupMu.Unlock()
	benchCleanups = append(benchCleanups, f)
}

func runBenchCleanups() {
	benchCleanupMu.Lock()
	defer benchCleanupMu.Unlock()
	for i := len(benchCleanups) - 1; i >= 0; i-- {
		benchCleanups[i]()
	}
	benchCleanups = nil
}

func scaleTable(order string, rows int) string {
	return fmt.Sprintf("%s_%dm", order, rows/1_000_000)
}

// scaleSources fills the six sources once, server side (numbers()), each
// merged to one part so that no background merge runs during the timings.
func scaleSources(b *testing.B) {
	w := &scaleWorld
	w.once.Do(func() {
		env := testenv.Load(b)
		s := env.Singles(b)[0] // 18.16, as the other backfill benchmarks
		w.addr = s.Addr
		if w.conn, w.err = chclient.Open(context.Background(), s.Addr, chclient.Options{}); w.err != nil {
			return
		}
		w.db = testenv.UniqueName("scale")
		conn, db := w.conn, w.db
		afterBenchmarks(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
				fmt.Printf("drop the scale benchmark's database %s on %s: %v\n", db, s.Addr, err)
			}
			conn.Close()
		})
		exec := func(q string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
			defer cancel()
			if err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
			return nil
		}
		start := time.Now()
		if w.err = exec("CREATE DATABASE " + db); w.err != nil {
			return
		}
		w.want = map[string]sourceDigest{}
		for _, o := range scaleOrders {
			for _, rows := range scaleSizes {
				t := sqlgen.Table(db, scaleTable(o.name, rows))
				for _, q := range []string{
					fmt.Sprintf("CREATE TABLE %s (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = MergeTree() ORDER BY %s", t, o.orderBy),
					fmt.Sprintf("INSERT INTO %s SELECT number + 1, concat('cat', toString(number %% %d)), toDecimal64(number %% 1000, 2) / 10, toDateTime('2024-01-01 00:00:00') + number FROM numbers(%d)", t, benchCategories, rows),
					"OPTIMIZE TABLE " + t + " FINAL",
				} {
					if w.err = exec(q); w.err != nil {
						return
					}
				}
				// Also reads the whole source once: no method pays for a cold cache.
				d := digestOn(b, conn, fmt.Sprintf("SELECT category, count() AS c, sum(price) AS s FROM %s GROUP BY category", t))
				if d.rows != uint64(rows) || d.groups != benchCategories {
					w.err = fmt.Errorf("%s: %d rows in %d categories, want %d in %d", t, d.rows, d.groups, rows, benchCategories)
					return
				}
				w.want[scaleTable(o.name, rows)] = d
			}
		}
		w.fill = time.Since(start)
	})
	if w.err != nil {
		b.Fatal(w.err)
	}
}

// BenchmarkScale (issue 11, points 3 and 5): for each source, the single
// INSERT ... SELECT ... GROUP BY over the whole source (the statement) and
// shirath's backfill (first backfill line to OPTIMIZE line: batches, their
// counts and the progress writes), side by side in the same iteration, in
// an order that rotates. Reported: shirath's throughput as a fraction of the
// statement's, its cost per source row at each size and the spread of that
// cost across the sizes (max / min), and the peak RSS of the apply process
// (getrusage of the child: ru_maxrss) on the 80M sources.
func BenchmarkScale(b *testing.B) {
	scaleSources(b)
	w := &scaleWorld
	b.Logf("sources (%d to %d rows, sorted and not) filled in %s (once per test binary)", scaleSizes[0], scaleSizes[len(scaleSizes)-1], w.fill.Round(time.Second))
	pg, bin, dir := testenv.Load(b).PostgresDB(b), benchBinary(b), b.TempDir()
	type result struct{ statement, shirath, apply time.Duration }
	var (
		res = map[string]*result{}
		rss = map[string]int64{} // KB, the largest of the iterations
	)
	for _, o := range scaleOrders {
		for _, rows := range scaleSizes {
			res[scaleTable(o.name, rows)] = &result{}
		}
	}
	for i := 0; i < b.N; i++ {
		for _, o := range scaleOrders {
			for _, rows := range scaleSizes {
				src := scaleTable(o.name, rows)
				r := res[src]
				benchSideBySide(
					func() { r.statement += scaleStatement(b, src) },
					func() {
						a, kb := scaleApply(b, pg, bin, dir, src, fmt.Sprintf("%s_mv%d", src, i), o.name == "sorted")
						r.shirath += a.backfill
						r.apply += a.total
						rss[src] = max(rss[src], kb)
					},
				)
			}
		}
	}
	b.ReportMetric(0, "ns/op")
	reportLoad(b)
	for _, o := range scaleOrders {
		lo, hi := math.Inf(1), 0.0
		for _, rows := range scaleSizes {
			src := scaleTable(o.name, rows)
			r := res[src]
			size := fmt.Sprintf("%s-%dM", o.name, rows/1_000_000)
			perRow := float64(r.shirath.Nanoseconds()) / float64(b.N) / float64(rows)
			lo, hi = math.Min(lo, perRow), math.Max(hi, perRow)
			b.ReportMetric(ratio(r.statement, r.shirath), size+"-throughput/statement")
			b.ReportMetric(math.Round(perRow*100)/100, size+"-ns-per-row")
			b.ReportMetric(seconds(r.statement, b.N), size+"-statement-s")
			b.ReportMetric(seconds(r.shirath, b.N), size+"-backfill-s")
			b.ReportMetric(seconds(r.apply, b.N), size+"-apply-s")
		}
		b.ReportMetric(hi/lo, o.name+"-cost-spread/min")
		b.ReportMetric(math.Round(float64(rss[scaleTable(o.name, scaleSizes[len(scaleSizes)-1])])/1024*10)/10, fmt.Sprintf("%s-%dM-apply-peak-rss-MB", o.name, scaleSizes[len(scaleSizes)-1]/1_000_000))
	}
}

// scaleStatement fills a fresh target with the whole source in one
// statement, checks it and drops it.
func scaleStatement(b *testing.B, src string) time.Duration {
	b.Helper()
	w := &scaleWorld
	m := scaleMV(b, src, src+"_statement")
	execOn(b, w.conn, nil, mustSQL(b)(m.CreateTarget(false)))
	q := mustSQL(b)(m.Query(sqlgen.Range{}))
	start := time.Now()
	execOn(b, w.conn, nil, fmt.Sprintf("INSERT INTO %s %s", sqlgen.Table(w.db, m.Spec.TargetTable), q))
	took := time.Since(start)
	scaleCheckAndDrop(b, src, m.Spec.TargetTable)
	return took
}

// scaleApply runs `shirath apply` of the rollup over src as MV name, checks
// its target and drops the MV; it returns the backfill span and the
// process's peak RSS in KB.
func scaleApply(b *testing.B, pg, bin, dir, src, name string, sorted bool) (applyRun, int64) {
	b.Helper()
	w := &scaleWorld
	spec := scaleSpec(src, name)
	d := writeSpecs(b, dir+"/"+name, []string{name}, func(string) string { return spec })
	run := runTimed(b, bin, []string{"SHIRATH_CH_ADDR=" + w.addr, "SHIRATH_PG_URL=" + pg}, "apply", "--auto-approve", d)
	sp := backfillSpan(run.lines, w.db+"."+name)
	if sp.from.IsZero() || sp.to.IsZero() || sp.batches == 0 {
		b.Fatalf("shirath apply: no backfill step, batch or OPTIMIZE line in its output:\n%s", run.stdout())
	}
	if sp.singlePass == sorted {
		b.Fatalf("shirath apply on %s (sorted by the key: %v) took the single pass: %v\n%s", src, sorted, sp.singlePass, run.stdout())
	}
	execOn(b, w.conn, nil, "DROP TABLE "+sqlgen.Table(w.db, name))
	scaleCheckAndDrop(b, src, name+"_data")
	return applyRun{backfill: sp.to.Sub(sp.from), total: run.total, batches: sp.batches}, run.maxRSS
}

// scaleSpec is the benchmarks' rollup spec over src, named name.
func scaleSpec(src, name string) string {
	return fmt.Sprintf("database: %s\n", scaleWorld.db) + strings.Replace(fmt.Sprintf(benchSpec, name), "source_table: products", "source_table: "+src, 1)
}

// scaleMV is the rollup over src as sqlgen generates it, writing into
// target.
func scaleMV(b *testing.B, src, target string) sqlgen.MV {
	m := specMV(b, scaleWorld.conn, scaleSpec(src, "scale"))
	s := *m.Spec
	s.TargetTable = target
	m.Spec = &s
	return m
}

func scaleCheckAndDrop(b *testing.B, src, target string) {
	b.Helper()
	w := &scaleWorld
	got := digestOn(b, w.conn, fmt.Sprintf("SELECT category, sum(cnt) AS c, sum(total_price) AS s FROM %s GROUP BY category", sqlgen.Table(w.db, target)))
	if want := w.want[src]; got != want {
		b.Fatalf("%s is not the aggregate of %s: %+v, want %+v", target, src, got, want)
	}
	execOn(b, w.conn, nil, "DROP TABLE "+sqlgen.Table(w.db, target))
}

// mustSQL unwraps a generated statement.
func mustSQL(b *testing.B) func(string, error) string {
	return func(q string, err error) string {
		if err != nil {
			b.Fatal(err)
		}
		return q
	}
}
