package planner

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/state"
)

func TestActionStringSymbolJSON(t *testing.T) {
	tests := []struct {
		a            Action
		name, symbol string
		wire         string
	}{
		{NoOp, "no-op", " ", `"no-op"`},
		{Create, "create", "+", `"create"`},
		{Update, "update", "~", `"update"`},
		{Replace, "replace", "-/+", `"replace"`},
		{Delete, "delete", "-", `"delete"`},
		{Change, "change", "~", `"change"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.String(); got != tt.name {
				t.Errorf("String() = %q, want %q", got, tt.name)
			}
			if got := tt.a.Symbol(); got != tt.symbol {
				t.Errorf("Symbol() = %q, want %q", got, tt.symbol)
			}
			b, err := json.Marshal(tt.a)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.wire {
				t.Errorf("marshal = %s, want %s", b, tt.wire)
			}
			back := Action(-1)
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("unmarshal %s: %v", b, err)
			}
			if back != tt.a {
				t.Errorf("round trip gave %v, want %v", back, tt.a)
			}
		})
	}
}

func TestActionUnmarshalRejects(t *testing.T) {
	for _, in := range []string{`"frobnicate"`, `"Create"`, `""`, `1`, `null`} {
		a := Update
		err := json.Unmarshal([]byte(in), &a)
		if err == nil {
			t.Errorf("%s: no error, got action %v", in, a)
		}
		if a != Update {
			t.Errorf("%s: the action was overwritten with %v", in, a)
		}
		if strings.HasPrefix(in, `"`) && err != nil && !strings.Contains(err.Error(), "unknown plan action "+in) {
			t.Errorf("%s: error %q does not name the action", in, err)
		}
	}
}

