package planner

import (
	"slices"
	"strings"
	"testing"
)

// handTarget and handMV are the running example made by hand: no fence in
// the view's query, the server's engine_full.
func handTarget() *Table {
	t := targetTable()
	t.EngineFull = "SummingMergeTree() ORDER BY category SETTINGS index_granularity = 8192"
	return t
}

func handMV(query string) *Table {
	return mvTable("CREATE MATERIALIZED VIEW shop.products_by_category TO shop.products_by_category_data " +
		"(`category` String, `cnt` UInt64, `total_price` Decimal(18, 2)) AS " + query)
}

func handDist() *Table {
	t := distTable()
	t.EngineFull = "Distributed(shop_cluster, shop, products_by_category_data, rand())"
	return t
}

const handQuery = "SELECT category, count() AS cnt, sum(price) AS total_price FROM shop.products GROUP BY category"

func TestDiffAdopt(t *testing.T) {
	const noJob = "objects exist at the spec's names and shirath has no job for them"
	for _, tt := range []struct {
		name    string
		cluster string
		nodes   []*NodeState
		action  Action
		reason  string // a prefix
		blocked string // a substring; "" when not blocked
		steps   []StepKind
		check   func(t *testing.T, c *ResourceChange)
	}{
		{
			name:   "matches the spec: adopted as it is",
			nodes:  []*NodeState{up("ch1:9000", 1, sourceTable("MergeTree"), handTarget(), handMV(handQuery))},
			action: Adopt, reason: "shop.products_by_category and shop.products_by_category_data exist and match the spec",
			steps: []StepKind{StepAdopt},
			check: func(t *testing.T, c *ResourceChange) {
				if c.Strategy != "" || c.Version != 1 || c.LiveSpec == nil || c.LiveSpec.SourceTable != "products" || c.Diff != "" {
					t.Errorf("strategy %q version %d live spec %+v diff %q", c.Strategy, c.Version, c.LiveSpec, c.Diff)
				}
			},
		},
		{
			name:   "differs: adopted, then rebuilt beside and switched",
			nodes:  []*NodeState{up("ch1:9000", 1, sourceTable("MergeTree"), handTarget(), handMV(strings.Replace(handQuery, "sum(price)", "sum(price * 2)", 1)))},
			action: Adopt, reason: "shop.products_by_category exists and differs from the spec (the query differs): it will be adopted as live version 1, then rebuilt beside as version 2",
			steps: append(append([]StepKind{StepAdopt}, createSingle...), StepSwitch, StepSwitch, StepDropOld),
			check: func(t *testing.T, c *ResourceChange) {
				if c.Strategy != StrategyRebuild || c.Version != 2 || c.LiveVersion != 1 {
					t.Errorf("strategy %q version %d live %d", c.Strategy, c.Version, c.LiveVersion)
				}
				if !strings.Contains(c.Diff, "- AS SELECT category, count() AS cnt, sum(price * 2) AS total_price") ||
					!strings.Contains(c.Diff, "+ AS SELECT category, count() AS cnt, sum(price) AS total_price") {
					t.Errorf("diff:\n%s", c.Diff)
				}
				if c.MV().Spec.TargetTable != "products_by_category_data__v2" {
					t.Errorf("builds %s", c.MV().Spec.TargetTable)
				}
			},
		},
		{
			name:    "on a cluster, the Distributed table missing on one node is created there",
			cluster: testCluster,
			nodes: []*NodeState{
				up("ch1:9000", 1, sourceTable("MergeTree"), handTarget(), handMV(handQuery), handDist()),
				up("ch2:9000", 2, sourceTable("MergeTree"), handTarget(), handMV(handQuery)),
			},
			action: Adopt, reason: "shop.products_by_category and shop.products_by_category_data exist and match the spec",
			steps: []StepKind{StepAdopt, StepCreateDistributed},
			check: func(t *testing.T, c *ResourceChange) {
				if !slices.Equal(c.Steps[1].Nodes, []string{"ch2:9000"}) {
					t.Errorf("Distributed table created on %v", c.Steps[1].Nodes)
				}
			},
		},
		{
			name:    "the MV missing on one node",
			cluster: testCluster,
			nodes: []*NodeState{
				up("ch1:9000", 1, sourceTable("MergeTree"), handTarget(), handMV(handQuery), handDist()),
				up("ch2:9000", 2, sourceTable("MergeTree"), handTarget(), handDist()),
			},
			action: Adopt, reason: noJob, blocked: "shop.products_by_category is on ch1:9000 but missing on ch2:9000",
		},
		{
			name:    "the MV differs between nodes",
			cluster: testCluster,
			nodes: []*NodeState{
				up("ch1:9000", 1, sourceTable("MergeTree"), handTarget(), handMV(handQuery), handDist()),
				up("ch2:9000", 2, sourceTable("MergeTree"), handTarget(), handMV(strings.Replace(handQuery, "sum(price)", "sum(price * 2)", 1)), handDist()),
			},
			action: Adopt, reason: noJob, blocked: "it differs between ch1:9000 and ch2:9000: the query differs",
		},
		{
			name:   "an MV without TO cannot be adopted",
			nodes:  []*NodeState{up("ch1:9000", 1, sourceTable("MergeTree"), handTarget(), mvTable("CREATE MATERIALIZED VIEW shop.products_by_category (`category` String) ENGINE = SummingMergeTree() ORDER BY category AS "+handQuery))},
			action: Adopt, reason: noJob, blocked: "has no TO target",
		},
		{
			name:   "an MV writing into another table",
			nodes:  []*NodeState{up("ch1:9000", 1, sourceTable("MergeTree"), handTarget(), &Table{Database: testDB, Name: "other_data", Engine: "SummingMergeTree", EngineFull: handTarget().EngineFull, SortingKey: "category", Columns: handTarget().Columns}, mvTable(strings.Replace(handMV(handQuery).CreateQuery, "TO shop.products_by_category_data", "TO shop.other_data", 1)))},
			action: Adopt, reason: noJob, blocked: "writes into shop.other_data, and the spec's target is shop.products_by_category_data (readers' names do not move: set target_table: other_data)",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			extra := ""
			if tt.cluster != "" {
				extra = "cluster: auto\n"
			}
			s := testSpec(t, extra)
			out := Diff(Input{Desired: []Desired{{Spec: s, Cluster: tt.cluster}}, Live: live(tt.cluster, tt.nodes...)})
			c := out[0]
			if c.Action != tt.action || !strings.HasPrefix(c.Reason, tt.reason) {
				t.Errorf("action %s reason %q, want %s %q", c.Action, c.Reason, tt.action, tt.reason)
			}
			if (tt.blocked == "") != (c.Blocked == "") || !strings.Contains(c.Blocked, tt.blocked) {
				t.Errorf("blocked %q, want %q", c.Blocked, tt.blocked)
			}
			if got := kinds(c.Steps); !slices.Equal(got, tt.steps) {
				t.Errorf("steps\n got %v\nwant %v", got, tt.steps)
			}
			if tt.check != nil && c.Blocked == "" {
				tt.check(t, c)
			}
		})
	}
}
