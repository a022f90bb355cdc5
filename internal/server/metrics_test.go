package server

import (
	"context"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/state"
)

// scrape serves reg as /metrics does and returns the text.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	w := httptest.NewRecorder()
	metricsHandler(reg).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 {
		t.Fatalf("/metrics: %d %s", w.Code, w.Body)
	}
	return w.Body.String()
}

func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%v:\n%s", err, text)
	}
	return fams
}

func TestMetricsText(t *testing.T) {
	m := newMetrics(func(context.Context) (map[state.Status]int, error) {
		return map[state.Status]int{state.StatusCompleted: 2}, nil
	})
	m.begin("db.mv", 100)
	m.event(executor.Event{Kind: executor.EventStep, MV: "db.mv", Processed: 100})
	m.event(executor.Event{Kind: executor.EventProgress, MV: "db.mv", Processed: 1100})
	m.event(executor.Event{Kind: executor.EventProgress, MV: "db.mv", Processed: 1600})
	m.event(executor.Event{Kind: executor.EventProgress, MV: "db.other", Processed: 50}) // no begin
	m.reconciled("ok")
	m.reconcileError(CondBlocked)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	out := scrape(t, reg)
	for _, want := range []string{
		"# TYPE shirath_mv_jobs gauge\n",
		`shirath_mv_jobs{status="completed"} 2` + "\n",
		`shirath_mv_jobs{status="pending"} 0` + "\n",
		"shirath_backfill_rows_total 1500\n",
		"# TYPE shirath_backfill_batch_duration_seconds histogram\n",
		`shirath_backfill_batch_duration_seconds_bucket{le="0.05"} 3` + "\n",
		`shirath_backfill_batch_duration_seconds_bucket{le="+Inf"} 3` + "\n",
		"shirath_backfill_batch_duration_seconds_count 3\n",
		`shirath_reconcile_total{result="ok"} 1` + "\n",
		`shirath_reconcile_errors_total{kind="blocked"} 1` + "\n",
		`shirath_reconcile_errors_total{kind="error"} 0` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	// Every sample line is "name{labels} value" or "name value".
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "# HELP ") || strings.HasPrefix(l, "# TYPE ") {
			continue
		}
		if f := strings.Fields(l); len(f) != 2 || !strings.HasPrefix(f[0], "shirath_") {
			t.Errorf("bad sample line %q", l)
		}
	}
}

// The families, types, help and labels of the hand-written exposition that
// client_golang replaced, and the process and Go runtime collectors.
func TestMetricsFamilies(t *testing.T) {
	w := serve(t, testServer(""), "GET", "/metrics", "", "")
	fams := parseMetrics(t, w.Body.String())
	for _, want := range []struct {
		name   string
		typ    dto.MetricType
		help   string
		labels []string // of every sample, le aside
	}{
		{"shirath_backfill_rows_total", dto.MetricType_COUNTER, "Source rows backfilled by this process.", nil},
		{"shirath_backfill_batch_duration_seconds", dto.MetricType_HISTOGRAM, "Wall time of backfill batches (one executor progress event to the next).", nil},
		{"shirath_reconcile_errors_total", dto.MetricType_COUNTER, "Reconcile errors by kind: error and locked are retried, the others are terminal.", []string{"kind"}},
	} {
		f := fams[want.name]
		if f == nil {
			t.Errorf("no %s", want.name)
			continue
		}
		if f.GetType() != want.typ || f.GetHelp() != want.help {
			t.Errorf("%s: %s %q, want %s %q", want.name, f.GetType(), f.GetHelp(), want.typ, want.help)
		}
		for _, m := range f.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
			if strings.Join(names, ",") != strings.Join(want.labels, ",") {
				t.Errorf("%s: labels %v, want %v", want.name, names, want.labels)
			}
		}
	}
	if f := fams["shirath_backfill_batch_duration_seconds"]; f != nil {
		var bounds []float64
		for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
		if len(bounds) != len(batchBuckets)+1 || !slices.Equal(bounds[:len(batchBuckets)], batchBuckets) || !math.IsInf(bounds[len(batchBuckets)], 1) {
			t.Errorf("buckets %v, want %v", bounds, batchBuckets)
		}
	}
	var kinds []string
	for _, m := range fams["shirath_reconcile_errors_total"].GetMetric() {
		kinds = append(kinds, m.GetLabel()[0].GetValue())
	}
	if strings.Join(kinds, ",") != "blocked,error,invalid,locked,needs_attention,paused" {
		t.Errorf("error kinds exposed before any error: %v", kinds)
	}
	// The reconcile counter has no sample before a reconcile, as before:
	// its help and type come with the first one.
	if _, ok := fams["shirath_reconcile_total"]; ok {
		t.Errorf("shirath_reconcile_total before any reconcile")
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "go_gc_duration_seconds", "go_info",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
}

// The job gauge and the reconcile counter, with a store to read.
func TestMetricsJobsAndReconciles(t *testing.T) {
	m := newMetrics(func(context.Context) (map[state.Status]int, error) {
		return map[state.Status]int{state.StatusBackfilling: 1}, nil
	})
	m.reconciled("ok")
	reg := newRegistry(m)
	fams := parseMetrics(t, scrape(t, reg))
	jobs := fams["shirath_mv_jobs"]
	if jobs.GetType() != dto.MetricType_GAUGE || jobs.GetHelp() != "MV jobs by status; specs not started yet count as pending." {
		t.Fatalf("shirath_mv_jobs: %s %q", jobs.GetType(), jobs.GetHelp())
	}
	got := map[string]float64{}
	for _, s := range jobs.GetMetric() {
		if l := s.GetLabel(); len(l) != 1 || l[0].GetName() != "status" {
			t.Fatalf("labels %v", l)
		}
		got[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
	}
	if len(got) != len(state.Statuses) || got["backfilling"] != 1 || got["pending"] != 0 {
		t.Fatalf("shirath_mv_jobs %v", got)
	}
	rec := fams["shirath_reconcile_total"]
	if rec.GetType() != dto.MetricType_COUNTER || rec.GetHelp() != "Reconciliations by result." ||
		len(rec.GetMetric()) != 1 || rec.GetMetric()[0].GetLabel()[0].GetName() != "result" || rec.GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Fatalf("shirath_reconcile_total: %v", rec)
	}
	if fams["go_goroutines"] == nil || fams["process_cpu_seconds_total"] == nil {
		t.Fatal("no runtime or process metrics")
	}
}
