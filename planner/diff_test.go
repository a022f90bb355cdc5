package planner

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// The running example: per-category totals of shop.products.
const (
	testDB      = "shop"
	testMV      = "products_by_category"
	testTarget  = testMV + "_data"
	testDist    = testMV + "_dist"
	testCluster = "shop_cluster"

	// testMVQuery is the MV as ClickHouse prints it in create_table_query.
	testMVQuery = "CREATE MATERIALIZED VIEW shop.products_by_category TO shop.products_by_category_data " +
		"(`category` String, `cnt` UInt64, `total_price` Decimal(18, 2)) AS SELECT category, count() AS cnt, " +
		"sum(price) AS total_price FROM shop.products WHERE id > 1000 GROUP BY category"
)

const baseSpecYAML = `name: products_by_category
database: shop
source_table: products
engine: "SummingMergeTree()"
order_by: [category]
columns:
  - name: category
    type: String
  - name: cnt
    type: UInt64
  - name: total_price
    type: Decimal(18,2)
select_query: "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY category"
`

// testSpec parses the running example with extra top-level YAML appended,
// so that defaults and validation are the real ones.
func testSpec(t *testing.T, extra string) *specs.Spec {
	t.Helper()
	ss, err := specs.ParseYAML("products_by_category.yaml", []byte(baseSpecYAML+extra))
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	if len(ss) != 1 {
		t.Fatalf("parse spec: got %d specs, want 1", len(ss))
	}
	return ss[0]
}

func sourceTable(engine string, cols ...Column) *Table {
	if cols == nil {
		cols = []Column{{"id", "UInt64"}, {"category", "String"}, {"price", "Decimal(18, 2)"}}
	}
	return &Table{
		Database: testDB, Name: "products", Engine: engine,
		CreateQuery: "CREATE TABLE shop.products (`id` UInt64, `category` String, `price` Decimal(18, 2)) ENGINE = " + engine + " ORDER BY id",
		SortingKey:  "id",
		Columns:     cols,
	}
}

func targetTable() *Table {
	return &Table{
		Database: testDB, Name: testTarget, Engine: "SummingMergeTree",
		CreateQuery: "CREATE TABLE shop.products_by_category_data (`category` String, `cnt` UInt64, `total_price` Decimal(18, 2)) ENGINE = SummingMergeTree() ORDER BY category",
		SortingKey:  "category",
		Columns:     []Column{{"category", "String"}, {"cnt", "UInt64"}, {"total_price", "Decimal(18, 2)"}},
	}
}

func mvTable(query string) *Table {
	return &Table{Database: testDB, Name: testMV, Engine: "MaterializedView", CreateQuery: query}
}

func distTable() *Table {
	return &Table{
		Database: testDB, Name: testDist, Engine: "Distributed",
		CreateQuery: "CREATE TABLE shop.products_by_category_dist AS shop.products_by_category_data ENGINE = Distributed(shop_cluster, shop, products_by_category_data)",
	}
}

// up is a node that answered, holding the given tables.
func up(addr string, shard int, ts ...*Table) *NodeState {
	m := map[string]*Table{}
	for _, t := range ts {
		m[t.Database+"."+t.Name] = t
	}
	return &NodeState{Node: &Node{Addr: addr, Shard: shard, Replica: 1}, Tables: m}
}

// down is a node that could not be reached: Inspect copies the node's error.
func down(addr string, shard int) *NodeState {
	err := errors.New("dial tcp " + addr + ": connection refused")
	return &NodeState{Node: &Node{Addr: addr, Shard: shard, Replica: 1, Err: err}, Err: err}
}

func live(cluster string, nodes ...*NodeState) map[string]*Live {
	topo := &Topology{Cluster: cluster}
	for _, ns := range nodes {
		topo.Nodes = append(topo.Nodes, ns.Node)
	}
	return map[string]*Live{cluster: {Topology: topo, Nodes: nodes}}
}

func i64(v int64) *int64 { return &v }

// testJob is the job of a spec applied with fence 1000, in the given status.
func testJob(t *testing.T, s *specs.Spec, cluster string, status state.Status) *state.Job {
	t.Helper()
	cfg, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return &state.Job{
		ID: 7, Name: s.Name, Database: s.Database, SourceTable: s.SourceTable, TargetTable: s.TargetTable,
		Status: status, ClusterName: cluster,
		CutoffID: i64(1000), LastProcessedID: i64(1000), TotalRows: 1000, ProcessedRows: 1000,
		Config: cfg, SpecHash: specs.Hash(s), FenceVerified: true,
		Applied: map[string]state.AppliedObject{
			"target": {SQL: "CREATE TABLE IF NOT EXISTS `shop`.`products_by_category_data` ...", Server: targetTable().CreateQuery},
			"mv":     {SQL: "CREATE MATERIALIZED VIEW IF NOT EXISTS `shop`.`products_by_category` ...", Server: testMVQuery},
		},
	}
}

func kinds(steps []Step) []StepKind {
	var out []StepKind
	for _, s := range steps {
		out = append(out, s.Kind)
	}
	return out
}

