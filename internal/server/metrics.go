package server

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/state"
)

// metrics are kept by hand and written in the Prometheus text exposition
// format (version 0.0.4): four metric families do not justify the client
// library and its dependencies.
type metrics struct {
	mu         sync.Mutex
	rows       int64 // source rows backfilled by this process
	batch      histogram
	reconciles map[string]int64 // by result
	errors     map[string]int64 // by kind
	mvs        map[string]*mvProgress
}

type mvProgress struct {
	processed int64     // the job's processed rows at the last event
	at        time.Time // time of the last event: a batch runs from one event to the next
}

// batchBuckets are the upper bounds (seconds) of the batch duration
// histogram, around the executor's 2s target.
var batchBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60}

type histogram struct {
	counts []int64 // per bucket, not cumulative
	sum    float64
	n      int64
}

func (h *histogram) observe(v float64) {
	if h.counts == nil {
		h.counts = make([]int64, len(batchBuckets))
	}
	h.sum += v
	h.n++
	for i, b := range batchBuckets {
		if v <= b {
			h.counts[i]++
			return
		}
	}
}

func newMetrics() *metrics {
	return &metrics{reconciles: map[string]int64{}, errors: map[string]int64{}, mvs: map[string]*mvProgress{}}
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
		m.rows += d
		m.batch.observe(now.Sub(p.at).Seconds())
	}
	p.processed = ev.Processed
	p.at = now
}

func (m *metrics) reconciled(result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reconciles[result]++
}

func (m *metrics) reconcileError(kind string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errors[kind]++
}

// write writes every metric; jobs counts the MVs by status (nil when the
// store could not be read).
func (m *metrics) write(w io.Writer, jobs map[state.Status]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if jobs != nil {
		fmt.Fprintln(w, "# HELP shirath_mv_jobs MV jobs by status; specs not started yet count as pending.")
		fmt.Fprintln(w, "# TYPE shirath_mv_jobs gauge")
		for _, st := range state.Statuses {
			fmt.Fprintf(w, "shirath_mv_jobs{status=%q} %d\n", st, jobs[st])
		}
	}
	fmt.Fprintln(w, "# HELP shirath_backfill_rows_total Source rows backfilled by this process.")
	fmt.Fprintln(w, "# TYPE shirath_backfill_rows_total counter")
	fmt.Fprintf(w, "shirath_backfill_rows_total %d\n", m.rows)

	fmt.Fprintln(w, "# HELP shirath_backfill_batch_duration_seconds Wall time of backfill batches (one executor progress event to the next).")
	fmt.Fprintln(w, "# TYPE shirath_backfill_batch_duration_seconds histogram")
	var cum int64
	for i, b := range batchBuckets {
		if m.batch.counts != nil {
			cum += m.batch.counts[i]
		}
		fmt.Fprintf(w, "shirath_backfill_batch_duration_seconds_bucket{le=%q} %d\n", strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	fmt.Fprintf(w, "shirath_backfill_batch_duration_seconds_bucket{le=\"+Inf\"} %d\n", m.batch.n)
	fmt.Fprintf(w, "shirath_backfill_batch_duration_seconds_sum %s\n", strconv.FormatFloat(m.batch.sum, 'g', -1, 64))
	fmt.Fprintf(w, "shirath_backfill_batch_duration_seconds_count %d\n", m.batch.n)

	fmt.Fprintln(w, "# HELP shirath_reconcile_total Reconciliations by result.")
	fmt.Fprintln(w, "# TYPE shirath_reconcile_total counter")
	for _, k := range slices.Sorted(maps.Keys(m.reconciles)) {
		fmt.Fprintf(w, "shirath_reconcile_total{result=%q} %d\n", k, m.reconciles[k])
	}
	fmt.Fprintln(w, "# HELP shirath_reconcile_errors_total Reconcile errors by kind: error and locked are retried, the others are terminal.")
	fmt.Fprintln(w, "# TYPE shirath_reconcile_errors_total counter")
	for _, k := range []string{"error", "locked", CondBlocked, CondInvalid, CondNeedsAttention, CondPaused} {
		fmt.Fprintf(w, "shirath_reconcile_errors_total{kind=%q} %d\n", k, m.errors[k])
	}
}
