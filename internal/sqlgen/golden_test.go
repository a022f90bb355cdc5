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

// goldenNames are the names the golden statements are generated with.
// TestGolden uses fixedNames; the integration test generates the same cases
// in its own databases and with the stack's cluster, so that it runs exactly
// what testdata/ holds, names aside.
type goldenNames struct {
	DB, Cluster string
	// HostileDB and HostileCluster name the hostile_names case. The cluster
	// of a real server cannot be chosen, so only TestGolden makes it hostile.
	HostileDB, HostileCluster string
	// CustomZKPath is the path of the engine that is already Replicated.
	CustomZKPath string
}

var fixedNames = goldenNames{
	DB: "shop", Cluster: "shop_cluster",
	HostileDB: "we`ird", HostileCluster: "c`l",
	CustomZKPath: "/custom/path",
}

// goldenCase is one file of testdata/: gen returns the statements it holds
// (for replicated_engine, engine clauses), print the file's text.
type goldenCase struct {
	name  string
	gen   func() ([]string, error)
	print func([]string) string
}

func oneStmt(sql string, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return []string{sql}, nil
}

// replicatedEngineInputs are the engine clauses of replicated_engine.sql;
// the last one is already Replicated and uses its own path.
func replicatedEngineInputs(n goldenNames) []string {
	return []string{
		"SummingMergeTree()",
		"SummingMergeTree",
		"SummingMergeTree((cnt, total_price))",
		"MergeTree()",
		"ReplacingMergeTree(version)",
		"CollapsingMergeTree(sign)",
		"AggregatingMergeTree()",
		"  VersionedCollapsingMergeTree( sign ,version )  ",
		"ReplicatedSummingMergeTree(" + quoteString(n.CustomZKPath) + ", '{replica}')",
	}
}

