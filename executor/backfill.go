package executor

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/AfterShip/clickhouse-sql-parser/parser"
	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// fence creates the target and the MV with the filter key > F in its outer
// WHERE, and proves that no row above F reached the source without passing
// through the MV.
//
// The original design read cutoff = max(id) and then created the MV: rows
// inserted between the two steps were lost. Here F leaves headroom for the
// observed insert rate; after the MV exists, every INSERT that was already
// running (and so will never reach the MV, even if it commits later) is
// waited for, and only then is max(key) read again. If it is above F, rows
// above F may have missed the MV: everything is dropped and the fence is
// retried with twice the headroom.
//
// A fence that was never verified (a crash in the middle) cannot be trusted
// either, so this always starts from scratch: the target holds nothing but
// rows the unverified MV pushed.
func (r *run) fence(ctx context.Context) error {
	if err := r.setStatus(ctx, state.StatusCreating, ""); err != nil {
		return err
	}
	if err := r.dropObjects(ctx, r.mv); err != nil {
		return err
	}
	if err := r.e.Store.DeleteShards(ctx, r.job.ID); err != nil {
		return err
	}
	key := r.c.Spec.Backfill.KeyColumn
	createTarget, err := r.mv.CreateTarget(true)
	if err != nil {
		return err
	}
	rate, err := r.insertRate(ctx)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < r.e.Opts.FenceAttempts; attempt++ {
		r.emit(Event{Kind: EventStep, Step: planner.StepCreateTarget, Message: "create " + r.c.Spec.TargetTable})
		if err := r.ddlAll(ctx, createTarget); err != nil {
			return err
		}
		top, err := r.globalMax(ctx)
		if err != nil {
			return err
		}
		headroom := int64(math.Ceil(rate * r.e.Opts.FenceHeadroom.Seconds() * math.Pow(2, float64(attempt))))
		f := top + headroom
		r.job.CutoffID = &f
		r.job.FenceVerified = false
		if err := r.e.Store.UpdateJob(ctx, r.job); err != nil {
			return err
		}
		r.emit(Event{Kind: EventStep, Step: planner.StepFence, Message: fmt.Sprintf("fence %s > %d (max %d, headroom %d for %.0f rows/s)", key, f, top, headroom, rate)})
		createMV, err := r.mv.CreateMV(f, true)
		if err != nil {
			return err
		}
		if err := r.ddlAll(ctx, createMV); err != nil {
			return err
		}
		ok, seen, err := r.verifyFence(ctx, f)
		if err != nil {
			return err
		}
		if ok {
			return r.fenceVerified(ctx, createTarget, createMV)
		}
		r.log().Warn("fence unsafe: retrying with more headroom", "fence", f, "max_after", seen, "attempt", attempt+1)
		r.emit(Event{Kind: EventWaiting, Step: planner.StepFence, Message: fmt.Sprintf("fence %d unsafe (max(%s) reached %d before running INSERTs finished): retrying with more headroom", f, key, seen)})
		if err := r.dropObjects(ctx, r.mv); err != nil {
			return err
		}
		if rate == 0 {
			// Inserts started after the rate was read as zero.
			if rate, err = r.insertRate(ctx); err != nil {
				return err
			}
			if rate == 0 {
				rate = 1
			}
		}
	}
	return fmt.Errorf("no safe fence after %d attempts: rows above the fence kept arriving from INSERTs that started before the MV existed; "+
		"retry when inserts are steadier, or raise --fence-headroom", r.e.Opts.FenceAttempts)
}

func (r *run) fenceVerified(ctx context.Context, createTarget, createMV string) error {
	applied := map[string]state.AppliedObject{}
	srvTarget, err := r.serverCreateQuery(ctx, r.c.Spec.TargetTable)
	if err != nil {
		return err
	}
	srvMV, err := r.serverCreateQuery(ctx, r.c.Spec.Name)
	if err != nil {
		return err
	}
	applied["target"] = state.AppliedObject{SQL: createTarget, Server: srvTarget}
	applied["mv"] = state.AppliedObject{SQL: createMV, Server: srvMV}
	if r.topo.Cluster != "" {
		r.emit(Event{Kind: EventStep, Step: planner.StepCreateDistributed, Message: "create " + r.c.Spec.DistributedTable})
		dist, err := r.mv.CreateDistributed(true)
		if err != nil {
			return err
		}
		if err := r.ddlAll(ctx, dist); err != nil {
			return err
		}
		applied["distributed"] = state.AppliedObject{SQL: dist}
	}
	r.job.Applied = applied
	r.job.FenceVerified = true
	r.job.Status = state.StatusWaiting
	r.job.ErrorMessage = ""
	return r.e.Store.UpdateJob(ctx, r.job)
}

