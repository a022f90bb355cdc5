package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		// %q keeps escape sequences and carriage returns visible.
		t.Errorf("%s differs (go test -update rewrites it)\n got: %q\nwant: %q", path, got, want)
	}
}

func i64(v int64) *int64 { return &v }

// spec is a hand-made spec with defaults applied: the views never parse.
func spec(name string, edit func(*specs.Spec)) *specs.Spec {
	s := &specs.Spec{
		Name:        name,
		SourceTable: "products",
		Database:    "shop",
		Engine:      "SummingMergeTree()",
		OrderBy:     []string{"category"},
		Columns: []specs.Column{
			{Name: "category", Type: "String"},
			{Name: "cnt", Type: "UInt64"},
			{Name: "total_price", Type: "Decimal(18, 2)"},
		},
		SelectQuery: "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY category",
	}
	if edit != nil {
		edit(s)
	}
	s.ApplyDefaults()
	return s
}

const fingerprint = "5f2c0c1be7a4d1f6a0e9f5d8c3b2a1908f7e6d5c4b3a29180f1e2d3c4b5a6978"

// mixedPlan has one change of every applicable kind, on a cluster.
func mixedPlan() *planner.Plan {
	const cl = "shop_cluster"
	return &planner.Plan{
		FormatVersion: planner.FormatVersion,
		Fingerprint:   fingerprint,
		Destroy:       true,
		Changes: []*planner.ResourceChange{
			{
				Database: "shop", Name: "a_totals", Action: planner.Create, Reason: "new materialized view",
				Spec: spec("a_totals", nil), Cluster: cl,
				TargetEngine: "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/shop/a_totals_data', '{replica}')",
				Casts:        map[string]string{"total_price": "Decimal(18, 2)", "cnt": "UInt64"},
				Steps: []planner.Step{
					{Kind: planner.StepCreateTarget, Detail: "create shop.a_totals_data ON CLUSTER shop_cluster",
						SQL: "CREATE TABLE IF NOT EXISTS `shop`.`a_totals_data` ON CLUSTER `shop_cluster` (`category` String)\nENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/shop/a_totals_data', '{replica}') ORDER BY (`category`)"},
					{Kind: planner.StepFence, Detail: "F = max(id) of shop.products + headroom for the observed insert rate"},
					{Kind: planner.StepCreateMV, Detail: "create shop.a_totals TO shop.a_totals_data ON CLUSTER shop_cluster with the fence id > F in its WHERE",
						SQL: "SELECT category, count() AS cnt, CAST(sum(price) AS Decimal(18, 2)) AS total_price FROM `shop`.`products` GROUP BY category"},
					{Kind: planner.StepCreateDistributed, Detail: "create shop.a_totals_dist ON CLUSTER shop_cluster over shop.a_totals_data"},
					{Kind: planner.StepWait, Detail: "wait until the source passes F, then 1s"},
					{Kind: planner.StepBackfill, Detail: "INSERT INTO shop.a_totals_data SELECT ... WHERE id > lo AND id <= hi, server side, batches of about 2s, up to F"},
					{Kind: planner.StepOptimize, Detail: "OPTIMIZE TABLE shop.a_totals_data FINAL", SQL: "OPTIMIZE TABLE `shop`.`a_totals_data` ON CLUSTER `shop_cluster` FINAL"},
				},
			},
			{
				Database: "shop", Name: "b_repaired", Action: planner.Update, Reason: "shop.b_repaired_dist missing on ch2:9000",
				Spec: spec("b_repaired", nil), Cluster: cl, JobID: 12,
				Steps: []planner.Step{{Kind: planner.StepCreateDistributed, Detail: "create the Distributed table where it is missing",
					SQL: "CREATE TABLE IF NOT EXISTS `shop`.`b_repaired_dist` AS `shop`.`b_repaired_data` ENGINE = Distributed(`shop_cluster`, `shop`, `b_repaired_data`)", Nodes: []string{"ch2:9000"}}},
			},
			{
				Database: "shop", Name: "c_rebuilt", Action: planner.Replace,
				Reason: "shop.c_rebuilt missing on ch1:9000: rows inserted meanwhile are not in the target, so it is rebuilt",
				Spec:   spec("c_rebuilt", func(s *specs.Spec) { s.SourceTable = "orders" }), Cluster: cl, JobID: 13,
				Steps: []planner.Step{
					{Kind: planner.StepDrop, Detail: "drop the MV, its target and Distributed tables"},
					{Kind: planner.StepCreateTarget, Detail: "create shop.c_rebuilt_data ON CLUSTER shop_cluster"},
				},
			},
			{
				Database: "shop", Name: "d_gone", Action: planner.Delete, Reason: "not in the specs any more", JobID: 14, Cluster: cl,
				Steps: []planner.Step{{Kind: planner.StepDrop, Detail: "drop the MV, its target and Distributed tables, and the job"}},
			},
			{
				Database: "shop", Name: "e_current", Action: planner.NoOp, Reason: "up to date",
				Spec: spec("e_current", nil), Cluster: cl, JobID: 15,
			},
			{
				Database: "shop", Name: "f_resumed", Action: planner.Update, Reason: "backfill backfilling at 400 of cutoff 1000 (400 of 1000 rows)",
				Spec: spec("f_resumed", nil), Cluster: cl, JobID: 16,
				Steps: []planner.Step{
					{Kind: planner.StepResumeBackfill, Detail: "continue the backfill from the recorded progress of every shard"},
					{Kind: planner.StepOptimize, Detail: "OPTIMIZE TABLE shop.f_resumed_data FINAL"},
				},
			},
		},
	}
}

