package executor

import (
	"context"
	"errors"
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

func TestWholeRest(t *testing.T) {
	fast := pace{keys: 1_000_000, took: 200 * time.Millisecond} // 5M keys/s
	cases := []struct {
		name             string
		rest, width, max int64
		last             pace
		want             bool
	}{
		{"rest under half a batch after this one", 1_400_000, 1_000_000, 0, pace{}, true},
		{"rest of half a batch or more, no pace yet", 1_500_000, 1_000_000, 0, pace{}, false},
		{"pace says the rest takes 1.5x the target", 15_000_000, 4_000_000, 0, fast, true},
		{"pace says the rest takes longer", 15_000_001, 4_000_000, 0, fast, false},
		{"max_batch_rows bounds it", 1_400_000, 1_000_000, 1_200_000, fast, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := wholeRest(c.rest, c.width, c.max, c.last, 2*time.Second); got != c.want {
				t.Fatalf("wholeRest(%d, %d, %d, %+v) = %v, want %v", c.rest, c.width, c.max, c.last, got, c.want)
			}
		})
	}
}

func TestCountAlong(t *testing.T) {
	calls := 0
	count := func(context.Context) (int64, error) { calls++; return 42, nil }
	if n, err := countAlong(context.Background(), 7, false, count)(); n != 7 || err != nil || calls != 0 {
		t.Fatalf("countAlong without a count = %d, %v (%d calls), want 7 and no call", n, err, calls)
	}
	rows := countAlong(context.Background(), 7, true, count)
	for i := 0; i < 2; i++ {
		if n, err := rows(); n != 42 || err != nil {
			t.Fatalf("countAlong = %d, %v, want 42", n, err)
		}
	}
	if calls != 1 {
		t.Fatalf("count ran %d times, want once", calls)
	}
	boom := errors.New("boom")
	if _, err := countAlong(context.Background(), 7, true, func(context.Context) (int64, error) { return 0, boom })(); !errors.Is(err, boom) {
		t.Fatalf("countAlong error = %v, want %v", err, boom)
	}
}
