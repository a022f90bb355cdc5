package executor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// waitSource waits until the source has passed the fence (every key up to F
// has arrived) and the settle delay has passed, then records what each copy
// of the target has to backfill. The settle delay runs from the first moment
// the source was seen past a fence at or above F, by this MV or by another
// MV of this apply on the same source (shared.go): MVs applied together wait
// it once, and each still waits until the source itself is past its own F.
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
	// Every copy past a fence F' >= F (or quiet) is every copy past F:
	// what another MV of the source saw is as good as seeing it here.
	passed, shared := r.passedAt(f)
	if !shared {
		if err := r.waitEveryCopy(ctx, f, deadline); err != nil {
			return err
		}
		passed = time.Now()
		r.recordPass(f, passed)
	}
	if err := r.settle(ctx, passed, shared); err != nil {
		return err
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

// settle waits until the settle delay has passed since the source passed the
// fence, at passed (seen by another MV of the source when shared).
func (r *run) settle(ctx context.Context, passed time.Time, shared bool) error {
	d := r.c.Spec.Backfill.SettleDelay.Duration
	if d <= 0 {
		return nil
	}
	left := time.Until(passed.Add(d))
	ago := time.Since(passed).Round(time.Millisecond)
	switch {
	case left <= 0:
		r.emit(Event{Kind: EventWaiting, Step: planner.StepWait, Message: fmt.Sprintf("source passed the fence %s ago (seen for another MV of the source): settled", ago)})
		return nil
	case shared:
		r.emit(Event{Kind: EventWaiting, Step: planner.StepWait, Message: fmt.Sprintf("source passed the fence %s ago (seen for another MV of the source); settling %s more", ago, left.Round(time.Millisecond))})
	default:
		r.emit(Event{Kind: EventWaiting, Step: planner.StepWait, Message: fmt.Sprintf("source passed the fence; settling %s", d)})
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(left):
		return nil
	}
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

// syncSource makes a replica of a Replicated source fetch every part its
// replication queue knows of, so that the backfill, which reads one replica
// per shard, sees every row up to the fence and not just the ones this
// replica had fetched so far.
func (r *run) syncSource(ctx context.Context, n *planner.Node) error {
	if r.topo.Cluster == "" {
		return nil
	}
	var engine string
	if err := n.Conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", r.c.Database, r.mv.Spec.SourceTable).Scan(&engine); err != nil {
		return fmt.Errorf("read the engine of %s.%s on %s: %w", r.c.Database, r.mv.Spec.SourceTable, n.Addr, err)
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
		if !n.Features.DistributionQueue {
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

// quietShard is how long a copy below the fence must receive nothing to be
// taken as holding no row in flight.
const quietShard = 15 * time.Second

// waitEveryCopy waits until every copy of the source (a shard, or a node of
// a non-replicated source) has passed the fence too, or has received no row
// for the settle delay (at least quietShard): the source's maximum passing the
// fence on one shard says nothing of rows still on their way to another, and
// on 18.16, which has no system.distribution_queue, rows a Distributed table
// queued (insert_distributed_sync=0) were seen arriving more than ten
// seconds late under load. A Distributed table sends each shard's queue in
// order, so a shard that has received a key above the fence has received
// every row queued before it by that sender. A copy that stays below the
// fence without receiving anything holds no row in flight that this can see
// (a copy with rows of its own, as a non-replicated source may have).
func (r *run) waitEveryCopy(ctx context.Context, f int64, deadline time.Time) error {
	if r.topo.Cluster == "" {
		return nil
	}
	// A Distributed table's sender backs off after an error (an INSERT that
	// raced with the creation of an MV on the shard fails with "Table ...
	// doesn't exist"), so a shard can go quiet for seconds with rows still
	// queued for it: seen for more than a second under load.
	quiet := max(r.c.Spec.Backfill.SettleDelay.Duration, quietShard)
	type seen struct {
		count uint64
		since time.Time
	}
	last := map[string]seen{}
	announced := false
	for {
		var behind []string
		for _, group := range r.copies() {
			n := firstHealthy(group)
			if n == nil {
				return fmt.Errorf("shard %d: no replica answers", group[0].Shard)
			}
			var top int64
			var count uint64
			if err := n.Conn.QueryRow(ctx, r.mv.MaxKeyCount()).Scan(&top, &count); err != nil {
				return fmt.Errorf("read max(%s) on %s: %w", r.c.Spec.Backfill.KeyColumn, n.Addr, err)
			}
			if top >= f {
				continue
			}
			if s, ok := last[n.Addr]; ok && s.count == count && time.Since(s.since) >= quiet {
				continue
			} else if !ok || s.count != count {
				last[n.Addr] = seen{count, time.Now()}
			}
			behind = append(behind, fmt.Sprintf("%s at %d", n.Addr, top))
		}
		if len(behind) == 0 {
			return nil
		}
		if !announced {
			r.emit(Event{Kind: EventWaiting, Step: planner.StepWait, Message: fmt.Sprintf("waiting for every shard to pass the fence %d or go quiet: %s", f, strings.Join(behind, ", "))})
			announced = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: shards still receiving rows below the fence %d after %s: %s; apply again later", ErrWaiting, f, r.e.Opts.SourceWaitTimeout, strings.Join(behind, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