var (
	createSingle = []StepKind{StepCreateTarget, StepFence, StepCreateMV, StepWait, StepBackfill, StepOptimize}
	createOnCl   = []StepKind{StepCreateTarget, StepFence, StepCreateMV, StepCreateDistributed, StepWait, StepBackfill, StepOptimize}
)

const mutableHint = "it stores a new row for every update of a row (as CDC does), so the MV would count every update as a new row. " +
	"Set allow_mutable_source: true in the spec if that is what you want"

func TestDiff(t *testing.T) {
	type want struct {
		action Action
		reason string // exact
		// blocked holds substrings of Blocked, which must be empty when nil.
		blocked []string
		steps   []StepKind
		engine  string // TargetEngine, checked when set
		check   func(t *testing.T, c *ResourceChange)
	}
	tests := []struct {
		name    string
		extra   string // YAML appended to the spec
		cluster string // the resolved cluster of the spec
		live    map[string]*Live
		job     func(t *testing.T, s *specs.Spec) *state.Job
		want    want
	}{
		{
			name: "new MV on a single node",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"))),
			want: want{action: Create, reason: "new materialized view", steps: createSingle, engine: "SummingMergeTree()",
				check: func(t *testing.T, c *ResourceChange) {
					if c.Cluster != "" || c.JobID != 0 {
						t.Errorf("Cluster %q, JobID %d: want none", c.Cluster, c.JobID)
					}
					for _, st := range c.Steps {
						if strings.Contains(st.Detail, "ON CLUSTER") || st.SQL != "" || st.Nodes != nil {
							t.Errorf("step %s: %+v: want no ON CLUSTER, no SQL before RenderSQL, no nodes", st.Kind, st)
						}
					}
					if d := c.Steps[1].Detail; d != "F = max(id) of shop.products + headroom for the observed insert rate" {
						t.Errorf("fence detail %q", d)
					}
				}},
		},
		{
			name:    "new MV on a cluster creates the Distributed table",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live:    live(testCluster, up("ch1:9000", 1, sourceTable("MergeTree")), up("ch2:9000", 2, sourceTable("MergeTree"))),
			want: want{action: Create, reason: "new materialized view", steps: createOnCl, engine: "SummingMergeTree()",
				check: func(t *testing.T, c *ResourceChange) {
					if c.Cluster != testCluster {
						t.Errorf("Cluster %q", c.Cluster)
					}
					if d := c.Steps[3].Detail; d != "create shop.products_by_category_dist ON CLUSTER shop_cluster over shop.products_by_category_data" {
						t.Errorf("create_distributed detail %q", d)
					}
					if d := c.Steps[0].Detail; !strings.HasSuffix(d, "ON CLUSTER shop_cluster") {
						t.Errorf("create_target detail %q: want ON CLUSTER", d)
					}
				}},
		},
		{
			name:  "backfill.optimize false: no optimize step",
			extra: "backfill:\n  optimize: false\n",
			live:  live("", up("ch1:9000", 1, sourceTable("MergeTree"))),
			want:  want{action: Create, reason: "new materialized view", steps: []StepKind{StepCreateTarget, StepFence, StepCreateMV, StepWait, StepBackfill}},
		},
		{
			name:  "backfill.disabled: no backfill steps",
			extra: "backfill:\n  disabled: true\n",
			live:  live("", up("ch1:9000", 1, sourceTable("MergeTree"))),
			want:  want{action: Create, reason: "new materialized view", steps: []StepKind{StepCreateTarget, StepFence, StepCreateMV}},
		},
		{
			name:  "backfill settings reach the step details",
			extra: "backfill:\n  key_column: seq\n  batch_duration: 5s\n  settle_delay: 250ms\n",
			live:  live("", up("ch1:9000", 1, sourceTable("MergeTree", Column{"seq", "Int64"}))),
			want: want{action: Create, reason: "new materialized view", steps: createSingle,
				check: func(t *testing.T, c *ResourceChange) {
					if d := c.Steps[3].Detail; d != "wait until the source passes F, then 250ms" {
						t.Errorf("wait detail %q", d)
					}
					if d := c.Steps[4].Detail; d != "INSERT INTO shop.products_by_category_data SELECT ... WHERE seq > lo AND seq <= hi, server side, batches of about 5s, up to F" {
						t.Errorf("backfill detail %q", d)
					}
				}},
		},
		{
			name: "source missing",
			live: live("", up("ch1:9000", 1)),
			want: want{action: Create, reason: "new materialized view", blocked: []string{"source table shop.products does not exist"}},
		},
		{
			name:    "source missing on one of two nodes",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live:    live(testCluster, up("ch1:9000", 1, sourceTable("MergeTree")), up("ch2:9000", 2)),
			want:    want{action: Create, reason: "new materialized view", blocked: []string{"source table shop.products is missing on ch2:9000"}},
		},
		{
			name: "ReplacingMergeTree source",
			live: live("", up("ch1:9000", 1, sourceTable("ReplacingMergeTree"))),
			want: want{action: Create, reason: "new materialized view",
				blocked: []string{"source table shop.products is a ReplacingMergeTree: " + mutableHint}},
		},
		{
			name:    "ReplicatedCollapsingMergeTree source",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live: live(testCluster, up("ch1:9000", 1, sourceTable("ReplicatedCollapsingMergeTree")),
				up("ch2:9000", 1, sourceTable("ReplicatedCollapsingMergeTree"))),
			want: want{action: Create, reason: "new materialized view",
				blocked: []string{"source table shop.products is a ReplicatedCollapsingMergeTree: " + mutableHint}},
		},
		{
			name:  "mutable source allowed",
			extra: "allow_mutable_source: true\n",
			live:  live("", up("ch1:9000", 1, sourceTable("VersionedCollapsingMergeTree"))),
			want:  want{action: Create, reason: "new materialized view", steps: createSingle},
		},
		{
			name: "key column missing",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree", Column{"category", "String"}))),
			want: want{action: Create, reason: "new materialized view",
				blocked: []string{`backfill key column "id" is not a column of shop.products: set backfill.key_column to a column that grows with every insert`}},
		},
		{
			name: "key column not an integer",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree", Column{"id", "String"}))),
			want: want{action: Create, reason: "new materialized view",
				blocked: []string{`backfill key column "id" of shop.products is String: it must be an integer that grows with every insert`}},
		},
		{
			name: "key column LowCardinality integer",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree", Column{"id", "LowCardinality(UInt32)"}))),
			want: want{action: Create, reason: "new materialized view", steps: createSingle},
		},
		{
			name:  "key column not an integer, backfill disabled",
			extra: "backfill:\n  disabled: true\n",
			live:  live("", up("ch1:9000", 1, sourceTable("MergeTree", Column{"id", "UUID"}))),
			want:  want{action: Create, reason: "new materialized view", steps: []StepKind{StepCreateTarget, StepFence, StepCreateMV}},
		},
		{
			name: "target exists without a job",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable())),
			want: want{action: Adopt, reason: "objects exist at the spec's names and shirath has no job for them",
				blocked: []string{"cannot adopt the objects at its names: shop.products_by_category_data exists without shop.products_by_category. Drop them or choose another name"}},
		},
		{
			name:    "Distributed table exists on one node without a job",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live:    live(testCluster, up("ch1:9000", 1, sourceTable("MergeTree")), up("ch2:9000", 2, sourceTable("MergeTree"), distTable())),
			want: want{action: Create, reason: "new materialized view",
				blocked: []string{"shop.products_by_category_dist already exists on ch2:9000 and shirath has no job for it"}},
		},
		{
			name: "completed and unchanged: up to date",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery))),
			job:  func(t *testing.T, s *specs.Spec) *state.Job { return testJob(t, s, "", state.StatusCompleted) },
			want: want{action: NoOp, reason: "up to date", check: func(t *testing.T, c *ResourceChange) {
				if c.JobID != 7 {
					t.Errorf("JobID %d, want 7", c.JobID)
				}
			}},
		},
		{
			name:    "completed on a cluster: up to date",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live: live(testCluster,
				up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery), distTable()),
				up("ch2:9000", 2, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery), distTable())),
			job:  func(t *testing.T, s *specs.Spec) *state.Job { return testJob(t, s, testCluster, state.StatusCompleted) },
			want: want{action: NoOp, reason: "up to date"},
		},
		{
			name:    "MV missing on a node: replace",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live: live(testCluster,
				up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery), distTable()),
				up("ch2:9000", 2, sourceTable("MergeTree"), targetTable(), distTable())),
			job: func(t *testing.T, s *specs.Spec) *state.Job { return testJob(t, s, testCluster, state.StatusCompleted) },
			want: want{action: Replace,
				reason: "shop.products_by_category missing on ch2:9000: rows inserted meanwhile are not in the target, so it is rebuilt",
				steps:  append([]StepKind{StepDrop}, createOnCl...)},
		},
		{
			name: "target missing: replace",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"), mvTable(testMVQuery))),
			job:  func(t *testing.T, s *specs.Spec) *state.Job { return testJob(t, s, "", state.StatusCompleted) },
			want: want{action: Replace,
				reason: "shop.products_by_category_data missing on ch1:9000: rows inserted meanwhile are not in the target, so it is rebuilt",
				steps:  append([]StepKind{StepDrop}, createSingle...)},
		},
		{
			// Shown, never rebuilt on its own: an upgraded server may print
			// the same view differently, and a rebuild drops the target.
			name: "live MV differs from what was applied: shown, not rebuilt",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(),
				mvTable(strings.Replace(testMVQuery, "id > 1000", "id > 999", 1)))),
			job: func(t *testing.T, s *specs.Spec) *state.Job { return testJob(t, s, "", state.StatusCompleted) },
			want: want{action: Change,
				reason:  "shop.products_by_category on ch1:9000 differs from what shirath applied",
				blocked: []string{"not the one shirath created", "shirath apply -replace shop.products_by_category"},
				check: func(t *testing.T, c *ResourceChange) {
					if !strings.Contains(c.Diff, "- ") || !strings.Contains(c.Diff, "id > 999") {
						t.Errorf("diff does not show the live view:\n%s", c.Diff)
					}
				}},
		},
		{
			name: "live MV printed with other whitespace: up to date",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(),
				mvTable(strings.ReplaceAll(testMVQuery, " ", "  ")))),
			job:  func(t *testing.T, s *specs.Spec) *state.Job { return testJob(t, s, "", state.StatusCompleted) },
			want: want{action: NoOp, reason: "up to date"},
		},
		{
			name:    "Distributed table missing on one node: repair there",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live: live(testCluster,
				up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery), distTable()),
				up("ch2:9000", 2, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery))),
			job: func(t *testing.T, s *specs.Spec) *state.Job { return testJob(t, s, testCluster, state.StatusCompleted) },
			want: want{action: Update, reason: "shop.products_by_category_dist missing on ch2:9000",
				steps: []StepKind{StepCreateDistributed},
				check: func(t *testing.T, c *ResourceChange) {
					if got := c.Steps[0].Nodes; !slices.Equal(got, []string{"ch2:9000"}) {
						t.Errorf("create_distributed nodes %q, want [ch2:9000]", got)
					}
				}},
		},
		{
			name:  "spec changed since it was applied",
			extra: "",
			live:  live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery))),
			job: func(t *testing.T, s *specs.Spec) *state.Job {
				j := testJob(t, s, "", state.StatusCompleted)
				j.SpecHash = specs.Hash(testSpec(t, "backfill:\n  key_column: seq\n"))
				return j
			},
			want: want{action: Change, reason: "the spec changed: rebuild beside live version 1 as version 2 (shop.products_by_category_data__v2), then switch readers at once",
				steps: []StepKind{StepCreateTarget, StepFence, StepCreateMV, StepWait, StepBackfill, StepOptimize, StepSwitch, StepSwitch, StepDropOld},
				check: func(t *testing.T, c *ResourceChange) {
					if c.Diff == "" {
						t.Error("no diff")
					}
					if c.Strategy != StrategyRebuild || c.Version != 2 || c.LiveVersion != 1 {
						t.Errorf("strategy %q version %d live %d, want rebuild 2 over 1", c.Strategy, c.Version, c.LiveVersion)
					}
					if d := c.Steps[0].Detail; !strings.Contains(d, "products_by_category_data__v2") {
						t.Errorf("first step %q does not create the versioned target", d)
					}
				}},
		},
		{
			name:  "spec changed while a node is down",
			extra: "",
			live:  live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery)), down("ch2:9000", 2)),
			job: func(t *testing.T, s *specs.Spec) *state.Job {
				j := testJob(t, s, "", state.StatusCompleted)
				j.SpecHash = specs.Hash(testSpec(t, "backfill:\n  key_column: seq\n"))
				return j
			},
			want: want{action: Change, reason: "job completed",
				blocked: []string{"nodes do not answer: ch2:9000"}},
		},
		{
			name: "job needs attention",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery))),
			job: func(t *testing.T, s *specs.Spec) *state.Job {
				j := testJob(t, s, "", state.StatusNeedsAttention)
				j.ErrorMessage = "batch (1000, 2000] sent to ch1:9000 has an unknown outcome"
				return j
			},
			want: want{action: Update, reason: "the job needs attention",
				blocked: []string{"job products_by_category needs attention: batch (1000, 2000] sent to ch1:9000 has an unknown outcome"}},
		},
		{
			name: "job backfilling: resume",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery))),
			job: func(t *testing.T, s *specs.Spec) *state.Job {
				j := testJob(t, s, "", state.StatusBackfilling)
				j.LastProcessedID, j.ProcessedRows = i64(400), 400
				return j
			},
			want: want{action: Update, reason: "backfill backfilling at 400 of cutoff 1000 (400 of 1000 rows)",
				steps: []StepKind{StepResumeBackfill, StepOptimize}},
		},
		{
			name:  "job backfilling, optimize off: resume only",
			extra: "backfill:\n  optimize: false\n",
			live:  live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery))),
			job: func(t *testing.T, s *specs.Spec) *state.Job {
				j := testJob(t, s, "", state.StatusBackfilling)
				j.LastProcessedID, j.ProcessedRows = nil, 0
				return j
			},
			want: want{action: Update, reason: "backfill backfilling at start of cutoff 1000 (0 of 1000 rows)",
				steps: []StepKind{StepResumeBackfill}},
		},
		{
			name: "last apply failed after the fence: resume",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery))),
			job: func(t *testing.T, s *specs.Spec) *state.Job {
				j := testJob(t, s, "", state.StatusFailed)
				j.ErrorMessage = "context canceled"
				return j
			},
			want: want{action: Update, reason: "the last apply failed: context canceled",
				steps: []StepKind{StepResumeBackfill, StepOptimize}},
		},
		{
			name: "fence never verified: start over",
			live: live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable())),
			job: func(t *testing.T, s *specs.Spec) *state.Job {
				j := testJob(t, s, "", state.StatusCreating)
				j.FenceVerified, j.CutoffID, j.LastProcessedID, j.Applied = false, nil, nil, nil
				return j
			},
			want: want{action: Update, reason: "job creating: the fence was never verified; start over",
				steps: append([]StepKind{StepDrop}, createSingle...)},
		},
		{
			name:    "fence never verified on a cluster: start over with the Distributed table",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live:    live(testCluster, up("ch1:9000", 1, sourceTable("MergeTree")), up("ch2:9000", 2, sourceTable("MergeTree"))),
			job: func(t *testing.T, s *specs.Spec) *state.Job {
				j := testJob(t, s, testCluster, state.StatusPending)
				j.FenceVerified, j.CutoffID, j.LastProcessedID, j.Applied = false, nil, nil, nil
				return j
			},
			want: want{action: Update, reason: "job pending: the fence was never verified; start over",
				steps: append([]StepKind{StepDrop}, createOnCl...)},
		},
		{
			name:    "replicated source on a cluster: replicated target",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live: live(testCluster, up("ch1:9000", 1, sourceTable("ReplicatedMergeTree")),
				up("ch2:9000", 1, sourceTable("ReplicatedMergeTree"))),
			want: want{action: Create, reason: "new materialized view", steps: createOnCl,
				engine: "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/shop/products_by_category_data', '{replica}')"},
		},
		{
			name:    "replicated source on a cluster, custom target name",
			extra:   "cluster: auto\ntarget_table: totals\n",
			cluster: testCluster,
			live:    live(testCluster, up("ch1:9000", 1, sourceTable("ReplicatedMergeTree"))),
			want: want{action: Create, reason: "new materialized view", steps: createOnCl,
				engine: "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/shop/totals', '{replica}')"},
		},
		{
			name:    "non-replicated source on a cluster: plain target",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live:    live(testCluster, up("ch1:9000", 1, sourceTable("MergeTree")), up("ch2:9000", 2, sourceTable("MergeTree"))),
			want:    want{action: Create, reason: "new materialized view", steps: createOnCl, engine: "SummingMergeTree()"},
		},
		{
			name: "replicated source on a single node: plain target",
			live: live("", up("ch1:9000", 1, sourceTable("ReplicatedMergeTree"))),
			want: want{action: Create, reason: "new materialized view", steps: createSingle, engine: "SummingMergeTree()"},
		},
		{
			name:    "a node down: completed MV not checked there",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live: live(testCluster,
				up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery), distTable()),
				down("ch2:9000", 2)),
			job: func(t *testing.T, s *specs.Spec) *state.Job { return testJob(t, s, testCluster, state.StatusCompleted) },
			want: want{action: NoOp,
				reason: "up to date on the nodes that answered; not checked: ch2:9000 (dial tcp ch2:9000: connection refused)"},
		},
		{
			name:    "every node down",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live:    live(testCluster, down("ch1:9000", 1), down("ch2:9000", 2)),
			job:     func(t *testing.T, s *specs.Spec) *state.Job { return testJob(t, s, testCluster, state.StatusCompleted) },
			want: want{action: Update, reason: "job completed",
				blocked: []string{"no ClickHouse node answered: ch1:9000 (dial tcp ch1:9000: connection refused); ch2:9000 (dial tcp ch2:9000: connection refused)"}},
		},
		{
			name:    "no live state for the cluster",
			extra:   "cluster: auto\n",
			cluster: testCluster,
			live:    live("", up("ch1:9000", 1, sourceTable("MergeTree"))),
			want:    want{action: Create, reason: "new materialized view", blocked: []string{"no live state for this topology"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec(t, tt.extra)
			in := Input{Desired: []Desired{{Spec: s, Cluster: tt.cluster}}, Live: tt.live}
			if tt.job != nil {
				in.Jobs = []*state.Job{tt.job(t, s)}
			}
			out := Diff(in)
			if len(out) != 1 {
				t.Fatalf("got %d changes, want 1", len(out))
			}
			c := out[0]
			if c.Address() != "shop.products_by_category" || c.Spec != s {
				t.Errorf("change for %s (spec %p), want shop.products_by_category (spec %p)", c.Address(), c.Spec, s)
			}
			if c.Action != tt.want.action {
				t.Errorf("action %s, want %s", c.Action, tt.want.action)
			}
			if c.Reason != tt.want.reason {
				t.Errorf("reason\n got %q\nwant %q", c.Reason, tt.want.reason)
			}
			if tt.want.blocked == nil && c.Blocked != "" {
				t.Errorf("blocked %q, want not blocked", c.Blocked)
			}
			for _, b := range tt.want.blocked {
				if !strings.Contains(c.Blocked, b) {
					t.Errorf("blocked\n got %q\nwant it to contain %q", c.Blocked, b)
				}
			}
			if tt.want.blocked != nil && len(c.Steps) != 0 {
				t.Errorf("blocked change has steps %v", kinds(c.Steps))
			}
			// Blocked only by nodes that do not answer: they are named, so
			// that the daemon retries it; no other refusal is retried.
			if down := strings.Contains(c.Blocked, "do not answer: ") || strings.HasPrefix(c.Blocked, "no ClickHouse node answered"); down != (len(c.Unreachable) > 0) {
				t.Errorf("blocked %q with unreachable nodes %v", c.Blocked, c.Unreachable)
			}
			if got := kinds(c.Steps); !slices.Equal(got, tt.want.steps) {
				t.Errorf("steps\n got %v\nwant %v", got, tt.want.steps)
			}
			if tt.want.engine != "" && c.TargetEngine != tt.want.engine {
				t.Errorf("target engine\n got %q\nwant %q", c.TargetEngine, tt.want.engine)
			}
			if tt.want.check != nil {
				tt.want.check(t, c)
			}
		})
	}
}

