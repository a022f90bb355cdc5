package executor

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/shirath/shirath/internal/chclient"
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
	// Shared with the other MVs of this apply on the source: the rate only
	// sizes the headroom, verifyFence below decides whether F is safe.
	rate, reused, err := r.sharedRate(withStep(ctx, "rate-sample"), false, r.insertRate)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < r.e.Opts.FenceAttempts; attempt++ {
		r.emit(Event{Kind: EventStep, Step: planner.StepCreateTarget, Message: "create " + r.mv.Spec.TargetTable})
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
		ok, seen, err := r.verifyFence(withStep(ctx, "fence-check"), f)
		if err != nil {
			return err
		}
		if ok {
			return r.fenceVerified(withStep(ctx, "fence-verified"), createTarget, createMV)
		}
		r.log().Warn("fence unsafe: retrying with more headroom", "fence", f, "max_after", seen, "attempt", attempt+1)
		r.emit(Event{Kind: EventWaiting, Step: planner.StepFence, Message: fmt.Sprintf("fence %d unsafe (max(%s) reached %d before running INSERTs finished): retrying with more headroom", f, key, seen)})
		if err := r.dropObjects(withStep(ctx, "fence-retry"), r.mv); err != nil {
			return err
		}
		if rate == 0 || reused {
			// Inserts started after the rate was read as zero, or sped up
			// since another MV of the source sampled it: sample it again
			// (and share the new sample).
			if rate, reused, err = r.sharedRate(withStep(ctx, "rate-sample"), true, r.insertRate); err != nil {
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
	srvTarget, err := r.serverCreateQuery(ctx, r.mv.Spec.TargetTable)
	if err != nil {
		return err
	}
	srvMV, err := r.serverCreateQuery(ctx, r.mv.Spec.Name)
	if err != nil {
		return err
	}
	applied["target"] = state.AppliedObject{SQL: createTarget, Server: srvTarget}
	applied["mv"] = state.AppliedObject{SQL: createMV, Server: srvMV}
	if r.topo.Cluster != "" {
		r.emit(Event{Kind: EventStep, Step: planner.StepCreateDistributed, Message: "create " + r.mv.Spec.DistributedTable})
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
// target), then the Distributed table, the target and a batch's stage.
func (r *run) dropObjects(ctx context.Context, m sqlgen.MV) error {
	qs := []string{m.DropMV(true), m.DropDistributed(true), m.DropTarget(true)}
	if r.stageCapable() {
		qs = append(qs, m.DropStage(true))
	}
	for _, q := range qs {
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
	out, err := chclient.Strings(ctx, n.Conn, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", n.Addr, err)
	}
	return out, nil
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
// second. fence takes it through sharedRate: the MVs of one source applied
// together share one sample.
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
