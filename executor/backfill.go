package executor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// backfill runs the batches of every copy of the target up to the fence:
// one stream per copy (one healthy replica of each shard), up to
// ShardParallelism streams at once. Each stream has its own shard progress
// and in-flight marker; a stream that fails leaves the others running to
// their end, and the errors are joined.
func (r *run) backfill(ctx context.Context) error {
	if err := r.reload(ctx); err != nil {
		return err
	}
	type stream struct {
		n  *planner.Node
		sp *state.ShardProgress
	}
	var streams []stream
	var pending []string
	for _, group := range r.copies() {
		sp := r.shardProgress(group[0].Shard, r.copyName(group))
		if sp == nil {
			return fmt.Errorf("shard %d has no recorded progress: the job state is inconsistent", group[0].Shard)
		}
		if sp.Status == state.StatusCompleted {
			continue
		}
		n := firstHealthy(group)
		if n == nil {
			pending = append(pending, fmt.Sprintf("shard %d (%s down)", group[0].Shard, nodeAddrs(group)))
			continue
		}
		streams = append(streams, stream{n, sp})
	}
	errs := schedule(ctx, len(streams), r.e.Opts.ShardParallelism, nil, func(i int) error {
		return r.backfillCopy(ctx, streams[i].n, streams[i].sp)
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("backfill incomplete: %s; apply again once a replica of each is back", strings.Join(pending, ", "))
	}
	if err := r.checkOrphans(ctx); err != nil {
		return err
	}
	if err := r.dropStage(ctx); err != nil {
		return err
	}
	return r.setStatus(ctx, state.StatusOptimizing, r.job.ErrorMessage)
}

func nodeAddrs(ns []*planner.Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Addr)
	}
	return strings.Join(s, ", ")
}

// backfillCopy fills one copy of the target on node n, batch by batch.
func (r *run) backfillCopy(ctx context.Context, n *planner.Node, sp *state.ShardProgress) error {
	f := *r.job.CutoffID
	spec := r.c.Spec
	mode := r.batchMode(n)
	// The replica must hold every source row up to the fence before any
	// batch, a retried one included, reads it.
	if err := r.syncSource(ctx, n); err != nil {
		return err
	}
	if sp.InflightQueryID != "" {
		if err := r.resolveInflight(withStep(ctx, "settle"), n, sp, mode); err != nil {
			return err
		}
	}
	sorted, sortingKey, err := r.sourceSortedByKey(ctx, n)
	if err != nil {
		return err
	}
	width := int64(spec.Backfill.InitialBatchRows)
	if width <= 0 {
		width = 1_000_000
	}
	target := spec.Backfill.BatchDuration.Duration
	if target <= 0 {
		target = 2 * time.Second
	}
	if !sorted {
		// Key ranges over a source not sorted by the key would scan the
		// whole table per batch: one pass keeps the backfill linear.
		r.emit(Event{Kind: EventStep, Step: planner.StepBackfill, Shard: sp.Shard, Message: fmt.Sprintf("source sorted by (%s), not by %s: one server-side pass", sortingKey, spec.Backfill.KeyColumn)})
		width = math.MaxInt64
	} else {
		r.emit(Event{Kind: EventStep, Step: planner.StepBackfill, Shard: sp.Shard, Message: fmt.Sprintf("backfill %s <= %d on %s", spec.Backfill.KeyColumn, f, n.Addr)})
	}
	sz := sizer{target: target, max: int64(spec.Backfill.MaxBatchRows)}
	if sorted && spec.Backfill.ProbeFirstBatch() {
		width = r.probeWidth(ctx, n, sp, mode, width, &sz)
	}
	for *sp.LastProcessedID < f {
		// A stop request (SIGTERM) lands between batches: the batch in
		// flight finishes and is recorded, and a restart resumes after it.
		if err := ctx.Err(); err != nil {
			return err
		}
		lo := *sp.LastProcessedID
		hi := f
		if width < f-lo && !sz.wholeRest(f-lo, width) {
			hi = lo + width
		}
		rows := sp.TotalRows - sp.ProcessedRows
		if hi < f {
			if rows, err = r.countRange(ctx, n, lo, hi); err != nil {
				return err
			}
		}
		start := time.Now()
		bctx := context.WithoutCancel(ctx)
		if err := r.runBatch(bctx, n, sp, lo, hi, rows, mode, 0); err != nil {
			return err
		}
		if err := r.record(bctx, sp, hi, rows); err != nil {
			return err
		}
		r.emit(Event{Kind: EventProgress, Step: planner.StepBackfill, Shard: sp.Shard, Message: fmt.Sprintf("(%d, %d] %d rows in %s", lo, hi, rows, time.Since(start).Round(time.Millisecond))})
		if sorted {
			width = sz.next(width, time.Since(start))
		}
	}
	sp.Status = state.StatusCompleted
	return r.e.Store.UpsertShard(ctx, r.job.ID, *sp)
}