func TestDiffSpecChangeShowsSQLDiff(t *testing.T) {
	old := testSpec(t, "")
	cur := testSpec(t, "")
	cur.SelectQuery = "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} WHERE price > 0 GROUP BY category"
	m := sqlgen.MV{Spec: old}
	target, err := m.CreateTarget(false)
	if err != nil {
		t.Fatal(err)
	}
	mv, err := m.CreateMV(1000, false)
	if err != nil {
		t.Fatal(err)
	}
	j := testJob(t, old, "", state.StatusCompleted)
	j.Applied["target"] = state.AppliedObject{SQL: target, Server: targetTable().CreateQuery}
	j.Applied["mv"] = state.AppliedObject{SQL: mv, Server: testMVQuery}

	out := Diff(Input{
		Desired: []Desired{{Spec: cur}},
		Live:    live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery))),
		Jobs:    []*state.Job{j},
	})
	c := out[0]
	if c.Action != Change || c.Blocked != "" || c.Strategy != StrategyRebuild {
		t.Fatalf("action %s blocked %q strategy %q, want a rebuild", c.Action, c.Blocked, c.Strategy)
	}
	// Only the WHERE of the MV changed: the target and the rest of the MV are
	// shown as context, and the fence keeps the applied cutoff.
	want := "  CREATE TABLE IF NOT EXISTS `shop`.`products_by_category_data` (`category` String, `cnt` UInt64, `total_price` Decimal(18,2))\n" +
		"  ENGINE = SummingMergeTree()\n" +
		"  ORDER BY (`category`)\n" +
		"  CREATE MATERIALIZED VIEW IF NOT EXISTS `shop`.`products_by_category`\n" +
		"  TO `shop`.`products_by_category_data`\n" +
		"  AS SELECT category, count() AS cnt, sum(price) AS total_price\n" +
		"  FROM `shop`.`products`\n" +
		"- WHERE `id` > 1000\n" +
		"+ WHERE (price > 0) AND `id` > 1000\n" +
		"  GROUP BY category\n"
	if c.Diff != want {
		t.Errorf("diff\n got:\n%s\nwant:\n%s", c.Diff, want)
	}
}

