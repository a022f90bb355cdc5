//go:build integration

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handMV is an MV made without shirath, with the original design's
// statements (SQLBuilder: CREATE TABLE IF NOT EXISTS target (...) ENGINE = E
// ORDER BY (k); CREATE MATERIALIZED VIEW IF NOT EXISTS mv TO target AS
// <select>; on a cluster ON CLUSTER 'c' and a Distributed table).
type handMV struct {
	name, cols, engine, order, query string
	// noDist leaves the Distributed table out on a cluster.
	noDist bool
}

// handMVs holds one MV of each engine. The Summing target declares the
// type the query gives (Decimal(38, 2)): on 18.16 an MV writing sum(Decimal(18,2))
// into a Decimal(18,2) column fails every insert.
var handMVs = []handMV{
	{name: "by_category", cols: "category String, cnt UInt64, total_price Decimal(38,2)", engine: "SummingMergeTree()", order: "category",
		query: "SELECT category, count() as cnt, sum(price) as total_price FROM %s GROUP BY category"},
	{name: "stats_by_category", cols: "category String, products AggregateFunction(uniq, UInt64), total AggregateFunction(sum, Decimal(18,2))", engine: "AggregatingMergeTree()", order: "category",
		query: "SELECT category, uniqState(id) as products, sumState(price) as total FROM %s GROUP BY category", noDist: true},
	{name: "last_by_category", cols: "category String, last_id UInt64, last_price Decimal(18,2)", engine: "ReplacingMergeTree(last_id)", order: "category",
		query: "SELECT category, max(id) as last_id, argMax(price, id) as last_price FROM %s GROUP BY category"},
	{name: "expensive", cols: "id UInt64, category String, price Decimal(18,2)", engine: "MergeTree()", order: "id",
		query: "SELECT id, category, price FROM %s WHERE price > 90"},
}

// createByHand makes the MV as the original design does, then backfills
// the history up to upTo (the last id before the MV existed) with one
// INSERT ... SELECT, as the design's backfill does (on a cluster on one
// replica of each shard, from its own rows); cluster "" for a single node,
// where replicated makes the target replicate as the source does.
func (f *fixture) createByHand(m handMV, cluster string, replicated bool, upTo int) {
	on, engine := "", m.engine
	if cluster != "" {
		on = " ON CLUSTER '" + cluster + "'"
		if replicated {
			base, params, _ := strings.Cut(strings.TrimSuffix(m.engine, ")"), "(")
			if params != "" {
				params = ", " + params
			}
			engine = fmt.Sprintf("Replicated%s('/clickhouse/tables/{shard}/%s/%s_data', '{replica}'%s)", base, f.db, m.name, params)
		}
	}
	f.exec("CREATE TABLE IF NOT EXISTS %s.%s_data%s (%s) ENGINE = %s ORDER BY (%s)", f.db, m.name, on, m.cols, engine, m.order)
	f.exec("CREATE MATERIALIZED VIEW IF NOT EXISTS %s.%s%s TO %s.%s_data AS %s", f.db, m.name, on, f.db, m.name, fmt.Sprintf(m.query, f.db+".products"))
	if cluster != "" && !m.noDist {
		f.exec("CREATE TABLE IF NOT EXISTS %s.%s_dist%s AS %s.%s_data ENGINE = Distributed('%s', '%s', '%s_data', rand())", f.db, m.name, on, f.db, m.name, cluster, f.db, m.name)
	}
	src := fmt.Sprintf("(SELECT * FROM %s.products WHERE id <= %d)", f.db, upTo)
	backfill := fmt.Sprintf("INSERT INTO %s.%s_data %s", f.db, m.name, fmt.Sprintf(m.query, src))
	if f.cluster == nil {
		f.exec("%s", backfill)
		return
	}
	for _, i := range []int{0, 2} { // the first replica of each shard
		if err := f.cluster.Nodes[i].Exec(context.Background(), backfill); err != nil {
			f.t.Fatalf("backfill %s on %s: %v", m.name, f.cluster.Addrs[i], err)
		}
	}
}

// modified lists each table's metadata_modification_time: a table that was
// dropped and created again, or altered, gets a new one.
func (f *fixture) modified() string {
	f.t.Helper()
	return strings.Join(f.rowsOf("SELECT name, metadata_modification_time FROM system.tables WHERE database = currentDatabase() AND name NOT LIKE '.inner%' ORDER BY name"), "; ")
}

