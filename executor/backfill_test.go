package executor

import (
	"testing"
	"time"
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
