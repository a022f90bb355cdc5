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
		took, fixed      time.Duration
		rest, keys, maxW int64
		want             int64
	}{
		// 100,000 rows in 10 ms, 1 of them fixed: 90 ns a row; 20M rows
		// take 1.8 s, within 1.5x the target.
		{"fast query: the whole rest", 1_000_000, 100_000, 10 * time.Millisecond, time.Millisecond, 20_000_000, 20_000_000, 0, 20_000_000},
		// 80M rows at 90 ns take 7.2 s: the first batch holds 2 s of rows.
		{"large rest: target's worth of rows", 1_000_000, 100_000, 10 * time.Millisecond, time.Millisecond, 80_000_000, 80_000_000, 0, 22_222_222},
		// Two rows a key: half the keys for the same rows.
		{"dense keys", 1_000_000, 100_000, 10 * time.Millisecond, time.Millisecond, 80_000_000, 40_000_000, 0, 11_111_111},
		{"max_batch_rows bounds the whole rest", 1_000_000, 100_000, 10 * time.Millisecond, time.Millisecond, 20_000_000, 20_000_000, 5_000_000, 5_000_000},
		{"max_batch_rows bounds a batch", 1_000_000, 100_000, 10 * time.Millisecond, time.Millisecond, 80_000_000, 80_000_000, 5_000_000, 5_000_000},
		// The shard of BenchmarkClusterShards: 50,000 rows in 15 ms, 11 of
		// them the statement's fixed cost. At the whole 15 ms (300 ns a
		// row) its 10M rows would take 3 s and be split; the rows' 4 ms
		// (80 ns) put them at 0.8 s: one batch.
		{"fixed cost taken off", 1_000_000, 50_000, 15 * time.Millisecond, 11 * time.Millisecond, 10_000_000, 20_000_000, 0, 20_000_000},
		// A fixed cost measured above the probe's own time (noise): the
		// rows are taken as a quarter of it, 3 ms for 100,000 rows, 30 ns
		// a row: 200M rows take 6 s, the first batch 2 s of them.
		{"noisy fixed cost: a quarter of the probe", 1_000_000, 100_000, 12 * time.Millisecond, 13 * time.Millisecond, 200_000_000, 200_000_000, 0, 66_666_666},
		// 100,000 rows in 1 s: 10 µs a row, 200,000 rows in 2 s; not below
		// a quarter of the configured range.
		{"slow query shrinks at most 4x", 1_000_000, 100_000, time.Second, 0, 80_000_000, 80_000_000, 0, 250_000},
		{"slow query", 1_000_000, 100_000, 201 * time.Millisecond, time.Millisecond, 80_000_000, 80_000_000, 0, 1_000_000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := firstWidth(c.width, c.rows, probeWork(c.took, c.fixed), c.rest, c.keys, target, c.maxW)
			if got != c.want {
				t.Errorf("firstWidth = %d, want %d", got, c.want)
			}
		})
	}
}
