package planner

import (
	"errors"
	"strings"
	"testing"

	"github.com/shirath/shirath/specs"
)

// liveTables builds a node's tables as Inspect reads them, from what 18.16
// and 26.7 printed for the original design's statements (see
// TestSpecFromLive).
func liveTables(mvQuery, targetFull, sortingKey string, targetCols []Column, extra ...*Table) map[string]*Table {
	ts := map[string]*Table{
		"shop.by_cat": {Database: "shop", Name: "by_cat", Engine: "MaterializedView", CreateQuery: mvQuery},
		"shop.by_cat_data": {Database: "shop", Name: "by_cat_data", Engine: strings.SplitN(strings.SplitN(targetFull, "(", 2)[0], " ", 2)[0],
			EngineFull: targetFull, SortingKey: sortingKey, Columns: targetCols},
		"shop.products": {Database: "shop", Name: "products", Engine: "MergeTree", EngineFull: "MergeTree() ORDER BY id SETTINGS index_granularity = 8192",
			SortingKey: "id", Columns: []Column{{"id", "UInt64"}, {"category", "String"}, {"price", "Decimal(18, 2)"}}},
	}
	for _, t := range extra {
		ts[t.Database+"."+t.Name] = t
	}
	return ts
}

var byCatCols = []Column{{"category", "String"}, {"cnt", "UInt64"}, {"total_price", "Decimal(38, 2)"}}

func TestSpecFromLive(t *testing.T) {
	const want = "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table}"
	for _, tc := range []struct {
		name   string
		tables map[string]*Table
		query  string
		engine string
		dist   string
	}{
		{"18.16", liveTables(
			"CREATE MATERIALIZED VIEW shop.by_cat TO shop.by_cat_data ( category String,  cnt UInt64,  total_price Decimal(38, 2)) AS SELECT category, count() AS cnt, sum(price) AS total_price FROM shop.products  GROUP BY category",
			"SummingMergeTree() ORDER BY category SETTINGS index_granularity = 8192", "category", byCatCols),
			want + "  GROUP BY category", "SummingMergeTree()", ""},
		{"26.7", liveTables(
			"CREATE MATERIALIZED VIEW shop.by_cat TO shop.by_cat_data (`category` String, `cnt` UInt64, `total_price` Decimal(38, 2)) AS SELECT category, count() AS cnt, sum(price) AS total_price FROM shop.products GROUP BY category",
			"SummingMergeTree ORDER BY (category) SETTINGS index_granularity = 8192", "(category)", byCatCols),
			want + " GROUP BY category", "SummingMergeTree()", ""},
		{"quoted names and a Distributed table", liveTables(
			"CREATE MATERIALIZED VIEW shop.by_cat TO `shop`.`by_cat_data` (`category` String) AS SELECT category, count() AS cnt, sum(price) AS total_price FROM `shop`.`products` GROUP BY category",
			"ReplacingMergeTree(cnt) PARTITION BY tuple() ORDER BY (category, cnt)", "category, cnt", byCatCols,
			&Table{Database: "shop", Name: "by_cat_dist", Engine: "Distributed", EngineFull: "Distributed(shirath_test, shop, by_cat_data, rand())"}),
			want + " GROUP BY category", "ReplacingMergeTree(cnt)", "by_cat_dist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lm, err := SpecFromLive(tc.tables, "shop", "by_cat")
			if err != nil {
				t.Fatal(err)
			}
			s := lm.Spec
			if s.SelectQuery != tc.query || s.SourceTable != "products" || s.TargetTable != "by_cat_data" || s.Engine != tc.engine || lm.Distributed != tc.dist {
				t.Fatalf("got query %q source %q target %q engine %q dist %q", s.SelectQuery, s.SourceTable, s.TargetTable, s.Engine, lm.Distributed)
			}
			if len(s.Columns) != 3 || s.Columns[2] != (specs.Column{Name: "total_price", Type: "Decimal(38, 2)"}) {
				t.Fatalf("columns %v", s.Columns)
			}
			if s.OrderBy[0] != "category" {
				t.Fatalf("order_by %q", s.OrderBy)
			}
		})
	}
}

