package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/state"
)

// metrics are the daemon's own metric families. They are a
// prometheus.Collector, registered with the process and Go runtime
// collectors in a registry of the server's own (see newRegistry), so that two
// servers in one process (the tests) never share or collide on a metric.
type metrics struct {
	// jobs counts the MVs by status at scrape time; an error leaves the
	// family out of the scrape rather than reporting zeros.
	jobs func(ctx context.Context) (map[state.Status]int, error)

	jobsDesc   *prometheus.Desc
	rows       prometheus.Counter
	batch      prometheus.Histogram
	reconciles *prometheus.CounterVec
	errors     *prometheus.CounterVec
	// Refreshable MVs, as of their last reconcile.
	refreshLast   *prometheus.GaugeVec
	refreshFailed *prometheus.GaugeVec

	mu  sync.Mutex
	mvs map[string]*mvProgress
}

type mvProgress struct {
	processed int64     // the job's processed rows at the last event
	at        time.Time // time of the last event: a batch runs from one event to the next
}

// batchBuckets are the upper bounds (seconds) of the batch duration
// histogram, around the executor's 2s target.
var batchBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60}

// errorKinds are the values of shirath_reconcile_errors_total's label, all
// exposed from the start so that a rate over them works before the first
// error.
var errorKinds = []string{"error", "locked", CondBlocked, CondInvalid, CondNeedsAttention, CondPaused}

// scrapeTimeout bounds the job store read of one scrape.
const scrapeTimeout = 5 * time.Second

func newMetrics(jobs func(ctx context.Context) (map[state.Status]int, error)) *metrics {
	m := &metrics{
		jobs: jobs,
		jobsDesc: prometheus.NewDesc("shirath_mv_jobs",
			"MV jobs by status; specs not started yet count as pending.", []string{"status"}, nil),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shirath_backfill_rows_total",
			Help: "Source rows backfilled by this process.",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shirath_backfill_batch_duration_seconds",
			Help:    "Wall time of backfill batches (one executor progress event to the next).",
			Buckets: batchBuckets,
		}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shirath_reconcile_total",
			Help: "Reconciliations by result.",
		}, []string{"result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shirath_reconcile_errors_total",
			Help: "Reconcile errors by kind: error and locked are retried, the others are terminal.",
		}, []string{"kind"}),
		refreshLast: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shirath_refresh_last_success_timestamp_seconds",
			Help: "Unix time of a refreshable MV's last successful refresh (0: none yet).",
		}, []string{"mv"}),
		refreshFailed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shirath_refresh_failing",
			Help: "1 when a refreshable MV's last refresh failed (system.view_refreshes.exception is set).",
		}, []string{"mv"}),
		mvs: map[string]*mvProgress{},
	}
	for _, k := range errorKinds {
		m.errors.WithLabelValues(k)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.jobsDesc
	m.rows.Describe(ch)
	m.batch.Describe(ch)
	m.reconciles.Describe(ch)
	m.errors.Describe(ch)
	m.refreshLast.Describe(ch)
	m.refreshFailed.Describe(ch)
}

// Collect implements prometheus.Collector. The job gauge is read from the
// job store on every scrape: the store, not this process, knows every MV.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	if m.jobs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
		counts, err := m.jobs(ctx)
		cancel()
		if err == nil {
			for _, st := range state.Statuses {
				ch <- prometheus.MustNewConstMetric(m.jobsDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
			}
		}
	}
	m.rows.Collect(ch)
	m.batch.Collect(ch)
	m.reconciles.Collect(ch)
	m.errors.Collect(ch)
	m.refreshLast.Collect(ch)
	m.refreshFailed.Collect(ch)
}

// refreshed records a refreshable MV's state.
func (m *metrics) refreshed(mv string, st *chclient.RefreshState) {
	var last float64
	if st.LastSuccess != nil {
		last = float64(st.LastSuccess.Unix())
	}
	failing := 0.0
	if st.Exception != "" {
		failing = 1
	}
	m.refreshLast.WithLabelValues(mv).Set(last)
	m.refreshFailed.WithLabelValues(mv).Set(failing)
}

// newRegistry is the registry /metrics serves: the daemon's metrics and the
// process and Go runtime collectors.
func newRegistry(m *metrics) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m,
	)
	return reg
}

// metricsHandler serves reg in the exposition format the scraper asks for
// (the text format by default). A collector that fails does not fail the
// scrape: the rest is served.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// begin records where an MV's backfill stands before an apply, so that
// rows are counted from there.
func (m *metrics) begin(mv string, processed int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mvs[mv] = &mvProgress{processed: processed, at: time.Now()}
}

// event counts the rows of a finished batch (the growth of the job's
// processed rows) and its duration (since the previous event of the MV: the
// step that started the backfill, or the previous batch).
func (m *metrics) event(ev executor.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.mvs[ev.MV]
	if p == nil {
		p = &mvProgress{processed: ev.Processed, at: time.Now()}
		m.mvs[ev.MV] = p
	}
	now := time.Now()
	if ev.Kind == executor.EventProgress {
		d := ev.Processed - p.processed
		if d < 0 { // the backfill was counted again from zero
			d = ev.Processed
		}
		m.rows.Add(float64(d))
		m.batch.Observe(now.Sub(p.at).Seconds())
	}
	p.processed = ev.Processed
	p.at = now
}

func (m *metrics) reconciled(result string) {
	m.reconciles.WithLabelValues(result).Inc()
}

func (m *metrics) reconcileError(kind string) {
	m.errors.WithLabelValues(kind).Inc()
}

// jobCounts counts the MVs by status for the job gauge: every job, and every
// stored spec without a job as pending.
func (s *Server) jobCounts(ctx context.Context) (map[state.Status]int, error) {
	jobs, err := s.store.ListJobs(ctx)
	if err != nil {
		s.log.Warn("metrics: list jobs", "error", err)
		return nil, err
	}
	recs, err := s.store.ListSpecs(ctx)
	if err != nil {
		s.log.Warn("metrics: list specs", "error", err)
		return nil, err
	}
	counts := map[state.Status]int{}
	seen := map[string]bool{}
	for _, j := range jobs {
		counts[j.Status]++
		seen[Key(j.Database, j.Name)] = true
	}
	for _, rec := range recs {
		if !seen[Key(rec.Database, rec.Name)] {
			counts[state.StatusPending]++
		}
	}
	return counts, nil
}
