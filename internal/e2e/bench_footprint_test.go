//go:build integration

package e2e

// Issue 11, point 5: shirath's memory during a large backfill, and the
// daemon's API latency while backfills run and its memory over many
// reconciles. No row passes through shirath: its footprint must not grow
// with the source.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/sqlgen"
)

const (
	footprintBackfills = 5
	footprintRate      = 200 // GET /api/mv/{name} per second
	footprintMVs       = 200
	// footprintReconciles is an hour of the daemon's default --resync (5m)
	// over footprintMVs up-to-date MVs: each is checked 12 times.
	footprintReconciles = footprintMVs * 12
	footprintWall       = 8 * time.Minute // the most the simulated hour may take (3m44s on a quiet machine)
	footprintWorkers    = 8
)

// BenchmarkFootprint (issue 11, point 5), 18.16 single node:
//
//   - apply-peak-rss-MB: the peak resident set (rusage) of `shirath apply`
//     backfilling the largest source of BenchmarkScale (80M rows, sorted by
//     the key);
//   - daemon-get-p50-ms, daemon-get-p99-ms: `shirath serve` backfilling 5
//     new MVs at once (--workers 5) of a 20M-row source while a client sends
//     GET /api/mv/{name} at 200 requests a second (open loop: a slow answer
//     does not slow the sender), over the requests sent while a backfill
//     ran;
//   - daemon-rss-*: the daemon's resident set while it reconciles 200
//     up-to-date MVs 2,400 times (an hour of the default --resync of 5m),
//     with --resync 1s and 8 workers so that the hour passes in minutes (or
//     as many reconciles as footprintWall allows: daemon-reconciles).
//
// Every target is checked against the aggregate of its source.
func BenchmarkFootprint(b *testing.B) {
	sizes := scaleSizes(b)
	rows := sizes[len(sizes)-1]
	w := newBench(b, "id", rows)
	var rss int64
	for i := 0; i < b.N; i++ {
		r := w.apply(fmt.Sprintf("rss_%d", i))
		b.Logf("apply of a %s-row backfill: peak RSS %.1f MB, backfill %s in %d batches", millions(rows), float64(r.maxRSS)/(1<<20), r.backfill.Round(time.Millisecond), r.batches)
		rss = max(rss, r.maxRSS)
	}
	w.exec("DROP TABLE %s", sqlgen.Table(w.db, "products"))
	b.ReportMetric(float64(rss)/(1<<20), "apply-peak-rss-MB")

	var lat []time.Duration
	for i := 0; i < b.N; i++ {
		lat = append(lat, daemonLatency(b, min(rows, 20_000_000), i)...)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(ms(lat[len(lat)/2]), "daemon-get-p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "daemon-get-p99-ms")
	b.ReportMetric(float64(len(lat)/b.N), "daemon-gets")

	first, last, peak, reconciles := daemonReconciles(b)
	b.ReportMetric(first, "daemon-rss-first-MB")
	b.ReportMetric(last, "daemon-rss-last-MB")
	b.ReportMetric(last/first, "daemon-rss-last/first")
	b.ReportMetric(peak, "daemon-rss-peak-MB")
	b.ReportMetric(float64(reconciles), "daemon-reconciles")
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

// daemon is a `shirath serve` started by a benchmark.
type daemon struct {
	cmd *exec.Cmd
	url string
	log string
}

func startBenchDaemon(b *testing.B, w *bench, args ...string) *daemon {
	b.Helper()
	cmd := exec.Command(w.bin, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "SHIRATH_CH_ADDR="+w.addr, "SHIRATH_PG_URL="+w.pg, "SHIRATH_LOG_LEVEL=warn")
	logf, err := os.Create(filepath.Join(w.dir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano())))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	d := &daemon{cmd: cmd, log: logf.Name()}
	u, ok := servingURL(out, time.Minute)
	if !ok {
		d.stop(b)
		b.Fatal("shirath serve did not start within a minute")
	}
	d.url = u
	return d
}

// stop stops the daemon as an operator does (SIGTERM) and waits.
func (d *daemon) stop(b *testing.B) {
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		d.cmd.Process.Kill()
		<-done
		b.Errorf("the daemon did not stop within 2 minutes of SIGTERM; log %s", d.log)
	}
}

// get is one GET /api/mv/{name}: when it was sent, how long its answer
// took, and the job status it read.
type get struct {
	sent   time.Time
	took   time.Duration
	status string
	err    error
}

// daemonLatency starts a daemon on 5 new specs of a source of rows rows and
// sends GET /api/mv/{name} (the 5 in turn) at footprintRate a second until
// every MV is complete; it returns the latencies of the requests sent while
// a backfill ran, after checking every target.
func daemonLatency(b *testing.B, rows, iter int) []time.Duration {
	w := newBench(b, "id", rows)
	names := make([]string, footprintBackfills)
	for i := range names {
		names[i] = fmt.Sprintf("bf%d_%d", iter, i)
	}
	dir := writeSpecs(b, filepath.Join(w.dir, fmt.Sprintf("latency%d", iter)), names, func(n string) string {
		return "database: " + w.db + "\n" + fmt.Sprintf(benchSpec, n)
	})
	d := startBenchDaemon(b, w, "--specs", dir, "--workers", strconv.Itoa(footprintBackfills), "--scan-interval", "1s")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var mu sync.Mutex
	var gets []get
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / footprintRate)
	deadline := time.Now().Add(15 * time.Minute)
	done := map[string]bool{} // the MVs an answer saw completed
	completed := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(done)
	}
	for k := 0; completed() < len(names); k++ {
		if time.Now().After(deadline) {
			d.stop(b)
			b.Fatalf("the 5 backfills did not complete within 15 minutes (%d completed); log %s", completed(), d.log)
		}
		<-tick.C
		name := names[k%len(names)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := getMV(client, d.url, w.db+"."+name)
			mu.Lock()
			defer mu.Unlock()
			gets = append(gets, g)
			if g.status == "completed" {
				done[name] = true
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	d.stop(b)
	// The window: from the first answer that saw a backfill running to the
	// last one.
	var from, to time.Time
	for _, g := range gets {
		if g.err != nil {
			b.Fatalf("GET /api/mv/{name} sent at %s failed: %v; log %s", g.sent.Format(time.TimeOnly), g.err, d.log)
		}
		if g.status == "backfilling" {
			if from.IsZero() || g.sent.Before(from) {
				from = g.sent
			}
			if g.sent.After(to) {
				to = g.sent
			}
		}
	}
	var lat []time.Duration
	for _, g := range gets {
		if !g.sent.Before(from) && !g.sent.After(to) {
			lat = append(lat, g.took)
		}
	}
	if len(lat) < footprintRate {
		b.Fatalf("only %d GETs were sent while a backfill ran (%s to %s): too short to measure", len(lat), from.Format(time.TimeOnly), to.Format(time.TimeOnly))
	}
	b.Logf("%d GETs in %s while backfills ran (%d in all)", len(lat), to.Sub(from).Round(time.Millisecond), len(gets))
	for _, n := range names {
		w.exec("DROP TABLE %s", sqlgen.Table(w.db, n))
		w.checkAndDrop(n + "_data")
	}
	w.exec("DROP TABLE %s", sqlgen.Table(w.db, "products"))
	return lat
}

func getMV(client *http.Client, url, key string) get {
	g := get{sent: time.Now()}
	resp, err := client.Get(url + "/api/mv/" + key)
	if err != nil {
		g.err = err
		return g
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	g.took = time.Since(g.sent)
	if err != nil || resp.StatusCode != http.StatusOK {
		g.err = fmt.Errorf("status %d, %v: %.300s", resp.StatusCode, err, body)
		return g
	}
	var v struct {
		Job struct {
			Status string `json:"status"`
		} `json:"job"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		g.err = fmt.Errorf("%v: %.300s", err, body)
	}
	g.status = v.Job.Status
	return g
}

// daemonReconciles applies footprintMVs MVs of a small source, then runs
// the daemon on them with --resync 1s until it has reconciled them
// footprintReconciles times (or footprintWall has passed), and returns its
// resident set (MB) once every MV was reconciled once, at the end, and at
// its peak, and the reconciles it made.
func daemonReconciles(b *testing.B) (first, last, peak float64, reconciles int64) {
	w := newBench(b, "id", 100_000)
	names := make([]string, footprintMVs)
	for i := range names {
		names[i] = fmt.Sprintf("rc_%03d", i)
	}
	dir := writeSpecs(b, filepath.Join(w.dir, "reconciles"), names, func(n string) string {
		return "database: " + w.db + "\n" + fmt.Sprintf(benchSpec, n)
	})
	start := time.Now()
	runTimed(b, w.bin, []string{"SHIRATH_CH_ADDR=" + w.addr, "SHIRATH_PG_URL=" + w.pg}, "apply", "--auto-approve", "-parallelism=20", dir)
	b.Logf("setup: %d MVs applied in %s", footprintMVs, time.Since(start).Round(time.Second))
	// A reconcile of an up-to-date MV mostly waits for the servers: more
	// workers than the default 2 make more of them in the wall time.
	d := startBenchDaemon(b, w, "--specs", dir, "--resync", "1s", "--scan-interval", "10s", "--workers", strconv.Itoa(footprintWorkers))
	defer d.stop(b)
	start = time.Now()
	var lines []string
	for {
		time.Sleep(5 * time.Second)
		n, err := reconcileCount(d.url)
		if err != nil {
			b.Fatalf("read the daemon's metrics: %v; log %s", err, d.log)
		}
		rss, hwm, err := procMemory(d.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		mb := float64(rss) / (1 << 20)
		peak = float64(hwm) / (1 << 20)
		if first == 0 && n >= footprintMVs {
			first = mb
		}
		last, reconciles = mb, n
		lines = append(lines, fmt.Sprintf("%s %d %.0fm %.1f", time.Since(start).Round(time.Second), n, float64(n)/footprintMVs*5, mb))
		if n >= footprintReconciles || time.Since(start) > footprintWall {
			break
		}
	}
	// One line: a benchmark's log is cut after 10 lines.
	b.Logf("daemon RSS over reconciles of %d up-to-date MVs (--resync 1s, --workers %d; the default 5m resync makes 12 per MV an hour), "+
		"as wall time, reconciles, simulated minutes, RSS MB: %s; peak %.1f MB", footprintMVs, footprintWorkers, strings.Join(lines, ", "), peak)
	if first == 0 {
		b.Fatalf("the daemon did not reconcile each of the %d MVs once in %s (%d reconciles); log %s", footprintMVs, footprintWall, reconciles, d.log)
	}
	return first, last, peak, reconciles
}

// reconcileCount sums shirath_reconcile_total over its results.
func reconcileCount(url string) (int64, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "shirath_reconcile_total{"); ok {
			f := strings.Fields(rest)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, fmt.Errorf("%q: %w", sc.Text(), err)
			}
			n += int64(v)
		}
	}
	return n, sc.Err()
}

// procMemory reads a process's resident set and its peak (VmRSS, VmHWM),
// in bytes.
func procMemory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q: %w", f.Name(), v, err)
		}
		if k == "VmRSS" {
			rss = kb * 1024
		} else {
			hwm = kb * 1024
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in %s", f.Name())
	}
	return rss, hwm, nil
}