func TestResourceChangeJSONUsesActionStrings(t *testing.T) {
	p := Plan{FormatVersion: FormatVersion, Fingerprint: "abc", Changes: []*ResourceChange{
		{Database: "shop", Name: "a", Action: Replace, Reason: "r", Steps: []Step{{Kind: StepDrop, Detail: "d"}}},
		{Database: "shop", Name: "b", Action: NoOp},
	}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"format_version":"1.0"`, `"action":"replace"`, `"action":"no-op"`, `"kind":"drop"`, `"resource_changes":[`} {
		if !strings.Contains(s, want) {
			t.Errorf("%s does not contain %s", s, want)
		}
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Changes[0].Action != Replace || back.Changes[1].Action != NoOp || back.FormatVersion != "1.0" {
		t.Errorf("round trip: %+v %+v", back.Changes[0], back.Changes[1])
	}
}

func TestSummaryAndHasChanges(t *testing.T) {
	ch := func(a Action, blocked string) *ResourceChange {
		return &ResourceChange{Database: "shop", Name: a.String(), Action: a, Blocked: blocked}
	}
	tests := []struct {
		name    string
		changes []*ResourceChange
		want    Summary
		has     bool
	}{
		{name: "empty", want: Summary{}},
		{name: "no-ops only", changes: []*ResourceChange{ch(NoOp, ""), ch(NoOp, "")}, want: Summary{}},
		{name: "one create", changes: []*ResourceChange{ch(Create, "")}, want: Summary{Create: 1}, has: true},
		{name: "replace counts as create and destroy", changes: []*ResourceChange{ch(Replace, "")}, want: Summary{Create: 1, Destroy: 1}, has: true},
		{name: "blocked change", changes: []*ResourceChange{ch(Change, "not supported")}, want: Summary{Change: 1, Blocked: 1}, has: true},
		{
			name: "every kind",
			changes: []*ResourceChange{
				ch(NoOp, ""), ch(Create, ""), ch(Create, "source missing"), ch(Update, ""),
				ch(Change, "not supported"), ch(Replace, ""), ch(Delete, ""),
			},
			want: Summary{Create: 3, Change: 2, Destroy: 2, Blocked: 2},
			has:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Plan{Changes: tt.changes}
			if got := p.Summary(); got != tt.want {
				t.Errorf("Summary() = %+v, want %+v", got, tt.want)
			}
			if got := p.HasChanges(); got != tt.has {
				t.Errorf("HasChanges() = %v, want %v", got, tt.has)
			}
		})
	}
}

// fpSnapshot is a two-cluster snapshot with two jobs, built afresh each call
// so that a test can edit it.
func fpSnapshot() *Snapshot {
	tbl := func(name, q string) *Table { return &Table{Database: "shop", Name: name, CreateQuery: q} }
	return &Snapshot{
		Live: map[string]*Live{
			"": live("", up("single:9000", 1, tbl("products", "CREATE TABLE products"), tbl("mv", "CREATE MATERIALIZED VIEW mv")))[""],
			"shop_cluster": live("shop_cluster",
				up("ch1:9000", 1, tbl("products", "CREATE TABLE products"), tbl("t", "CREATE TABLE t"), tbl("mv2", "CREATE MATERIALIZED VIEW mv2")),
				up("ch2:9000", 2, tbl("products", "CREATE TABLE products"), tbl("t", "CREATE TABLE t"), tbl("mv2", "CREATE MATERIALIZED VIEW mv2")),
				down("ch3:9000", 3),
			)["shop_cluster"],
		},
		Jobs: []*state.Job{
			{ID: 1, Database: "shop", Name: "mv", Status: state.StatusCompleted, SpecHash: "h1", CutoffID: i64(10), LastProcessedID: i64(10), FenceVerified: true},
			{ID: 2, Database: "shop", Name: "mv2", Status: state.StatusBackfilling, SpecHash: "h2", CutoffID: i64(500), LastProcessedID: i64(100), FenceVerified: true,
				ClusterName: "shop_cluster",
				Shards: []state.ShardProgress{
					{Shard: 1, Replica: "ch1:9000", Status: state.StatusBackfilling, LastProcessedID: i64(100)},
					{Shard: 2, Replica: "ch2:9000", Status: state.StatusCompleted, LastProcessedID: i64(500)},
				}},
		},
	}
}

func TestFingerprintStable(t *testing.T) {
	base := Fingerprint(fpSnapshot())
	if len(base) != 64 {
		t.Errorf("fingerprint %q is not a hex SHA-256", base)
	}
	if again := Fingerprint(fpSnapshot()); again != base {
		t.Errorf("two fingerprints of the same state differ: %s %s", base, again)
	}

	reordered := fpSnapshot()
	cl := reordered.Live["shop_cluster"]
	cl.Nodes[0], cl.Nodes[2] = cl.Nodes[2], cl.Nodes[0]
	reordered.Jobs[0], reordered.Jobs[1] = reordered.Jobs[1], reordered.Jobs[0]
	// Rebuild a node's table map in another insertion order.
	ns := cl.Nodes[1]
	tables := map[string]*Table{}
	for _, k := range []string{"shop.t", "shop.mv2", "shop.products"} {
		tables[k] = ns.Tables[k]
	}
	ns.Tables = tables
	// The time a job was last touched is not part of the state a plan uses.
	reordered.Jobs[0].UpdatedAt = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := Fingerprint(reordered); got != base {
		t.Errorf("reordering nodes, tables and jobs changed the fingerprint")
	}
}

func TestFingerprintChanges(t *testing.T) {
	base := Fingerprint(fpSnapshot())
	tests := []struct {
		name string
		edit func(s *Snapshot)
	}{
		{"table create query", func(s *Snapshot) {
			s.Live["shop_cluster"].Nodes[1].Tables["shop.mv2"].CreateQuery = "CREATE MATERIALIZED VIEW mv2 WHERE id > 1"
		}},
		{"table added", func(s *Snapshot) {
			s.Live[""].Nodes[0].Tables["shop.new"] = &Table{Database: "shop", Name: "new", CreateQuery: "CREATE TABLE new"}
		}},
		{"table dropped", func(s *Snapshot) { delete(s.Live["shop_cluster"].Nodes[0].Tables, "shop.t") }},
		{"node goes down", func(s *Snapshot) {
			n := s.Live["shop_cluster"].Nodes[1]
			n.Err, n.Node.Err = errors.New("connection refused"), errors.New("connection refused")
		}},
		{"node comes back", func(s *Snapshot) {
			n := s.Live["shop_cluster"].Nodes[2]
			n.Err, n.Node.Err, n.Tables = nil, nil, map[string]*Table{}
		}},
		{"cluster gone", func(s *Snapshot) { delete(s.Live, "shop_cluster") }},
		{"job status", func(s *Snapshot) { s.Jobs[1].Status = state.StatusPaused }},
		{"job progress", func(s *Snapshot) { s.Jobs[1].LastProcessedID = i64(200) }},
		{"job cutoff", func(s *Snapshot) { s.Jobs[1].CutoffID = i64(600) }},
		{"job spec hash", func(s *Snapshot) { s.Jobs[0].SpecHash = "h1b" }},
		{"job fence verified", func(s *Snapshot) { s.Jobs[0].FenceVerified = false }},
		{"job added", func(s *Snapshot) {
			s.Jobs = append(s.Jobs, &state.Job{ID: 3, Database: "shop", Name: "x", Status: state.StatusPending})
		}},
		{"job removed", func(s *Snapshot) { s.Jobs = s.Jobs[:1] }},
		{"shard progress", func(s *Snapshot) { s.Jobs[1].Shards[0].LastProcessedID = i64(150) }},
		{"shard status", func(s *Snapshot) { s.Jobs[1].Shards[0].Status = state.StatusFailed }},
	}
	seen := map[string]string{base: "base"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fpSnapshot()
			tt.edit(s)
			got := Fingerprint(s)
			if got == base {
				t.Fatalf("fingerprint did not change")
			}
			if prev, ok := seen[got]; ok {
				t.Errorf("same fingerprint as %q", prev)
			}
			seen[got] = tt.name
		})
	}
}

func TestLineDiff(t *testing.T) {
	tests := []struct {
		name, a, b, want string
	}{
		{
			name: "changed WHERE",
			a:    "CREATE MATERIALIZED VIEW v TO t AS SELECT a, count() AS n FROM src WHERE x > 1 GROUP BY a",
			b:    "CREATE MATERIALIZED VIEW v TO t AS SELECT a, count() AS n FROM src WHERE x > 2 GROUP BY a",
			want: "  CREATE MATERIALIZED VIEW v\n" +
				"  TO t\n" +
				"  AS SELECT a, count() AS n\n" +
				"  FROM src\n" +
				"- WHERE x > 1\n" +
				"+ WHERE x > 2\n" +
				"  GROUP BY a\n",
		},
		{
			name: "WHERE added",
			a:    "SELECT a FROM src GROUP BY a\n",
			b:    "SELECT a FROM src WHERE a != '' GROUP BY a\n",
			want: "  SELECT a\n  FROM src\n+ WHERE a != ''\n  GROUP BY a\n",
		},
		{
			name: "engine and order",
			a:    "CREATE TABLE t (a String) ENGINE = SummingMergeTree() ORDER BY (a)",
			b:    "CREATE TABLE t (a String) ENGINE = ReplacingMergeTree() ORDER BY (a)",
			want: "  CREATE TABLE t (a String)\n- ENGINE = SummingMergeTree()\n+ ENGINE = ReplacingMergeTree()\n  ORDER BY (a)\n",
		},
		{
			name: "equal",
			a:    "SELECT 1 FROM x",
			b:    "SELECT 1 FROM x",
			want: "  SELECT 1\n  FROM x\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LineDiff(tt.a, tt.b); got != tt.want {
				t.Errorf("LineDiff\n got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
