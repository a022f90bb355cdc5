//go:build integration && soak

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sample is one look at a running daemon.
type sample struct {
	at         time.Duration // since the soak started
	rss        int64         // VmRSS of /proc/<pid>/status, bytes
	heap       int64         // go_memstats_heap_inuse_bytes of /metrics
	goroutines int64         // go_goroutines of /metrics
	jobs       string        // MV jobs by status, from /api/mv
}

// sampler records a daemon's memory and goroutines every interval and
// prints a line per sample.
type sampler struct {
	t       *testing.T
	label   string
	pid     int
	url     string
	start   time.Time
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    sync.WaitGroup
}

func startSampler(t *testing.T, label string, pid int, url string, start time.Time, every time.Duration) *sampler {
	s := &sampler{t: t, label: label, pid: pid, url: url, start: start, stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.take()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) Stop() {
	close(s.stop)
	s.done.Wait()
	s.take()
}

func (s *sampler) take() {
	smp := sample{at: time.Since(s.start).Round(time.Second), rss: -1, heap: -1, goroutines: -1}
	var errs []string
	if v, _, err := procMemory(s.pid); err != nil {
		errs = append(errs, err.Error())
	} else {
		smp.rss = v
	}
	if m, err := scrapeMetrics(s.url); err != nil {
		errs = append(errs, err.Error())
	} else {
		smp.heap, smp.goroutines = int64(m["go_memstats_heap_inuse_bytes"]), int64(m["go_goroutines"])
	}
	if j, err := jobsByStatus(s.url); err != nil {
		errs = append(errs, err.Error())
	} else {
		smp.jobs = j
	}
	s.mu.Lock()
	s.samples = append(s.samples, smp)
	s.mu.Unlock()
	s.t.Logf("soak %7s %-8s rss %6.1f MiB  heap %6.1f MiB  goroutines %4d  jobs %s %s",
		smp.at, s.label, mib(smp.rss), mib(smp.heap), smp.goroutines, smp.jobs, strings.Join(errs, "; "))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// daemonGet reads url+path with read; 10 s at most.
func daemonGet(url, path string, read func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// scrapeMetrics reads the unlabelled samples of /metrics (text format).
func scrapeMetrics(url string) (map[string]float64, error) {
	m := map[string]float64{}
	if err := daemonGet(url, "/metrics", func(r io.Reader) error { return scanMetrics(r, m) }); err != nil {
		return nil, err
	}
	for _, want := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes"} {
		if _, ok := m[want]; !ok {
			return nil, fmt.Errorf("/metrics has no %s", want)
		}
	}
	return m, nil
}

func scanMetrics(r io.Reader, m map[string]float64) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			m[name] = f
		}
	}
	return sc.Err()
}

// soakJob is what the soak reads of a job from GET /api/mv.
type soakJob struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Error     string `json:"error_message"`
	Reconcile struct {
		State   string `json:"state"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"reconcile"`
}

func apiJobs(url string) ([]soakJob, error) {
	var body struct {
		Jobs []soakJob `json:"jobs"`
	}
	err := daemonGet(url, "/api/mv", func(r io.Reader) error { return json.NewDecoder(r).Decode(&body) })
	return body.Jobs, err
}

// jobsByStatus is "completed=19 backfilling=1".
func jobsByStatus(url string) (string, error) {
	jobs, err := apiJobs(url)
	if err != nil {
		return "", err
	}
	n := map[string]int{}
	for _, j := range jobs {
		n[j.Status]++
	}
	var parts []string
	for st, c := range n {
		parts = append(parts, fmt.Sprintf("%s=%d", st, c))
	}
	sort.Strings(parts)
	return strings.Join(parts, " "), nil
}

