package executor

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
)

// sharedRun is a run of MV name on source table, on executor e.
func sharedRun(e *Executor, name, table string) *run {
	return &run{e: e, topo: &planner.Topology{Deployment: "d"}, c: &planner.ResourceChange{Database: "db", Name: name,
		Spec: &specs.Spec{Name: name, SourceTable: table, Backfill: specs.Backfill{KeyColumn: "id"}}}}
}

func TestSharedRate(t *testing.T) {
	e := &Executor{Log: hclog.NewNullLogger()}
	var measured atomic.Int64
	measure := func(context.Context) (float64, error) {
		measured.Add(1)
		time.Sleep(50 * time.Millisecond)
		return 7, nil
	}
	// MVs of one source measuring at once share one measurement.
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rate, err := sharedRun(e, "a", "src").sharedRate(context.Background(), false, measure); rate != 7 || err != nil {
				t.Errorf("sharedRate = %v, %v, want 7", rate, err)
			}
		}()
	}
	wg.Wait()
	if n := measured.Load(); n != 1 {
		t.Fatalf("5 MVs of one source measured the rate %d times, want once", n)
	}
	// A later MV of the source reuses it; another source and a fresh
	// measurement do not.
	if _, err := sharedRun(e, "b", "src").sharedRate(context.Background(), false, measure); err != nil || measured.Load() != 1 {
		t.Fatalf("a later MV measured again (%d measurements, %v)", measured.Load(), err)
	}
	if _, err := sharedRun(e, "c", "other").sharedRate(context.Background(), false, measure); err != nil || measured.Load() != 2 {
		t.Fatalf("another source did not measure its own rate (%d measurements, %v)", measured.Load(), err)
	}
	if _, err := sharedRun(e, "b", "src").sharedRate(context.Background(), true, measure); err != nil || measured.Load() != 3 {
		t.Fatalf("a fresh measurement was not made (%d measurements, %v)", measured.Load(), err)
	}
	// A measurement older than rateReuse is made again.
	e.shared.rates[sharedRun(e, "a", "src").sourceID()].at = time.Now().Add(-rateReuse)
	if _, err := sharedRun(e, "a", "src").sharedRate(context.Background(), false, measure); err != nil || measured.Load() != 4 {
		t.Fatalf("an old measurement was reused (%d measurements, %v)", measured.Load(), err)
	}
}

func TestSharedPasses(t *testing.T) {
	e := &Executor{Log: hclog.NewNullLogger()}
	a, b, other := sharedRun(e, "a", "src"), sharedRun(e, "b", "src"), sharedRun(e, "c", "other")
	t0 := time.Now().Add(-time.Minute)
	if _, ok := b.passedAt(100); ok {
		t.Fatal("a pass known before any was recorded")
	}
	a.recordPass(100, t0)
	a.recordPass(200, t0.Add(time.Second))
	a.recordPass(150, t0.Add(2*time.Second)) // below a fence passed earlier: nothing new
	cases := []struct {
		f    int64
		want time.Time
		ok   bool
	}{
		{50, t0, true},                   // the first pass at or above the fence
		{100, t0, true},                  // the fence itself
		{150, t0.Add(time.Second), true}, // only 200 covers it
		{200, t0.Add(time.Second), true},
		{201, time.Time{}, false}, // no pass that high: the MV waits itself
	}
	for _, c := range cases {
		at, ok := b.passedAt(c.f)
		if ok != c.ok || !at.Equal(c.want) {
			t.Errorf("passedAt(%d) = %v, %v; want %v, %v", c.f, at, ok, c.want, c.ok)
		}
	}
	if _, ok := other.passedAt(50); ok {
		t.Fatal("a pass of one source served another source")
	}
	for i := int64(0); i < passesKept+10; i++ {
		a.recordPass(1000+i, t0.Add(time.Duration(i)*time.Second))
	}
	if n := len(e.shared.passes[a.sourceID()]); n != passesKept {
		t.Fatalf("%d passes kept, want %d", n, passesKept)
	}
}
