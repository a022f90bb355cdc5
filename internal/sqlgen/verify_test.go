package sqlgen

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shirath/shirath/specs"
)

// verifySpecs are one spec per engine verify merges, over the products
// table of the running example.
func verifySpecs() map[string]*specs.Spec {
	return map[string]*specs.Spec{
		"summing": productsSpec(),
		"aggregating": withSpec(func(s *specs.Spec) {
			s.Engine = "AggregatingMergeTree()"
			s.Columns = []specs.Column{
				{Name: "category", Type: "String"},
				{Name: "cnt", Type: "AggregateFunction(count)"},
				{Name: "ids", Type: "AggregateFunction(uniqExact, UInt64)"},
				{Name: "q", Type: "AggregateFunction(quantiles(0.5, 0.9), UInt64)"},
				{Name: "note", Type: "String"},
			}
			s.SelectQuery = "SELECT category, countState() AS cnt, uniqExactState(id) AS ids, quantilesState(0.5, 0.9)(id) AS q, any(category) AS note FROM {source_table} GROUP BY category"
		}),
		"replacing": withSpec(func(s *specs.Spec) {
			s.Engine = "ReplacingMergeTree(version)"
			s.Columns = []specs.Column{
				{Name: "category", Type: "String"},
				{Name: "price", Type: "Decimal(18, 2)"},
				{Name: "version", Type: "UInt64"},
			}
			s.SelectQuery = "SELECT category, price, id AS version FROM {source_table}"
		}),
		"mergetree": withSpec(func(s *specs.Spec) {
			s.Engine = "MergeTree()"
			s.OrderBy = []string{"id"}
			s.Columns = []specs.Column{
				{Name: "id", Type: "UInt64"},
				{Name: "category", Type: "String"},
			}
			s.SelectQuery = "SELECT id, category FROM {source_table} WHERE price > 10"
		}),
	}
}

func TestVerifyShape(t *testing.T) {
	cases := []struct {
		name        string
		keys, vals  []string
		notCompared string
		having      string
	}{
		{"summing", []string{"category"}, []string{"cnt", "total_price"}, "", "NOT (shirath_v1 = 0 AND shirath_v2 = 0)"},
		{"aggregating", []string{"category"}, []string{"cnt", "ids", "q"}, "note (not an aggregate", ""},
		{"replacing", []string{"category"}, []string{"price, version"}, "", ""},
		{"mergetree", []string{"id", "category"}, []string{"rows"}, "", ""},
	}
	all := verifySpecs()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sh, err := MV{Spec: all[c.name]}.Shape()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(sh.Keys, "|") != strings.Join(c.keys, "|") || strings.Join(sh.Values, "|") != strings.Join(c.vals, "|") {
				t.Errorf("keys %q values %q, want %q %q", sh.Keys, sh.Values, c.keys, c.vals)
			}
			if got := strings.Join(sh.NotCompared, "; "); (c.notCompared == "") != (got == "") || !strings.Contains(got, c.notCompared) {
				t.Errorf("not compared %q, want %q", got, c.notCompared)
			}
			if sh.having != c.having {
				t.Errorf("having %q, want %q", sh.having, c.having)
			}
		})
	}
	agg, _ := MV{Spec: all["aggregating"]}.Shape()
	want := []string{"countMerge(`cnt`)", "uniqExactMerge(`ids`)", "quantilesMerge(0.5, 0.9)(`q`)"}
	for i, v := range agg.vals {
		if v.expr != want[i] {
			t.Errorf("aggregating value %d: %s, want %s", i, v.expr, want[i])
		}
	}
}

func TestVerifyShapeRefuses(t *testing.T) {
	cases := map[string]struct {
		edit func(*specs.Spec)
		want string
	}{
		"collapsing": {func(s *specs.Spec) {
			s.Engine = "CollapsingMergeTree(sign)"
		}, "does not support CollapsingMergeTree"},
		"mergetree of a group by": {func(s *specs.Spec) { s.Engine = "MergeTree()" }, "one partial row per group and insert block"},
		"hostile order_by":        {func(s *specs.Spec) { s.OrderBy = []string{"category); DROP TABLE x; --"} }, "order_by entry"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := MV{Spec: withSpec(c.edit)}.Shape()
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want ErrInvalid with %q", err, c.want)
			}
		})
	}
}

// TestVerifyQueryGolden: the comparison of the running example, whole and
// restricted to two groups, as testdata/verify/*.sql hold it. (Not among
// testdata/*.sql, which TestGoldenOnServers runs: the e2e verify tests run
// this generator's output on both single nodes and the cluster.)
func TestVerifyQueryGolden(t *testing.T) {
	m := MV{Spec: productsSpec()}
	sh, err := m.Shape()
	if err != nil {
		t.Fatal(err)
	}
	full, err := m.VerifyQuery(sh, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	some, err := m.VerifyQuery(sh, VerifyFilter{{"cat1"}, {"it's"}}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]string{"full": full, "filtered": some, "groups": m.VerifyGroups(sh)} {
		path := filepath.Join("testdata", "verify", name+".sql")
		if *update {
			if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if got+"\n" != string(want) {
			t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", path, got, want)
		}
	}
	if !strings.Contains(some, `IN ('cat1', 'it\'s')`) {
		t.Errorf("the filter does not quote the key values: %s", some)
	}
	multi, _ := MV{Spec: verifySpecs()["mergetree"]}.Shape()
	if got := multi.filter(VerifyFilter{{"1", "a"}}); got != " WHERE (toString(`id`), toString(`category`)) IN (('1', 'a'))" {
		t.Errorf("two-key filter: %s", got)
	}
	if got := multi.filter(VerifyFilter{}); got != " WHERE 0" {
		t.Errorf("empty filter: %s", got)
	}
}

// TestVerifyPushdown: a re-check filters the source rows by the group in the
// query's own WHERE when a row's key is the group's, and not otherwise.
func TestVerifyPushdown(t *testing.T) {
	f := VerifyFilter{{"cat1"}}
	cases := []struct {
		name, query, want string
	}{
		{"group by column", "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY category",
			"WHERE toString(CAST(category AS String)) IN ('cat1') GROUP BY category"},
		{"group by expression", "SELECT lower(name) AS category, count() AS cnt, sum(price) AS total_price FROM {source_table} WHERE price > 0 GROUP BY lower(name)",
			"WHERE (price > 0) AND toString(CAST(lower(name) AS String)) IN ('cat1') GROUP BY"},
		{"group by alias", "SELECT lower(name) AS category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY category",
			"WHERE toString(CAST(lower(name) AS String)) IN ('cat1') GROUP BY"},
		{"alias shadows a column", "SELECT lower(category) AS category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY category", ""},
		{"not a grouping key", "SELECT any(category) AS category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY id", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := MV{Spec: withSpec(func(s *specs.Spec) { s.SelectQuery = c.query })}
			sh, err := m.Shape()
			if err != nil {
				t.Fatal(err)
			}
			q, err := m.VerifyQuery(sh, f, 10)
			if err != nil {
				t.Fatal(err)
			}
			pushed := strings.Count(q, "IN ('cat1')") == 3
			if c.want == "" && pushed || c.want != "" && !strings.Contains(q, c.want) {
				t.Fatalf("want %q (empty: not pushed down) in\n%s", c.want, q)
			}
		})
	}
}