func changePlan() *planner.Plan {
	return &planner.Plan{
		FormatVersion: planner.FormatVersion,
		Fingerprint:   fingerprint,
		Changes: []*planner.ResourceChange{{
			Database: "shop", Name: "totals", Action: planner.Change, Reason: "the spec changed since it was applied",
			Spec: spec("totals", nil), JobID: 3,
			Diff: "  CREATE MATERIALIZED VIEW IF NOT EXISTS `shop`.`totals`\n" +
				"  FROM `shop`.`products`\n" +
				"- WHERE `id` > 1000\n" +
				"+ WHERE (price > 0) AND `id` > 1000\n" +
				"  GROUP BY category\n",
			Blocked: "changing an applied MV (its query, columns, engine or options) is not supported yet: " +
				"drop it (shirath mv drop totals, or remove the spec and apply with -destroy) and apply again to rebuild it",
		}},
	}
}

func blockedPlan() *planner.Plan {
	return &planner.Plan{
		FormatVersion: planner.FormatVersion,
		Fingerprint:   fingerprint,
		Changes: []*planner.ResourceChange{
			{
				Database: "shop", Name: "cdc_totals", Action: planner.Create, Reason: "new materialized view",
				Spec: spec("cdc_totals", func(s *specs.Spec) { s.SourceTable = "orders_cdc" }),
				Blocked: "source table shop.orders_cdc is a ReplacingMergeTree: it stores a new row for every update of a row (as CDC does), " +
					"so the MV would count every update as a new row. Set allow_mutable_source: true in the spec if that is what you want",
			},
			{
				Database: "shop", Name: "totals", Action: planner.NoOp, Reason: "up to date", Spec: spec("totals", nil), JobID: 3,
			},
		},
	}
}

func noChangesPlan() *planner.Plan {
	return &planner.Plan{
		FormatVersion: planner.FormatVersion,
		Fingerprint:   fingerprint,
		Changes: []*planner.ResourceChange{
			{Database: "shop", Name: "a", Action: planner.NoOp, Reason: "up to date", Spec: spec("a", nil), JobID: 1},
			{Database: "shop", Name: "b", Action: planner.NoOp, Reason: "not in the specs; kept (plan with -destroy to drop it)", JobID: 2},
			{Database: "shop", Name: "c", Action: planner.NoOp, Cluster: "shop_cluster", JobID: 4, Spec: spec("c", nil),
				Reason: "up to date on the nodes that answered; not checked: ch2:9000 (dial tcp: connection refused)"},
		},
	}
}