func goldenCases(n goldenNames) []goldenCase {
	products := MV{Spec: withSpec(func(s *specs.Spec) { s.Database = n.DB })}
	clustered := MV{Spec: products.Spec, Cluster: n.Cluster}
	daily := MV{Spec: withSpec(func(s *specs.Spec) {
		s.Database = n.DB
		s.Name, s.TargetTable = "daily_totals_mv", "daily_totals"
		s.PartitionBy = "toYYYYMM(day)"
		s.OrderBy = []string{"day", "category"}
		s.Columns = append([]specs.Column{{Name: "day", Type: "Date"}}, s.Columns...)
		s.SelectQuery = "SELECT toDate(created_at) AS day, category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY day, category"
	})}
	where := MV{Spec: withSpec(func(s *specs.Spec) {
		s.Database = n.DB
		s.SelectQuery = "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} WHERE price > 0 OR category = 'free' GROUP BY category"
	})}
	having := MV{Spec: withSpec(func(s *specs.Spec) {
		s.Database = n.DB
		s.SelectQuery = "SELECT category, count() AS cnt, sum(price) AS total_price\nFROM {source_table}\nWHERE category != '' -- skip unnamed\nGROUP BY category\nHAVING cnt > 1"
	})}
	casts := MV{Spec: products.Spec, Casts: map[string]string{
		"total_price": "Decimal(18, 2)",
		"category":    "LowCardinality(String)",
	}}
	hostile := MV{Spec: withSpec(func(s *specs.Spec) {
		s.Database = n.HostileDB
		s.Name = `mv\`
		s.SourceTable = "src`; DROP TABLE x; --"
		s.TargetTable = "tar'get"
		s.DistributedTable = "dist\n"
		s.Backfill.KeyColumn = "k`ey"
	}), Cluster: n.HostileCluster}

	cases := []goldenCase{
		{"create_target", func() ([]string, error) { return oneStmt(products.CreateTarget(false)) }, nil},
		{"create_target_on_cluster", func() ([]string, error) { return oneStmt(clustered.CreateTarget(true)) }, nil},
		{"create_target_partition_by", func() ([]string, error) { return oneStmt(daily.CreateTarget(false)) }, nil},
		{"create_target_replicated", func() ([]string, error) {
			eng, err := ReplicatedEngine("SummingMergeTree()", ZKPath(n.DB, "category_totals"))
			if err != nil {
				return nil, err
			}
			m := clustered
			m.TargetEngine = eng
			return oneStmt(m.CreateTarget(true))
		}, nil},
		{"create_mv_fence", func() ([]string, error) { return oneStmt(products.CreateMV(1000, false)) }, nil},
		{"create_mv_fence_on_cluster", func() ([]string, error) { return oneStmt(clustered.CreateMV(1000, true)) }, nil},
		{"create_mv_fence_existing_where", func() ([]string, error) { return oneStmt(where.CreateMV(1000, false)) }, nil},
		{"create_mv_fence_group_by_having", func() ([]string, error) { return oneStmt(having.CreateMV(1000, false)) }, nil},
		{"create_mv_fence_casts", func() ([]string, error) { return oneStmt(casts.CreateMV(1000, false)) }, nil},
		{"create_mv_partition_by", func() ([]string, error) { return oneStmt(daily.CreateMV(-1, false)) }, nil},
		{"create_distributed", func() ([]string, error) { return oneStmt(clustered.CreateDistributed(true)) }, nil},
		{"create_distributed_local", func() ([]string, error) { return oneStmt(clustered.CreateDistributed(false)) }, nil},
		{"backfill_range", func() ([]string, error) {
			return oneStmt(products.BackfillBatch(Range{After: i64(1000), UpTo: i64(2000)}, false))
		}, nil},
		{"backfill_range_ordered", func() ([]string, error) {
			return oneStmt(daily.BackfillBatch(Range{After: i64(1000), UpTo: i64(2000)}, true))
		}, nil},
		{"backfill_upto", func() ([]string, error) { return oneStmt(products.BackfillBatch(Range{UpTo: i64(1000)}, false)) }, nil},
		{"backfill_upto_ordered", func() ([]string, error) { return oneStmt(products.BackfillBatch(Range{UpTo: i64(1000)}, true)) }, nil},
		{"backfill_casts_existing_where", func() ([]string, error) {
			m := where
			m.Casts = casts.Casts
			return oneStmt(m.BackfillBatch(Range{After: i64(0), UpTo: i64(500)}, true))
		}, nil},
		{"optimize", func() ([]string, error) { return oneStmt(products.Optimize(false), nil) }, nil},
		{"optimize_on_cluster", func() ([]string, error) { return oneStmt(clustered.Optimize(true), nil) }, nil},
		{"drop_mv", func() ([]string, error) { return oneStmt(products.DropMV(false), nil) }, nil},
		{"drop_mv_on_cluster", func() ([]string, error) { return oneStmt(clustered.DropMV(true), nil) }, nil},
		{"drop_target", func() ([]string, error) { return oneStmt(products.DropTarget(false), nil) }, nil},
		{"drop_target_on_cluster", func() ([]string, error) { return oneStmt(clustered.DropTarget(true), nil) }, nil},
		{"drop_distributed", func() ([]string, error) { return oneStmt(clustered.DropDistributed(false), nil) }, nil},
		{"drop_distributed_on_cluster", func() ([]string, error) { return oneStmt(clustered.DropDistributed(true), nil) }, nil},
		{"hostile_names", func() ([]string, error) {
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
					return nil, err
				}
				out = append(out, s)
			}
			return out, nil
		}, func(stmts []string) string { return strings.Join(stmts, ";\n") + ";" }},
		{"replicated_engine", func() ([]string, error) {
			var out []string
			for _, in := range replicatedEngineInputs(n) {
				r, err := ReplicatedEngine(in, ZKPath(n.DB, "category_totals"))
				if err != nil {
					return nil, err
				}
				out = append(out, r)
			}
			return out, nil
		}, func(clauses []string) string {
			var out []string
			for i, in := range replicatedEngineInputs(n) {
				out = append(out, "-- "+in+"\n"+clauses[i])
			}
			return strings.Join(out, "\n")
		}},
	}
	for i := range cases {
		if cases[i].print == nil {
			cases[i].print = func(stmts []string) string { return strings.Join(stmts, "\n") }
		}
	}
	return cases
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases(fixedNames) {
		t.Run(c.name, func(t *testing.T) {
			stmts, err := c.gen()
			if err != nil {
				t.Fatal(err)
			}
			got := c.print(stmts) + "\n"
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