func TestSpecFromLiveRefuses(t *testing.T) {
	mv := func(q string) string {
		return "CREATE MATERIALIZED VIEW shop.by_cat TO shop.by_cat_data (`category` String) AS " + q
	}
	const ok = "SELECT category, count() AS cnt, sum(price) AS total_price FROM shop.products GROUP BY category"
	const summing = "SummingMergeTree ORDER BY category SETTINGS index_granularity = 8192"
	for _, tc := range []struct {
		name, mv, full, want string
	}{
		{"refreshable", "CREATE MATERIALIZED VIEW shop.by_cat REFRESH EVERY 1 HOUR TO shop.by_cat_data (`category` String) AS " + ok, summing, "refreshable MV"},
		{"no TO", "CREATE MATERIALIZED VIEW shop.by_cat (`category` String) ENGINE = SummingMergeTree ORDER BY category AS " + ok, summing, "has no TO target"},
		{"join", mv("SELECT p.category AS category, count() AS cnt, sum(p.price) AS total_price FROM shop.products AS p INNER JOIN shop.cats AS c ON p.category = c.name GROUP BY category"), summing, "JOINs several sources"},
		{"subquery", mv("SELECT category, count() AS cnt, sum(price) AS total_price FROM (SELECT * FROM shop.products) GROUP BY category"), summing, "not a table"},
		{"union", mv(ok + " UNION ALL " + ok), summing, "UNION"},
		{"other database", mv("SELECT category, count() AS cnt, sum(price) AS total_price FROM other.products GROUP BY category"), summing, "in another database"},
		{"unknown engine", mv(ok), "Log", "not one shirath knows"},
		{"ttl", mv(ok), "SummingMergeTree ORDER BY category TTL now() + toIntervalDay(1) SETTINGS index_granularity = 8192", "TTL"},
		{"settings", mv(ok), "SummingMergeTree ORDER BY category SETTINGS index_granularity = 1024", "SETTINGS index_granularity = 1024"},
		{"columns the query lacks", mv("SELECT category, count() AS cnt FROM shop.products GROUP BY category"), summing, "not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SpecFromLive(liveTables(tc.mv, tc.full, "category", byCatCols), "shop", "by_cat")
			if !errors.Is(err, ErrNotExpressible) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrNotExpressible with %q", err, tc.want)
			}
		})
	}
}

func TestAdoptDiffs(t *testing.T) {
	lm, err := SpecFromLive(liveTables(
		"CREATE MATERIALIZED VIEW shop.by_cat TO shop.by_cat_data ( category String,  cnt UInt64,  total_price Decimal(38, 2)) AS SELECT category, count() AS cnt, sum(price) AS total_price FROM shop.products  GROUP BY category",
		"SummingMergeTree() ORDER BY category SETTINGS index_granularity = 8192", "category", byCatCols), "shop", "by_cat")
	if err != nil {
		t.Fatal(err)
	}
	spec := func(edit func(*specs.Spec)) *specs.Spec {
		s := &specs.Spec{Name: "by_cat", Database: "shop", SourceTable: "products", Engine: "SummingMergeTree", OrderBy: []string{"(category)"},
			Columns:     []specs.Column{{Name: "category", Type: "String"}, {Name: "cnt", Type: "UInt64"}, {Name: "total_price", Type: "Decimal(38,2)"}},
			SelectQuery: "select category, count() as cnt, sum(price) as total_price\nfrom {source_table} group by category"}
		if edit != nil {
			edit(s)
		}
		s.ApplyDefaults()
		return s
	}
	if d := adoptDiffs(spec(nil), "SummingMergeTree", lm); len(d) > 0 {
		t.Fatalf("the original design's statements differ from their spec: %v", d)
	}
	for _, tc := range []struct {
		name string
		edit func(*specs.Spec)
		want string
	}{
		{"query", func(s *specs.Spec) {
			s.SelectQuery = "SELECT category, count() AS cnt, sum(price * 2) AS total_price FROM {source_table} GROUP BY category"
		}, "the query differs"},
		{"type", func(s *specs.Spec) { s.Columns[2].Type = "Decimal(18,2)" }, "columns"},
		{"engine", func(s *specs.Spec) { s.Engine = "AggregatingMergeTree" }, "engine"},
		{"order", func(s *specs.Spec) { s.OrderBy = []string{"category", "cnt"} }, "ORDER BY"},
		{"partition", func(s *specs.Spec) { s.PartitionBy = "cnt" }, "PARTITION BY"},
		{"source", func(s *specs.Spec) { s.SourceTable = "items" }, "source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(tc.edit)
			d := adoptDiffs(s, s.Engine, lm)
			if len(d) != 1 || !strings.Contains(d[0], tc.want) {
				t.Fatalf("got %q, want one difference about %q", d, tc.want)
			}
		})
	}
}
