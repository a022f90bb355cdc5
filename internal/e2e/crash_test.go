//go:build integration

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shirath/shirath/internal/chclient"
)

// partitionedSpec is the summing rollup over two target partitions, so that
// a staged batch is moved in two steps and a crash can land between them.
const partitionedSpec = summingSpec + `partition_by: length(category)
backfill:
  initial_batch_rows: 50000
  max_batch_rows: 50000
`

// TestApplyKilledInBatch: under a concurrent writer, apply dies (as with
// SIGKILL) at every point of a backfill batch in turn: with the INSERT
// running, right after it returned, after the batch was staged (servers
// with MOVE PARTITION), between the moves of its partitions, and after it was
// recorded. After each crash the next apply settles the interrupted batch
// without an operator; the last one completes, and the target is exact.
func TestApplyKilledInBatch(t *testing.T) {
	t.Parallel()
	eachServerKilling(t, func(t *testing.T, f *fixture) {
		feat, err := chclient.DetectFeatures(context.Background(), f.ch)
		if err != nil {
			t.Fatal(err)
		}
		const prefill = 2_000_000
		f.createProducts(prefill)
		f.writeSpec("by_category", partitionedSpec)
		w := f.startWriter("products", prefill, 100, 50*time.Millisecond)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()

		// A kill while a batch's INSERT runs: the in-flight marker is set.
		f.startApply(ctx, "a batch in flight", 3*time.Minute, func() bool {
			st, p, _, _ := f.job("by_category")
			return st == "backfilling" && p > 0 && f.inflight() != ""
		}).kill()
		t.Logf("killed with batch %q in flight", f.inflight())

		points := []string{"batch-marked:2", "batch-inserted:2"}
		if feat.MovePartition {
			points = append(points, "batch-staged:2", "batch-moved:3")
		}
		points = append(points, "batch-recorded:2")
		for _, p := range points {
			f.extra = []string{"SHIRATH_CRASH_AT=" + p}
			r := f.run("apply", "--auto-approve", f.dir)
			if r.code != -1 || !strings.Contains(r.stderr, "crash point "+strings.Split(p, ":")[0]) {
				t.Fatalf("apply with crash point %s: exit %d, want a SIGKILL there\n%s\n%s", p, r.code, r.stdout, r.stderr)
			}
			st, processed, total, _ := f.job("by_category")
			t.Logf("crash point %s: job %s at %d/%d, in flight %q", p, st, processed, total, f.inflight())
			if st != "backfilling" {
				t.Fatalf("after crash point %s the job is %s, want backfilling", p, st)
			}
		}
		f.extra = nil
		r := f.mustRun("apply", "--auto-approve", f.dir)
		t.Logf("final apply:\n%s", r.stdout)
		time.Sleep(time.Second) // keep writing through the MV after the apply
		w.Stop(t)
		f.assertSummingExact()
		if st, p, tot, _ := f.job("by_category"); st != "completed" || p != tot {
			t.Fatalf("after the crashes: %s %d/%d", st, p, tot)
		}
		if n := f.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE '%stage%'"); n != "0" {
			t.Fatalf("%s stage tables left after the backfill", n)
		}
		// The completed shard keeps no marker of the batches it resolved,
		// and, its target not Replicated (no orphan part can exist), it was
		// not marked in doubt.
		if m := f.inflight(); m != "" || f.inDoubt() {
			t.Errorf("completed shard: in-flight marker %q, in doubt %v; want none, false", m, f.inDoubt())
		}
	})
}

// inDoubt reports whether a shard of the job store's jobs is in doubt (a
// batch's outcome unseen: see executor/orphans.go).
func (f *fixture) inDoubt() bool {
	f.t.Helper()
	var doubt bool
	if err := f.pgRow("SELECT COALESCE(bool_or(in_doubt), false) FROM mv_job_shards", nil, &doubt); err != nil {
		f.t.Fatal(err)
	}
	return doubt
}

// inflight reads the in-flight marker of the job's shard ("" when none).
func (f *fixture) inflight() string {
	f.t.Helper()
	var m *string
	err := f.pgRow("SELECT inflight_query_id FROM mv_job_shards ORDER BY shard LIMIT 1", nil, &m)
	if err == pgx.ErrNoRows || m == nil {
		return ""
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return *m
}
