//go:build integration

package e2e

// Daemon benchmark of issue 11, point 5: the API's latency while backfills
// run, and the daemon's memory and goroutines over many reconciles.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/internal/testenv"
)

const (
	daemonMVs       = 200 // up-to-date MVs the daemon reconciles
	daemonBackfills = 5   // new MVs it backfills while the API is read
	daemonRate      = 200 // GET /api/mv/{name} per second
	// An hour of the daemon's defaults: every MV resynced every 5 minutes.
	hourOfReconciles = daemonMVs * 60 / 5
	// reconcileWindow bounds the simulated hour's wall time.
	reconcileWindow = 5 * time.Minute
)

// BenchmarkDaemon (issue 11, point 5), 18.16 single node. 200 MVs over a
// small source are applied first; then `shirath serve --workers 5
// --resync 1s --scan-interval 250ms` is started on their specs plus 5 new
// MVs over a 10,000,000-row source (batches of at most 250,000 keys, so that
// their backfills last). While those backfills run, GET /api/mv/{name} is
// sent at 200 requests/s, spread over the 205 MVs (open loop: a slow answer
// does not delay the next request); the latency of each request sent while
// at least one backfill ran is kept. Then the daemon keeps reconciling until
// it has done an hour's worth of the default resync (200 MVs every 5
// minutes: 2,400 reconciles) or for 5 minutes, whichever comes first,
// sampling its RSS (/proc/PID/status VmRSS)
// and goroutines (go_goroutines of /metrics) every 5 s; every sample is
// logged. The 5 new targets must be exact.
func BenchmarkDaemon(b *testing.B) {
	w := daemonSetup(b)
	conn, db, dir, names, chEnv, bin := w.conn, w.db, w.dir, w.names, w.env, benchBinary(b)
	for range b.N {
		// New MVs each iteration; those of the previous ones stay, complete.
		w.iter++
		i := w.iter
		var fills []string
		for k := 0; k < daemonBackfills; k++ {
			fills = append(fills, fmt.Sprintf("fill_%d_%d", i, k))
		}
		writeSpecs(b, dir, fills, func(name string) string {
			return "database: " + db + "\n" + fmt.Sprintf(benchSpec, name) + "backfill:\n  max_batch_rows: 250000\n"
		})
		d := startBenchDaemon(b, bin, chEnv, "serve", "--listen", "127.0.0.1:0", "--specs", dir,
			"--workers", strconv.Itoa(daemonBackfills), "--resync", "1s", "--scan-interval", "250ms")
		all := append(append([]string{}, fills...), names...)
		lat, most := d.loadWhileBackfilling(b, db, daemonMVs+daemonBackfills*i, all)
		for _, name := range fills {
			got := digestOn(b, conn, fmt.Sprintf("SELECT category, sum(cnt) AS c, sum(total_price) AS s FROM %s GROUP BY category", sqlgen.Table(db, name+"_data")))
			if got != w.want {
				b.Fatalf("%s is not the aggregate of the source: %+v, want %+v", name, got, w.want)
			}
		}
		sims := d.reconcileHour(b)
		d.stop()
		b.ReportMetric(0, "ns/op")
		reportLoad(b)
		b.ReportMetric(percentile(lat, 50)*1000, "get-p50-ms")
		b.ReportMetric(percentile(lat, 99)*1000, "get-p99-ms")
		b.ReportMetric(float64(len(lat)), "gets-during-backfills")
		b.ReportMetric(float64(most), "backfills-at-once")
		b.ReportMetric(float64(sims.reconciles), "reconciles")
		// Minutes of the default resync those reconciles stand for.
		b.ReportMetric(math.Round(float64(sims.reconciles)/(daemonMVs/5.0)*10)/10, "simulated-minutes")
		b.ReportMetric(math.Round(sims.took.Seconds()), "simulation-wall-s")
		b.ReportMetric(sims.rssFirst, "rss-first-MB")
		b.ReportMetric(sims.rssLast, "rss-last-MB")
		b.ReportMetric(sims.rssMax, "rss-max-MB")
		b.ReportMetric(sims.goFirst, "goroutines-first")
		b.ReportMetric(sims.goLast, "goroutines-last")
		b.ReportMetric(sims.rssLast/sims.rssFirst, "rss-last/first")
	}
}