// adoptPlan adopts two hand-made MVs: one as it is, one that differs from
// its spec and is then rebuilt.
func adoptPlan() *planner.Plan {
	return &planner.Plan{
		FormatVersion: planner.FormatVersion,
		Fingerprint:   fingerprint,
		Changes: []*planner.ResourceChange{
			{
				Database: "shop", Name: "a", Action: planner.Adopt, Spec: spec("a", nil), LiveSpec: spec("a", nil), Version: 1, LiveVersion: 1,
				Reason: "shop.a and shop.a_data exist and match the spec: they will be adopted as they are. Their data is not verified: run shirath verify after apply",
				Steps:  []planner.Step{{Kind: planner.StepAdopt, Detail: "record the job of shop.a (TO shop.a_data on the node) as completed at version 1, adopted: no DDL, no backfill"}},
			},
			{
				Database: "shop", Name: "b", Action: planner.Adopt, Spec: spec("b", nil), LiveSpec: spec("b", nil), Version: 2, LiveVersion: 1, Strategy: planner.StrategyRebuild,
				Reason: "shop.b exists and differs from the spec (the query differs): it will be adopted as live version 1, then rebuilt beside as version 2 (shop.b_data__v2) and readers switched at once",
				Steps: []planner.Step{
					{Kind: planner.StepAdopt, Detail: "record the job of shop.b (TO shop.b_data on the node) as completed at version 1, adopted: no DDL, no backfill"},
					{Kind: planner.StepCreateTarget, Detail: "create shop.b_data__v2 on the node"},
					{Kind: planner.StepSwitch, Detail: "on every node: drop the old MV shop.b, then RENAME TABLE b_data TO b_data__prev, b_data__next TO b_data"},
				},
				Diff: "  FROM `shop`.`products`\n- AS SELECT category, count() AS cnt, sum(price) AS total_price\n+ AS SELECT category, count() AS cnt, sum(price * 2) AS total_price\n",
			},
		},
	}
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

func TestRenderHuman(t *testing.T) {
	tests := []struct {
		name  string
		plan  *planner.Plan
		color bool // also render in colour
	}{
		{"mixed", mixedPlan(), true},
		{"change", changePlan(), true},
		{"adopt", adoptPlan(), false},
		{"blocked", blockedPlan(), false},
		{"no_changes", noChangesPlan(), false},
		{"empty", &planner.Plan{FormatVersion: planner.FormatVersion, Fingerprint: fingerprint}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var plain bytes.Buffer
			renderHuman(&plain, tt.plan, false)
			if ansi.Match(plain.Bytes()) {
				t.Errorf("colour codes without colour: %q", plain.String())
			}
			golden(t, "human_"+tt.name, plain.Bytes())
			if !tt.color {
				return
			}
			var col bytes.Buffer
			renderHuman(&col, tt.plan, true)
			if !ansi.Match(col.Bytes()) {
				t.Errorf("no colour codes with colour on")
			}
			// Colour decorates; it never changes the text.
			if stripped := ansi.ReplaceAllString(col.String(), ""); stripped != plain.String() {
				t.Errorf("colour output without its escapes differs from the plain output:\n%s\n---\n%s", stripped, plain.String())
			}
			golden(t, "human_"+tt.name+"_color", col.Bytes())
		})
	}
}

