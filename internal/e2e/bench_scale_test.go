//go:build integration

package e2e

// Issue 11, point 3: the backfill's cost per row as the source grows, and
// its throughput against one statement over the whole source, on sources
// sorted by the key and not. As in bench_test.go, every method runs side by
// side in each iteration and every target must be exactly the aggregate of
// its source.

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/internal/testenv"
)

// scaleSizes are the source sizes of BenchmarkScale and BenchmarkFootprint,
// capped by SHIRATH_BENCH_SCALE_MAX (rows) for a quick run.
func scaleSizes(b *testing.B) []int {
	all := []int{5_000_000, 20_000_000, 80_000_000}
	v := os.Getenv("SHIRATH_BENCH_SCALE_MAX")
	if v == "" {
		return all
	}
	limit, err := strconv.Atoi(v)
	if err != nil || limit < all[0] {
		b.Fatalf("SHIRATH_BENCH_SCALE_MAX=%q: want a number of rows, at least %d", v, all[0])
	}
	var out []int
	for _, n := range all {
		if n <= limit {
			out = append(out, n)
		}
	}
	return out
}

// millions names a size in a metric: 20M.
func millions(rows int) string { return fmt.Sprintf("%dM", rows/1_000_000) }

// BenchmarkScale (issue 11, point 3): on each single node (18.16, then
// the modern one, whose metrics carry its name: ch26.7-sorted-...), sources
// of 5M, 20M and 80M rows (1,000 categories), sorted by the key (`ORDER BY
// id`: shirath runs key-range batches) and not (`ORDER BY (category, id)`:
// one pass). Per source and iteration, side by side:
//
//   - statement: one INSERT ... SELECT ... GROUP BY over the whole source,
//     the baseline;
//   - filtered: the same statement with shirath's key filter `id > 0 AND id
//     <= F` (F the largest key): the floor of any fenced backfill, which
//     must leave the rows above the fence to the view;
//   - shirath: `shirath apply` of the spec, its backfill timed from the first
//     backfill line to the OPTIMIZE line (as BenchmarkBackfillSorted);
//   - fixedfirst (sorted sources): the same with `initial_batch_rows:
//     1048576` in the spec: any value but the default turns off the pace
//     probe, so the first batch is 2^20 keys, about the 1M keys it was
//     before the probe (what the probe changed).
//
// It reports throughput ratios (the statement's time over the method's: 1x
// is as fast as the statement, 0.8x is 80% of its rows per second), shirath's
// cost per row per size, and how far the cost per row spreads across sizes
// (largest over smallest).
func BenchmarkScale(b *testing.B) {
	sizes := scaleSizes(b)
	orders := []struct{ name, orderBy string }{{"sorted", "id"}, {"unsorted", "(category, id)"}}
	for k, s := range testenv.Load(b).Singles(b) {
		server := ""
		if k > 0 {
			server = s.Name() + "-"
		}
		for _, o := range orders {
			costs := map[int]float64{}
			for _, rows := range sizes {
				start := time.Now()
				w := newBenchOn(b, s, o.orderBy, rows)
				b.Logf("%s%s %s: source ready in %s", server, o.name, millions(rows), time.Since(start).Round(time.Second))
				var stmt, filtered, shirath, fixed time.Duration
				var batches, fixedBatches int
				zero := int64(0)
				methods := []func(i int){
					func(i int) { stmt += w.baseline(fmt.Sprintf("stmt_%d", i)) },
					func(i int) {
						filtered += w.statement(fmt.Sprintf("filtered_%d", i), sqlgen.Range{After: &zero, UpTo: &w.top})
					},
					func(i int) {
						r := w.apply(fmt.Sprintf("scale_%d", i))
						if r.singlePass != (o.name == "unsorted") || (r.singlePass && r.batches != 1) {
							b.Fatalf("%s source: single pass %v in %d batches:\n%s", o.name, r.singlePass, r.batches, r.out)
						}
						shirath += r.backfill
						batches += r.batches
					},
				}
				if o.name == "sorted" {
					methods = append(methods, func(i int) {
						r := w.applyWith(fmt.Sprintf("fixedfirst_%d", i), "backfill:\n  initial_batch_rows: 1048576\n")
						fixed += r.backfill
						fixedBatches += r.batches
					})
				}
				for i := 0; i < b.N; i++ {
					run := make([]func(), len(methods))
					for j, m := range methods {
						run[j] = func() { m(i) }
					}
					benchSideBySide(run...)
				}
				w.exec("DROP TABLE %s", sqlgen.Table(w.db, "products"))
				p := server + o.name + "-" + millions(rows)
				b.ReportMetric(ratio(stmt, shirath), p+"-shirath/statement")
				b.ReportMetric(ratio(stmt, filtered), p+"-filtered/statement")
				b.ReportMetric(ratio(filtered, shirath), p+"-shirath/filtered")
				costs[rows] = shirath.Seconds() * 1e9 / float64(rows*b.N)
				b.ReportMetric(costs[rows], p+"-ns-per-row")
				b.ReportMetric(seconds(stmt, b.N), p+"-statement-s")
				b.ReportMetric(seconds(filtered, b.N), p+"-filtered-s")
				b.ReportMetric(seconds(shirath, b.N), p+"-shirath-s")
				if o.name == "sorted" {
					b.ReportMetric(float64(batches)/float64(b.N), p+"-batches")
					b.ReportMetric(ratio(stmt, fixed), p+"-fixedfirst/statement")
					b.ReportMetric(seconds(fixed, b.N), p+"-fixedfirst-s")
					b.ReportMetric(float64(fixedBatches)/float64(b.N), p+"-fixedfirst-batches")
				}
			}
			if len(sizes) > 1 {
				lo, hi := costs[sizes[0]], costs[sizes[0]]
				for _, c := range costs {
					lo, hi = min(lo, c), max(hi, c)
				}
				b.ReportMetric(hi/lo, server+o.name+"-cost-max/min")
			}
		}
	}
	b.ReportMetric(0, "ns/op")
}
