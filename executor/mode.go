package executor

import (
	"context"
	"fmt"
	"strings"

	"github.com/AfterShip/clickhouse-sql-parser/parser"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

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
	// modeStage: a target that does not replicate, on a server with
	// ALTER TABLE ... MOVE PARTITION ... TO TABLE: the batch is written into
	// a stage table and then moved into the target, so that the server's
	// own tables tell what an interrupted batch left to do (see stage.go).
	modeStage
)

func (m batchMode) String() string {
	return [...]string{"query log", "deduplication token", "replicated block ids", "stage and move"}[m]
}

// batchMode reads the node's detected features: it asks the server nothing.
func (r *run) batchMode(n *planner.Node) batchMode {
	if !r.targetReplicated() {
		if n.Features.MovePartition {
			return modeStage
		}
		return modeLog
	}
	if n.Features.DedupToken {
		return modeToken
	}
	if r.deterministicBatches() {
		return modeBlocks
	}
	return modeLog
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

// zkPath is the ZooKeeper path of the target's replicated table on node n.
func (r *run) zkPath(ctx context.Context, n *planner.Node) (string, error) {
	var p string
	err := n.Conn.QueryRow(ctx, "SELECT zookeeper_path FROM system.replicas WHERE database = ? AND table = ?", r.c.Database, r.mv.Spec.TargetTable).Scan(&p)
	if err != nil {
		return "", fmt.Errorf("read the ZooKeeper path of %s.%s on %s: %w", r.c.Database, r.mv.Spec.TargetTable, n.Addr, err)
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
