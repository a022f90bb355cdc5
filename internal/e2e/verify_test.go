//go:build integration

package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/verify"
)

// The specs verify is tested on: one per engine it merges.
const (
	replacingSpec = `name: latest
source_table: products
engine: ReplacingMergeTree(version)
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: price, type: "Decimal(18,2)"}
  - {name: version, type: UInt64}
select_query: "SELECT category, price, id AS version FROM {source_table}"
`
	multisetSpec = `name: tens
source_table: products
engine: MergeTree()
order_by: [id]
columns:
  - {name: id, type: UInt64}
  - {name: category, type: String}
select_query: "SELECT id, category FROM {source_table} WHERE id % 10 = 0"
`
)

type verifyOutput struct {
	Reports []verify.Report `json:"reports"`
	Errors  []string        `json:"errors"`
}

// verifyRun runs shirath verify --format json and decodes its report.
func (f *fixture) verifyRun(args ...string) (result, verifyOutput) {
	f.t.Helper()
	r := f.run(append([]string{"verify", "--format", "json"}, args...)...)
	var out verifyOutput
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		f.t.Fatalf("verify %v: exit %d, output is not a report (%v):\n%s\n%s", args, r.code, err, r.stdout, r.stderr)
	}
	return r, out
}

// mustVerifyClean fails unless verify finds every named target equal to its
// query, with groups compared.
func (f *fixture) mustVerifyClean(names ...string) []verify.Report {
	f.t.Helper()
	r, out := f.verifyRun(names...)
	if r.code != 0 || len(out.Reports) != len(names) {
		f.t.Fatalf("verify %v: exit %d, %d reports, want 0 and %d:\n%s\n%s", names, r.code, len(out.Reports), len(names), r.stdout, r.stderr)
	}
	for _, rep := range out.Reports {
		if !rep.OK || rep.Count() != 0 || len(rep.Differences) != 0 || rep.Groups == 0 || rep.Equal != rep.Groups {
			f.t.Fatalf("verify %s: ok %v, %d differences, %d groups, %d equal:\n%s", rep.Name, rep.OK, rep.Count(), rep.Groups, rep.Equal, r.stdout)
		}
	}
	return out.Reports
}

// planted verifies name, which must report exactly one difference: the
// group key, of that kind; it returns the difference.
func (f *fixture) planted(name, kind string, key ...string) verify.Difference {
	f.t.Helper()
	r, out := f.verifyRun(name)
	if r.code != 1 || len(out.Reports) != 1 {
		f.t.Fatalf("verify %s with a planted difference: exit %d, want 1:\n%s\n%s", name, r.code, r.stdout, r.stderr)
	}
	rep := out.Reports[0]
	if rep.OK || rep.Count() != 1 || len(rep.Differences) != 1 {
		f.t.Fatalf("verify %s: ok %v, %d differences, want exactly the planted one:\n%s", name, rep.OK, rep.Count(), r.stdout)
	}
	d := rep.Differences[0]
	if d.Kind != kind || strings.Join(d.Key, "|") != strings.Join(key, "|") || d.Unstable {
		f.t.Fatalf("verify %s: found %s %q (unstable %v), want %s %q:\n%s", name, d.Kind, d.Key, d.Unstable, kind, key, r.stdout)
	}
	return d
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q is not an integer: %v", s, err)
	}
	return n
}

// decimal reads a Decimal(18,2) as ClickHouse prints it (26.7 drops
// trailing zeros, 18.16 does not) in hundredths.
func decimal(t *testing.T, s string) int64 {
	t.Helper()
	whole, frac, _ := strings.Cut(s, ".")
	frac = (frac + "00")[:2]
	return atoi(t, whole)*100 + atoi(t, frac)
}

