//go:build integration

package e2e

// Backfill benchmarks (issue 4). Each iteration backfills the same
// SummingMergeTree target from the same source several ways, one after the
// other on the same server, and reports the ratios to one INSERT ... SELECT
// over the whole source: on a noisy shared machine the absolute seconds move
// from run to run, the ratios less. Every result is checked against the
// aggregate of the source, so that a fast wrong answer cannot win.
//
//	make bench
//	go test -tags integration -run '^$' -bench . -benchtime 1x -count 3 ./internal/e2e/

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/internal/testenv"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
)

const (
	benchRows       = 5_000_000
	benchCategories = 1000
)

// benchSpec is the spec every method fills, with default backfill settings;
// %s is the MV's name (the target is <name>_data).
const benchSpec = `name: %s
source_table: products
engine: SummingMergeTree()
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: cnt, type: UInt64}
  - {name: total_price, type: "Decimal(18,2)"}
select_query: "SELECT category, count() as cnt, sum(price) as total_price FROM {source_table} GROUP BY category"
`

// BenchmarkBackfillSorted: a source sorted by the key. Per iteration:
// baseline, one INSERT ... SELECT for the whole source; adaptive, `shirath
// apply` with the default backfill settings (the backfill part of its
// output is timed, apply-s is the whole command); fixed10k, the original
// design's batches of 10,000 keys, each the statement shirath would send.
func BenchmarkBackfillSorted(b *testing.B) {
	w := newBench(b, "id", benchRows)
	var base, adaptive, apply, fixed time.Duration
	var batches int
	for i := 0; i < b.N; i++ {
		benchSideBySide(
			func() { base += w.baseline("baseline_data") },
			func() {
				r := w.apply(fmt.Sprintf("adaptive_%d", i))
				if r.singlePass {
					b.Fatalf("shirath took the single pass on a source sorted by the key:\n%s", r.out)
				}
				adaptive += r.backfill
				apply += r.total
				batches += r.batches
			},
			func() { fixed += w.batches("fixed_data", 10_000) },
		)
	}
	b.ReportMetric(0, "ns/op") // setup and checks: meaningless here
	b.ReportMetric(ratio(adaptive, base), "adaptive/baseline")
	b.ReportMetric(ratio(fixed, base), "fixed10k/baseline")
	b.ReportMetric(seconds(base, b.N), "baseline-s")
	b.ReportMetric(seconds(adaptive, b.N), "adaptive-s")
	b.ReportMetric(seconds(apply, b.N), "apply-s")
	b.ReportMetric(seconds(fixed, b.N), "fixed10k-s")
	b.ReportMetric(float64(batches)/float64(b.N), "adaptive-batches")
}

// BenchmarkBackfillUnsorted: a source sorted by (category, id), so that a
// key range cannot be read without scanning the whole table. shirath must
// notice and backfill in one pass (single-pass); batches20 shows what
// key-range batches would cost there.
func BenchmarkBackfillUnsorted(b *testing.B) {
	w := newBench(b, "(category, id)", benchRows)
	var base, single, apply, ranged time.Duration
	for i := 0; i < b.N; i++ {
		benchSideBySide(
			func() { base += w.baseline("baseline_data") },
			func() {
				r := w.apply(fmt.Sprintf("single_%d", i))
				if !r.singlePass || r.batches != 1 {
					b.Fatalf("shirath did not backfill a source sorted by (category, id) in one pass (%d batches):\n%s", r.batches, r.out)
				}
				single += r.backfill
				apply += r.total
			},
			func() { ranged += w.batches("ranged_data", (w.top+19)/20) },
		)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ratio(single, base), "single-pass/baseline")
	b.ReportMetric(ratio(ranged, base), "batches20/baseline")
	b.ReportMetric(seconds(base, b.N), "baseline-s")
	b.ReportMetric(seconds(single, b.N), "single-pass-s")
	b.ReportMetric(seconds(apply, b.N), "apply-s")
	b.ReportMetric(seconds(ranged, b.N), "batches20-s")
}

func ratio(a, b time.Duration) float64 { return a.Seconds() / b.Seconds() }

func seconds(d time.Duration, n int) float64 { return d.Seconds() / float64(n) }

var (
	benchBuild sync.Once
	benchBin   string
	benchErr   error
	// benchRuns rotates the order of the methods from one benchmark run to
	// the next (-count 3), so that none is always first or last.
	benchRuns atomic.Int64
)

