//go:build integration

package e2e

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/internal/verify"
	"github.com/shirath/shirath/planner"
)

// verifyBenchRows is the source of BenchmarkVerify (issue 16: 20M rows);
// SHIRATH_BENCH_VERIFY_ROWS sets another size.
func verifyBenchRows(b *testing.B) int {
	if v := os.Getenv("SHIRATH_BENCH_VERIFY_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("SHIRATH_BENCH_VERIFY_ROWS=%q is not a row count", v)
		}
		return n
	}
	return 20_000_000
}

// BenchmarkVerify: per iteration, the baseline fills a target with one
// INSERT ... SELECT over the whole source (checked against the source's
// aggregate), then verify compares that target with the spec's query over
// the whole source, on the server, and must find every group equal; the
// ratio verify/baseline is what a verification costs next to a rebuild.
// No writer runs: one check is final (quiet).
func BenchmarkVerify(b *testing.B) {
	rows := verifyBenchRows(b)
	w := newBench(b, "id", rows)
	conn := &planner.Connector{Seed: w.addr, Options: chclient.Options{}}
	defer conn.Close()
	v := &verify.Verifier{Conn: conn}
	var base, ver time.Duration
	for i := 0; i < b.N; i++ {
		const table = "verified_data"
		m := w.into(table)
		w.create(m)
		q, err := m.Query(sqlgen.Range{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		w.exec("INSERT INTO %s %s", sqlgen.Table(w.db, table), q)
		base += time.Since(start)

		start = time.Now()
		rep, err := v.Verify(context.Background(), &verify.Target{Spec: m.Spec, Name: m.Spec.Name, Version: 1})
		ver += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if !rep.OK || rep.Groups != benchCategories || rep.Equal != benchCategories || rep.Scopes[0].Checks != 1 {
			b.Fatalf("verify of a correct target: ok %v, %d groups, %d equal, %d checks", rep.OK, rep.Groups, rep.Equal, rep.Scopes[0].Checks)
		}
		w.checkAndDrop(table)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ratio(ver, base), "verify/baseline")
	b.ReportMetric(seconds(base, b.N), "baseline-s")
	b.ReportMetric(seconds(ver, b.N), "verify-s")
	b.ReportMetric(float64(rows), "source-rows")
}