// daemonWorld is BenchmarkDaemon's setup: the sources and the 200 MVs
// applied over the small one. It takes minutes, so every run of the
// benchmark (-count 3) shares it; it is dropped when the test binary ends.
type daemonWorld struct {
	conn  clickhouse.Conn
	db    string
	dir   string
	names []string
	env   []string
	want  sourceDigest
	iter  int // iterations so far: each backfills new MVs
}

var (
	daemonOnce  sync.Once
	daemonState *daemonWorld
)

// lateCleanup defers a setup's cleanups to the end of the test binary.
type lateCleanup struct{ testing.TB }

func (lateCleanup) Cleanup(f func()) { afterBenchmarks(f) }

func daemonSetup(b *testing.B) *daemonWorld {
	daemonOnce.Do(func() {
		env := testenv.Load(b)
		s := env.Singles(b)[0]
		late := lateCleanup{b}
		conn, db := s.DB(late)
		w := &daemonWorld{conn: conn, db: db, env: []string{"SHIRATH_CH_ADDR=" + s.Addr, "SHIRATH_PG_URL=" + env.PostgresDB(late)}}
		dir, err := os.MkdirTemp("", "shirath-bench-daemon")
		if err != nil {
			b.Fatal(err)
		}
		afterBenchmarks(func() { os.RemoveAll(dir) })
		w.dir = dir
		execOn(b, conn, nil, fmt.Sprintf("CREATE TABLE %s.small (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = MergeTree() ORDER BY id", db))
		execOn(b, conn, nil, fmt.Sprintf("INSERT INTO %s.small SELECT number + 1, concat('cat', toString(number %% 10)), toDecimal64(number %% 1000, 2) / 10, now() FROM numbers(1000)", db))
		const bigRows = 10_000_000
		execOn(b, conn, nil, fmt.Sprintf("CREATE TABLE %s.products (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = MergeTree() ORDER BY id", db))
		execOn(b, conn, nil, fmt.Sprintf("INSERT INTO %s.products SELECT number + 1, concat('cat', toString(number %% %d)), toDecimal64(number %% 1000, 2) / 10, toDateTime('2024-01-01 00:00:00') + number FROM numbers(%d)", db, benchCategories, bigRows))
		execOn(b, conn, nil, fmt.Sprintf("OPTIMIZE TABLE %s.products FINAL", db))
		w.want = digestOn(b, conn, fmt.Sprintf("SELECT category, count() AS c, sum(price) AS s FROM %s.products GROUP BY category", db))
		for i := 0; i < daemonMVs; i++ {
			w.names = append(w.names, fmt.Sprintf("mv_%03d", i))
		}
		writeSpecs(b, dir, w.names, func(name string) string {
			return "database: " + db + "\n" + strings.Replace(fmt.Sprintf(benchSpec, name), "source_table: products", "source_table: small", 1)
		})
		start := time.Now()
		runTimed(b, benchBinary(b), w.env, "apply", "--auto-approve", "-parallelism=20", dir)
		b.Logf("setup: %d MVs applied in %s (once per test binary)", daemonMVs, time.Since(start).Round(time.Second))
		daemonState = w
	})
	if daemonState == nil {
		b.Fatal("the daemon benchmark's setup failed in an earlier run")
	}
	return daemonState
}

type benchDaemon struct {
	cmd    *exec.Cmd
	url    string
	cancel func()
}

func startBenchDaemon(b *testing.B, bin string, env []string, args ...string) *benchDaemon {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "SHIRATH_LOG_LEVEL=warn"), env...)
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	d := &benchDaemon{cmd: cmd, cancel: cancel}
	b.Cleanup(d.stop)
	d.url = serveURL(b, out)
	return d
}

func (d *benchDaemon) stop() {
	if d.cancel != nil {
		d.cancel()
		d.cmd.Wait()
		d.cancel = nil
	}
}