// dropObjects drops the MV first (so no insert pushes into a half-dropped
// target), then the Distributed table and the target.
func (r *run) dropObjects(ctx context.Context, m sqlgen.MV) error {
	for _, q := range []string{m.DropMV(true), m.DropDistributed(true), m.DropTarget(true)} {
		if err := r.ddlAll(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// verifyFence waits for the INSERTs that were running when the MV was
// created, on every node, then checks that no row above the fence is in the
// source. It returns the largest key seen.
func (r *run) verifyFence(ctx context.Context, f int64) (bool, int64, error) {
	for _, n := range r.topo.Nodes {
		if err := r.waitRunningInserts(ctx, n); err != nil {
			return false, 0, err
		}
	}
	top, err := r.globalMax(ctx)
	if err != nil {
		return false, 0, err
	}
	return top <= f, top, nil
}

// waitRunningInserts waits until every INSERT running on the node now has
// finished. Any INSERT counts, whatever its table (an INSERT into a
// Distributed table writes the local shard within the same query): waiting a
// little longer is cheap, missing one is a lost row.
func (r *run) waitRunningInserts(ctx context.Context, n *planner.Node) error {
	const q = `SELECT query_id FROM system.processes
		WHERE positionCaseInsensitive(query, 'insert') > 0 AND positionCaseInsensitive(query, 'system.processes') = 0`
	snapshot, err := queryStrings(ctx, n, q)
	if err != nil {
		return err
	}
	if len(snapshot) == 0 {
		return nil
	}
	deadline := time.Now().Add(r.e.Opts.InsertWaitTimeout)
	for {
		now, err := queryStrings(ctx, n, q)
		if err != nil {
			return err
		}
		left := intersect(snapshot, now)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("INSERTs running on %s since the MV was created did not finish within %s: query ids %s", n.Addr, r.e.Opts.InsertWaitTimeout, strings.Join(left, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

func queryStrings(ctx context.Context, n *planner.Node, q string, args ...any) ([]string, error) {
	rows, err := n.Conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", n.Addr, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// globalMax is the largest key in the source over every node (0 when empty).
func (r *run) globalMax(ctx context.Context) (int64, error) {
	var top int64
	for _, group := range r.topo.Shards() {
		for _, n := range group {
			if n.Err != nil {
				return 0, fmt.Errorf("node %s (shard %d) does not answer: the fence must hold on every node", n.Addr, n.Shard)
			}
			m, err := r.maxKey(ctx, n)
			if err != nil {
				return 0, err
			}
			if m > top {
				top = m
			}
		}
	}
	return top, nil
}

func (r *run) maxKey(ctx context.Context, n *planner.Node) (int64, error) {
	var m int64
	q := r.mv.MaxKey()
	if err := n.Conn.QueryRow(ctx, q).Scan(&m); err != nil {
		return 0, fmt.Errorf("read max(%s) on %s: %w", r.c.Spec.Backfill.KeyColumn, n.Addr, err)
	}
	return m, nil
}

// insertRate measures how fast the key grows, in keys per second, over one
// second.
func (r *run) insertRate(ctx context.Context) (float64, error) {
	a, err := r.globalMax(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(time.Second):
	}
	b, err := r.globalMax(ctx)
	if err != nil {
		return 0, err
	}
	return float64(b-a) / time.Since(start).Seconds(), nil
}

// waitSource waits until the source has passed the fence (every key up to F
// has arrived) and the settle delay has passed, then records what each copy
// of the target has to backfill.
func (r *run) waitSource(ctx context.Context) error {
	if r.job.Status != state.StatusWaiting {
		if err := r.setStatus(ctx, state.StatusWaiting, ""); err != nil {
			return err
		}
	}
	f := *r.job.CutoffID
	deadline := time.Now().Add(r.e.Opts.SourceWaitTimeout)
	announced := false
	for {
		top, err := r.globalMax(ctx)
		if err != nil {
			return err
		}
		if top >= f {
			break
		}
		if !announced {
			r.emit(Event{Kind: EventWaiting, Step: planner.StepWait, Message: fmt.Sprintf("waiting for the source to pass the fence %d (now at %d)", f, top)})
			announced = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the source is at %d, below the fence %d, after %s: the job stays waiting; apply again later", ErrWaiting, top, f, r.e.Opts.SourceWaitTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if d := r.c.Spec.Backfill.SettleDelay.Duration; d > 0 {
		r.emit(Event{Kind: EventWaiting, Step: planner.StepWait, Message: fmt.Sprintf("source passed the fence; settling %s", d)})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	if err := r.waitDistributedSends(ctx); err != nil {
		return err
	}
	var total int64
	q := r.mv.CountUpTo(f)
	for _, group := range r.copies() {
		n := firstHealthy(group)
		if n == nil {
			return fmt.Errorf("shard %d: no replica answers", group[0].Shard)
		}
		if err := r.syncSource(ctx, n); err != nil {
			return err
		}
		var count, lo int64
		if err := n.Conn.QueryRow(ctx, q).Scan(&count, &lo); err != nil {
			return fmt.Errorf("count the rows to backfill on %s: %w", n.Addr, err)
		}
		last := lo - 1
		if count == 0 {
			last = f
		}
		sp := state.ShardProgress{Shard: group[0].Shard, Replica: r.copyName(group), Status: state.StatusBackfilling, TotalRows: count, LastProcessedID: &last}
		if count == 0 {
			sp.Status = state.StatusCompleted
		}
		if err := r.e.Store.UpsertShard(ctx, r.job.ID, sp); err != nil {
			return err
		}
		total += count
	}
	r.job.TotalRows = total
	r.job.ProcessedRows = 0
	r.job.Status = state.StatusBackfilling
	if err := r.e.Store.UpdateJob(ctx, r.job); err != nil {
		return err
	}
	return r.reload(ctx)
}

// copyName names a copy of the target in the shard progress: "" for a
// replicated shard (any replica may continue it), else the node's address.
func (r *run) copyName(group []*planner.Node) string {
	if r.targetReplicated() {
		return ""
	}
	return group[0].Addr
}

func (r *run) reload(ctx context.Context) error {
	j, err := r.e.Store.GetJob(ctx, r.c.Database, r.c.Name)
	if err != nil {
		return err
	}
	r.job = j
	return nil
}

func (r *run) shardProgress(shard int, replica string) *state.ShardProgress {
	for i := range r.job.Shards {
		if sp := &r.job.Shards[i]; sp.Shard == shard && sp.Replica == replica {
			return sp
		}
	}
	return nil
}

// backfill runs the batches of every copy of the target up to the fence.
func (r *run) backfill(ctx context.Context) error {
	if err := r.reload(ctx); err != nil {
		return err
	}
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
		if err := r.backfillCopy(ctx, n, sp); err != nil {
			return err
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("backfill incomplete: %s; apply again once a replica of each is back", strings.Join(pending, ", "))
	}
	r.job.Status = state.StatusOptimizing
	return r.e.Store.UpdateJob(ctx, r.job)
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
	mode, err := r.batchMode(ctx, n)
	if err != nil {
		return err
	}
	// The replica must hold every source row up to the fence before any
	// batch, a retried one included, reads it.
	if err := r.syncSource(ctx, n); err != nil {
		return err
	}
	if sp.InflightQueryID != "" {
		if err := r.resolveInflight(ctx, n, sp, mode); err != nil {
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
	for *sp.LastProcessedID < f {
		// A stop request (SIGTERM) lands between batches: the batch in
		// flight finishes and is recorded, and a restart resumes after it.
		if err := ctx.Err(); err != nil {
			return err
		}
		lo := *sp.LastProcessedID
		hi := f
		if width < f-lo {
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
			width = adapt(width, time.Since(start), target, int64(spec.Backfill.MaxBatchRows))
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
	sp.LastProcessedID = &hi
	sp.ProcessedRows += rows
	r.job.ProcessedRows += rows
	r.job.LastProcessedID = &hi
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

func (r *run) countRange(ctx context.Context, n *planner.Node, lo, hi int64) (int64, error) {
	var c int64
	if err := n.Conn.QueryRow(ctx, r.mv.CountRange(lo, hi)).Scan(&c); err != nil {
		return 0, fmt.Errorf("count (%d, %d] on %s: %w", lo, hi, n.Addr, err)
	}
	return c, nil
}

func (r *run) sourceSortedByKey(ctx context.Context, n *planner.Node) (bool, string, error) {
	var sk string
	err := n.Conn.QueryRow(ctx, "SELECT sorting_key FROM system.tables WHERE database = ? AND name = ?", r.c.Database, r.c.Spec.SourceTable).Scan(&sk)
	if err != nil {
		return false, "", fmt.Errorf("read the sorting key of %s.%s on %s: %w", r.c.Database, r.c.Spec.SourceTable, n.Addr, err)
	}
	first := strings.TrimSpace(strings.Split(sk, ",")[0])
	first = strings.Trim(first, "`")
	return first == r.c.Spec.Backfill.KeyColumn, sk, nil
}

// batchMode says how a batch that may have been interrupted is made safe to
// run again.
type batchMode int

const (
	// modeLog: the batch's fate is read from the node's query_log; what
	// cannot be decided stops the job (plain MergeTree targets, and
	// Replicated ones whose batches cannot be made byte-identical).
	modeLog batchMode = iota
	// modeToken: insert_deduplication_token (22.x+) on a Replicated
	// target: a retry with the same token is dropped as a duplicate.
	modeToken
	// modeBlocks: Replicated block deduplication on servers without tokens:
	// a batch with a deterministic output is retried byte for byte and
	// dropped when already written; the block ids it leaves in ZooKeeper
	// tell whether it was written, and catch a batch whose rows equal an
	// earlier batch's (which deduplication would drop).
	modeBlocks
)

func (m batchMode) String() string {
	return [...]string{"query log", "deduplication token", "replicated block ids"}[m]
}

func (r *run) batchMode(ctx context.Context, n *planner.Node) (batchMode, error) {
	if !r.targetReplicated() {
		return modeLog, nil
	}
	var c uint64
	if err := n.Conn.QueryRow(ctx, "SELECT count() FROM system.settings WHERE name = 'insert_deduplication_token'").Scan(&c); err != nil {
		return modeLog, fmt.Errorf("read system.settings on %s: %w", n.Addr, err)
	}
	if c > 0 {
		return modeToken, nil
	}
	if r.deterministicBatches() {
		return modeBlocks, nil
	}
	return modeLog, nil
}

// deterministicBatches reports whether a batch's output has one row per
// combination of its sortable columns: a GROUP BY whose keys are all output
// columns. Then the batch, ordered by those columns, gives the same blocks
// every time it runs (with one thread, so that float sums add up in the
// same order).
func (r *run) deterministicBatches() bool {
	sel, err := r.c.Spec.ParsedQuery(r.c.Database + "." + r.c.Spec.SourceTable)
	if err != nil || sel.GroupBy == nil {
		return false
	}
	keys, ok := sel.GroupBy.Expr.(*parser.ColumnExprList)
	if !ok || sel.GroupBy.WithCube || sel.GroupBy.WithRollup || sel.GroupBy.WithTotals {
		return false
	}
	outputs := map[string]bool{}
	for _, it := range sel.SelectItems {
		if strings.Contains(it.Expr.String(), "State(") {
			continue
		}
		outputs[strings.Trim(it.Expr.String(), "`")] = true
		if it.Alias != nil {
			outputs[strings.Trim(it.Alias.String(), "`")] = true
		}
	}
	for _, k := range keys.Items {
		if !outputs[strings.Trim(k.String(), "`")] {
			return false
		}
	}
	return len(keys.Items) > 0
}

func (r *run) batchToken(sp *state.ShardProgress, lo, hi int64) string {
	return fmt.Sprintf("shirath-%d-%d-%d-%d", r.job.ID, sp.Shard, lo, hi)
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
	if err := r.e.Store.BeginBatch(ctx, r.job.ID, sp.Shard, sp.Replica, lo, hi, marker); err != nil {
		return err
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
		return fmt.Errorf("backfill batch (%d, %d] on %s (query id %s): %w", lo, hi, n.Addr, qid, err)
	}
	return nil
}

// zkPath is the ZooKeeper path of the target's replicated table on node n.
func (r *run) zkPath(ctx context.Context, n *planner.Node) (string, error) {
	var p string
	err := n.Conn.QueryRow(ctx, "SELECT zookeeper_path FROM system.replicas WHERE database = ? AND table = ?", r.c.Database, r.c.Spec.TargetTable).Scan(&p)
	if err != nil {
		return "", fmt.Errorf("read the ZooKeeper path of %s.%s on %s: %w", r.c.Database, r.c.Spec.TargetTable, n.Addr, err)
	}
	return p, nil
}

// blocksZxid is the ZooKeeper transaction id of the last change to the
// target's deduplication block ids: every block id created later has a
// larger czxid.
func (r *run) blocksZxid(ctx context.Context, n *planner.Node, zk string) (int64, error) {
	var z int64
	err := n.Conn.QueryRow(ctx, "SELECT toInt64(pzxid) FROM system.zookeeper WHERE path = ? AND name = 'blocks'", zk).Scan(&z)
	if err != nil {
		return 0, fmt.Errorf("read %s/blocks in ZooKeeper through %s: %w", zk, n.Addr, err)
	}
	return z, nil
}

// blocksSince reports whether a block id was recorded after zxid since. Only
// backfill batches record block ids in the target: the MV's own inserts are
// not deduplicated (checked on 18.16).
func (r *run) blocksSince(ctx context.Context, n *planner.Node, zk string, since int64) (bool, error) {
	var c uint64
	err := n.Conn.QueryRow(ctx, "SELECT count() FROM system.zookeeper WHERE path = ? AND czxid > ?", zk+"/blocks", since).Scan(&c)
	if err != nil {
		return false, fmt.Errorf("read %s/blocks in ZooKeeper through %s: %w", zk, n.Addr, err)
	}
	return c > 0, nil
}

// resolveInflight decides what happened to a batch that was started and
// never confirmed (the apply died, or the connection broke). It asks the
// node's query log. A batch proven written is recorded as done; one proven
// not written is run again; anything else stops the job as needs_attention,
// naming the range, rather than risk counting rows twice or not at all.
func (r *run) resolveInflight(ctx context.Context, cur *planner.Node, sp *state.ShardProgress, mode batchMode) error {
	lo, hi := *sp.InflightLo, *sp.InflightHi
	marker, blocks, isBlocks := strings.Cut(sp.InflightQueryID, "#blocks=")
	qid, addr, _ := strings.Cut(marker, "@")
	if isBlocks && mode == modeBlocks {
		// Run the same range again, on any replica of the shard: blocks the
		// first attempt wrote are dropped as duplicates, the rest written.
		// Written at least once since the first attempt began is written.
		since, err := strconv.ParseInt(blocks, 10, 64)
		if err != nil {
			return fmt.Errorf("shard %d: bad in-flight marker %q", sp.Shard, sp.InflightQueryID)
		}
		r.emit(Event{Kind: EventStep, Step: planner.StepResumeBackfill, Shard: sp.Shard, Message: fmt.Sprintf("running the interrupted batch (%d, %d] again on %s: what it wrote is deduplicated", lo, hi, cur.Addr)})
		return r.rerun(ctx, cur, sp, lo, hi, modeBlocks, since)
	}
	n := r.node(addr)
	if n == nil && len(r.topo.Nodes) == 1 {
		n = r.topo.Nodes[0]
	}
	if n == nil || n.Err != nil {
		return fmt.Errorf("shard %d: batch (%d, %d] was sent to %s, which does not answer: apply again once it is back", sp.Shard, lo, hi, addr)
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepResumeBackfill, Shard: sp.Shard, Message: fmt.Sprintf("checking the interrupted batch (%d, %d] (query %s)", lo, hi, qid)})
	outcome, why, err := r.batchOutcome(ctx, n, qid, sp.UpdatedAt)
	if err != nil {
		return err
	}
	switch outcome {
	case batchWritten:
		rows, err := r.countRange(ctx, n, lo, hi)
		if err != nil {
			return err
		}
		if err := r.record(ctx, sp, hi, rows); err != nil {
			return err
		}
		r.log().Info("interrupted batch was written", "lo", lo, "hi", hi, "why", why)
	case batchNotWritten:
		r.log().Info("interrupted batch was not written: running it again", "lo", lo, "hi", hi, "why", why)
	default:
		if mode == modeToken {
			// The same range again carries the same token: a block already
			// written is dropped as a duplicate.
			r.log().Info("interrupted batch outcome unknown: retrying with the same deduplication token", "lo", lo, "hi", hi)
			return r.rerun(ctx, cur, sp, lo, hi, modeToken, 0)
		}
		msg := fmt.Sprintf("shard %d: the backfill batch %s in (%d, %d] (query id %s on %s) may or may not have been written (%s). "+
			"Compare the target with the source for that range, then rebuild with `shirath mv backfill %s --restart`",
			sp.Shard, r.c.Spec.Backfill.KeyColumn, lo, hi, qid, n.Addr, why, r.c.Name)
		if err := r.setStatus(ctx, state.StatusNeedsAttention, msg); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", ErrNeedsAttention, msg)
	}
	return nil
}

type outcome int

const (
	batchUnknown outcome = iota
	batchWritten
	batchNotWritten
)

func (r *run) batchOutcome(ctx context.Context, n *planner.Node, qid string, markedAt time.Time) (outcome, string, error) {
	// Still running (the apply died, the server did not): let it finish.
	for {
		ids, err := queryStrings(ctx, n, "SELECT query_id FROM system.processes WHERE query_id = ?", qid)
		if err != nil {
			return batchUnknown, "", err
		}
		if len(ids) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return batchUnknown, "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	var hasLog uint64
	if err := n.Conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = 'system' AND name = 'query_log'").Scan(&hasLog); err != nil {
		return batchUnknown, "", err
	}
	if hasLog == 0 {
		if err := n.Conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
			return batchUnknown, "", fmt.Errorf("flush logs on %s: %w", n.Addr, err)
		}
		if err := n.Conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = 'system' AND name = 'query_log'").Scan(&hasLog); err != nil {
			return batchUnknown, "", err
		}
		if hasLog == 0 {
			return batchUnknown, "the server keeps no query_log", nil
		}
	} else if err := n.Conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		return batchUnknown, "", fmt.Errorf("flush logs on %s: %w", n.Addr, err)
	}
	rows, err := n.Conn.Query(ctx, "SELECT toUInt8(CAST(type AS UInt8)), exception FROM system.query_log WHERE query_id = ?", qid)
	if err != nil {
		return batchUnknown, "", fmt.Errorf("read query_log on %s: %w", n.Addr, err)
	}
	var started, finished, failedBefore bool
	var failedWhile []string
	for rows.Next() {
		var typ uint8
		var exc string
		if err := rows.Scan(&typ, &exc); err != nil {
			rows.Close()
			return batchUnknown, "", err
		}
		switch typ {
		case 1:
			started = true
		case 2:
			finished = true
		case 3:
			failedBefore = true
		case 4:
			failedWhile = append(failedWhile, exc)
		}
	}
	rows.Close()
	switch {
	case finished:
		return batchWritten, "query_log: QueryFinish", nil
	case failedBefore:
		return batchNotWritten, "query_log: ExceptionBeforeStart", nil
	case len(failedWhile) > 0 && clientGone(failedWhile[0]):
		// The batch ran with a huge interactive_delay: the server did not
		// touch the socket before the INSERT had finished, so a network
		// error means the client went away after the rows were written.
		return batchWritten, "query_log: the client went away after the INSERT finished: " + clip(failedWhile[0]), nil
	case len(failedWhile) > 0:
		return batchUnknown, "query_log: the INSERT failed while running: " + clip(failedWhile[0]), nil
	case started:
		return batchUnknown, "query_log: started, never finished (server restarted?)", nil
	}
	// Not in the log at all: the query never reached the server, unless the
	// server restarted since (and lost the log entries not yet flushed).
	var uptime uint32
	if err := n.Conn.QueryRow(ctx, "SELECT uptime()").Scan(&uptime); err != nil {
		return batchUnknown, "", err
	}
	bootedAt := time.Now().Add(-time.Duration(uptime) * time.Second)
	if bootedAt.Before(markedAt.Add(-2 * time.Second)) {
		return batchNotWritten, "not in query_log and the server has run since before the batch", nil
	}
	return batchUnknown, "not in query_log, and the server restarted after the batch started", nil
}

var exceptionCode = regexp.MustCompile(`Code: (\d+)`)

// clientGone reports whether a query failed only because its client
// connection broke: NETWORK_ERROR, SOCKET_TIMEOUT, ATTEMPT_TO_READ_AFTER_EOF,
// CANNOT_READ_ALL_DATA, UNEXPECTED_PACKET_FROM_CLIENT.
func clientGone(exception string) bool {
	m := exceptionCode.FindStringSubmatch(exception)
	if m == nil {
		return false
	}
	switch m[1] {
	case "210", "209", "32", "33", "101":
		return true
	}
	return false
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// syncSource makes a replica of a Replicated source fetch every part its
// replication queue knows of, so that the backfill, which reads one replica
// per shard, sees every row up to the fence and not just the ones this
// replica had fetched so far.
func (r *run) syncSource(ctx context.Context, n *planner.Node) error {
	if r.topo.Cluster == "" {
		return nil
	}
	var engine string
	if err := n.Conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", r.c.Database, r.c.Spec.SourceTable).Scan(&engine); err != nil {
		return fmt.Errorf("read the engine of %s.%s on %s: %w", r.c.Database, r.c.Spec.SourceTable, n.Addr, err)
	}
	if !strings.HasPrefix(engine, "Replicated") {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, r.e.Opts.InsertWaitTimeout)
	defer cancel()
	q := r.mv.SyncSource()
	if err := n.Conn.Exec(clickhouse.Context(sctx, clickhouse.WithSettings(clickhouse.Settings{"receive_timeout": int(r.e.Opts.InsertWaitTimeout.Seconds())})), q); err != nil {
		return fmt.Errorf("%s on %s (the replica must have every row up to the fence before it is backfilled): %w", q, n.Addr, err)
	}
	return nil
}

// waitDistributedSends waits until no node holds rows queued by a
// Distributed table over the source: such rows (inserted asynchronously,
// insert_distributed_sync=0) may have keys at or below the fence and reach
// the source only later, after their batch. Servers that have
// system.distribution_queue (19.x and later) say so; 18.16 has no such table,
// and there the settle delay is all there is.
func (r *run) waitDistributedSends(ctx context.Context) error {
	if r.topo.Cluster == "" {
		return nil
	}
	deadline := time.Now().Add(r.e.Opts.InsertWaitTimeout)
	for _, n := range r.topo.Healthy() {
		var has uint64
		if err := n.Conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = 'system' AND name = 'distribution_queue'").Scan(&has); err != nil {
			return fmt.Errorf("look for system.distribution_queue on %s: %w", n.Addr, err)
		}
		if has == 0 {
			continue
		}
		src := r.c.Spec.SourceTable
		q := `SELECT toUInt64(sum(q.data_files)) FROM system.distribution_queue AS q
			WHERE (q.database, q.table) IN (SELECT database, name FROM system.tables
				WHERE engine = 'Distributed' AND database = ? AND (position(engine_full, ?) > 0 OR position(engine_full, ?) > 0))`
		for {
			var files uint64
			if err := n.Conn.QueryRow(ctx, q, r.c.Database, "'"+src+"'", ", "+src+",").Scan(&files); err != nil {
				return fmt.Errorf("read system.distribution_queue on %s: %w", n.Addr, err)
			}
			if files == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d files of rows for %s are still queued by Distributed tables on %s: their keys may be below the fence; the backfill waits for them", files, src, n.Addr)
			}
			r.emit(Event{Kind: EventWaiting, Step: planner.StepWait, Message: fmt.Sprintf("waiting for %d queued Distributed sends on %s", files, n.Addr)})
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}