func TestDiffJobWithoutSpec(t *testing.T) {
	orphan := testSpec(t, "")
	j := testJob(t, orphan, "", state.StatusCompleted)
	lv := live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery)))

	kept := Diff(Input{Live: lv, Jobs: []*state.Job{j}})
	if len(kept) != 1 {
		t.Fatalf("got %d changes, want 1", len(kept))
	}
	c := kept[0]
	if c.Action != NoOp || c.Reason != "not in the specs; kept (plan with -destroy to drop it)" || c.Blocked != "" || len(c.Steps) != 0 {
		t.Errorf("without -destroy: %s %q blocked %q steps %v, want a no-op that keeps it", c.Action, c.Reason, c.Blocked, kinds(c.Steps))
	}
	if c.Address() != "shop.products_by_category" || c.JobID != 7 {
		t.Errorf("address %s job %d", c.Address(), c.JobID)
	}
	if c.Spec == nil || c.Spec.SelectQuery != orphan.SelectQuery {
		t.Errorf("spec not recovered from the job's config: %+v", c.Spec)
	}

	gone := Diff(Input{Live: lv, Jobs: []*state.Job{j}, Destroy: true})
	c = gone[0]
	if c.Action != Delete || c.Reason != "not in the specs any more" || c.Blocked != "" {
		t.Errorf("with -destroy: %s %q blocked %q, want delete", c.Action, c.Reason, c.Blocked)
	}
	if got := kinds(c.Steps); !slices.Equal(got, []StepKind{StepDrop}) {
		t.Errorf("steps %v, want [drop]", got)
	}

	// A job whose stored config no longer parses is still deleted.
	j.Config = json.RawMessage(`{"name": 1}`)
	c = Diff(Input{Live: lv, Jobs: []*state.Job{j}, Destroy: true})[0]
	if c.Action != Delete || c.Spec != nil {
		t.Errorf("unparsable config: %s spec %v, want delete without spec", c.Action, c.Spec)
	}
}

