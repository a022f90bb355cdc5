package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shirath/shirath/planner"
)

// TestScheduleBounded: never more than limit items at once, and as many as
// limit when there is enough work; items start in order; a failure stops
// nothing else.
func TestScheduleBounded(t *testing.T) {
	for _, tc := range []struct{ n, limit, want int }{
		{n: 10, limit: 4, want: 4},
		{n: 3, limit: 4, want: 3},
		{n: 5, limit: 1, want: 1},
		{n: 6, limit: 0, want: 6}, // 0: every item at once
	} {
		t.Run(fmt.Sprintf("n%d_limit%d", tc.n, tc.limit), func(t *testing.T) {
			var running, peak atomic.Int32
			var mu sync.Mutex
			var started []int
			errs := schedule(context.Background(), tc.n, tc.limit, nil, func(i int) error {
				mu.Lock()
				started = append(started, i)
				mu.Unlock()
				now := running.Add(1)
				for {
					p := peak.Load()
					if now <= p || peak.CompareAndSwap(p, now) {
						break
					}
				}
				time.Sleep(30 * time.Millisecond)
				running.Add(-1)
				if i == 1 {
					return errors.New("boom")
				}
				return nil
			})
			if got := int(peak.Load()); got != tc.want {
				t.Errorf("peak concurrency %d, want %d", got, tc.want)
			}
			if len(started) != tc.n {
				t.Fatalf("%d items ran, want %d", len(started), tc.n)
			}
			if tc.limit == 1 {
				for i, s := range started {
					if s != i {
						t.Errorf("with limit 1 the items ran in the order %v", started)
						break
					}
				}
			}
			for i, err := range errs {
				if (err != nil) != (i == 1) {
					t.Errorf("item %d: error %v", i, err)
				}
			}
		})
	}
}

// TestScheduleDependencies: an item starts only after its dependencies
// ended, and does not run when one of them failed.
func TestScheduleDependencies(t *testing.T) {
	var mu sync.Mutex
	ended := map[int]time.Time{}
	startedAt := map[int]time.Time{}
	deps := map[int][]int{2: {0}, 3: {1}, 4: {2, 3}}
	errs := schedule(context.Background(), 5, 4, func(i int) []int { return deps[i] }, func(i int) error {
		mu.Lock()
		startedAt[i] = time.Now()
		mu.Unlock()
		time.Sleep(time.Duration(40*(i+1)) * time.Millisecond)
		mu.Lock()
		ended[i] = time.Now()
		mu.Unlock()
		if i == 3 {
			return errors.New("boom")
		}
		return nil
	})
	if !startedAt[2].After(ended[0]) {
		t.Errorf("item 2 started before item 0, its dependency, ended")
	}
	if !startedAt[3].After(ended[1]) {
		t.Errorf("item 3 started before item 1, its dependency, ended")
	}
	if _, ran := startedAt[4]; ran {
		t.Errorf("item 4 ran although its dependency 3 failed")
	}
	if !errors.Is(errs[4], errDependency) {
		t.Errorf("item 4: %v, want errDependency", errs[4])
	}
	if errs[0] != nil || errs[1] != nil || errs[2] != nil || errs[3] == nil {
		t.Errorf("errors %v", errs)
	}
	// A dependency on a later item would deadlock: refused.
	errs = schedule(context.Background(), 2, 2, func(i int) []int { return map[int][]int{0: {1}}[i] }, func(int) error { return nil })
	if errs[0] == nil || errs[1] != nil {
		t.Errorf("forward dependency: %v", errs)
	}
}

// TestScheduleCancel: once the context is done no item starts; the ones
// running finish.
func TestScheduleCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Int32
	errs := schedule(ctx, 6, 2, nil, func(i int) error {
		ran.Add(1)
		if i == 1 {
			cancel()
		}
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	if got := ran.Load(); got != 2 {
		t.Errorf("%d items ran, want the 2 started before the cancel", got)
	}
	for i := 2; i < 6; i++ {
		if !errors.Is(errs[i], context.Canceled) {
			t.Errorf("item %d: %v, want context.Canceled", i, errs[i])
		}
	}
}

// TestLinked: a change waits for the earlier changes it depends on, and a
// destroy for the earlier destroys of the MVs that read it; unrelated
// changes and dependencies outside the plan wait for nothing.
func TestLinked(t *testing.T) {
	ch := func(name string, action planner.Action, deps ...string) *planner.ResourceChange {
		c := &planner.ResourceChange{Database: "db", Name: name, Action: action}
		for _, d := range deps {
			c.DependsOn = append(c.DependsOn, planner.Dependency{Address: "db." + d})
		}
		return c
	}
	changes := []*planner.ResourceChange{
		ch("down_gone", planner.Delete, "up_gone"), // destroys first, downstream first
		ch("up_gone", planner.Delete),
		ch("up", planner.Create),
		ch("other", planner.Create, "outside"),
		ch("down", planner.Create, "up"),
		ch("downer", planner.Update, "down", "up"),
	}
	after := linked(changes)
	want := [][]int{nil, {0}, nil, nil, {2}, {4, 2}}
	for i := range changes {
		if got := after(i); fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("%s waits for %v, want %v", changes[i].Name, got, want[i])
		}
	}
}
