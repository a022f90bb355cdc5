package executor

// The first batch of a key-range backfill. Its range used to be a fixed
// 1,000,000 keys, a guess at a statement of about batch_duration whatever
// the query costs; the batches after it adapt (at most 4x per batch). On a
// fast query that guess is tiny: a 1M-key batch of a 20M-row source took
// 66 ms for 1M rows (66 ns a row) where the rest took 30 ns a row, and a
// short batch costs nearly what a long one does (a statement, a part in the
// target, a count, two commits, ZooKeeper block ids on 18.16's Replicated
// targets). So, when initial_batch_rows is left at its default, a
// read-only probe runs the batch's own query over a tenth of that range,
// counted and timed, and the first batch is sized from the pace it shows:
// the whole rest when the rest's rows take at most 1.5x batch_duration at
// that pace, else the range that holds batch_duration's worth of rows at the
// rest's average density. The probe's time includes its fixed costs (a round
// trip, parsing), so the pace it gives is slower than the batch's: it errs
// on the side of short batches.
//
// The probe reads the source and writes nothing: it cannot change a target,
// and a crash during it leaves nothing to resume.

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// probeMinRows is the fewest rows a probe's range must hold for its pace to
// mean anything; below it, the first batch keeps its configured range.
const probeMinRows = 10_000

// probeWidth returns the key range of the next batch of a sorted backfill on
// node n from a probe of the query's pace, or width when the probe cannot
// tell (too few rows in its range, or a failed read: the probe only sizes).
func (r *run) probeWidth(ctx context.Context, n *planner.Node, sp *state.ShardProgress, mode batchMode, width int64, sz *sizer) int64 {
	f, lo := *r.job.CutoffID, *sp.LastProcessedID
	rest := sp.TotalRows - sp.ProcessedRows
	probe := max(width/10, 1000)
	if f-lo <= width || rest < probeMinRows || probe >= f-lo {
		return width
	}
	hi := lo + probe
	rows, err := r.countRange(ctx, n, lo, hi)
	if err != nil || rows < probeMinRows {
		if err != nil {
			r.log().Warn("pace probe: count failed; the first batch keeps its configured range", "node", n.Addr, "error", err)
		}
		return width
	}
	took, err := r.probeQuery(ctx, n, lo, hi, mode)
	if err != nil {
		r.log().Warn("pace probe failed; the first batch keeps its configured range", "node", n.Addr, "error", err)
		return width
	}
	w := firstWidth(width, rows, took, rest, f-lo, sz.target, sz.max)
	r.log().Debug("pace probe", "node", n.Addr, "lo", lo, "hi", hi, "rows", rows, "took", took, "width", w)
	return w
}

// probeQuery runs the batch's query over (lo, hi] and discards its rows (the
// server counts them), with the batch's thread setting, and returns how long
// it took (see sqlgen.PaceProbe: every output column is computed).
func (r *run) probeQuery(ctx context.Context, n *planner.Node, lo, hi int64, mode batchMode) (time.Duration, error) {
	q, err := r.mv.PaceProbe(sqlgen.Range{After: &lo, UpTo: &hi})
	if err != nil {
		return 0, err
	}
	settings := clickhouse.Settings{}
	if mode == modeBlocks {
		settings["max_threads"] = 1
	}
	qctx := clickhouse.Context(ctx, clickhouse.WithSettings(settings))
	start := time.Now()
	var groups uint64
	if err := n.Conn.QueryRow(qctx, q).Scan(&groups); err != nil {
		return 0, fmt.Errorf("probe (%d, %d] on %s: %w", lo, hi, n.Addr, err)
	}
	return time.Since(start), nil
}

// firstWidth sizes the first batch from a probe that read rows rows in
// took: keys is the key range left up to the fence and rest its rows. The
// whole rest when it takes at most 1.5x target at the probe's pace (and
// max, when set, allows); otherwise the keys that hold target's worth of
// rows at the rest's average density, within 4x of the configured width
// downwards (as adapt moves it per batch), and at most max.
func firstWidth(width, rows int64, took time.Duration, rest, keys int64, target time.Duration, maxW int64) int64 {
	perRow := (took.Seconds() + 0.001) / float64(rows)
	if float64(rest)*perRow <= 1.5*target.Seconds() && (maxW <= 0 || keys <= maxW) {
		return keys
	}
	perKey := float64(rest) / float64(keys)
	w := int64(target.Seconds() / perRow / perKey)
	w = max(w, width/4, 1000)
	if maxW > 0 {
		w = min(w, maxW)
	}
	return min(w, keys)
}
