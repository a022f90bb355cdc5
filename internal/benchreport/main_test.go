package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	out := `goos: linux
BenchmarkManyMVs-2   	       1	         6.170 20mvs-p20-s	         0.3010 20mvs-p20/one	         0 ns/op
--- BENCH: BenchmarkManyMVs-2
    bench_parallel_test.go:245: BenchmarkManyMVs 1 alone
BenchmarkManyMVs-2   	       1	         5.000 20mvs-p20-s	         0.5000 20mvs-p20/one	         0 ns/op
BenchmarkPlan200-2   	       1	         0.4654 plan200-s	        19.00 statements/node
BenchmarkManyMVs-2   	       1	         7.000 20mvs-p20-s	         0.2000 20mvs-p20/one	         0 ns/op
`
	runs := readText(t, out, 2) // two files pool their samples
	if len(runs) != 2 || runs[0].name != "BenchmarkManyMVs" || runs[1].name != "BenchmarkPlan200" {
		t.Fatalf("benchmarks %+v", runs)
	}
	if v := runs[0].values["20mvs-p20/one"]; len(v) != 6 || median(v) != 0.301 {
		t.Errorf("20mvs-p20/one: %v, median %v", v, median(v))
	}
	if _, ok := runs[0].values["ns/op"]; ok {
		t.Errorf("ns/op reported")
	}
	var b bytes.Buffer
	write(&b, runs, []string{"CPUs (`nproc`): 2"}, "clickhouse single :19000 up, version 18.16.1", 2)
	wantLines(t, b.String(),
		"| `20mvs-p20/one` 20 MVs, `-parallelism=20` | `shirath apply` of one of them alone | 0.30x | 0.20x-0.50x | 6 | under 3x |",
		"| `20mvs-p20-s` 20 MVs, 20 at once | - | 6.17 s | 5.00 s-7.00 s | 6 | - |",
		"| `statements/node` statements sent to the busiest node (the seed) |",
		"| 19 | 19-19 | 2 | constant |",
		"version 18.16.1",
		"- CPUs (`nproc`): 2",
	)
}

// readText reads out as the output of go test -bench, given files times.
func readText(t *testing.T, out string, files int) []*samples {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	paths := make([]string, files)
	for i := range paths {
		paths[i] = p
	}
	runs, err := readAll(paths)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

func wantLines(t *testing.T, report string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(report, w) {
			t.Errorf("report lacks %q:\n%s", w, report)
		}
	}
}

// TestReportScaleAndFootprint: metrics named by source size find their
// description (the size filled in), and MB, ms and ns per row print in
// their units.
func TestReportScaleAndFootprint(t *testing.T) {
	out := `BenchmarkScale-2   	       1	         0.7012 sorted-20M-shirath/statement	        41.5 sorted-20M-ns-per-row	         0.5400 sorted-5M-shirath/statement	         1.58 sorted-cost-max/min	         0 ns/op
BenchmarkFootprint-2   	       1	        24.2 apply-peak-rss-MB	         1.83 daemon-get-p50-ms	        32.4 daemon-get-p99-ms	         1.02 daemon-rss-last/first	         0 ns/op
`
	var b bytes.Buffer
	write(&b, readText(t, out, 1), nil, "", 1)
	wantLines(t, b.String(),
		"| `sorted-20M-shirath/statement` shirath's throughput, 20,000,000-row source sorted by the key | one `INSERT ... SELECT ... GROUP BY` over the whole source | 0.70x | 0.70x-0.70x | 1 | 0.8x or more |",
		"| `sorted-5M-shirath/statement` shirath's throughput, 5,000,000-row source sorted by the key | one `INSERT ... SELECT ... GROUP BY` over the whole source | 0.54x | 0.54x-0.54x | 1 | - |",
		"| `sorted-20M-ns-per-row` shirath's backfill time per source row, 20,000,000 rows, sorted | - | 41.5 ns |",
		"| `sorted-cost-max/min` shirath's cost per row, sorted source: the largest over the smallest across the sizes | - | 1.58x |",
		"| 24.2 MB | 24.2 MB-24.2 MB | 1 | under 64 MB |",
		"| 32.4 ms | 32.4 ms-32.4 ms | 1 | under 50 ms |",
		"| 1.02x | 1.02x-1.02x | 1 | flat |",
	)
}

func TestCommas(t *testing.T) {
	for n, want := range map[int]string{5: "5", 1000: "1,000", 20_000_000: "20,000,000", 123456: "123,456"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestOptimisations: each optimisation's row pairs its two figures of the
// same server and size, and a metric of the modern node finds its
// description with the server named.
func TestOptimisations(t *testing.T) {
	out := `BenchmarkScale-2   	       1	         0.30 sorted-5M-shirath-s	         0.40 sorted-5M-fixedfirst-s	         1.0 sorted-20M-shirath-s	         1.5 sorted-20M-fixedfirst-s	         0.20 ch26.7-sorted-20M-shirath-s	         0.50 ch26.7-sorted-20M-fixedfirst-s	         0.8 ch26.7-sorted-20M-shirath/statement	         0 ns/op
BenchmarkClusterShards-2   	       1	         0.5 parallel-s	         0.9 sequential-s	         0 ns/op
`
	var b bytes.Buffer
	write(&b, readText(t, out, 1), nil, "", 1)
	wantLines(t, b.String(),
		"## What each optimisation changed",
		"| Shards backfilled at once (issue 11, point 1) | BenchmarkClusterShards | one shard after the other (`-parallelism=1`): `sequential-s` 0.90 s | `parallel-s` 0.50 s | 1.80x |",
		"`sorted-5M-fixedfirst-s` 0.40 s | `sorted-5M-shirath-s` 0.30 s | 1.33x |",
		"`sorted-20M-fixedfirst-s` 1.50 s | `sorted-20M-shirath-s` 1.00 s | 1.50x |",
		"`ch26.7-sorted-20M-fixedfirst-s` 0.50 s | `ch26.7-sorted-20M-shirath-s` 0.20 s | 2.50x |",
		"| `ch26.7-sorted-20M-shirath/statement` shirath's throughput, 20,000,000-row source sorted by the key, on the ClickHouse 26.7 node | one `INSERT ... SELECT ... GROUP BY` over the whole source | 0.80x |",
	)
	if strings.Count(b.String(), "MVs applied at once") != 0 {
		t.Errorf("a row without its figures:\n%s", b.String())
	}
}