func TestRenderHumanContent(t *testing.T) {
	// Facts the goldens hold, spelled out so that a careless -update of a
	// golden cannot lose them.
	var b bytes.Buffer
	renderHuman(&b, mixedPlan(), false)
	out := b.String()
	for _, want := range []string{
		"# shop.a_totals will be created\n",
		"  + materialized view shop.a_totals <- shop.products on cluster shop_cluster\n",
		"      + create_target: create shop.a_totals_data ON CLUSTER shop_cluster\n",
		"          ENGINE = ReplicatedSummingMergeTree(", // a multi-line SQL keeps its indentation
		"cast cnt to UInt64, total_price to Decimal(18, 2)\n",
		"# shop.b_repaired will be updated\n",
		"  -/+ materialized view shop.c_rebuilt <- shop.orders on cluster shop_cluster\n",
		"  - materialized view shop.d_gone on cluster shop_cluster\n", // no spec: no source
		"# shop.f_resumed will be updated\n  # (backfill backfilling at 400 of cutoff 1000 (400 of 1000 rows))\n",
		"\nPlan: 2 to create, 2 to change, 2 to destroy.\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "e_current") {
		t.Errorf("a no-op is shown among the changes:\n%s", out)
	}
	if strings.Contains(out, "cannot") {
		t.Errorf("nothing is blocked, yet:\n%s", out)
	}

	b.Reset()
	renderHuman(&b, blockedPlan(), false)
	out = b.String()
	for _, want := range []string{
		"      ! cannot apply: source table shop.orders_cdc is a ReplacingMergeTree",
		"Plan: 1 to create, 0 to change, 0 to destroy.\n1 change(s) cannot be applied; apply will refuse them (see '! cannot apply').\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("blocked plan output lacks %q:\n%s", want, out)
		}
	}

	b.Reset()
	renderHuman(&b, noChangesPlan(), false)
	want := "No changes. The live ClickHouse objects and jobs match the specs.\n" +
		"  shop.b: not in the specs; kept (plan with -destroy to drop it)\n" +
		"  shop.c: up to date on the nodes that answered; not checked: ch2:9000 (dial tcp: connection refused)\n"
	if b.String() != want {
		t.Errorf("no changes:\n got %q\nwant %q", b.String(), want)
	}
}