// check judges whether the daemon stayed flat. The first quarter of the run is warm-up (40 MVs
// are created and backfilled, connection pools fill, the runtime sizes
// its heap); the rest is split in an early and a late half. A leak raises
// the floor: even the lowest late sample exceeds the early ones. Spikes
// (a batch, a rebuild, a node coming back) do not move a floor, so the
// lowest late sample is compared with the early samples:
//
//   - goroutines: the lowest late count may not exceed the highest early
//     count. A daemon's goroutines are a fixed set (HTTP server, scanner,
//     workers, pools) plus those of the reconciles running at that moment;
//     one leaked per reconcile (each MV is reconciled every --resync, 1m)
//     would add about 20 a minute and cross it within the late half.
//   - Go heap in use: the lowest late value may be at most 1.5x the lowest
//     early value plus 4 MiB. Between two collections the heap swings up to
//     2x its live size (GOGC=100), so floors of a flat heap stay well within
//     1.5x of each other; 4 MiB covers a small heap whose floor moves by a
//     few buffers.
//   - RSS: the lowest late value may be at most 1.25x the highest early
//     value. The runtime returns freed pages to the system slowly, so RSS
//     keeps a peak's size for minutes; what may not happen is a late floor
//     above every early peak by a quarter.
//
// check fails the test when the samples grew beyond these bounds; it
// prints the windows' figures either way.
func (s *sampler) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	all := slices.Clone(s.samples)
	s.mu.Unlock()
	var valid []sample
	for _, x := range all {
		if x.rss >= 0 && x.heap >= 0 && x.goroutines >= 0 {
			valid = append(valid, x)
		}
	}
	if len(valid) < 8 {
		t.Errorf("%s: %d complete samples, too few to judge memory and goroutines (the run needs at least 8 sample intervals)", s.label, len(valid))
		return
	}
	warm := len(valid) / 4
	mid := warm + (len(valid)-warm)/2
	early, late := valid[warm:mid], valid[mid:]
	minOf := func(xs []sample, f func(sample) int64) int64 {
		v := f(xs[0])
		for _, x := range xs[1:] {
			v = min(v, f(x))
		}
		return v
	}
	maxOf := func(xs []sample, f func(sample) int64) int64 {
		v := f(xs[0])
		for _, x := range xs[1:] {
			v = max(v, f(x))
		}
		return v
	}
	rss := func(x sample) int64 { return x.rss }
	heap := func(x sample) int64 { return x.heap }
	gor := func(x sample) int64 { return x.goroutines }
	t.Logf("%s: early window %s-%s (%d samples), late window %s-%s (%d samples)", s.label,
		early[0].at, early[len(early)-1].at, len(early), late[0].at, late[len(late)-1].at, len(late))
	t.Logf("%s: rss early %.1f-%.1f MiB, late %.1f-%.1f MiB; bound: late min <= 1.25 x early max = %.1f MiB", s.label,
		mib(minOf(early, rss)), mib(maxOf(early, rss)), mib(minOf(late, rss)), mib(maxOf(late, rss)), 1.25*mib(maxOf(early, rss)))
	t.Logf("%s: heap in use early %.1f-%.1f MiB, late %.1f-%.1f MiB; bound: late min <= 1.5 x early min + 4 MiB = %.1f MiB", s.label,
		mib(minOf(early, heap)), mib(maxOf(early, heap)), mib(minOf(late, heap)), mib(maxOf(late, heap)), 1.5*mib(minOf(early, heap))+4)
	t.Logf("%s: goroutines early %d-%d, late %d-%d; bound: late min <= early max = %d", s.label,
		minOf(early, gor), maxOf(early, gor), minOf(late, gor), maxOf(late, gor), maxOf(early, gor))
	if l, e := minOf(late, rss), maxOf(early, rss); float64(l) > 1.25*float64(e) {
		t.Errorf("%s: RSS grew: the late floor %.1f MiB is above 1.25x the early peak %.1f MiB", s.label, mib(l), mib(e))
	}
	if l, e := minOf(late, heap), minOf(early, heap); float64(l) > 1.5*float64(e)+4<<20 {
		t.Errorf("%s: Go heap grew: the late floor %.1f MiB is above 1.5x the early floor %.1f MiB + 4 MiB", s.label, mib(l), mib(e))
	}
	if l, e := minOf(late, gor), maxOf(early, gor); l > e {
		t.Errorf("%s: goroutines grew: the late floor %d is above the early peak %d", s.label, l, e)
	}
}