// editQuery rewrites the select_query of an imported spec file.
func (f *fixture) editQuery(file, old, new string) {
	f.t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		f.t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		f.t.Fatalf("%s has no %q:\n%s", file, old, b)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// adoptedJobs counts the jobs recorded as adopted: completed, no fence, no
// rows backfilled.
func (f *fixture) adoptedJobs() int {
	f.t.Helper()
	var n int
	if err := f.pgRow("SELECT count(*) FROM mv_jobs WHERE adopted_at IS NOT NULL AND status = 'completed' AND cutoff_id IS NULL AND processed_rows = 0 AND version = 1", nil, &n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// importAndAdopt runs import -> plan -> apply -> plan over the hand-made
// MVs (on a single node, or on the cluster named by where) and checks that
// nothing was recreated. extraRefused is what import must refuse, if any.
func (f *fixture) importAndAdopt(where string, extraRefused string) {
	t := f.t
	t.Helper()
	before := f.modified()
	r := f.run("import", "--all", f.db, "--out", f.dir)
	t.Logf("import:\n%s%s", r.stdout, r.stderr)
	for _, m := range handMVs {
		if !strings.Contains(r.stdout, f.db+"."+m.name+": wrote") || !strings.Contains(r.stdout, "("+where+")") {
			t.Fatalf("import did not write %s on %s:\n%s%s", m.name, where, r.stdout, r.stderr)
		}
	}
	if extraRefused != "" {
		if r.code != 1 || !strings.Contains(r.stdout, extraRefused) {
			t.Fatalf("import: exit %d, want 1 with %q:\n%s%s", r.code, extraRefused, r.stdout, r.stderr)
		}
	} else if r.code != 0 {
		t.Fatalf("import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p := f.run("plan", "--detailed-exitcode", f.dir)
	t.Logf("plan:\n%s", p.stdout)
	if p.code != 2 || !strings.Contains(p.stdout, fmt.Sprintf("Plan: %d to adopt, 0 to create, 0 to change, 0 to destroy.", len(handMVs))) ||
		strings.Count(p.stdout, " will be adopted\n") != len(handMVs) || strings.Contains(p.stdout, "create_target") {
		t.Fatalf("plan over the imported specs: exit %d, want %d to adopt and nothing created:\n%s%s", p.code, len(handMVs), p.stdout, p.stderr)
	}
	a := f.mustRun("apply", "--auto-approve", f.dir)
	if !strings.Contains(a.stdout, fmt.Sprintf("%d adopted, 0 created", len(handMVs))) {
		t.Fatalf("apply:\n%s", a.stdout)
	}
	if got := f.adoptedJobs(); got != len(handMVs) {
		t.Fatalf("%d adopted jobs recorded, want %d", got, len(handMVs))
	}
	after := f.modified()
	// A missing Distributed table is created; nothing else is touched.
	if strings.Join(strings.Fields(stripDist(after)), " ") != strings.Join(strings.Fields(stripDist(before)), " ") {
		t.Fatalf("apply touched the adopted tables:\nbefore %s\nafter  %s", before, after)
	}
	if got := f.scalar("SELECT count() FROM by_category_data WHERE category = 'planted'"); got != "1" {
		t.Fatalf("the row planted in by_category_data before the adoption: %s rows", got)
	}
	p = f.run("plan", "--detailed-exitcode", f.dir)
	if p.code != 0 || !strings.Contains(p.stdout, "No changes") || strings.Count(p.stdout, "data not verified") != len(handMVs) {
		t.Fatalf("plan after the adoption: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
	if st := f.mustRun("status"); strings.Count(st.stdout, "adopted, data not verified") != len(handMVs) {
		t.Fatalf("status:\n%s", st.stdout)
	}
}

// verifyAdopted runs verify over the adopted MVs: the row planted by hand in
// by_category_data before the adoption is found and named (exit 1); the
// others have no difference (exit 0) and are no longer "data not
// verified".
func (f *fixture) verifyAdopted() {
	t := f.t
	t.Helper()
	var others []string
	for _, m := range handMVs {
		if m.name != "by_category" {
			others = append(others, f.db+"."+m.name)
		}
	}
	if r := f.run(append([]string{"verify"}, others...)...); r.code != 0 {
		t.Fatalf("verify of the adopted MVs: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := f.run("verify", f.db+".by_category")
	if r.code != 1 || !strings.Contains(r.stdout, "planted") {
		t.Fatalf("verify of by_category, where a row was planted by hand: exit %d, want 1 naming it\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("verify of by_category:\n%s", r.stdout)
	if p := f.run("plan", "--detailed-exitcode", f.dir); p.code != 0 || strings.Count(p.stdout, "data not verified") != 1 {
		t.Fatalf("plan after verify: exit %d, want only by_category's data not verified\n%s%s", p.code, p.stdout, p.stderr)
	}
}

// stripDist leaves the Distributed tables out of a modified() listing.
func stripDist(s string) string {
	var out []string
	for _, p := range strings.Split(s, "; ") {
		if !strings.Contains(p, "_dist\t") {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}

// TestAdoptImportedMVs: MVs of each engine made by hand with the original
// design's statements, and one without TO, on each single node: import
// writes a spec per MV and lists the one it cannot express with the reason;
// plan shows the four as "will be adopted"; apply records them without any
// DDL (no table's metadata changes, a row planted in a target stays); the
// next plan has no changes and says the data is not verified. Then the
// Summing spec is edited and applied under a 2,000 rows/s writer: the
// change path rebuilds it beside the adopted version and switches, and the
// target equals the new query over the whole source.
func TestAdoptImportedMVs(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		const prefill = 200_000
		f.createProducts(prefill)
		for _, m := range handMVs {
			f.createByHand(m, "", false, prefill)
		}
		f.exec("CREATE MATERIALIZED VIEW %s.no_target ENGINE = SummingMergeTree() ORDER BY category AS SELECT category, count() AS cnt FROM %s.products GROUP BY category", f.db, f.db)
		// Rows that the hand-made MVs handle, and one planted by hand.
		f.exec("INSERT INTO %s.products SELECT %d + number + 1, concat('cat', toString(number %% 97)), toDecimal64(number %% 1000, 2) / 10, now() FROM numbers(1000)", f.db, prefill)
		// (INSERT ... VALUES through clickhouse-go can hang on 18.16.)
		f.exec("INSERT INTO %s.by_category_data SELECT 'planted', 1, 1", f.db)
		time.Sleep(1100 * time.Millisecond) // a recreated table would get another metadata_modification_time

		f.importAndAdopt("a single node", "no_target: not imported: "+f.db+".no_target has no TO target")
		f.verifyAdopted()

		// The Summing spec edited: the change path, under a writer.
		f.editQuery(filepath.Join(f.dir, f.db+".by_category.yaml"), "sum(price)", "sum(price * 2)")
		p := f.run("plan", "--detailed-exitcode", f.dir)
		if p.code != 2 || !strings.Contains(p.stdout, "0 to create, 1 to change") || !strings.Contains(p.stdout, "rebuild beside live version 1 as version 2") {
			t.Fatalf("plan of the edited spec: exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
		w := f.startWriter("products", prefill+1000, 500, 50*time.Millisecond)
		f.mustRun("apply", "--auto-approve", f.dir)
		time.Sleep(time.Second)
		rate := w.Stop(t)
		t.Logf("writer: %.0f rows/s", rate)
		if rate < 2000 {
			t.Errorf("writer rate %.0f rows/s, want 2,000 or more", rate)
		}
		f.assertChangedExact(2)
		if v, live := f.versions("by_category"); v != 2 || live != 2 {
			t.Fatalf("by_category at version %d, live %d; want 2, 2", v, live)
		}
		p = f.run("plan", "--detailed-exitcode", f.dir)
		if p.code != 0 || strings.Count(p.stdout, "data not verified") != 0 {
			t.Fatalf("plan after the change (by_category is shirath's own now): exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
	})
}

// TestClusterAdoptImportedMVs: the same MVs made by hand ON CLUSTER on the
// 2x2 cluster over a replicated source, with Replicated targets and their
// Distributed tables (one left out). import sets cluster:, plan adopts
// them, apply creates the missing Distributed table on every node and
// nothing else; then an edited spec is applied under a writer through the
// Distributed source and the result read through the Distributed table is
// exact.
func TestClusterAdoptImportedMVs(t *testing.T) {
	f, c := newClusterFixture(t)
	const prefill = 100_000
	f.createClusterProducts(c, prefill, true)
	for _, m := range handMVs {
		f.createByHand(m, c.Name, true, prefill)
	}
	f.exec("INSERT INTO %s.by_category_data SELECT 'planted', 1, 1", f.db)
	time.Sleep(1100 * time.Millisecond)

	f.importAndAdopt("cluster "+c.Name, "")
	f.verifyAdopted()
	for i, node := range c.Nodes {
		var n uint64
		if err := node.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = ? AND name = 'stats_by_category_dist' AND engine = 'Distributed'", f.db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("the missing Distributed table was not created on %s", c.Addrs[i])
		}
	}

	f.editQuery(filepath.Join(f.dir, f.db+".by_category.yaml"), "sum(price)", "sum(price * 2)")
	w := f.startWriter("products_dist", prefill, 200, 50*time.Millisecond)
	f.mustRun("apply", "--auto-approve", f.dir)
	time.Sleep(time.Second)
	rate := w.Stop(t)
	t.Logf("writer: %.0f rows/s", rate)
	f.settle(c, prefill+w.rows.Load(), "products", "by_category_data__v2")
	f.assertSame("through by_category_dist after the change",
		"SELECT category, sum(cnt), sum(total_price) FROM by_category_dist GROUP BY category ORDER BY category",
		"SELECT category, count(), sum(price * 2) FROM products_dist GROUP BY category ORDER BY category")
	if p := f.run("plan", "--detailed-exitcode", f.dir); p.code != 0 {
		t.Fatalf("plan after the change: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
}