func TestRenderAdoptContent(t *testing.T) {
	var b bytes.Buffer
	renderHuman(&b, adoptPlan(), false)
	for _, want := range []string{
		"# shop.a will be adopted\n",
		"  <= materialized view shop.a <- shop.products\n",
		"      <= adopt: record the job of shop.a",
		"# shop.b will be adopted\n",
		"        + AS SELECT category, count() AS cnt, sum(price * 2) AS total_price\n",
		"\nPlan: 2 to adopt, 0 to create, 1 to change, 0 to destroy.\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("human plan lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	renderMarkdown(&b, adoptPlan())
	if !strings.HasPrefix(b.String(), "**Plan:** 2 to adopt, 0 to create, 1 to change, 0 to destroy.\n") || !strings.Contains(b.String(), "<b>shop.a</b> will be adopted") {
		t.Errorf("markdown plan:\n%s", b.String())
	}
	b.Reset()
	if err := renderJSON(&b, adoptPlan()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"action": "adopt"`) || !strings.Contains(b.String(), `"adopt": 2`) || !strings.Contains(b.String(), `"live_spec": {`) {
		t.Errorf("JSON plan:\n%s", b.String())
	}
}

func TestRenderJSON(t *testing.T) {
	for name, p := range map[string]*planner.Plan{"mixed": mixedPlan(), "change": changePlan(), "no_changes": noChangesPlan(), "adopt": adoptPlan()} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := renderJSON(&b, p); err != nil {
				t.Fatal(err)
			}
			golden(t, "json_"+name, b.Bytes())

			var doc map[string]any
			if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if v := doc["format_version"]; v != "1.0" {
				t.Errorf("format_version = %#v, want \"1.0\"", v)
			}
			if v := doc["fingerprint"]; v != fingerprint {
				t.Errorf("fingerprint = %#v", v)
			}
			changes, ok := doc["resource_changes"].([]any)
			if !ok || len(changes) != len(p.Changes) {
				t.Fatalf("resource_changes = %#v", doc["resource_changes"])
			}
			for i, c := range changes {
				a, ok := c.(map[string]any)["action"].(string)
				if !ok || a != p.Changes[i].Action.String() {
					t.Errorf("change %d: action %#v, want the string %q", i, c.(map[string]any)["action"], p.Changes[i].Action)
				}
			}
			// The summary has the same snake_case keys as the rest of the
			// document.
			sum, ok := doc["summary"].(map[string]any)
			if !ok {
				t.Fatalf("summary = %#v", doc["summary"])
			}
			s := p.Summary()
			for k, want := range map[string]int{"create": s.Create, "change": s.Change, "destroy": s.Destroy, "blocked": s.Blocked} {
				if got, ok := sum[k].(float64); !ok || int(got) != want {
					t.Errorf("summary[%q] = %#v, want %d (summary %v)", k, sum[k], want, sum)
				}
			}

			// The document reads back into the plan it came from.
			var back planner.Plan
			if err := json.Unmarshal(b.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			if len(back.Changes) != len(p.Changes) {
				t.Fatalf("read back %d changes", len(back.Changes))
			}
			for i := range p.Changes {
				if back.Changes[i].Action != p.Changes[i].Action || back.Changes[i].Address() != p.Changes[i].Address() {
					t.Errorf("change %d read back as %s %s", i, back.Changes[i].Action, back.Changes[i].Address())
				}
			}
		})
	}
}

var when = time.Date(2024, 3, 9, 14, 5, 7, 0, time.FixedZone("CET", 3600))

func statusJobs() []*state.Job {
	return []*state.Job{
		{
			ID: 1, Name: "products_by_category", Database: "shop", Status: state.StatusCompleted,
			CutoffID: i64(120000), TotalRows: 118000, ProcessedRows: 117500, UpdatedAt: when,
			VerifiedAt: &when, LastVerify: &state.VerifySummary{At: when, OK: true, Version: 1, Groups: 97},
		},
		{
			ID: 2, Name: "orders_daily", Database: "shop", Status: state.StatusBackfilling, ClusterName: "shop_cluster",
			CutoffID: i64(5000000), LastProcessedID: i64(2500000), TotalRows: 4000000, ProcessedRows: 1234567, UpdatedAt: when.Add(90 * time.Second),
			LastVerify: &state.VerifySummary{At: when, OK: false, Version: 2, Groups: 10, Differences: 3},
			Shards: []state.ShardProgress{
				{Shard: 1, Replica: "ch1:9000", Status: state.StatusCompleted, TotalRows: 2000000, ProcessedRows: 2000000, LastProcessedID: i64(5000000)},
				{Shard: 2, Replica: "ch3:9000", Status: state.StatusBackfilling, TotalRows: 2000000, ProcessedRows: 1000, LastProcessedID: i64(1500)},
				{Shard: 3, Status: state.StatusPending, TotalRows: 0},
			},
		},
		{
			ID: 3, Name: "returns", Database: "analytics", Status: state.StatusNeedsAttention, ClusterName: "shop_cluster",
			ErrorMessage: "shard 2: batch (1000, 2000] was sent to ch3:9000, which does not answer: apply again once it is back",
			UpdatedAt:    when.Add(time.Hour),
		},
	}
}

func TestRenderStatus(t *testing.T) {
	tests := []struct {
		name   string
		jobs   []*state.Job
		detail bool
	}{
		{"list", statusJobs(), false},
		{"detail", statusJobs(), true},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			renderStatus(&b, tt.jobs, tt.detail)
			golden(t, "status_"+tt.name, b.Bytes())
		})
	}

	var b bytes.Buffer
	renderStatus(&b, statusJobs(), true)
	out := b.String()
	for _, want := range []string{
		"2024-03-09T13:05:07Z", // UTC whatever the zone of the job's time
		"30.9%",                // 1234567 of 4000000
		"(any)",                // a shard not yet given a replica
		"\nanalytics.returns: shard 2: batch (1000, 2000]",
		"\nshop.orders_daily shards:\nSHARD  REPLICA", // whose shards, when a name matches several jobs
		"\nshop.products_by_category verified: 2024-03-09T13:05:07Z\n",
		"\nshop.orders_daily verified: never; the last verify (2024-03-09T13:05:07Z, version 2) found 3 differences\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	renderStatus(&b, statusJobs(), false)
	if strings.Contains(b.String(), "SHARD") || strings.Contains(b.String(), "does not answer") {
		t.Errorf("the list shows details:\n%s", b.String())
	}
}

func progressEvents() []executor.Event {
	mv := "shop.orders_daily"
	return []executor.Event{
		{Kind: executor.EventStep, MV: mv, Step: planner.StepCreateTarget, Message: "create orders_daily_data"},
		{Kind: executor.EventStep, MV: mv, Step: planner.StepFence, Message: "fence id > 5000 (max 4000, headroom 1000 for 333 rows/s)"},
		{Kind: executor.EventWaiting, MV: mv, Step: planner.StepWait, Message: "source passed the fence; settling 1s"},
		{Kind: executor.EventStep, MV: mv, Step: planner.StepBackfill, Shard: 1, Message: "backfill id <= 5000 on ch1:9000"},
		{Kind: executor.EventProgress, MV: mv, Step: planner.StepBackfill, Shard: 1, Processed: 1000, Total: 4000, Message: "(0, 1000] 1000 rows in 12ms"},
		{Kind: executor.EventProgress, MV: mv, Step: planner.StepBackfill, Shard: 1, Processed: 2500, Total: 4000, Message: "(1000, 2500] 1500 rows in 15ms"},
		{Kind: executor.EventStep, MV: mv, Step: planner.StepBackfill, Shard: 2, Message: "backfill id <= 5000 on ch3:9000"},
		{Kind: executor.EventProgress, MV: mv, Step: planner.StepBackfill, Shard: 2, Processed: 4000, Total: 4000, Message: "(2500, 5000] 1500 rows in 9ms"},
		// More rows than counted up front: the bar stays full.
		{Kind: executor.EventProgress, MV: mv, Step: planner.StepBackfill, Shard: 2, Processed: 4100, Total: 4000, Message: "(5000, 5100] 100 rows in 2ms"},
		{Kind: executor.EventStep, MV: mv, Step: planner.StepOptimize, Message: "optimize orders_daily_data"},
		{Kind: executor.EventDone, MV: mv, Message: "completed"},
		// Nothing counted: 0%, no division by zero.
		{Kind: executor.EventProgress, MV: "shop.empty", Step: planner.StepBackfill, Shard: 1, Message: "(0, 0] 0 rows in 1ms"},
	}
}

func TestProgress(t *testing.T) {
	for _, tty := range []bool{false, true} {
		name := "progress_plain"
		if tty {
			name = "progress_tty"
		}
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			p := newProgress(&b, tty)
			for _, ev := range progressEvents() {
				p.event(ev)
			}
			p.finish()
			p.finish() // a second finish adds nothing
			out := b.String()
			golden(t, name, b.Bytes())
			// As in status, more rows than counted up front show as 100%.
			if strings.Contains(out, "102.5%") {
				t.Errorf("progress above 100%%: %q", out)
			}
			if !strings.HasSuffix(out, "\n") {
				t.Errorf("output does not end with a newline: %q", out)
			}
			if tty {
				if !strings.Contains(out, "\rshop.orders_daily: [##################------------]  62.5% 2500/4000 rows") {
					t.Errorf("no redrawn bar at 62.5%%: %q", out)
				}
				if !strings.Contains(out, "100.0% 4100/4000 rows\nshop.orders_daily: optimize orders_daily_data\n") {
					t.Errorf("a line after a bar does not start on a new line: %q", out)
				}
				return
			}
			if strings.Contains(out, "\r") {
				t.Errorf("carriage return outside a terminal: %q", out)
			}
			if !strings.Contains(out, "shop.orders_daily: backfill 62.5% (2500/4000 rows) shard 1 (1000, 2500] 1500 rows in 15ms\n") {
				t.Errorf("no plain progress line: %s", out)
			}
		})
	}
}

// TestProgressSeveralMVs: MVs applied at once interleave their events; on a
// terminal each bar is redrawn over its own MV's bar only, and every line
// names its MV.
func TestProgressSeveralMVs(t *testing.T) {
	ev := func(mv string, done int64) executor.Event {
		return executor.Event{Kind: executor.EventProgress, MV: mv, Step: planner.StepBackfill, Shard: 1, Processed: done, Total: 100, Message: "batch"}
	}
	var b bytes.Buffer
	p := newProgress(&b, true)
	for _, e := range []executor.Event{ev("db.a", 10), ev("db.a", 20), ev("db.b", 50), ev("db.a", 30), {Kind: executor.EventDone, MV: "db.b", Message: "completed"}} {
		p.event(e)
	}
	p.finish()
	want := "\rdb.a: [###---------------------------]  10.0% 10/100 rows" +
		"\rdb.a: [######------------------------]  20.0% 20/100 rows\n" +
		"\rdb.b: [###############---------------]  50.0% 50/100 rows\n" +
		"\rdb.a: [#########---------------------]  30.0% 30/100 rows\n" +
		"db.b: completed\n"
	if got := b.String(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// hostilePlan carries text that would break the Markdown if it were pasted
// as it is: tags in a reason, emphasis and links in a message, a fence in
// the SQL, a node error with angle brackets.
func hostilePlan() *planner.Plan {
	return &planner.Plan{
		FormatVersion: planner.FormatVersion,
		Fingerprint:   fingerprint,
		Unreachable:   []string{"ch2:9000 (dial tcp <nil>: connection refused)"},
		Changes: []*planner.ResourceChange{{
			Database: "shop", Name: "odd", Action: planner.Create, Reason: "new </summary></details> <script>alert(1)</script>",
			Spec:    spec("odd", nil),
			Blocked: "*bold* _em_ [link](http://example.com) `code` #12 & more &amp; <!-- x -->\nsecond line",
			Steps: []planner.Step{{Kind: planner.StepCreateMV, Detail: "create shop.odd with _shirath_stage_odd",
				SQL: "SELECT '```' AS fence, category FROM `shop`.`products`"}},
		}},
	}
}

