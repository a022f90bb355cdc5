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
	p := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	runs, err := readAll([]string{p, p}) // two files pool their samples
	if err != nil {
		t.Fatal(err)
	}
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
	write(&b, runs, []string{"CPUs (`nproc`): 2"}, "clickhouse single :19000 up, version 18.16.1", "Only some benchmarks ran.", 2)
	for _, want := range []string{
		"| `20mvs-p20/one` 20 MVs, `-parallelism=20` | `shirath apply` of one of them alone | 0.30x | 0.20x-0.50x | 6 | under 3x |",
		"| `20mvs-p20-s` 20 MVs, 20 at once | - | 6.17 s | 5.00 s-7.00 s | 6 | - |",
		"| `statements/node` statements sent to the busiest node (the seed) |",
		"| 19 | 19-19 | 2 | constant |",
		"version 18.16.1",
		"- CPUs (`nproc`): 2",
		"Only some benchmarks ran.",
		"| (the same) | BenchmarkManyMVs `20mvs-p20/one` | 2.78x (main 8eb9efc) | 0.30x |",
		"| BenchmarkClusterShards `parallel/shards-at-once` | 1.65x (main 8eb9efc) | not measured in this report |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