func TestDiffUnresolvedSpec(t *testing.T) {
	s := testSpec(t, "cluster: nope\n")
	err := errors.New(`planner: cluster detection: cluster "nope" is not in system.clusters`)
	for _, withJob := range []bool{false, true} {
		in := Input{Desired: []Desired{{Spec: s, Err: err}}}
		want := Create
		if withJob {
			in.Jobs = []*state.Job{testJob(t, s, "nope", state.StatusCompleted)}
			want = Update
		}
		c := Diff(in)[0]
		if c.Action != want || c.Reason != "the spec cannot be resolved" || c.Blocked != err.Error() {
			t.Errorf("job %v: %s %q blocked %q", withJob, c.Action, c.Reason, c.Blocked)
		}
	}
}

func TestDiffSortedByAddress(t *testing.T) {
	a := testSpec(t, "")
	a.Name, a.TargetTable, a.DistributedTable = "zz_last", "zz_last_data", "zz_last_dist"
	b := testSpec(t, "")
	b.Name, b.TargetTable, b.DistributedTable = "aa_first", "aa_first_data", "aa_first_dist"
	other := testSpec(t, "")
	other.Database = "analytics"
	orphan := testSpec(t, "")
	orphan.Name = "mm_middle"
	j := testJob(t, orphan, "", state.StatusCompleted)

	lv := live("", up("ch1:9000", 1, sourceTable("MergeTree")))
	out := Diff(Input{Desired: []Desired{{Spec: a}, {Spec: other}, {Spec: b}}, Live: lv, Jobs: []*state.Job{j}})
	var got []string
	for _, c := range out {
		got = append(got, c.Address())
	}
	want := []string{"analytics.products_by_category", "shop.aa_first", "shop.mm_middle", "shop.zz_last"}
	if !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
}