// markdownStructure checks what GitHub needs to render the comment: every
// <details> closed, every code fence closed by its own fence, a blank line
// after each </summary>, and one section per change that does something.
func markdownStructure(t *testing.T, p *planner.Plan, out string) {
	t.Helper()
	var fence string
	opened, closed := 0, 0
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if fence != "" {
			if l == fence {
				fence = ""
			}
			continue
		}
		if m := regexp.MustCompile("^(`{3,})[a-z]*$").FindStringSubmatch(l); m != nil {
			fence = m[1]
			continue
		}
		if strings.HasPrefix(l, "<details") {
			opened++
		}
		if l == "</details>" {
			closed++
			if i == 0 || lines[i-1] != "" {
				t.Errorf("line %d: </details> without a blank line before it", i+1)
			}
		}
		if strings.HasSuffix(l, "</summary>") && (i+1 >= len(lines) || lines[i+1] != "") {
			t.Errorf("line %d: no blank line after </summary> (GitHub would not render the Markdown inside)", i+1)
		}
	}
	if fence != "" {
		t.Errorf("code block %s never closed", fence)
	}
	want := 0
	for _, c := range p.Changes {
		summary := "<b>" + c.Address() + "</b>"
		if c.Action == planner.NoOp {
			if strings.Contains(out, summary) {
				t.Errorf("a no-op has a section: %s", c.Address())
			}
			continue
		}
		want++
		if !strings.Contains(out, summary) {
			t.Errorf("no section for %s", c.Address())
		}
	}
	if opened != want || closed != want {
		t.Errorf("%d <details> opened and %d closed, want %d", opened, closed, want)
	}
}

