package executor

import (
	"testing"
	"time"
)

func TestFirstWidth(t *testing.T) {
	const target = 2 * time.Second
	cases := []struct {
		name             string
		width, rows      int64
		took             time.Duration
		rest, keys, maxW int64
		want             int64
	}{
		// 100,000 rows in 8 ms: 90 ns a row with the probe's fixed
		// millisecond; 20M rows take 1.8 s, within 1.5x the target.
		{"fast query: the whole rest", 1_000_000, 100_000, 8 * time.Millisecond, 20_000_000, 20_000_000, 0, 20_000_000},
		// 80M rows at 90 ns take 7.2 s: the first batch holds 2 s of rows.
		{"large rest: target's worth of rows", 1_000_000, 100_000, 8 * time.Millisecond, 80_000_000, 80_000_000, 0, 22_222_222},
		// Two rows a key: half the keys for the same rows.
		{"dense keys", 1_000_000, 100_000, 8 * time.Millisecond, 80_000_000, 40_000_000, 0, 11_111_111},
		{"max_batch_rows bounds the whole rest", 1_000_000, 100_000, 8 * time.Millisecond, 20_000_000, 20_000_000, 5_000_000, 5_000_000},
		{"max_batch_rows bounds a batch", 1_000_000, 100_000, 8 * time.Millisecond, 80_000_000, 80_000_000, 5_000_000, 5_000_000},
		// 100,000 rows in 1 s: 10 µs a row, 200,000 rows in 2 s; not below
		// a quarter of the configured range.
		{"slow query shrinks at most 4x", 1_000_000, 100_000, time.Second, 80_000_000, 80_000_000, 0, 250_000},
		{"slow query", 1_000_000, 100_000, 200 * time.Millisecond, 80_000_000, 80_000_000, 0, 995_024},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := firstWidth(c.width, c.rows, c.took, c.rest, c.keys, target, c.maxW)
			if got != c.want {
				t.Errorf("firstWidth = %d, want %d", got, c.want)
			}
		})
	}
}
