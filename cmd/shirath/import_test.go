package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
)

// TestImportedYAML: a spec written by import reads back as the same spec
// (same hash), names that are the defaults are left out, and the notes are
// comments.
func TestImportedYAML(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    specs.Spec
		want    []string
		wantNot []string
		notes   []string
	}{
		{name: "single node, default names",
			spec: specs.Spec{Name: "by_cat", Database: "shop", SourceTable: "products", TargetTable: "by_cat_data", DistributedTable: "by_cat_dist",
				Engine: "SummingMergeTree()", OrderBy: []string{"category"},
				Columns:     []specs.Column{{Name: "category", Type: "String"}, {Name: "cnt", Type: "UInt64"}, {Name: "total_price", Type: "Decimal(38, 2)"}},
				SelectQuery: "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table}  GROUP BY category"},
			want:    []string{"name: by_cat\n", "database: shop\n", "order_by: [category]\n", "type: Decimal(38, 2)\n"},
			wantNot: []string{"target_table", "distributed_table", "cluster", "backfill"}},
		{name: "cluster, other names, keys, a note",
			spec: specs.Spec{Name: "stats", Database: "shop", Cluster: "shirath_test", SourceTable: "products", TargetTable: "stats_agg", DistributedTable: "stats_all",
				Engine: "ReplacingMergeTree(last_id)", OrderBy: []string{"category", "toStartOfDay(day)"}, PartitionBy: "toYYYYMM(day)",
				Columns:     []specs.Column{{Name: "category", Type: "String"}, {Name: "day", Type: "DateTime"}, {Name: "last_id", Type: "UInt64"}},
				SelectQuery: "SELECT category, created_at AS day, max(id) AS last_id FROM {source_table} WHERE note = 'a: b' GROUP BY category, day"},
			notes: []string{"the source shop.products has no integer column id: set backfill.key_column"},
			want:  []string{"cluster: shirath_test\n", "target_table: stats_agg\n", "distributed_table: stats_all\n", "partition_by: toYYYYMM(day)\n", "# Note: the source shop.products has no integer column id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			s.ApplyDefaults()
			b := importedYAML(&planner.Imported{Database: s.Database, Name: s.Name, Spec: &s, Notes: tc.notes})
			for _, w := range tc.want {
				if !bytes.Contains(b, []byte(w)) {
					t.Errorf("no %q in:\n%s", w, b)
				}
			}
			for _, w := range tc.wantNot {
				if bytes.Contains(b, []byte(w)) {
					t.Errorf("%q in:\n%s", w, b)
				}
			}
			got, err := specs.ParseYAML("imported.yaml", b)
			if err != nil || len(got) != 1 {
				t.Fatalf("the written spec does not load: %v\n%s", err, b)
			}
			if specs.Hash(got[0]) != specs.Hash(&s) {
				t.Fatalf("the written spec is another spec:\n%s\nread back: %+v\nwant:      %+v", b, got[0], s)
			}
		})
	}
}

func TestImportRefusals(t *testing.T) {
	var b strings.Builder
	renderImportRefusals(&b, []*planner.Imported{
		{Database: "shop", Name: "ok", Spec: &specs.Spec{}, Notes: []string{"no Distributed table"}},
		{Database: "shop", Name: "inner", Refused: "shop.inner has no TO target"},
	})
	want := "shop.ok: note: no Distributed table\nshop.inner: not imported: shop.inner has no TO target\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