func TestRenderMarkdown(t *testing.T) {
	for _, tt := range []struct {
		name string
		plan *planner.Plan
	}{
		{"mixed", mixedPlan()},
		{"change", changePlan()},
		{"adopt", adoptPlan()},
		{"blocked", blockedPlan()},
		{"no_changes", noChangesPlan()},
		{"empty", &planner.Plan{FormatVersion: planner.FormatVersion, Fingerprint: fingerprint}},
		{"hostile", hostilePlan()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			renderMarkdown(&b, tt.plan)
			golden(t, "markdown_"+tt.name, b.Bytes())
			markdownStructure(t, tt.plan, b.String())
		})
	}
}

func TestRenderMarkdownContent(t *testing.T) {
	// Facts the goldens hold, spelled out so that a careless -update of a
	// golden cannot lose them.
	render := func(p *planner.Plan) string {
		var b bytes.Buffer
		renderMarkdown(&b, p)
		return b.String()
	}
	for _, tt := range []struct {
		name   string
		out    string
		want   []string
		absent []string
	}{
		{"mixed", render(mixedPlan()), []string{
			"**Plan:** 2 to create, 2 to change, 2 to destroy.\n\n<details>\n", // the summary is the first line
			"<summary><code>+</code> <b>shop.a_totals</b> will be created</summary>\n\n- **reason:** new materialized view\n- **source:** `shop.products`\n- **cluster:** `shop_cluster`\n",
			"- **note:** the query's own types differ from the declared columns; cast `cnt` to `UInt64`, `total_price` to `Decimal(18, 2)`\n",
			"\n**Steps**\n\n1. `create_target`: create shop.a_totals_data ON CLUSTER shop_cluster\n2. `fence`: ",
			"```diff\n  -- create_target\n+ CREATE TABLE IF NOT EXISTS `shop`.`a_totals_data` ON CLUSTER `shop_cluster` (`category` String)\n+ ENGINE = ReplicatedSummingMergeTree(",
			"  -- optimize\n+ OPTIMIZE TABLE `shop`.`a_totals_data` ON CLUSTER `shop_cluster` FINAL\n```\n\n</details>\n",
			"1. `create_distributed`: create the Distributed table where it is missing (on ch2:9000)\n",
			"<summary><code>-/+</code> <b>shop.c_rebuilt</b> must be replaced</summary>",
			"<summary><code>-</code> <b>shop.d_gone</b> will be destroyed</summary>",
		}, []string{"e_current", "blocked", "⛔", "<details open>"}},
		{"change", render(changePlan()), []string{
			"**Plan:** ⛔ **1 blocked** (apply will refuse it), 0 to create, 1 to change, 0 to destroy.\n",
			"<details open>\n<summary><code>~</code> <b>shop.totals</b> has changed: ⛔ blocked</summary>\n\n> [!CAUTION]\n> **Cannot apply:** changing an applied MV",
			"**SQL diff (applied → spec)**\n\n```diff\n  CREATE MATERIALIZED VIEW IF NOT EXISTS `shop`.`totals`\n  FROM `shop`.`products`\n- WHERE `id` > 1000\n+ WHERE (price > 0) AND `id` > 1000\n  GROUP BY category\n```\n",
		}, nil},
		{"blocked", render(blockedPlan()), []string{
			"**Plan:** ⛔ **1 blocked** (apply will refuse it), 1 to create, 0 to change, 0 to destroy.\n",
			"> **Cannot apply:** source table shop.orders_cdc is a ReplacingMergeTree",
		}, []string{"shop.totals"}},
		{"no_changes", render(noChangesPlan()), []string{
			"**No changes.** The live ClickHouse objects and jobs match the specs.\n\n" +
				"- `shop.b`: not in the specs; kept (plan with -destroy to drop it)\n" +
				"- `shop.c`: up to date on the nodes that answered; not checked: ch2:9000 (dial tcp: connection refused)\n",
		}, []string{"<details", "`shop.a`"}},
		{"hostile", render(hostilePlan()), []string{
			"> [!WARNING]\n> These nodes did not answer; their objects were not checked:\n> - ch2:9000 (dial tcp &lt;nil>: connection refused)\n\n<details open>",
			"- **reason:** new &lt;/summary>&lt;/details> &lt;script>alert(1)&lt;/script>\n",
			"> **Cannot apply:** \\*bold\\* \\_em\\_ \\[link\\](http://example.com) \\`code\\` \\#12 & more &amp;amp; &lt;!-- x --><br>second line\n",
			"create shop.odd with \\_shirath_stage_odd\n",         // an underscore inside a word stays as it is
			"\n````diff\n  -- create_mv\n+ SELECT '```' AS fence", // a longer fence than the SQL's
		}, []string{"<script>", "</summary></details>"}},
	} {
		for _, w := range tt.want {
			if !strings.Contains(tt.out, w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.name, w, tt.out)
			}
		}
		for _, a := range tt.absent {
			if strings.Contains(tt.out, a) {
				t.Errorf("%s: output holds %q:\n%s", tt.name, a, tt.out)
			}
		}
	}
}
