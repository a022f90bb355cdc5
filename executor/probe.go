package executor

// The first batch of a key-range backfill. Its range used to be a fixed
// 1,000,000 keys, a guess at a statement of about batch_duration whatever
// the query costs; the batches after it adapt (at most 4x per batch). On a
// fast query that guess is tiny: a 1M-key batch of a 20M-row source took
// 66 ms for 1M rows (66 ns a row) where the rest took 30 ns a row, and a
// short batch costs nearly what a long one does (a statement, a part in the
// target, a count, two commits, ZooKeeper block ids on 18.16's Replicated
// targets). So, when initial_batch_rows is left at its default, a
// read-only probe runs the batch's own query over a quarter of that range,
// counted and timed, and the first batch is sized from the pace it shows:
// the whole rest when the rest's rows take at most 1.5x batch_duration at
// that pace, else the range that holds batch_duration's worth of rows at the
// rest's average density.
//
// A probe's time is mostly its statement's fixed cost (a round trip,
// parsing, planning, starting the threads), not its rows: on these servers
// a probe of 100,000 rows (a tenth of the range, as it was) took 10-16 ms on
// 18.16 and 13 ms on 26.7, of which the rows were about 3 ms and 1 ms (30
// and 9 ns a row over 20M rows). Taken whole as the pace, it made a shard's
// 10M rows look like 3 s and split them into two batches, each paying the
// shard's bookkeeping (BenchmarkClusterShards, issue 11). So the same
// statement is also timed over an empty range (the index selects no
// granule, or one per part once the backfill has begun: it reads next to
// nothing), and that fixed cost is taken off; and the probe covers a
// quarter of the range, so that its rows outweigh a spike of the machine's
// noise (one probe of 50,000 rows took 22 ms beside the other shard's).
// Both times are noisy: a fixed cost timed too high would make the pace too
// fast and the first batch too long, so the rows' share is taken as at
// least a quarter of the probe's time, which bounds that error to 4x (a
// first batch of up to 4x batch_duration, or a whole rest of up to 6x). A
// fixed cost timed too low errs toward short batches, as the probe did
// before. When the empty range's statement fails, the pace is the probe's
// whole time, as before. The price of the wider probe is on slow queries:
// at 10 µs a row it reads 2.5 s where it read 1 s.
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
	probe := max(width/4, 1000)
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
	fixed, err := r.probeQuery(ctx, n, lo, lo, mode)
	if err != nil {
		r.log().Warn("pace probe: the empty range's statement failed; the pace is the probe's whole time", "node", n.Addr, "error", err)
		fixed = 0
	}
	work := probeWork(took, fixed)
	w := firstWidth(width, rows, work, rest, f-lo, sz.target, sz.max)
	r.log().Debug("pace probe", "node", n.Addr, "lo", lo, "hi", hi, "rows", rows, "took", took, "fixed", fixed, "work", work, "width", w)
	return w
}

// probeQuery runs the batch's query over (lo, hi] (lo == hi: over the
// empty range (lo, lo], sqlgen.FixedCostProbe) and discards its rows (the
// server counts them), with the batch's thread setting, and returns how
// long it took (see sqlgen.PaceProbe: every output column is computed).
func (r *run) probeQuery(ctx context.Context, n *planner.Node, lo, hi int64, mode batchMode) (time.Duration, error) {
	var q string
	var err error
	if lo == hi {
		q, err = r.mv.FixedCostProbe(lo)
	} else {
		q, err = r.mv.PaceProbe(sqlgen.Range{After: &lo, UpTo: &hi})
	}
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

// probeWork is the rows' share of a probe that took took, fixed of which
// the statement's fixed cost: at least a quarter of took (see above).
func probeWork(took, fixed time.Duration) time.Duration { return max(took-fixed, took/4) }

// firstWidth sizes the first batch from a probe whose rows rows took work
// (its time less the statement's fixed cost; see probeWidth): keys is the
// key range left up to the fence and rest its rows. The whole rest when it
// takes at most 1.5x target at the probe's pace (and max, when set,
// allows); otherwise the keys that hold target's worth of rows at the
// rest's average density, within 4x of the configured width downwards (as
// adapt moves it per batch), and at most max.
func firstWidth(width, rows int64, work time.Duration, rest, keys int64, target time.Duration, maxW int64) int64 {
	perRow := max(work, time.Microsecond).Seconds() / float64(rows)
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
