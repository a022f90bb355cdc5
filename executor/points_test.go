package executor

import (
	"testing"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
)

// TestActionNames: every statement the executor sends is named by what it
// does to which object of the run, for the crash points around it.
func TestActionNames(t *testing.T) {
	s := &specs.Spec{
		Name: "by_category", Database: "shop", SourceTable: "products", Engine: "SummingMergeTree()",
		OrderBy: []string{"category"}, Columns: []specs.Column{{Name: "category", Type: "String"}, {Name: "cnt", Type: "UInt64"}},
		SelectQuery: "SELECT category, count() AS cnt FROM {source_table} GROUP BY category",
	}
	s.ApplyDefaults()
	c := &planner.ResourceChange{Name: s.Name, Database: s.Database, Spec: s, Version: 2}
	r := &run{c: c, mv: c.MV()}
	must := func(q string, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	lo, hi := int64(0), int64(1000)
	cases := []struct{ q, want string }{
		{must(r.mv.CreateTarget(true)), "create-target"},
		{must(r.mv.CreateMV(10, true)), "create-mv"},
		{r.mv.DropMV(true), "drop-mv"},
		{r.mv.DropTarget(true), "drop-target"},
		{r.mv.DropDistributed(true), "drop-dist"},
		{r.mv.CreateStage(), "create-stage"},
		{r.mv.TruncateStage(), "truncate-stage"},
		{must(r.mv.StageBatch(sqlgen.Range{After: &lo, UpTo: &hi})), "insert-stage"},
		{must(r.mv.BackfillBatch(sqlgen.Range{After: &lo, UpTo: &hi}, false)), "insert-target"},
		{r.mv.MoveStagePartition("all"), "move-partition-stage"},
		{r.mv.Optimize(true), "optimize-target"},
		{r.mv.MaxKey(), "read-source"},
		{r.mv.CountRange(lo, hi), "read-source"},
		{r.mv.SyncSource(), "sync-replica-source"},
		{"SYSTEM FLUSH LOGS", "flush-logs"},
		{"SELECT query_id FROM system.processes WHERE query_id = ?", "read-processes"},
		{sqlgen.CreateReaders("shop", sqlgen.NextName("by_category_data"), "by_category_data__v2"), "create-next"},
		{sqlgen.Rename("shop", "by_category_data", "by_category_data__prev", "by_category_data__next", "by_category_data"), "rename-readers-target"},
		{sqlgen.Exchange("shop", "by_category_data", "by_category_data__next"), "exchange-readers-target"},
		{r.mv.Drop("by_category", false), "drop-readers-mv"},
		{r.mv.Drop("by_category__v3", false), "drop-{name}__v3"},
		{must(r.mv.ModifyQuery(10)), "modify-query-mv"},
	}
	for _, tc := range cases {
		if got := r.action(tc.q); got != tc.want {
			t.Errorf("action(%q) = %q, want %q", tc.q, got, tc.want)
		}
	}
}