// record checkpoints a written batch: in the job store first, then in
// memory.
func (r *run) record(ctx context.Context, sp *state.ShardProgress, hi, rows int64) error {
	if err := r.e.Store.CompleteBatch(ctx, r.job.ID, sp.Shard, sp.Replica, hi, rows); err != nil {
		return err
	}
	crashPoint("batch-recorded")
	// As CompleteBatch did in the store: otherwise the shard's last upsert
	// (completed) would write back the marker this run loaded and resolved.
	if sp.InflightHi != nil && *sp.InflightHi <= hi {
		sp.InflightLo, sp.InflightHi, sp.InflightQueryID = nil, nil, ""
	}
	sp.LastProcessedID = &hi
	sp.ProcessedRows += rows
	r.mu.Lock()
	r.job.ProcessedRows += rows
	r.mu.Unlock()
	return nil
}

// rerun runs the range of an interrupted batch again, exactly, in a mode
// where what the first attempt wrote is dropped as a duplicate, and records
// it.
func (r *run) rerun(ctx context.Context, n *planner.Node, sp *state.ShardProgress, lo, hi int64, mode batchMode, since int64) error {
	rows, err := r.countRange(ctx, n, lo, hi)
	if err != nil {
		return err
	}
	if err := r.runBatch(ctx, n, sp, lo, hi, rows, mode, since); err != nil {
		return err
	}
	return r.record(ctx, sp, hi, rows)
}

// sizer picks the key range of each batch: adapt scales it toward the
// target duration. A batch's time is a fixed part (its round trips: the
// count, the INSERT with its checks, the progress commit) plus a part that
// grows with its rows. When a smaller range did not take less time, the
// time is the fixed part (seen on a loaded cluster: 500-row batches taking
// 3 s, so a backfill of a million rows went on for hours): shrinking further
// would only multiply the batches, so the range goes back to the previous
// one and does not shrink below it, until a batch of that size takes more
// than 4x the target.
type sizer struct {
	target       time.Duration
	max          int64
	floor, prevW int64
	prevT        time.Duration
}

func (s *sizer) next(width int64, took time.Duration) int64 {
	if s.prevW > 0 && width < s.prevW*9/10 && took >= s.prevT*9/10 {
		s.floor, width = s.prevW, s.prevW
	} else if s.floor > 0 && width <= s.floor && took > 4*s.target {
		s.floor /= 2
	}
	s.prevW, s.prevT = width, took
	return max(adapt(width, took, s.target, s.max), s.floor)
}

// wholeRest reports whether the rest of the keys up to the fence, rest,
// goes in this batch rather than width keys of it: when it is at most 1.5x
// width (the next batch would leave a short last one), or when the pace of
// the previous batch says that the rest takes at most 1.5x the target. A
// short last batch costs nearly what a long one does (a statement that reads
// the source, a part in the target, the range's count, two commits), on
// every shard; taking it whole is also one count less (the rest's rows are
// known). max_batch_rows still bounds it.
func (s *sizer) wholeRest(rest, width int64) bool {
	if s.max > 0 && rest > s.max {
		return false
	}
	if rest-width <= width/2 {
		return true
	}
	if s.prevW <= 0 {
		return false
	}
	return float64(rest)/float64(s.prevW)*s.prevT.Seconds() <= 1.5*s.target.Seconds()
}

// adapt scales the key range of the next batch toward the target duration,
// by at most 4x either way per batch.
func adapt(width int64, took, target time.Duration, max int64) int64 {
	f := float64(target) / float64(took+time.Millisecond)
	f = math.Max(0.25, math.Min(4, f))
	w := int64(float64(width) * f)
	if w < 1000 {
		w = 1000
	}
	if max > 0 && w > max {
		w = max
	}
	return w
}

// countRange counts the source rows of a batch's range. It is a read: a
// transient failure (a read timeout, a connection reset by a loaded server)
// is retried once rather than failing the backfill.
func (r *run) countRange(ctx context.Context, n *planner.Node, lo, hi int64) (int64, error) {
	var c int64
	err := readRetry(ctx, func() error { return n.Conn.QueryRow(ctx, r.mv.CountRange(lo, hi)).Scan(&c) }, func(err error) {
		r.log().Warn("count of a batch's range failed: retrying once", "node", n.Addr, "lo", lo, "hi", hi, "error", err)
	})
	if err != nil {
		return 0, fmt.Errorf("count (%d, %d] on %s: %w", lo, hi, n.Addr, err)
	}
	return c, nil
}

