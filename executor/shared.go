package executor

import (
	"context"
	"sync"
	"time"
)

// What the MVs of one apply learn about a physical source they share, so
// that 20 new MVs on one table do not each pay the same waits one after the
// other: the insert rate sample (1 s), the moment the source passed a fence
// (the settle delay runs from there), and whether a copy of the source is
// sorted by the key (the pass decision). Each MV still takes its own lock,
// its own fence, its own check of that fence against the source and its own
// backfill. What is shared only sizes or times the work; it never stands in
// for a check that makes the result exact (see each use).

// sourceReuse is how long a fact learnt for one MV serves the other MVs of
// the same source; an older one is learnt again.
const sourceReuse = 5 * time.Minute

// passesKept bounds the fences remembered per source (the oldest go first:
// only the chance to share a settle delay is lost).
const passesKept = 64

// sourceKey names a physical source: the deployment (a node's or a
// cluster's identity), the table and the key column whose growth is
// measured.
type sourceKey struct{ deployment, cluster, database, table, key string }

// copyKey names the source on one node.
type copyKey struct {
	source sourceKey
	node   string
}

// sourceFacts is an Executor's memory of its sources; the zero value is
// ready.
type sourceFacts struct {
	mu     sync.Mutex
	rates  map[sourceKey]*rateSample
	passes map[sourceKey][]pass
	sorts  map[copyKey]sortCheck
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

// sortCheck is what the sorting key of a copy of the source said.
type sortCheck struct {
	sorted     bool
	sortingKey string
	at         time.Time
}

func (r *run) sourceKey() sourceKey {
	s := r.mv.Spec
	return sourceKey{r.topo.Deployment, r.topo.Cluster, s.Database, s.SourceTable, s.Backfill.KeyColumn}
}

// sharedRate returns the source's insert rate for the fence: a sample taken
// for another MV of this apply within sourceReuse, or the one being taken
// now (waited for), or else one taken now by measure. fresh takes a new one
// whatever there is, and shares it. reused says the rate was sampled before
// this call: it may be older than the inserts now running.
//
// Sharing cannot weaken exactness: the rate only sizes the fence's headroom.
// Whatever F it gives, fence() verifies F after the MV exists (every INSERT
// running at its creation finished, then max(key) <= F) and drops and
// retries an unsafe fence; a retry after a reused rate samples it afresh. A
// rate that is too high only makes the wait for the source longer.
func (r *run) sharedRate(ctx context.Context, fresh bool, measure func(context.Context) (float64, error)) (rate float64, reused bool, err error) {
	s := &r.e.sources
	id := r.sourceKey()
	for {
		s.mu.Lock()
		if s.rates == nil {
			s.rates = map[sourceKey]*rateSample{}
		}
		old := s.rates[id]
		if old == nil || fresh {
			break // with s.mu held
		}
		s.mu.Unlock()
		inFlight := false
		select {
		case <-old.done:
		default:
			inFlight = true
			select {
			case <-old.done:
			case <-ctx.Done():
				return 0, false, ctx.Err()
			}
		}
		if old.err == nil && time.Since(old.at) < sourceReuse {
			r.log().Debug("insert rate shared with another MV of the source", "rate", old.rate, "age", time.Since(old.at))
			return old.rate, !inFlight, nil
		}
		s.mu.Lock()
		if s.rates[id] == old {
			break // too old or failed: take a new one, with s.mu held
		}
		// Another MV started a new sample meanwhile: share that one.
		s.mu.Unlock()
	}
	mine := &rateSample{done: make(chan struct{})}
	s.rates[id] = mine
	s.mu.Unlock()
	mine.rate, mine.err = measure(ctx)
	mine.at = time.Now()
	close(mine.done)
	return mine.rate, false, mine.err
}

// passedAt returns the earliest moment the source is known to have been
// past fence f, seen by this MV or another of the same source within
// sourceReuse.
func (r *run) passedAt(f int64) (time.Time, bool) {
	s := &r.e.sources
	s.mu.Lock()
	defer s.mu.Unlock()
	// Fences are kept in increasing order, and so are their moments: the
	// first one at or above f was passed first.
	for _, p := range s.passes[r.sourceKey()] {
		if p.fence >= f && time.Since(p.at) < sourceReuse {
			return p.at, true
		}
	}
	return time.Time{}, false
}

// recordPass remembers that the source was past fence f at moment at.
func (r *run) recordPass(f int64, at time.Time) {
	s := &r.e.sources
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.passes == nil {
		s.passes = map[sourceKey][]pass{}
	}
	id := r.sourceKey()
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

// sharedSort returns what the sorting key of the source on node said, read
// for another MV of this apply within sourceReuse, or reads it with read.
// It only chooses between key-range batches and one pass: both are exact
// on any source (a wrong choice would only cost time).
func (r *run) sharedSort(node string, read func() (bool, string, error)) (bool, string, error) {
	s := &r.e.sources
	id := copyKey{r.sourceKey(), node}
	s.mu.Lock()
	c, ok := s.sorts[id]
	s.mu.Unlock()
	if ok && time.Since(c.at) < sourceReuse {
		return c.sorted, c.sortingKey, nil
	}
	sorted, sk, err := read()
	if err != nil {
		return false, "", err
	}
	s.mu.Lock()
	if s.sorts == nil {
		s.sorts = map[copyKey]sortCheck{}
	}
	s.sorts[id] = sortCheck{sorted, sk, time.Now()}
	s.mu.Unlock()
	return sorted, sk, nil
}
