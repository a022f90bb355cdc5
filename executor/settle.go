package executor

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// resolveInflight decides what happened to a batch that was started and
// never confirmed (the apply died, or the connection broke). It asks the
// node's query log (a staged batch: the stage, see stage.go). A batch proven written is recorded as done; one proven
// not written is run again; anything else stops the job as needs_attention,
// naming the range, rather than risk counting rows twice or not at all.
func (r *run) resolveInflight(ctx context.Context, cur *planner.Node, sp *state.ShardProgress, mode batchMode) error {
	if err := r.markInDoubt(ctx, sp); err != nil {
		return err
	}
	lo, hi := *sp.InflightLo, *sp.InflightHi
	if m, ok := strings.CutSuffix(sp.InflightQueryID, stagedMarker); ok {
		qid, _, _ := strings.Cut(m, "@")
		return r.settleStaged(ctx, cur, sp, qid, true)
	}
	if m, ok := strings.CutSuffix(sp.InflightQueryID, stageMarker); ok {
		qid, _, _ := strings.Cut(m, "@")
		return r.settleStaged(ctx, cur, sp, qid, false)
	}
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
	// Features were detected with the log flushed once: a server that
	// keeps a query_log has the table by then.
	if !n.Features.QueryLog {
		return batchUnknown, "the server keeps no query_log", nil
	}
	if err := n.Conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
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