// sourceSortedByKey reports whether the source on node n is sorted by the
// key first, with its sorting key; the MVs of one apply on the same source
// share the answer (shared.go).
func (r *run) sourceSortedByKey(ctx context.Context, n *planner.Node) (bool, string, error) {
	return r.sharedSort(n.Addr, func() (bool, string, error) { return r.readSortingKey(ctx, n) })
}

func (r *run) readSortingKey(ctx context.Context, n *planner.Node) (bool, string, error) {
	var sk string
	err := n.Conn.QueryRow(ctx, "SELECT sorting_key FROM system.tables WHERE database = ? AND name = ?", r.c.Database, r.mv.Spec.SourceTable).Scan(&sk)
	if err != nil {
		return false, "", fmt.Errorf("read the sorting key of %s.%s on %s: %w", r.c.Database, r.mv.Spec.SourceTable, n.Addr, err)
	}
	// 26.x prints a key written ORDER BY (`id`) as "(id)".
	first := strings.TrimSpace(strings.Split(sk, ",")[0])
	first = strings.Trim(first, "()` ")
	return first == r.c.Spec.Backfill.KeyColumn, sk, nil
}

// runBatch writes the in-flight marker, then runs one server-side
// INSERT ... SELECT for the key range (lo, hi]. rows is the number of
// source rows in the range. since is, for a retried modeBlocks batch, the
// ZooKeeper position recorded before its first attempt (0 otherwise).
func (r *run) runBatch(ctx context.Context, n *planner.Node, sp *state.ShardProgress, lo, hi, rows int64, mode batchMode, since int64) error {
	q, err := r.mv.BackfillBatch(sqlgen.Range{After: &lo, UpTo: &hi}, mode == modeBlocks)
	if err != nil {
		return err
	}
	qid := fmt.Sprintf("%s-%d", r.batchToken(sp, lo, hi), time.Now().UnixNano())
	marker := qid + "@" + n.Addr
	var zk string
	if mode == modeBlocks {
		if zk, err = r.zkPath(ctx, n); err != nil {
			return err
		}
		if since == 0 {
			if since, err = r.blocksZxid(ctx, n, zk); err != nil {
				return err
			}
		}
		marker += fmt.Sprintf("#blocks=%d", since)
	}
	if mode == modeStage {
		marker += stageMarker
	}
	if err := r.e.Store.BeginBatch(ctx, r.job.ID, sp.Shard, sp.Replica, lo, hi, marker); err != nil {
		return err
	}
	crashPoint("batch-marked")
	if mode == modeStage {
		return r.stagedBatch(ctx, n, sp, lo, hi, qid, marker)
	}
	settings := clickhouse.Settings{
		"log_queries": 1,
		// The server touches the client's socket (progress packets, checks
		// for a cancel) only every interactive_delay. With a huge delay it
		// does not touch it until the INSERT has finished: if this process
		// dies mid-batch, the batch still completes whole on the server,
		// and only sending the final packets fails. That is what makes an
		// interrupted batch decidable from the query log.
		"interactive_delay": 1_000_000_000_000,
	}
	switch mode {
	case modeToken:
		settings["insert_deduplicate"] = 1
		settings["insert_deduplication_token"] = r.batchToken(sp, lo, hi)
	case modeBlocks:
		settings["insert_deduplicate"] = 1
		settings["max_threads"] = 1
	default:
		if r.targetReplicated() {
			// Without a way to tell a retry from a batch whose rows happen to
			// equal another batch's, deduplication would drop real rows.
			settings["insert_deduplicate"] = 0
		}
	}
	if err := r.insert(ctx, n, q, qid, settings, lo, hi); err != nil {
		return err
	}
	crashPoint("batch-inserted")
	if mode != modeBlocks || rows == 0 {
		return nil
	}
	written, err := r.blocksSince(ctx, n, zk, since)
	if err != nil {
		return err
	}
	if written {
		return nil
	}
	// The source has rows in the range but no block of this batch was
	// recorded: its output equalled an earlier batch's and was dropped as a
	// duplicate. Write it again without deduplication; only this rare batch
	// then depends on the query log if it is interrupted.
	r.log().Warn("batch output equals an earlier batch's: writing it without deduplication", "lo", lo, "hi", hi)
	return r.runBatch(ctx, n, sp, lo, hi, rows, modeLog, 0)
}

func (r *run) insert(ctx context.Context, n *planner.Node, q, qid string, settings clickhouse.Settings, lo, hi int64) error {
	qctx := clickhouse.Context(ctx, clickhouse.WithQueryID(qid), clickhouse.WithSettings(settings))
	r.log().Debug("batch", "node", n.Addr, "lo", lo, "hi", hi, "query_id", qid)
	if err := n.Conn.Exec(qctx, q); err != nil {
		return fmt.Errorf("backfill batch (%d, %d] on %s (query id %s): %w%s", lo, hi, n.Addr, qid, err, zooKeeperHint(err))
	}
	return nil
}
