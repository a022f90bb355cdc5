package sqlgen

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shirath/shirath/specs"
)

var update = flag.Bool("update", false, "rewrite testdata/*.sql from the current output")

// productsSpec is the running example of the project: per-category totals of
// a products table, with defaults applied.
func productsSpec() *specs.Spec {
	return &specs.Spec{
		Name:             "category_totals_mv",
		SourceTable:      "products",
		TargetTable:      "category_totals",
		DistributedTable: "category_totals_dist",
		Database:         "shop",
		Engine:           "SummingMergeTree()",
		OrderBy:          []string{"category"},
		Columns: []specs.Column{
			{Name: "category", Type: "String"},
			{Name: "cnt", Type: "UInt64"},
			{Name: "total_price", Type: "Decimal(18, 2)"},
		},
		SelectQuery: "SELECT category, count() as cnt, sum(price) as total_price FROM {source_table} GROUP BY category",
		Backfill:    specs.Backfill{KeyColumn: "id"},
	}
}

func withSpec(edit func(*specs.Spec)) *specs.Spec {
	s := productsSpec()
	edit(s)
	return s
}

func i64(v int64) *int64 { return &v }

func TestGolden(t *testing.T) {
	products := MV{Spec: productsSpec()}
	clustered := MV{Spec: productsSpec(), Cluster: "shop_cluster"}
	daily := MV{Spec: withSpec(func(s *specs.Spec) {
		s.Name, s.TargetTable = "daily_totals_mv", "daily_totals"
		s.PartitionBy = "toYYYYMM(day)"
		s.OrderBy = []string{"day", "category"}
		s.Columns = append([]specs.Column{{Name: "day", Type: "Date"}}, s.Columns...)
		s.SelectQuery = "SELECT toDate(created_at) AS day, category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY day, category"
	})}
	replicatedEngine, err := ReplicatedEngine("SummingMergeTree()", ZKPath("shop", "category_totals"))
	if err != nil {
		t.Fatal(err)
	}
	replicated := MV{Spec: productsSpec(), Cluster: "shop_cluster", TargetEngine: replicatedEngine}
	where := MV{Spec: withSpec(func(s *specs.Spec) {
		s.SelectQuery = "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} WHERE price > 0 OR category = 'free' GROUP BY category"
	})}
	having := MV{Spec: withSpec(func(s *specs.Spec) {
		s.SelectQuery = "SELECT category, count() AS cnt, sum(price) AS total_price\nFROM {source_table}\nWHERE category != '' -- skip unnamed\nGROUP BY category\nHAVING cnt > 1"
	})}
	casts := MV{Spec: productsSpec(), Casts: map[string]string{
		"total_price": "Decimal(18, 2)",
		"category":    "LowCardinality(String)",
	}}
	hostile := MV{Spec: withSpec(func(s *specs.Spec) {
		s.Database = "we`ird"
		s.Name = `mv\`
		s.SourceTable = "src`; DROP TABLE x; --"
		s.TargetTable = "tar'get"
		s.DistributedTable = "dist\n"
		s.Backfill.KeyColumn = "k`ey"
	}), Cluster: "c`l"}

	cases := []struct {
		name string
		gen  func() (string, error)
	}{
		{"create_target", func() (string, error) { return products.CreateTarget(false) }},
		{"create_target_on_cluster", func() (string, error) { return clustered.CreateTarget(true) }},
		{"create_target_partition_by", func() (string, error) { return daily.CreateTarget(false) }},
		{"create_target_replicated", func() (string, error) { return replicated.CreateTarget(true) }},
		{"create_mv_fence", func() (string, error) { return products.CreateMV(1000, false) }},
		{"create_mv_fence_on_cluster", func() (string, error) { return clustered.CreateMV(1000, true) }},
		{"create_mv_fence_existing_where", func() (string, error) { return where.CreateMV(1000, false) }},
		{"create_mv_fence_group_by_having", func() (string, error) { return having.CreateMV(1000, false) }},
		{"create_mv_fence_casts", func() (string, error) { return casts.CreateMV(1000, false) }},
		{"create_mv_partition_by", func() (string, error) { return daily.CreateMV(-1, false) }},
		{"create_distributed", func() (string, error) { return clustered.CreateDistributed(true) }},
		{"create_distributed_local", func() (string, error) { return clustered.CreateDistributed(false) }},
		{"backfill_range", func() (string, error) { return products.BackfillBatch(Range{After: i64(1000), UpTo: i64(2000)}, false) }},
		{"backfill_range_ordered", func() (string, error) { return daily.BackfillBatch(Range{After: i64(1000), UpTo: i64(2000)}, true) }},
		{"backfill_upto", func() (string, error) { return products.BackfillBatch(Range{UpTo: i64(1000)}, false) }},
		{"backfill_upto_ordered", func() (string, error) { return products.BackfillBatch(Range{UpTo: i64(1000)}, true) }},
		{"backfill_casts_existing_where", func() (string, error) {
			m := where
			m.Casts = casts.Casts
			return m.BackfillBatch(Range{After: i64(0), UpTo: i64(500)}, true)
		}},
		{"optimize", func() (string, error) { return products.Optimize(false), nil }},
		{"optimize_on_cluster", func() (string, error) { return clustered.Optimize(true), nil }},
		{"drop_mv", func() (string, error) { return products.DropMV(false), nil }},
		{"drop_mv_on_cluster", func() (string, error) { return clustered.DropMV(true), nil }},
		{"drop_target", func() (string, error) { return products.DropTarget(false), nil }},
		{"drop_target_on_cluster", func() (string, error) { return clustered.DropTarget(true), nil }},
		{"drop_distributed", func() (string, error) { return clustered.DropDistributed(false), nil }},
		{"drop_distributed_on_cluster", func() (string, error) { return clustered.DropDistributed(true), nil }},
		{"hostile_names", func() (string, error) {
			var out []string
			for _, f := range []func() (string, error){
				func() (string, error) { return hostile.CreateTarget(true) },
				func() (string, error) { return hostile.CreateMV(7, true) },
				func() (string, error) { return hostile.CreateDistributed(true) },
				func() (string, error) { return hostile.BackfillBatch(Range{UpTo: i64(7)}, true) },
				func() (string, error) { return hostile.Optimize(true), nil },
				func() (string, error) { return hostile.DropMV(true), nil },
			} {
				s, err := f()
				if err != nil {
					return "", err
				}
				out = append(out, s+";")
			}
			return strings.Join(out, "\n"), nil
		}},
		{"replicated_engine", func() (string, error) {
			var out []string
			for _, in := range []string{
				"SummingMergeTree()",
				"SummingMergeTree",
				"SummingMergeTree((cnt, total_price))",
				"MergeTree()",
				"ReplacingMergeTree(version)",
				"CollapsingMergeTree(sign)",
				"AggregatingMergeTree()",
				"  VersionedCollapsingMergeTree( sign ,version )  ",
				"ReplicatedSummingMergeTree('/custom/path', '{replica}')",
			} {
				r, err := ReplicatedEngine(in, ZKPath("shop", "category_totals"))
				if err != nil {
					return "", err
				}
				out = append(out, "-- "+in+"\n"+r)
			}
			return strings.Join(out, "\n"), nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.gen()
			if err != nil {
				t.Fatal(err)
			}
			got += "\n"
			path := filepath.Join("testdata", c.name+".sql")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}
