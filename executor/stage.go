package executor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// Staged batches (modeStage) make an interrupted batch decidable without a
// query log, which servers may not keep (chDB's engine has none) and which a
// restart can lose. A batch is written into a stage table of the target's
// structure; only once that INSERT has returned does the in-flight marker
// say "staged", and only then are the stage's partitions moved into the
// target, each MOVE PARTITION atomic. So after a crash:
//   - marker "stage": the target holds nothing of the batch (moves start
//     only after "staged" is recorded); the stage may hold part of it. The
//     batch runs again from the start, into an emptied stage.
//   - marker "staged": the whole batch was in the stage; what is still
//     there has not reached the target, what is gone has. Moving the rest
//     completes the batch.
//
// A deduplication token on a non-replicated target would be simpler, but on
// 26.x the MV's own blocks inherit tokens from the source INSERT and
// identical source INSERTs then lose rows in the target (see README,
// ClickHouse versions): the target must not deduplicate.
const (
	stageMarker  = "#stage"
	stagedMarker = "#staged"
)

// stageCapable reports whether a batch of this MV may have used a stage:
// a target that does not replicate, on a server that moves partitions.
func (r *run) stageCapable() bool {
	if r.c.Spec == nil || r.targetReplicated() {
		return false
	}
	for _, n := range r.topo.Healthy() {
		if n.Features.MovePartition {
			return true
		}
	}
	return false
}

// stagedBatch writes the batch (lo, hi] into the stage, records that it is
// staged, and moves it into the target. marker is the in-flight marker
// already recorded for the batch.
func (r *run) stagedBatch(ctx context.Context, n *planner.Node, sp *state.ShardProgress, lo, hi int64, qid, marker string) error {
	for _, q := range []string{r.mv.CreateStage(), r.mv.TruncateStage()} {
		if err := r.exec(ctx, n, q); err != nil {
			return err
		}
	}
	q, err := r.mv.StageBatch(sqlgen.Range{After: &lo, UpTo: &hi})
	if err != nil {
		return err
	}
	settings := clickhouse.Settings{"log_queries": 1, "interactive_delay": 1_000_000_000_000}
	if err := r.insert(ctx, n, q, qid, settings, lo, hi); err != nil {
		return err
	}
	crashPoint("batch-inserted")
	staged := strings.TrimSuffix(marker, stageMarker) + stagedMarker
	if err := r.e.Store.BeginBatch(ctx, r.job.ID, sp.Shard, sp.Replica, lo, hi, staged); err != nil {
		return err
	}
	crashPoint("batch-staged")
	return r.moveStage(ctx, n, qid)
}

// moveStage moves every partition left in the stage into the target.
func (r *run) moveStage(ctx context.Context, n *planner.Node, qid string) error {
	ids, err := queryStrings(ctx, n, "SELECT DISTINCT partition_id FROM system.parts WHERE database = ? AND table = ? AND active ORDER BY partition_id",
		r.c.Database, r.mv.StageTable())
	if err != nil {
		return err
	}
	for i, id := range ids {
		mctx := clickhouse.Context(ctx, clickhouse.WithQueryID(fmt.Sprintf("%s-move-%d", qid, i)))
		if err := r.exec(mctx, n, r.mv.MoveStagePartition(id)); err != nil {
			return err
		}
		crashPoint("batch-moved")
	}
	return nil
}

// settleStaged settles an interrupted staged batch on node n (see the top
// of this file). It returns with the batch recorded, or with nothing of it
// in the target and the batch to run again.
func (r *run) settleStaged(ctx context.Context, n *planner.Node, sp *state.ShardProgress, qid string, staged bool) error {
	lo, hi := *sp.InflightLo, *sp.InflightHi
	// The apply died, the server did not: a statement of the batch may
	// still run (the INSERT into the stage, a MOVE). The server registers
	// a query when it receives it, long before a new apply gets here.
	if err := r.waitQueries(ctx, n, qid); err != nil {
		return err
	}
	if !staged {
		r.emit(Event{Kind: EventStep, Step: planner.StepResumeBackfill, Shard: sp.Shard,
			Message: fmt.Sprintf("the interrupted batch (%d, %d] never reached the target: running it again", lo, hi)})
		return nil
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepResumeBackfill, Shard: sp.Shard,
		Message: fmt.Sprintf("the interrupted batch (%d, %d] was staged: moving what is left of it into the target", lo, hi)})
	if err := r.moveStage(ctx, n, qid+"-settle"); err != nil {
		return err
	}
	rows, err := r.countRange(ctx, n, lo, hi)
	if err != nil {
		return err
	}
	return r.record(ctx, sp, hi, rows)
}

// waitQueries waits until no query whose id starts with prefix runs on n.
func (r *run) waitQueries(ctx context.Context, n *planner.Node, prefix string) error {
	deadline := time.Now().Add(r.e.Opts.InsertWaitTimeout)
	for {
		ids, err := queryStrings(ctx, n, "SELECT query_id FROM system.processes WHERE startsWith(query_id, ?)", prefix)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the interrupted batch's queries %s still run on %s after %s", strings.Join(ids, ", "), n.Addr, r.e.Opts.InsertWaitTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dropStage drops the stage once every copy is backfilled.
func (r *run) dropStage(ctx context.Context) error {
	if !r.stageCapable() {
		return nil
	}
	return r.ddlAll(ctx, r.mv.DropStage(true))
}
