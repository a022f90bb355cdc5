package executor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
)

// sharedRun is a run of MV name reading table, on executor e, in deployment
// dep.
func sharedRun(e *Executor, dep, name, table string) *run {
	s := &specs.Spec{Name: name, Database: "db", SourceTable: table, Backfill: specs.Backfill{KeyColumn: "id"}}
	return &run{e: e, topo: &planner.Topology{Deployment: dep}, mv: sqlgen.MV{Spec: s},
		c: &planner.ResourceChange{Database: "db", Name: name, Spec: s}}
}

func TestSharedRate(t *testing.T) {
	e := &Executor{Log: hclog.NewNullLogger()}
	var measured atomic.Int64
	measure := func(context.Context) (float64, error) {
		measured.Add(1)
		time.Sleep(50 * time.Millisecond)
		return 7, nil
	}
	ctx := context.Background()
	// MVs of one source asking at once share one sample, and it is fresh
	// for each of them.
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rate, reused, err := sharedRun(e, "d", "a", "src").sharedRate(ctx, false, measure); rate != 7 || reused || err != nil {
				t.Errorf("sharedRate = %v, reused %v, %v; want 7, fresh", rate, reused, err)
			}
		}()
	}
	wg.Wait()
	if n := measured.Load(); n != 1 {
		t.Fatalf("5 MVs of one source sampled the rate %d times, want once", n)
	}
	// A later MV of the source reuses it, and is told so.
	if rate, reused, err := sharedRun(e, "d", "b", "src").sharedRate(ctx, false, measure); rate != 7 || !reused || err != nil || measured.Load() != 1 {
		t.Fatalf("a later MV: rate %v, reused %v, %v, %d samples; want the shared one", rate, reused, err, measured.Load())
	}
	// Another table, or the same table name in another deployment, is
	// another physical source.
	for _, r := range []*run{sharedRun(e, "d", "c", "other"), sharedRun(e, "d2", "c", "src")} {
		before := measured.Load()
		if _, reused, err := r.sharedRate(ctx, false, measure); reused || err != nil || measured.Load() != before+1 {
			t.Fatalf("source %+v did not sample its own rate (reused %v, %v)", r.sourceKey(), reused, err)
		}
	}
	// fresh samples again, and the next MV shares the new sample.
	before := measured.Load()
	if _, reused, err := sharedRun(e, "d", "b", "src").sharedRate(ctx, true, measure); reused || err != nil || measured.Load() != before+1 {
		t.Fatalf("a fresh sample was not taken (reused %v, %v)", reused, err)
	}
	// A sample older than sourceReuse is taken again.
	e.sources.rates[sharedRun(e, "d", "a", "src").sourceKey()].at = time.Now().Add(-sourceReuse)
	before = measured.Load()
	if _, reused, err := sharedRun(e, "d", "a", "src").sharedRate(ctx, false, measure); reused || err != nil || measured.Load() != before+1 {
		t.Fatalf("an old sample was reused (reused %v, %v)", reused, err)
	}
	// A failed sample is not shared: the next MV samples itself.
	boom := errors.New("boom")
	if _, _, err := sharedRun(e, "d", "a", "failing").sharedRate(ctx, false, func(context.Context) (float64, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("sharedRate error = %v, want %v", err, boom)
	}
	before = measured.Load()
	if rate, _, err := sharedRun(e, "d", "b", "failing").sharedRate(ctx, false, measure); rate != 7 || err != nil || measured.Load() != before+1 {
		t.Fatalf("after a failed sample: %v, %v, %d samples", rate, err, measured.Load()-before)
	}
}

func TestSharedPasses(t *testing.T) {
	e := &Executor{Log: hclog.NewNullLogger()}
	a, b, other := sharedRun(e, "d", "a", "src"), sharedRun(e, "d", "b", "src"), sharedRun(e, "d", "c", "other")
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
	old := sharedRun(e, "d", "a", "old")
	old.recordPass(100, time.Now().Add(-sourceReuse))
	if _, ok := old.passedAt(100); ok {
		t.Fatal("a pass older than sourceReuse served")
	}
	for i := int64(0); i < passesKept+10; i++ {
		a.recordPass(1000+i, t0.Add(time.Duration(i)*time.Second))
	}
	if n := len(e.sources.passes[a.sourceKey()]); n != passesKept {
		t.Fatalf("%d passes kept, want %d", n, passesKept)
	}
}

func TestSharedSort(t *testing.T) {
	e := &Executor{Log: hclog.NewNullLogger()}
	reads := 0
	read := func() (bool, string, error) { reads++; return true, "id", nil }
	for _, name := range []string{"a", "b", "c"} {
		if sorted, sk, err := sharedRun(e, "d", name, "src").sharedSort("n1:9000", read); !sorted || sk != "id" || err != nil {
			t.Fatalf("sharedSort = %v, %q, %v", sorted, sk, err)
		}
	}
	if reads != 1 {
		t.Fatalf("3 MVs of one source read its sorting key %d times, want once", reads)
	}
	sharedRun(e, "d", "a", "src").sharedSort("n2:9000", read) // another node's copy
	sharedRun(e, "d", "a", "other").sharedSort("n1:9000", read)
	if reads != 3 {
		t.Fatalf("another copy or source shared a sorting key (%d reads, want 3)", reads)
	}
	boom := errors.New("boom")
	if _, _, err := sharedRun(e, "d", "a", "failing").sharedSort("n1:9000", func() (bool, string, error) { return false, "", boom }); !errors.Is(err, boom) {
		t.Fatalf("error = %v", err)
	}
	if sorted, _, _ := sharedRun(e, "d", "a", "failing").sharedSort("n1:9000", read); !sorted || reads != 4 {
		t.Fatalf("a failed read was kept (%d reads)", reads)
	}
}
