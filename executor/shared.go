package executor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/shirath/shirath/planner"
)

// What the MVs of one Executor learn about a source they share: the waits
// before a backfill use no server, and MVs on the same source need not pay
// them one after the other. Each MV still takes its own lock, fence and
// backfill, and checks its own fence against the source.

// rateReuse is how long an insert rate measured for one MV serves the other
// MVs of the same source. The rate only sizes a fence's headroom: a fence
// that an older rate leaves too low is caught by its check and retried with
// a rate measured again.
const rateReuse = 30 * time.Second

// passesKept bounds the fences remembered per source (the oldest go first:
// only the chance to share a settle delay is lost).
const passesKept = 64

// sourceID names a source as the MVs of one Executor see it.
type sourceID struct{ deployment, cluster, database, table, key string }

// shared is the Executor's memory of its sources.
type shared struct {
	mu     sync.Mutex
	rates  map[sourceID]*rateSample
	passes map[sourceID][]pass
	tops   map[string]int64 // node address and source: the largest key seen there
}

// rateSample is one measurement of a source's insert rate, in flight until
// done is closed.
type rateSample struct {
	done chan struct{}
	rate float64
	err  error
	at   time.Time
}

// pass records that the source was seen past a fence: every key up to fence
// had arrived on every copy (or the copy had gone quiet) at moment at.
type pass struct {
	fence int64
	at    time.Time
}

func (r *run) sourceID() sourceID {
	return sourceID{r.topo.Deployment, r.topo.Cluster, r.c.Database, r.c.Spec.SourceTable, r.c.Spec.Backfill.KeyColumn}
}

// sharedRate returns the source's insert rate: one measured for another MV
// of this Executor within rateReuse, or being measured now (waited for), or
// else measured now by measure. fresh forces a new measurement.
func (r *run) sharedRate(ctx context.Context, fresh bool, measure func(context.Context) (float64, error)) (float64, error) {
	s := &r.e.shared
	id := r.sourceID()
	s.mu.Lock()
	if s.rates == nil {
		s.rates = map[sourceID]*rateSample{}
	}
	if old := s.rates[id]; old != nil && !fresh {
		s.mu.Unlock()
		select {
		case <-old.done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if old.err == nil && time.Since(old.at) < rateReuse {
			r.log().Debug("insert rate shared with another MV of the source", "rate", old.rate, "age", time.Since(old.at))
			return old.rate, nil
		}
		s.mu.Lock()
		if cur := s.rates[id]; cur != old {
			// Another MV started a new measurement meanwhile: share it.
			s.mu.Unlock()
			return r.sharedRate(ctx, false, measure)
		}
	}
	mine := &rateSample{done: make(chan struct{})}
	s.rates[id] = mine
	s.mu.Unlock()
	mine.rate, mine.err = measure(ctx)
	mine.at = time.Now()
	close(mine.done)
	return mine.rate, mine.err
}

// passedAt returns the earliest moment the source is known to have been
// past fence f, by this MV or another of the same source.
func (r *run) passedAt(f int64) (time.Time, bool) {
	s := &r.e.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	// Fences are kept in increasing order, and so are their moments: the
	// first one at or above f was passed first.
	for _, p := range s.passes[r.sourceID()] {
		if p.fence >= f {
			return p.at, true
		}
	}
	return time.Time{}, false
}

// recordPass remembers that the source was past fence f at moment at.
func (r *run) recordPass(f int64, at time.Time) {
	s := &r.e.shared
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.passes == nil {
		s.passes = map[sourceID][]pass{}
	}
	id := r.sourceID()
	ps := s.passes[id]
	if n := len(ps); n > 0 && ps[n-1].fence >= f {
		// A fence at or above f was passed already, earlier.
		return
	}
	ps = append(ps, pass{f, at})
	if len(ps) > passesKept {
		ps = ps[len(ps)-passesKept:]
	}
	s.passes[id] = ps
}

// maxKey reads the largest key of the source on node n. Once a largest key
// is known for the node, only the keys at or above it are read: on a source
// sorted by the key that is a few granules instead of the whole table. If
// none is left there (rows deleted, the table made again), the whole table
// is read.
func (r *run) maxKey(ctx context.Context, n *planner.Node) (int64, error) {
	s := &r.e.shared
	at := n.Addr + " " + r.c.Database + "." + r.c.Spec.SourceTable + "." + r.c.Spec.Backfill.KeyColumn
	s.mu.Lock()
	last, known := s.tops[at]
	s.mu.Unlock()
	var m int64
	if known && last > 0 {
		if err := n.Conn.QueryRow(ctx, r.mv.MaxKeyFrom(last)).Scan(&m); err != nil {
			return 0, fmt.Errorf("read max(%s) on %s: %w", r.c.Spec.Backfill.KeyColumn, n.Addr, err)
		}
	}
	if m < last || !known || last <= 0 {
		if err := n.Conn.QueryRow(ctx, r.mv.MaxKey()).Scan(&m); err != nil {
			return 0, fmt.Errorf("read max(%s) on %s: %w", r.c.Spec.Backfill.KeyColumn, n.Addr, err)
		}
	}
	s.mu.Lock()
	if s.tops == nil {
		s.tops = map[string]int64{}
	}
	s.tops[at] = m
	s.mu.Unlock()
	return m, nil
}