// benchBinary builds shirath without the race detector that TestMain's
// binary has, which would slow shirath's own side of every batch.
func benchBinary(b *testing.B) string {
	benchBuild.Do(func() {
		benchBin = filepath.Join(filepath.Dir(binary), "shirath-bench")
		if out, err := exec.Command("go", "build", "-o", benchBin, "github.com/shirath/shirath/cmd/shirath").CombinedOutput(); err != nil {
			benchErr = fmt.Errorf("build shirath: %v\n%s", err, out)
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchBin
}

// bench is one benchmark run's world: a ClickHouse database holding the
// source, a PostgreSQL database for the job store, a spec directory.
type bench struct {
	b    *testing.B
	ch   driver.Conn
	db   string
	pg   string
	addr string
	dir  string
	bin  string
	mv   sqlgen.MV    // the spec as shirath generates its SQL
	top  int64        // max(id) of the source
	want sourceDigest // the aggregate every target must hold
}

func newBench(b *testing.B, sourceOrder string, rows int) *bench {
	// The 18.16 node: the baselines below were measured there.
	return newBenchOn(b, testenv.Load(b).Singles(b)[0], sourceOrder, rows)
}

// newBenchOn is newBench on the single node s.
func newBenchOn(b *testing.B, s *testenv.Single, sourceOrder string, rows int) *bench {
	env := testenv.Load(b)
	conn, db := s.DB(b)
	w := &bench{b: b, ch: conn, db: db, pg: env.PostgresDB(b), addr: s.Addr, dir: b.TempDir(), bin: benchBinary(b)}
	w.exec("CREATE TABLE %s.products (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = MergeTree() ORDER BY %s", db, sourceOrder)
	w.exec("INSERT INTO %s.products SELECT number + 1, concat('cat', toString(number %% %d)), toDecimal64(number %% 1000, 2) / 10, toDateTime('2024-01-01 00:00:00') + number FROM numbers(%d)", db, benchCategories, rows)
	// One part: no background merge of the source runs during the timings.
	w.exec("OPTIMIZE TABLE %s.products FINAL", db)
	if err := conn.QueryRow(context.Background(), fmt.Sprintf("SELECT toInt64(max(id)) FROM %s.products", db)).Scan(&w.top); err != nil {
		b.Fatal(err)
	}
	w.mv = w.sqlMV()
	// Also reads the whole source once, so that no method pays for a cold cache.
	w.want = w.digest(fmt.Sprintf("SELECT category, count() AS c, sum(price) AS s FROM %s.products GROUP BY category", db))
	if w.want.groups != benchCategories || w.want.rows != uint64(rows) {
		b.Fatalf("source: %d categories and %d rows, want %d and %d", w.want.groups, w.want.rows, benchCategories, rows)
	}
	return w
}

// sqlMV is the spec as shirath's planner hands it to sqlgen.
func (w *bench) sqlMV() sqlgen.MV { return benchMV(w.b, w.ch, w.db, "bench") }

// benchMV is the bench spec named name in database db, as shirath's planner
// hands it to sqlgen, casts included (on 18.16 sum(Decimal(18,2)) is
// Decimal(38,2)), with the output types asked from the server conn.
func benchMV(b *testing.B, conn driver.Conn, db, name string) sqlgen.MV {
	b.Helper()
	ss, err := specs.ParseYAML("bench.yaml", []byte("database: "+db+"\n"+fmt.Sprintf(benchSpec, name)))
	if err != nil {
		b.Fatal(err)
	}
	m := sqlgen.MV{Spec: ss[0]}
	types, err := planner.QueryTypes(context.Background(), &planner.Node{Addr: "bench", Conn: conn}, m)
	if err != nil {
		b.Fatal(err)
	}
	m.Casts = map[string]string{}
	for _, c := range m.Spec.Columns {
		if strings.ReplaceAll(types[c.Name], " ", "") != strings.ReplaceAll(c.Type, " ", "") {
			m.Casts[c.Name] = c.Type
		}
	}
	return m
}

// into is the MV's SQL writing into another target table.
func (w *bench) into(table string) sqlgen.MV {
	s := *w.mv.Spec
	s.TargetTable = table
	m := w.mv
	m.Spec = &s
	return m
}

func (w *bench) exec(q string, args ...any) {
	w.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := w.ch.Exec(ctx, fmt.Sprintf(q, args...)); err != nil {
		w.b.Fatalf("%s: %v", fmt.Sprintf(q, args...), err)
	}
}

// benchSideBySide runs the methods of one iteration, in an order that
// rotates from one benchmark run to the next (-count 3), so that none is
// always first or last.
func benchSideBySide(methods ...func()) {
	k := int(benchRuns.Add(1)-1) % len(methods)
	for i := range methods {
		methods[(i+k)%len(methods)]()
	}
}

// baseline fills a fresh target with the spec's query over the whole source
// in one statement, checks it and drops it.
func (w *bench) baseline(table string) time.Duration { return w.statement(table, sqlgen.Range{}) }

// statement fills a fresh target with the spec's query over the key range
// rg (the whole source: no filter) in one statement, checks it and drops
// it. The range must cover every row.
func (w *bench) statement(table string, rg sqlgen.Range) time.Duration {
	m := w.into(table)
	w.create(m)
	q, err := m.Query(rg)
	if err != nil {
		w.b.Fatal(err)
	}
	start := time.Now()
	w.exec("INSERT INTO %s %s", sqlgen.Table(w.db, table), q)
	took := time.Since(start)
	w.checkAndDrop(table)
	return took
}

// batches fills a fresh target with key ranges of width keys, each the
// INSERT ... SELECT shirath sends for a batch, from Go, back to back. It
// does none of shirath's bookkeeping between batches (counting the range,
// recording progress in PostgreSQL), so it flatters small batches.
func (w *bench) batches(table string, width int64) time.Duration {
	m := w.into(table)
	w.create(m)
	start := time.Now()
	for lo := int64(0); lo < w.top; lo += width {
		hi := min(lo+width, w.top)
		q, err := m.BackfillBatch(sqlgen.Range{After: &lo, UpTo: &hi}, false)
		if err != nil {
			w.b.Fatal(err)
		}
		w.exec("%s", q)
	}
	took := time.Since(start)
	w.checkAndDrop(table)
	return took
}

func (w *bench) create(m sqlgen.MV) {
	q, err := m.CreateTarget(false)
	if err != nil {
		w.b.Fatal(err)
	}
	w.exec("%s", q)
}

// checkAndDrop fails the benchmark unless the target holds exactly the
// aggregate of the source, then drops it so that its background merges do
// not run during the next method.
func (w *bench) checkAndDrop(table string) {
	w.b.Helper()
	got := w.digest(fmt.Sprintf("SELECT category, sum(cnt) AS c, sum(total_price) AS s FROM %s GROUP BY category", sqlgen.Table(w.db, table)))
	if got != w.want {
		w.b.Fatalf("%s is not the aggregate of the source: %d categories, %d rows, hash %x; want %d, %d, %x",
			table, got.groups, got.rows, got.hash, w.want.groups, w.want.rows, w.want.hash)
	}
	w.exec("DROP TABLE %s", sqlgen.Table(w.db, table))
}

// sourceDigest sums up per-category rows (category, c, s): how many, the
// total of c, and an order-independent hash of every row, sums included to
// the cent.
type sourceDigest struct{ groups, rows, hash uint64 }

func (w *bench) digest(perCategory string) sourceDigest {
	w.b.Helper()
	return digestOn(w.b, w.ch, perCategory)
}

func digestOn(b *testing.B, conn driver.Conn, perCategory string) sourceDigest {
	b.Helper()
	var d sourceDigest
	q := "SELECT count(), sum(c), sum(cityHash64(category, c, toString(s))) FROM (" + perCategory + ")"
	if err := conn.QueryRow(context.Background(), q).Scan(&d.groups, &d.rows, &d.hash); err != nil {
		b.Fatalf("%s: %v", q, err)
	}
	return d
}

// timedLine is a line of shirath's stdout and the moment it arrived.
type timedLine struct {
	at   time.Time
	text string
}

type timedRun struct {
	lines  []timedLine
	total  time.Duration // the whole command
	stderr string
	maxRSS int64 // the process's peak resident set, in bytes (rusage)
}

func (r timedRun) stdout() string {
	var b strings.Builder
	for _, l := range r.lines {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

// runTimed runs the shirath binary built for the benchmarks to its end, with
// env added to the environment (logs at warn unless env says otherwise), and
// fails the benchmark if it fails.
func runTimed(b *testing.B, bin string, env []string, args ...string) timedRun {
	b.Helper()
	r, err := tryTimed(b, bin, env, args...)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// tryTimed is runTimed returning the command's failure, with its output.
func tryTimed(b *testing.B, bin string, env []string, args ...string) (timedRun, error) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	level := "warn"
	if os.Getenv("SHIRATH_BENCH_TRACE") != "" {
		level = "debug"
	}
	cmd.Env = append(append(os.Environ(), "SHIRATH_LOG_LEVEL="+level), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var r timedRun
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r.lines = append(r.lines, timedLine{time.Now(), sc.Text()})
	}
	err = cmd.Wait()
	r.total = time.Since(start)
	r.stderr = stderr.String()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024 // kilobytes on Linux
	}
	if err != nil {
		return r, fmt.Errorf("shirath %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, r.stdout(), r.stderr)
	}
	if v := os.Getenv("SHIRATH_BENCH_TRACE"); v != "" {
		text := fmt.Sprintf("shirath %s (%s):\n%s\nstderr (debug log):\n%s", strings.Join(args, " "), r.total.Round(time.Millisecond), r.trace(start), r.stderr)
		// The testing package cuts a long benchmark log: a directory keeps
		// every trace whole, one file per command.
		if st, err := os.Stat(v); err == nil && st.IsDir() {
			name := filepath.Join(v, fmt.Sprintf("%s-%s.trace", start.Format("150405.000"), filepath.Base(args[len(args)-1])))
			if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
				b.Fatal(err)
			}
			b.Logf("trace of shirath %s in %s", strings.Join(args, " "), name)
		} else {
			b.Log(text)
		}
	}
	return r, nil
}

// trace is the command's output with each line's time since start, for
// SHIRATH_BENCH_TRACE=1 runs: where a benchmark's seconds go.
func (r timedRun) trace(start time.Time) string {
	var b strings.Builder
	for _, l := range r.lines {
		fmt.Fprintf(&b, "%8.3fs %s\n", l.at.Sub(start).Seconds(), l.text)
	}
	return b.String()
}

// span is the backfill part of an apply's output for one MV: from its first
// backfill step line (emitted once the source's sorting key has been read;
// with shards backfilled at once, the first shard's) to its OPTIMIZE line
// (emitted once the last batch of every shard was recorded and, for a
// Replicated target, every replica was checked for parts ZooKeeper does not
// know).
type span struct {
	from, to   time.Time
	batches    int
	singlePass bool
}

func backfillSpan(lines []timedLine, mv string) span {
	var s span
	// Progress lines start with "db.name: "; the plan printed before them
	// holds the same SQL without that prefix.
	for _, l := range lines {
		event, ok := strings.CutPrefix(l.text, mv+": ")
		switch {
		case !ok:
		case s.from.IsZero() && (strings.HasPrefix(event, "backfill id <= ") || strings.Contains(event, "one server-side pass")):
			s.from = l.at
			s.singlePass = strings.Contains(event, "one server-side pass")
		case !s.from.IsZero() && strings.HasPrefix(event, "backfill ") && strings.Contains(event, " rows in "):
			s.batches++
		case !s.from.IsZero() && s.to.IsZero() && strings.HasPrefix(event, "OPTIMIZE TABLE "):
			s.to = l.at
		}
	}
	return s
}

type applyRun struct {
	backfill   time.Duration // from the backfill step's first line to the OPTIMIZE line
	total      time.Duration // the whole command
	maxRSS     int64         // shirath's peak resident set, in bytes
	batches    int
	singlePass bool
	out        string
}

// apply runs `shirath apply --auto-approve` on the spec alone, times the
// backfill from the moments its lines reach stdout, checks the target and
// drops the MV and its target.
//
// The backfill part runs from the step line (emitted once the source's
// sorting key has been read) to the OPTIMIZE line (emitted right after the
// last batch was recorded): every batch, the count of each batch's range and
// the progress writes to PostgreSQL. Before it, the apply also measures the
// insert rate (one second by design), fences, waits for the settle delay
// (1 s by default) and counts the rows to backfill; after it, OPTIMIZE
// FINAL. apply-s includes all of that, and process start and migrations.
func (w *bench) apply(name string) applyRun { return w.applyWith(name, "") }

// applyWith is apply with extra appended to the spec (a backfill block).
func (w *bench) applyWith(name, extra string) applyRun {
	w.b.Helper()
	dir := filepath.Join(w.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "spec.yaml"), []byte("database: "+w.db+"\n"+fmt.Sprintf(benchSpec, name)+extra), 0o644); err != nil {
		w.b.Fatal(err)
	}
	run := runTimed(w.b, w.bin, []string{"SHIRATH_CH_ADDR=" + w.addr, "SHIRATH_PG_URL=" + w.pg}, "apply", "--auto-approve", dir)
	sp := backfillSpan(run.lines, w.db+"."+name)
	r := applyRun{total: run.total, maxRSS: run.maxRSS, out: run.stdout(), batches: sp.batches, singlePass: sp.singlePass}
	if sp.from.IsZero() || sp.to.IsZero() || r.batches == 0 {
		w.b.Fatalf("shirath apply: no backfill step, batch or OPTIMIZE line in its output:\n%s", r.out)
	}
	r.backfill = sp.to.Sub(sp.from)
	w.exec("DROP TABLE %s", sqlgen.Table(w.db, name))
	w.checkAndDrop(name + "_data")
	return r
}
