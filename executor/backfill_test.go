package executor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestAdapt(t *testing.T) {
	cases := []struct {
		name      string
		width     int64
		took      time.Duration
		target    time.Duration
		max, want int64
	}{
		{"on target keeps the width", 1_000_000, 2 * time.Second, 2 * time.Second, 0, 999_500},
		{"fast batch grows at most 4x", 1_000_000, 10 * time.Millisecond, 2 * time.Second, 0, 4_000_000},
		{"slow batch shrinks at most 4x", 1_000_000, 20 * time.Second, 2 * time.Second, 0, 250_000},
		{"half the target doubles", 1_000_000, time.Second, 2 * time.Second, 0, 1_998_001},
		{"never below 1000 keys", 1000, time.Minute, 2 * time.Second, 0, 1000},
		{"capped by max_batch_rows", 1_000_000, 10 * time.Millisecond, 2 * time.Second, 20_000, 20_000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := adapt(c.width, c.took, c.target, c.max); got != c.want {
				t.Fatalf("adapt(%d, %s, %s, %d) = %d, want %d", c.width, c.took, c.target, c.max, got, c.want)
			}
		})
	}
}

// clientGone decides whether a batch that failed in the query log was
// written whole: only a broken client connection qualifies.
func TestClientGone(t *testing.T) {
	cases := map[string]bool{
		"Code: 210, e.displayText() = DB::NetException: I/O error: Broken pipe, while writing to socket (127.0.0.1:46800)": true,
		"Code: 209, e.displayText() = DB::NetException: Timeout exceeded while writing to socket":                          true,
		"Code: 32, e.displayText() = DB::Exception: Attempt to read after eof":                                             true,
		"Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded":                                    false,
		"Code: 394, e.displayText() = DB::Exception: Query was cancelled":                                                  false,
		"Code: 2100, something else": false,
		"no code at all":             false,
		"":                           false,
	}
	for exc, want := range cases {
		if got := clientGone(exc); got != want {
			t.Errorf("clientGone(%q) = %v, want %v", exc, got, want)
		}
	}
}

func TestIntersect(t *testing.T) {
	got := intersect([]string{"a", "b", "c"}, []string{"c", "a", "z"})
	if len(got) != 2 || got[0] != "a" || got[1] != "c" {
		t.Fatalf("intersect = %v", got)
	}
	if got := intersect([]string{"a"}, nil); len(got) != 0 {
		t.Fatalf("intersect with nothing = %v", got)
	}
}

// TestSizer: batches whose time does not follow their size (a fixed cost
// per batch, as on a loaded cluster) stop shrinking; batches whose time
// does follow it shrink toward the target.
func TestSizer(t *testing.T) {
	target := 2 * time.Second
	run := func(cost func(width int64) time.Duration) []int64 {
		s := sizer{target: target}
		w := int64(1_000_000)
		var widths []int64
		for range 8 {
			w = s.next(w, cost(w))
			widths = append(widths, w)
		}
		return widths
	}
	fixed := run(func(int64) time.Duration { return 3 * time.Second })
	if last := fixed[len(fixed)-1]; last < 600_000 {
		t.Errorf("a fixed 3 s per batch shrank the range to %d (%v): it should stay near the first one", last, fixed)
	}
	prop := run(func(w int64) time.Duration { return time.Duration(w) * 10 * time.Microsecond })
	if last := prop[len(prop)-1]; last < 150_000 || last > 250_000 {
		t.Errorf("time proportional to the range (10 µs a key): range %d (%v), want about 200,000 (2 s)", last, prop)
	}
	slow := run(func(w int64) time.Duration { return 10*time.Second + time.Duration(w)*time.Microsecond })
	t.Logf("fixed %v\nprop %v\nslow %v", fixed, prop, slow)
	if last := slow[len(slow)-1]; last < 100_000 {
		t.Errorf("a fixed cost above 4x the target shrank the range to %d (%v)", last, slow)
	}
}

func TestWholeRest(t *testing.T) {
	target := 2 * time.Second
	cases := []struct {
		name             string
		rest, width, max int64
		prevW            int64
		prevT            time.Duration
		want             bool
	}{
		{"rest within 1.5x the batch, first batch", 1_500_000, 1_000_000, 0, 0, 0, true},
		{"rest over 1.5x the batch, no pace yet", 1_500_001, 1_000_000, 0, 0, 0, false},
		{"pace: the rest takes 1.5x the target", 15_000_000, 4_000_000, 0, 1_000_000, 200 * time.Millisecond, true},
		{"pace: the rest takes longer", 15_000_100, 4_000_000, 0, 1_000_000, 200 * time.Millisecond, false},
		{"max_batch_rows bounds it", 1_400_000, 1_000_000, 1_200_000, 1_000_000, time.Millisecond, false},
		{"single pass width does not overflow", 1 << 40, math.MaxInt64 - 1, 0, 0, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := sizer{target: target, max: c.max, prevW: c.prevW, prevT: c.prevT}
			if got := s.wholeRest(c.rest, c.width); got != c.want {
				t.Fatalf("wholeRest(%d, %d) after %d keys in %s = %v, want %v", c.rest, c.width, c.prevW, c.prevT, got, c.want)
			}
		})
	}
}

// TestBatchesWithWholeRest walks the backfill loop's ranges over 20M keys
// at a steady pace: the last batch takes the rest instead of leaving a
// short one.
func TestBatchesWithWholeRest(t *testing.T) {
	const f = 20_000_000
	// 1M keys in 0.2 s: the rest after the first batch (19M keys, 3.8 s)
	// is too long for one batch; without the whole rest the batches would
	// be 1M, 4M, 10M and a short 5M.
	perKey := 200 * time.Nanosecond
	s := sizer{target: 2 * time.Second}
	var ranges []int64
	for lo, width := int64(0), int64(1_000_000); lo < f; {
		hi := int64(f)
		if width < f-lo && !s.wholeRest(f-lo, width) {
			hi = lo + width
		}
		ranges = append(ranges, hi-lo)
		width = s.next(hi-lo, time.Duration(hi-lo)*perKey)
		lo = hi
	}
	if len(ranges) != 3 || ranges[0] != 1_000_000 || ranges[1] != 4_000_000 || ranges[2] != 15_000_000 {
		t.Fatalf("batches %v, want 1M, 4M, then the 15M left", ranges)
	}
}

func TestReadRetry(t *testing.T) {
	defer func(p time.Duration) { readRetryPause = p }(readRetryPause)
	readRetryPause = time.Millisecond
	reset := fmt.Errorf("read: %w", syscall.ECONNRESET)
	refused := &clickhouse.Exception{Code: 60, Message: "Table doesn't exist"}
	cases := []struct {
		name       string
		errs       []error // what each call returns
		calls      int
		want       error
		retryHeard bool
	}{
		{"success", []error{nil}, 1, nil, false},
		{"transient then success", []error{reset, nil}, 2, nil, true},
		{"transient twice: retried once", []error{reset, reset, nil}, 2, reset, true},
		{"server refused: not retried", []error{refused, nil}, 1, refused, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls, heard := 0, false
			err := readRetry(context.Background(), func() error { calls++; return c.errs[calls-1] }, func(error) { heard = true })
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) || calls != c.calls || heard != c.retryHeard {
				t.Fatalf("readRetry = %v after %d calls (retry heard %v), want %v after %d", err, calls, heard, c.want, c.calls)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	if err := readRetry(ctx, func() error { calls++; return reset }, func(error) {}); !errors.Is(err, reset) || calls != 1 {
		t.Fatalf("with ctx done: %v after %d calls, want no retry", err, calls)
	}
}
