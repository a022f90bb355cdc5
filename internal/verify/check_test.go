package verify

import (
	"errors"
	"strings"
	"testing"

	"github.com/shirath/shirath/state"
)

// TestSignature: the signature of a difference is the exact difference of
// numeric values, so that a planted row reads the same while rows keep
// arriving, and both values otherwise.
func TestSignature(t *testing.T) {
	a := Difference{Kind: KindDiffers, Target: []string{"4103", "205735.50"}, Expected: []string{"4102", "204735.5"}}
	b := Difference{Kind: KindDiffers, Target: []string{"4203", "210000.1"}, Expected: []string{"4202", "209000.10"}}
	if signature(a) != signature(b) || signature(a) != "differs|1|1000" {
		t.Fatalf("one planted row under writes: %s and %s", signature(a), signature(b))
	}
	c := Difference{Kind: KindDiffers, Target: []string{"4103", "205735.50"}, Expected: []string{"4103", "204735.5"}}
	if signature(a) == signature(c) {
		t.Fatal("a row in flight does not change the signature")
	}
	x := Difference{Kind: KindDiffers, Target: []string{"(1,'a')"}, Expected: []string{"(2,'a')"}}
	if got := signature(x); got != `differs|"(1,'a')"~"(2,'a')"` {
		t.Fatalf("non-numeric: %s", got)
	}
	e := Difference{Kind: KindExtra, Target: []string{"5"}}
	if got := signature(e); got != `extra|"5"~""` {
		t.Fatalf("extra: %s", got)
	}

	tr := newTrack(a)
	tr.differs(c)
	tr.differs(b)
	if n, d := tr.modal(); n != 2 || d.Target[0] != "4203" {
		t.Fatalf("modal: %d, %v; want 2 and the latest observation of the planted row", n, d.Target)
	}
	tr.matches()
	if n, _ := tr.modal(); n != 0 || tr.diff != 0 || tr.same != 1 {
		t.Fatalf("after a match: modal %d, diff %d, same %d", n, tr.diff, tr.same)
	}
}

// TestTargetOf: verify reads the live version's physical tables, from the
// spec readers see: the job's own once completed, the previous one while a
// change builds the next version; a backfill not completed is refused.
func TestTargetOf(t *testing.T) {
	spec := func(q string) []byte {
		return []byte(`{"name": "m", "database": "shop", "source_table": "products", "engine": "SummingMergeTree()",
			"order_by": ["category"], "columns": [{"name": "category", "type": "String"}, {"name": "cnt", "type": "UInt64"}],
			"select_query": "SELECT category, count() AS cnt FROM {source_table} ` + q + `GROUP BY category"}`)
	}
	old, next := spec(""), spec("WHERE id > 0 ")

	tg, err := TargetOf(&state.Job{Name: "m", Database: "shop", Status: state.StatusCompleted, Config: old, Version: 1, LiveVersion: 1})
	if err != nil || tg.Spec.TargetTable != "m_data" || tg.Version != 1 {
		t.Fatalf("version 1: %+v, %v", tg, err)
	}
	tg, err = TargetOf(&state.Job{Name: "m", Database: "shop", Status: state.StatusCompleted, Config: next, Version: 3, LiveVersion: 3})
	if err != nil || tg.Spec.TargetTable != "m_data__v3" || tg.Version != 3 || tg.Name != "m" {
		t.Fatalf("version 3: %+v, %v", tg, err)
	}
	tg, err = TargetOf(&state.Job{Name: "m", Database: "shop", Status: state.StatusBackfilling, Config: next, PreviousConfig: old, Version: 3, LiveVersion: 2})
	if err != nil || tg.Spec.TargetTable != "m_data__v2" || strings.Contains(tg.Spec.SelectQuery, "id > 0") {
		t.Fatalf("a change building version 3 over live version 2: %+v, %v", tg, err)
	}
	_, err = TargetOf(&state.Job{Name: "m", Database: "shop", Status: state.StatusBackfilling, Config: old, Version: 1, LiveVersion: 1})
	if !errors.Is(err, ErrNotVerifiable) || !strings.Contains(err.Error(), "backfilling") {
		t.Fatalf("a backfill in progress: %v, want ErrNotVerifiable", err)
	}
}