func TestDiffPreventDestroy(t *testing.T) {
	plain, protected := testSpec(t, ""), testSpec(t, "prevent_destroy: true\n")
	if specs.Hash(plain) != specs.Hash(protected) {
		t.Fatal("prevent_destroy changes the spec hash: changing it would look like a change of the MV")
	}
	inSync := live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery)))
	mvGone := live("", up("ch1:9000", 1, sourceTable("MergeTree"), targetTable()))

	// The spec was removed: the one recorded with the job protects the MV.
	c := Diff(Input{Live: inSync, Jobs: []*state.Job{testJob(t, protected, "", state.StatusCompleted)}, Destroy: true})[0]
	if c.Action != Delete || !c.PreventDestroy || !strings.Contains(c.Blocked, "prevent_destroy: true") || !strings.Contains(c.Blocked, "destroy") {
		t.Errorf("removed protected spec with -destroy: %s blocked %q prevent %v", c.Action, c.Blocked, c.PreventDestroy)
	}
	if p := (&Plan{Changes: []*ResourceChange{c}}); len(p.Refused()) != 1 {
		t.Errorf("Refused() = %v, want the protected destroy", p.Refused())
	}
	c = Diff(Input{Live: inSync, Jobs: []*state.Job{testJob(t, plain, "", state.StatusCompleted)}, Destroy: true})[0]
	if c.Action != Delete || c.Blocked != "" || c.PreventDestroy {
		t.Errorf("removed unprotected spec: %s blocked %q", c.Action, c.Blocked)
	}

	// A rebuild (the MV went missing) of a protected MV fails the plan.
	c = Diff(Input{Live: mvGone, Desired: []Desired{{Spec: protected}}, Jobs: []*state.Job{testJob(t, protected, "", state.StatusCompleted)}})[0]
	if c.Action != Replace || !c.PreventDestroy || !strings.Contains(c.Blocked, "rebuild") {
		t.Errorf("rebuild of a protected MV: %s blocked %q prevent %v", c.Action, c.Blocked, c.PreventDestroy)
	}
	c = Diff(Input{Live: mvGone, Desired: []Desired{{Spec: plain}}, Jobs: []*state.Job{testJob(t, plain, "", state.StatusCompleted)}})[0]
	if c.Action != Replace || c.Blocked != "" {
		t.Errorf("rebuild of an unprotected MV: %s blocked %q", c.Action, c.Blocked)
	}

	// Turning protection on or off is recorded by apply; nothing else changes.
	for _, tc := range []struct{ recorded, desired *specs.Spec }{{plain, protected}, {protected, plain}} {
		c = Diff(Input{Live: inSync, Desired: []Desired{{Spec: tc.desired}}, Jobs: []*state.Job{testJob(t, tc.recorded, "", state.StatusCompleted)}})[0]
		if c.Action != Update || !strings.Contains(c.Reason, "prevent_destroy changed") || len(c.Steps) != 0 || c.Blocked != "" {
			t.Errorf("prevent_destroy %v -> %v: %s %q steps %v blocked %q", tc.recorded.PreventDestroy, tc.desired.PreventDestroy, c.Action, c.Reason, kinds(c.Steps), c.Blocked)
		}
	}
	c = Diff(Input{Live: inSync, Desired: []Desired{{Spec: protected}}, Jobs: []*state.Job{testJob(t, protected, "", state.StatusCompleted)}})[0]
	if c.Action != NoOp {
		t.Errorf("protected and recorded: %s %q, want no-op", c.Action, c.Reason)
	}
}

