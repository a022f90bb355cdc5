package server

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{6, 32 * time.Second}, {7, time.Minute}, {8, time.Minute}, {1000, time.Minute},
	} {
		if got := backoff(tc.failures, time.Second, time.Minute); got != tc.want {
			t.Errorf("backoff(%d) = %s, want %s", tc.failures, got, tc.want)
		}
	}
}

func TestQueueDedupAndOrder(t *testing.T) {
	q := newQueue()
	for _, k := range []string{"a", "b", "a", "c", "b"} {
		q.Add(k)
	}
	var got []string
	for range 3 {
		k, ok := q.Get()
		if !ok {
			t.Fatal("queue shut down")
		}
		got = append(got, k)
		q.Done(k)
	}
	if fmt.Sprint(got) != "[a b c]" {
		t.Fatalf("got %v, want [a b c]", got)
	}
	if _, ok := q.Pending("a"); ok {
		t.Fatal("a still pending")
	}
}

// A key added while it is processed is handed out again only after Done.
func TestQueueReaddWhileProcessing(t *testing.T) {
	q := newQueue()
	q.Add("a")
	k, _ := q.Get()
	q.Add("a")
	q.Add("b")
	if k2, _ := q.Get(); k2 != "b" {
		t.Fatalf("got %q while a is processing, want b", k2)
	}
	q.Done("b")
	got := make(chan string)
	go func() { k, _ := q.Get(); got <- k }()
	select {
	case k := <-got:
		t.Fatalf("got %q before a was done", k)
	case <-time.After(50 * time.Millisecond):
	}
	q.Done(k)
	if k := <-got; k != "a" {
		t.Fatalf("got %q, want a again", k)
	}
}

// Many workers and many adds never process one key twice at once.
func TestQueueNeverConcurrentPerKey(t *testing.T) {
	q := newQueue()
	var busy [4]atomic.Int32
	var runs atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k, ok := q.Get()
				if !ok {
					return
				}
				i := int(k[0] - 'a')
				if busy[i].Add(1) != 1 {
					t.Errorf("key %s processed twice at once", k)
				}
				time.Sleep(time.Millisecond)
				busy[i].Add(-1)
				runs.Add(1)
				q.Done(k)
			}
		}()
	}
	for i := range 400 {
		q.Add(string(rune('a' + i%4)))
		if i%50 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	q.ShutDown()
	wg.Wait()
	if runs.Load() < 4 {
		t.Fatalf("only %d runs", runs.Load())
	}
}

func TestQueueAddAfter(t *testing.T) {
	q := newQueue()
	q.AddAfter("a", time.Hour)
	q.AddAfter("a", 20*time.Millisecond) // earlier wins
	q.AddAfter("a", time.Hour)           // later is ignored
	at, ok := q.Pending("a")
	if !ok || time.Until(at) > time.Second {
		t.Fatalf("pending %v %v", at, ok)
	}
	start := time.Now()
	k, _ := q.Get()
	if k != "a" || time.Since(start) < 10*time.Millisecond {
		t.Fatalf("got %q after %s", k, time.Since(start))
	}
	q.Done(k)

	// Add cancels a pending delayed add; Forget too.
	q.AddAfter("b", 30*time.Millisecond)
	q.Add("b")
	k, _ = q.Get()
	q.Done(k)
	q.AddAfter("c", 30*time.Millisecond)
	q.Forget("c")
	time.Sleep(60 * time.Millisecond)
	if _, ok := q.Pending("b"); ok {
		t.Fatal("b queued twice")
	}
	if _, ok := q.Pending("c"); ok {
		t.Fatal("c queued after Forget")
	}
}

func TestQueueShutDown(t *testing.T) {
	q := newQueue()
	done := make(chan bool)
	go func() { _, ok := q.Get(); done <- ok }()
	time.Sleep(10 * time.Millisecond)
	q.ShutDown()
	if <-done {
		t.Fatal("Get returned a key after ShutDown")
	}
	q.Add("a")
	if _, ok := q.Get(); ok {
		t.Fatal("Add after ShutDown")
	}
}