// loadWhileBackfilling sends GET /api/mv/{name} over names at daemonRate
// until the daemon has completed jobs of all MVs (at most 10 minutes; its
// /metrics: shirath_mv_jobs by status), and returns the latency in seconds
// of each request sent while a job was backfilling or optimizing, and the
// most doing so at once.
func (d *benchDaemon) loadWhileBackfilling(b *testing.B, db string, all int, names []string) ([]float64, int) {
	b.Helper()
	var running atomic.Int64
	most := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			n, err1 := d.metric(`shirath_mv_jobs{status="backfilling"}`)
			o, err2 := d.metric(`shirath_mv_jobs{status="optimizing"}`)
			c, err3 := d.metric(`shirath_mv_jobs{status="completed"}`)
			if err1 == nil && err2 == nil && err3 == nil {
				running.Store(int64(n + o))
				most = max(most, int(n+o))
				if int(c) >= all {
					return
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	var mu sync.Mutex
	var lat []float64
	var failed atomic.Int64
	var firstErr error
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / daemonRate)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-done:
			wg.Wait()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d GET /api/mv requests failed, the first with: %v", n, firstErr)
			}
			if len(lat) == 0 {
				b.Fatal("no request was sent while a backfill ran")
			}
			return lat, most
		case <-tick.C:
		}
		during := running.Load() > 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := client.Get(d.url + "/api/mv/" + db + "." + names[i%len(names)])
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s", resp.Status)
				}
			}
			took := time.Since(start).Seconds()
			if err != nil {
				if failed.Add(1) == 1 {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
				return
			}
			if during {
				mu.Lock()
				lat = append(lat, took)
				mu.Unlock()
			}
		}()
	}
}

type reconcileSim struct {
	reconciles                int64
	took                      time.Duration
	rssFirst, rssLast, rssMax float64 // MB
	goFirst, goLast           float64
}

// reconcileHour lets the daemon reconcile until it has done an hour's worth
// of the default resync on top of what it did so far, or for at most
// reconcileWindow (on a loaded machine a reconcile, which reads the server,
// can take seconds: the reconciles done are reported), sampling its RSS and
// goroutines every 5 s; every sample is logged.
func (d *benchDaemon) reconcileHour(b *testing.B) reconcileSim {
	b.Helper()
	var sim reconcileSim
	startCount := d.mustMetric(b, "shirath_reconcile_total")
	start := time.Now()
	for k := 0; ; k++ {
		count := d.mustMetric(b, "shirath_reconcile_total") - startCount
		rss := vmRSS(b, d.cmd.Process.Pid)
		gor := d.mustMetric(b, "go_goroutines")
		b.Logf("daemon after %3.0f s: %5.0f reconciles, RSS %.1f MB, %v goroutines", time.Since(start).Seconds(), count, rss, gor)
		if k == 0 {
			sim.rssFirst, sim.goFirst = rss, gor
		}
		sim.rssLast, sim.goLast, sim.rssMax = rss, gor, max(sim.rssMax, rss)
		sim.reconciles, sim.took = int64(count), time.Since(start)
		if count >= hourOfReconciles || time.Since(start) >= reconcileWindow {
			return sim
		}
		time.Sleep(5 * time.Second)
	}
}

// metric reads the sum of the samples of a metric family (name) or the
// one sample of a series (name{labels}) from the daemon's /metrics.
func (d *benchDaemon) metric(name string) (float64, error) {
	resp, err := http.Get(d.url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+" ") && (strings.Contains(name, "{") || !strings.HasPrefix(l, name+"{")) {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("/metrics: %q: %v", l, err)
		}
		sum += v
		found = true
	}
	if !found && !strings.Contains(name, "{") {
		return 0, fmt.Errorf("/metrics has no %s", name)
	}
	return sum, sc.Err()
}

func (d *benchDaemon) mustMetric(b *testing.B, name string) float64 {
	b.Helper()
	v, err := d.metric(name)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// vmRSS reads the resident set of process pid, in MB.
func vmRSS(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// percentile is the p-th percentile (nearest rank) of v.
func percentile(v []float64, p float64) float64 {
	s := append([]float64{}, v...)
	sort.Float64s(s)
	k := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(k, len(s)-1))]
}