// TestDiffLeftovers: what earlier versions and switches left (a DROP that
// did not end) is planned as a drop on the nodes whose readers read the
// live version, and never where they may still read another one.
func TestDiffLeftovers(t *testing.T) {
	s := testSpec(t, "")
	job := testJob(t, s, "", state.StatusCompleted)
	job.Version, job.LiveVersion = 3, 3
	named := func(tb *Table, name string) *Table { c := *tb; c.Name = name; return &c }
	readers := func(physical string) *Table {
		return &Table{Database: testDB, Name: testTarget, Engine: "Merge", EngineFull: "Merge('shop', '^" + physical + "$')"}
	}
	v3 := []*Table{sourceTable("MergeTree"), named(targetTable(), testTarget+"__v3"), named(mvTable(testMVQuery), testMV+"__v3")}
	for _, tc := range []struct {
		name   string
		tables []*Table
		want   Action
		reason string
	}{
		{"nothing left", append([]*Table{readers(testTarget + "__v3")}, v3...), NoOp, "up to date"},
		{"switched, old target and v1 MV left", append([]*Table{readers(testTarget + "__v3"), named(targetTable(), testTarget+"__v2"), mvTable(testMVQuery), named(readers(testTarget+"__v2"), testTarget+"__prev")}, v3...), Update,
			"shop.products_by_category on n1; shop.products_by_category_data__prev on n1; shop.products_by_category_data__v2 on n1"},
		{"readers not on the live version", append([]*Table{readers(testTarget + "__v2"), named(targetTable(), testTarget+"__v2")}, v3...), NoOp, "up to date"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := Diff(Input{Desired: []Desired{{Spec: s}}, Live: live("", up("n1", 1, tc.tables...)), Jobs: []*state.Job{job}})
			c := cs[0]
			if c.Action != tc.want || !strings.Contains(c.Reason, tc.reason) {
				t.Fatalf("action %s, reason %q; want %s with %q", c.Action, c.Reason, tc.want, tc.reason)
			}
			if tc.want == Update && (len(c.Steps) != 1 || c.Steps[0].Kind != StepDropOld) {
				t.Errorf("steps %v, want one %s", kinds(c.Steps), StepDropOld)
			}
		})
	}
}