// TestVerifyEngines: on both single nodes, one MV per engine verify merges
// (SummingMergeTree, AggregatingMergeTree, ReplacingMergeTree by version,
// MergeTree as a multiset) is applied and verified equal to its query
// (exit 0, every group equal, verified_at recorded); then one row is
// inserted by hand into each target, and verify names that group, with
// the target's and the query's values (exit 1, last_verify not ok,
// verified_at kept). The human output names the group too, and an unknown
// MV is an error (exit 2).
func TestVerifyEngines(t *testing.T) {
	eachServer(t, func(t *testing.T, f *fixture) {
		f.createProducts(200_000)
		f.writeSpec("by_category", summingSpec)
		f.writeSpec("stats", aggregatingSpec)
		f.writeSpec("latest", replacingSpec)
		f.writeSpec("tens", multisetSpec)
		f.mustRun("apply", "--auto-approve", f.dir)

		reps := f.mustVerifyClean("by_category", "stats", "latest", "tens")
		for _, rep := range reps {
			t.Logf("%s: %d groups equal in %.2fs (%s; values %v)", rep.Name, rep.Equal, rep.Seconds, rep.Merge, rep.Values)
		}
		if reps[3].Groups != 20_000 {
			t.Fatalf("tens: %d distinct rows compared, want 20000", reps[3].Groups)
		}
		var verifiedAt string
		if err := f.pgRow(`SELECT verified_at::text FROM mv_jobs WHERE name = 'by_category'`, nil, &verifiedAt); err != nil {
			t.Fatalf("verified_at after a clean verify: %v", err)
		}

		// One row each, by hand.
		f.exec("INSERT INTO %s.by_category_data SELECT 'cat5', toUInt64(1), toDecimal64(1000, 2)", f.db)
		f.exec("INSERT INTO %s.stats_data SELECT 'cat7', uniqExactState(toUInt64(999999999)), sumState(toDecimal64(5, 2)), countState()", f.db)
		f.exec("INSERT INTO %s.latest_data SELECT 'planted', toDecimal64(1, 2), toUInt64(1)", f.db)
		f.exec("INSERT INTO %s.tens_data SELECT toUInt64(10), 'cat9'", f.db) // a second copy of a row

		d := f.planted("by_category", verify.KindDiffers, "cat5")
		cnt, sum := f.scalar("SELECT count() FROM products WHERE category = 'cat5'"), f.scalar("SELECT sum(price) FROM products WHERE category = 'cat5'")
		if atoi(t, d.Target[0]) != atoi(t, cnt)+1 || d.Expected[0] != cnt || decimal(t, d.Expected[1]) != decimal(t, sum) || decimal(t, d.Target[1]) != decimal(t, sum)+100_000 {
			t.Fatalf("by_category cat5: target %v, query %v; the source has %s rows summing to %s", d.Target, d.Expected, cnt, sum)
		}
		d = f.planted("stats", verify.KindDiffers, "cat7")
		if atoi(t, d.Target[0]) != atoi(t, d.Expected[0])+1 || atoi(t, d.Target[2]) != atoi(t, d.Expected[2])+1 {
			t.Fatalf("stats cat7: target %v, query %v: want one more distinct id and row", d.Target, d.Expected)
		}
		d = f.planted("latest", verify.KindExtra, "planted")
		if d.Expected != nil || len(d.Target) != 1 || !strings.Contains(d.Target[0], "1") {
			t.Fatalf("latest: extra group shows target %v, query %v", d.Target, d.Expected)
		}
		d = f.planted("tens", verify.KindDiffers, "10", "cat9")
		if d.Target[0] != "2" || d.Expected[0] != "1" {
			t.Fatalf("tens (10, cat9): %v rows in the target, %v in the query's result, want 2 and 1", d.Target, d.Expected)
		}

		var ok bool
		var kept string
		if err := f.pgRow(`SELECT (last_verify->>'ok')::bool, verified_at::text FROM mv_jobs WHERE name = 'by_category'`, nil, &ok, &kept); err != nil {
			t.Fatal(err)
		}
		if ok || kept != verifiedAt {
			t.Fatalf("after a failed verify: last_verify ok %v (want false), verified_at %s (want the earlier %s)", ok, kept, verifiedAt)
		}
		st := f.mustRun("mv", "status", f.db+".by_category")
		if !strings.Contains(st.stdout, "Verified:") || !strings.Contains(st.stdout, "differences") {
			t.Fatalf("mv status does not show the verification:\n%s", st.stdout)
		}

		h := f.run("verify", "by_category", "stats")
		if h.code != 1 || !strings.Contains(h.stdout, "(cat5)") || !strings.Contains(h.stdout, "(cat7)") || !strings.Contains(h.stdout, "DIFFERS: 1 groups") {
			t.Fatalf("human verify: exit %d:\n%s\n%s", h.code, h.stdout, h.stderr)
		}
		if r := f.run("verify", "nosuch"); r.code != 2 || !strings.Contains(r.stderr, `no MV job named "nosuch"`) {
			t.Fatalf("verify of an unknown MV: exit %d, want 2:\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}

// TestVerifyUnderWrites: a writer inserts at least 2,000 rows/s into the
// source the whole time. A correct target is verified 20 times: no run reports a
// difference. Then one row is inserted into the target by hand, and each of
// 20 runs reports exactly that group, with the planted row's count.
func TestVerifyUnderWrites(t *testing.T) {
	const runs = 20
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill = 300_000
		f.createProducts(prefill)
		f.writeSpec("by_category", summingSpec)
		// Blocks of 500 every 50 ms at most: an INSERT into chDB's
		// engine with its view takes up to ~200 ms here, and the rate
		// must stay above 2,000 rows/s on both servers.
		w := f.startWriter("products", prefill, 500, 50*time.Millisecond)
		f.mustRun("apply", "--auto-approve", f.dir)

		transient, checks := 0, 0
		for i := 0; i < runs; i++ {
			rep := f.mustVerifyClean("by_category")[0]
			for _, s := range rep.Scopes {
				transient += s.Transient
				checks += s.Checks
			}
		}
		t.Logf("%d clean runs: %d checks, %d groups seen differing while rows were in flight, all cleared", runs, checks, transient)

		f.exec("INSERT INTO %s.by_category_data SELECT 'cat5', toUInt64(1), toDecimal64(1000, 2)", f.db)
		var took time.Duration
		for i := 0; i < runs; i++ {
			start := time.Now()
			d := f.planted("by_category", verify.KindDiffers, "cat5")
			took += time.Since(start)
			if atoi(t, d.Target[0]) != atoi(t, d.Expected[0])+1 {
				t.Fatalf("run %d: cat5 target %v, query %v: want the planted row's one more", i, d.Target, d.Expected)
			}
		}
		rate := w.Stop(t)
		t.Logf("writer %.0f rows/s; %d runs found the planted row, %.1fs each", rate, runs, took.Seconds()/runs)
		if transient == 0 {
			t.Logf("no group was ever seen in flight: the runs did not exercise the re-checks")
		}
		if rate < 2000 {
			t.Fatalf("writer reached %.0f rows/s only", rate)
		}
	})
}

// TestVerifyCluster: a SummingMergeTree MV over a ReplicatedMergeTree
// source on the 2x2 cluster is verified shard by shard (one replica each):
// 0 differences; a row inserted by hand into one shard's target is found
// and named with its shard.
func TestVerifyCluster(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 200_000
	f.createClusterProducts(c, prefill, true)
	f.writeSpec("by_category", summingSpec+"cluster: auto\n")
	f.mustRun("apply", "--auto-approve", f.dir)
	f.settle(c, prefill, "products", "by_category_data")

	rep := f.mustVerifyClean("by_category")[0]
	if len(rep.Scopes) != 2 || rep.Scopes[0].Shard != 1 || rep.Scopes[1].Shard != 2 {
		t.Fatalf("verify compared on %+v, want one replica of each of the 2 shards", rep.Scopes)
	}
	t.Logf("cluster: %d groups over 2 shards equal in %.2fs", rep.Groups, rep.Seconds)

	// Shard 2 is nodes 3 and 4: plant on node 4, which replicates it to node 3.
	if err := c.Nodes[3].Exec(t.Context(), fmt.Sprintf("INSERT INTO %s.by_category_data SELECT 'cat5', toUInt64(1), toDecimal64(1000, 2)", f.db)); err != nil {
		t.Fatal(err)
	}
	for i, n := range c.Nodes[2:] {
		if err := n.Exec(t.Context(), fmt.Sprintf("SYSTEM SYNC REPLICA %s.by_category_data", f.db)); err != nil {
			t.Fatalf("sync %s: %v", c.Addrs[2+i], err)
		}
	}
	d := f.planted("by_category", verify.KindDiffers, "cat5")
	if d.Shard != 2 {
		t.Fatalf("the difference planted on shard 2 is reported on shard %d (%s)", d.Shard, d.Node)
	}
}

// TestVerifyClusterUnderWrites: the cluster MV verified while a writer
// inserts through the Distributed table (asynchronously, into either
// replica of a shard, whose source and target parts then replicate on
// their own): 5 runs on the correct target report nothing, and after one
// row is inserted by hand into shard 1's target, 5 runs name that group
// on shard 1.
func TestVerifyClusterUnderWrites(t *testing.T) {
	const runs = 5
	f, c := newClusterFixture(t)
	const prefill = 200_000
	f.createClusterProducts(c, prefill, true)
	f.writeSpec("by_category", summingSpec+"cluster: auto\n")
	w := f.startWriter("products_dist", prefill, 200, 100*time.Millisecond)
	f.mustRun("apply", "--auto-approve", f.dir)

	transient := 0
	for i := 0; i < runs; i++ {
		rep := f.mustVerifyClean("by_category")[0]
		for _, s := range rep.Scopes {
			transient += s.Transient
		}
	}
	if err := c.Nodes[0].Exec(t.Context(), fmt.Sprintf("INSERT INTO %s.by_category_data SELECT 'cat5', toUInt64(1), toDecimal64(1000, 2)", f.db)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < runs; i++ {
		if d := f.planted("by_category", verify.KindDiffers, "cat5"); d.Shard != 1 {
			t.Fatalf("run %d: the row planted on shard 1 is reported on shard %d", i, d.Shard)
		}
	}
	rate := w.Stop(t)
	t.Logf("writer %.0f rows/s through products_dist; %d clean runs (%d groups seen in flight, cleared), %d runs found the planted row", rate, runs, transient, runs)
}
