package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
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

// TestRenderAdopted: status and mv status say that an adopted MV's data is
// not verified, and stop saying it once a change replaced the adopted
// version.
func TestRenderAdopted(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	job := &state.Job{ID: 4, Name: "by_cat", Database: "shop", Status: state.StatusCompleted, AdoptedAt: &at, Version: 1, LiveVersion: 1, UpdatedAt: at}
	var b bytes.Buffer
	renderStatus(&b, []*state.Job{job}, false)
	if !strings.Contains(b.String(), "completed (adopted, data not verified)") {
		t.Errorf("status:\n%s", b.String())
	}
	b.Reset()
	renderMV(&b, &server.MV{ID: &job.ID, JobView: state.JobView{Name: "by_cat", Database: "shop", Status: state.StatusCompleted, AdoptedAt: new("2026-12-02T09:30:00Z"), DataNotVerified: true}})
	if !strings.Contains(b.String(), "Adopted:   2026-12-02T09:30:00Z, data not verified (run shirath verify by_cat)") {
		t.Errorf("mv status:\n%s", b.String())
	}
	job.Version, job.LiveVersion = 2, 2
	b.Reset()
	renderStatus(&b, []*state.Job{job}, false)
	if strings.Contains(b.String(), "not verified") {
		t.Errorf("status after a change:\n%s", b.String())
	}
}
