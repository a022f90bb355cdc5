package executor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/state"
)

// Orphan parts. An INSERT into a Replicated table whose commit to ZooKeeper
// breaks off (the session is lost between the part's block number and its
// commit) ends with "Unknown status, client must retry" (code 319), and the
// server keeps the part active on the replica that wrote it although
// ZooKeeper may not know it. When ZooKeeper does not, the other replicas
// never get the part, and the batch that is then run again (its block id was
// never recorded, so it is not dropped as a duplicate) is in the target once
// on them and twice on that replica: reads that pick it count the batch
// twice. Seen in CI: TestClusterZooKeeperLostDuringBackfill, one 2,500-row
// batch twice on one replica of a shard and once on the other.
//
// The server drops such a part once it checks it, 5 minutes after the INSERT
// at the earliest; ClickHouse 18.16's check thread does not come back to a
// part queued for later unless something else wakes it, so the part may stay
// until the table restarts. shirath cannot drop one replica's part (18.16 has
// no DETACH PART, and DROP/DETACH PARTITION replicate), so a backfill that
// finds one stops, naming it, before the job goes on to optimize and
// complete.

// orphanPart is an active part of a replicated table on one replica that the
// replica's list of parts in ZooKeeper does not hold.
type orphanPart struct {
	Addr string
	Name string
	Rows uint64
}

// orphanParts lists the orphan parts of db.table on the node conn. A part
// counts only if it is active in two reads of system.parts around the read
// of ZooKeeper: a part merged away in between leaves ZooKeeper before it
// stops being active, and a new part is in ZooKeeper before it is active.
func orphanParts(ctx context.Context, conn driver.Conn, addr, db, table string) ([]orphanPart, error) {
	var zk, replica string
	err := conn.QueryRow(ctx, "SELECT zookeeper_path, replica_name FROM system.replicas WHERE database = ? AND table = ?", db, table).Scan(&zk, &replica)
	if err != nil {
		return nil, fmt.Errorf("read the replica of %s.%s on %s: %w", db, table, addr, err)
	}
	before, err := activeParts(ctx, conn, db, table)
	if err != nil {
		return nil, fmt.Errorf("read the parts of %s.%s on %s: %w", db, table, addr, err)
	}
	if len(before) == 0 {
		return nil, nil
	}
	path := zk + "/replicas/" + replica + "/parts"
	names, err := chclient.Strings(ctx, conn, "SELECT name FROM system.zookeeper WHERE path = ?", path)
	if err != nil {
		return nil, fmt.Errorf("read %s in ZooKeeper through %s: %w", path, addr, err)
	}
	known := map[string]bool{}
	for _, name := range names {
		known[name] = true
	}
	after, err := activeParts(ctx, conn, db, table)
	if err != nil {
		return nil, fmt.Errorf("read the parts of %s.%s on %s: %w", db, table, addr, err)
	}
	var out []orphanPart
	for _, name := range unknownParts(before, after, known) {
		out = append(out, orphanPart{Addr: addr, Name: name, Rows: after[name]})
	}
	return out, nil
}

// unknownParts is the names active in both reads and unknown to ZooKeeper,
// sorted.
func unknownParts(before, after map[string]uint64, known map[string]bool) []string {
	var out []string
	for name := range before {
		if _, still := after[name]; still && !known[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func activeParts(ctx context.Context, conn driver.Conn, db, table string) (map[string]uint64, error) {
	rows, err := conn.Query(ctx, "SELECT name, toUInt64(rows) FROM system.parts WHERE database = ? AND table = ? AND active", db, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var name string
		var n uint64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, rows.Err()
}

// checkOrphans looks for orphan parts of the target on every replica that
// answers (all at once), once the backfill's batches are done. A part found
// is looked at again after a few seconds (a part whose INSERT is committing
// right now is not yet active, but the check is cheap to repeat), and the
// parts found both times stop the apply with an error that names them; the
// job stays where it is, so the next apply checks again.
//
// Only a batch whose outcome shirath did not see can leave such a part: a
// batch whose INSERT returned without error had its parts committed to
// ZooKeeper, and every other batch passed through resolveInflight, which
// marks its shard in doubt first (in the job store, before anything else,
// so that a crash while resolving still leaves the mark). Without a shard
// in doubt the check is skipped: it costs four queries per node at the end
// of every backfill.
func (r *run) checkOrphans(ctx context.Context) error {
	if !r.targetReplicated() {
		return nil
	}
	if !r.anyInDoubt() {
		r.log().Debug("orphan check skipped: every batch's outcome was seen")
		return nil
	}
	var found []orphanPart
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(3 * time.Second):
			}
		}
		nodes := r.topo.Healthy()
		per := make([][]orphanPart, len(nodes))
		errs := schedule(ctx, len(nodes), 0, nil, func(i int) (err error) {
			per[i], err = orphanParts(ctx, nodes[i].Conn, nodes[i].Addr, r.c.Database, r.mv.Spec.TargetTable)
			return err
		})
		if err := errors.Join(errs...); err != nil {
			return err
		}
		var now []orphanPart
		for _, o := range per {
			now = append(now, o...)
		}
		found = stillOrphans(found, now, attempt)
		if len(found) == 0 {
			return nil
		}
	}
	return orphanError(r.c.Database+"."+r.mv.Spec.TargetTable, r.c.Database+"."+r.c.Name, found)
}

// stillOrphans keeps, after the first look, only the parts seen every time.
func stillOrphans(prev, now []orphanPart, attempt int) []orphanPart {
	if attempt == 0 {
		return now
	}
	seen := map[[2]string]bool{}
	for _, o := range prev {
		seen[[2]string{o.Addr, o.Name}] = true
	}
	var out []orphanPart
	for _, o := range now {
		if seen[[2]string{o.Addr, o.Name}] {
			out = append(out, o)
		}
	}
	return out
}

func orphanError(table, mv string, parts []orphanPart) error {
	var list []string
	for _, o := range parts {
		list = append(list, fmt.Sprintf("%s on %s (%d rows)", o.Name, o.Addr, o.Rows))
	}
	return fmt.Errorf("the target %s has parts that ZooKeeper does not know: %s. "+
		"An INSERT whose commit to ZooKeeper broke off (\"Unknown status\") leaves such a part on the replica that wrote it, and the other replicas never get it: "+
		"reads of that replica may count its rows twice (a batch run again after such an error is in the target once more). "+
		"shirath cannot drop one replica's part. Rebuild the MV with `shirath mv backfill %s --restart`, "+
		"or apply again once ClickHouse has dropped the part (its check drops it 5 minutes after the INSERT at the earliest; "+
		"on 18.16 it may wait for the table's next restart)",
		table, strings.Join(list, ", "), mv)
}

// markInDoubt records, before an interrupted batch is resolved, that the
// shard had a batch whose outcome shirath did not see (see checkOrphans):
// only a Replicated target can hold an orphan part.
func (r *run) markInDoubt(ctx context.Context, sp *state.ShardProgress) error {
	if sp.InDoubt || !r.targetReplicated() {
		return nil
	}
	if err := r.e.Store.MarkInDoubt(ctx, r.job.ID, sp.Shard, sp.Replica); err != nil {
		return err
	}
	sp.InDoubt = true
	return nil
}

// anyInDoubt reports whether a shard of the job had a batch whose outcome
// shirath did not see.
func (r *run) anyInDoubt() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, sp := range r.job.Shards {
		if sp.InDoubt {
			return true
		}
	}
	return false
}