// TestDiffReplace: -replace rebuilds a completed MV whose spec did not
// change beside its live version, as a change; anything else is refused,
// naming why.
func TestDiffReplace(t *testing.T) {
	s := testSpec(t, "")
	tables := []*Table{sourceTable("MergeTree"), targetTable(), mvTable(testMVQuery)}
	t.Run("completed", func(t *testing.T) {
		job := testJob(t, s, "", state.StatusCompleted)
		cs := Diff(Input{Desired: []Desired{{Spec: s, Replace: true}}, Live: live("", up("n1", 1, tables...)), Jobs: []*state.Job{job}})
		c := cs[0]
		if c.Action != Change || c.Strategy != StrategyRebuild || c.Version != 2 || c.LiveVersion != 1 || c.Blocked != "" {
			t.Fatalf("got %s %s v%d (live %d) blocked %q; want a rebuild as version 2", c.Action, c.Strategy, c.Version, c.LiveVersion, c.Blocked)
		}
		if !strings.HasPrefix(c.Reason, "-replace: rebuild beside live version 1 as version 2") {
			t.Errorf("reason %q", c.Reason)
		}
		if got := kinds(c.Steps); !slices.Contains(got, StepBackfill) || !slices.Contains(got, StepSwitch) {
			t.Errorf("steps %v: want a backfill and a switch", got)
		}
		// Without -replace the same state is up to date.
		if cs := Diff(Input{Desired: []Desired{{Spec: s}}, Live: live("", up("n1", 1, tables...)), Jobs: []*state.Job{job}}); cs[0].Action != NoOp {
			t.Errorf("without -replace: %s (%s)", cs[0].Action, cs[0].Reason)
		}
	})
	for _, tc := range []struct {
		name    string
		job     func(*state.Job)
		blocked string
	}{
		{"backfilling", func(j *state.Job) { j.Status = state.StatusBackfilling }, "the job is backfilling"},
		{"changing", func(j *state.Job) { j.Version, j.LiveVersion = 2, 1; j.Status = state.StatusBackfilling }, "version 2 is being built"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := testJob(t, s, "", state.StatusCompleted)
			tc.job(job)
			c := Diff(Input{Desired: []Desired{{Spec: s, Replace: true}}, Live: live("", up("n1", 1, tables...)), Jobs: []*state.Job{job}})[0]
			if !strings.Contains(c.Blocked, tc.blocked) {
				t.Fatalf("blocked %q, want %q", c.Blocked, tc.blocked)
			}
		})
	}
}
