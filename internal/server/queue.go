package server

import (
	"sync"
	"time"
)

// queue is a work queue of MV keys in the manner of client-go's workqueue: a
// key is queued at most once however often it is added, and a key being
// processed is never handed to a second worker; added again meanwhile, it is
// handed out once the first worker is done with it.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	order      []string        // keys ready to be handed out, oldest first
	dirty      map[string]bool // keys waiting in order, or re-added while processing
	processing map[string]bool
	timers     map[string]*delayed // at most one pending delayed add per key
	shutdown   bool
}

type delayed struct {
	t  *time.Timer
	at time.Time
}

func newQueue() *queue {
	q := &queue{dirty: map[string]bool{}, processing: map[string]bool{}, timers: map[string]*delayed{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now. A pending delayed add of the key is cancelled: the key
// runs now, and schedules its own next run.
func (q *queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopTimer(key)
	q.add(key)
}

func (q *queue) add(key string) {
	if q.shutdown || q.dirty[key] {
		return
	}
	q.dirty[key] = true
	if q.processing[key] {
		return // Done queues it again
	}
	q.order = append(q.order, key)
	q.cond.Signal()
}

// AddAfter queues key once d has passed. An earlier pending delayed add of
// the same key wins; a later one is replaced.
func (q *queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := time.Now().Add(d)
	if old, ok := q.timers[key]; ok {
		if !old.at.After(at) {
			return
		}
		old.t.Stop()
	}
	dl := &delayed{at: at}
	dl.t = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.timers[key] != dl {
			return // replaced or cancelled meanwhile
		}
		delete(q.timers, key)
		q.add(key)
	})
	q.timers[key] = dl
}

// Forget cancels a pending delayed add of key.
func (q *queue) Forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopTimer(key)
}

func (q *queue) stopTimer(key string) {
	if dl, ok := q.timers[key]; ok {
		dl.t.Stop()
		delete(q.timers, key)
	}
}

// Pending reports when key is due: now if it is queued, the time of its
// delayed add, or zero and false when it is not scheduled at all.
func (q *queue) Pending(key string) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dirty[key] {
		return time.Now(), true
	}
	if dl, ok := q.timers[key]; ok {
		return dl.at, true
	}
	return time.Time{}, false
}

// Get blocks until a key is ready and marks it as processing; ok is false
// once the queue is shut down.
func (q *queue) Get() (key string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	key = q.order[0]
	q.order = q.order[1:]
	delete(q.dirty, key)
	q.processing[key] = true
	return key, true
}

// Done marks key as processed; if it was added meanwhile it is queued again.
func (q *queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] && !q.shutdown {
		q.order = append(q.order, key)
		q.cond.Signal()
	}
}

// ShutDown makes every Get return false and drops what is queued: the
// desired state is read again from scratch on the next start.
func (q *queue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for k := range q.timers {
		q.stopTimer(k)
	}
	q.cond.Broadcast()
}

// backoff is the delay before retry number failures (1-based) of a key:
// base, 2*base, 4*base ... capped at max.
func backoff(failures int, base, max time.Duration) time.Duration {
	if failures < 1 {
		failures = 1
	}
	d := base
	for i := 1; i < failures; i++ {
		d *= 2
		if d >= max || d <= 0 {
			return max
		}
	}
	if d > max {
		return max
	}
	return d
}
