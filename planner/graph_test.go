package planner

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// chainSpec parses a spec named name reading source (its target is
// name_data), at line 1 of name.yaml.
func chainSpec(t *testing.T, name, source string) *specs.Spec {
	t.Helper()
	y := strings.NewReplacer("products_by_category", name, "source_table: products", "source_table: "+source).Replace(baseSpecYAML)
	ss, err := specs.ParseYAML(name+".yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return ss[0]
}

func TestCheckCycles(t *testing.T) {
	a := chainSpec(t, "a", "c_data")
	b := chainSpec(t, "b", "a_data")
	c := chainSpec(t, "c", "b_data")
	d := chainSpec(t, "d", "products")
	err := CheckCycles([]*specs.Spec{d, a, b, c})
	if err == nil {
		t.Fatal("a cycle of three was accepted")
	}
	for _, want := range []string{"shop.a (a.yaml:1)", "shop.b (b.yaml:1)", "shop.c (c.yaml:1)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "shop.d") {
		t.Errorf("the error names shop.d, which is not in the cycle: %v", err)
	}
	// A chain is not a cycle; a spec reading another's Distributed table
	// depends on it too.
	c2 := chainSpec(t, "c", "b_dist")
	if err := CheckCycles([]*specs.Spec{d, chainSpec(t, "a", "d_data"), chainSpec(t, "b", "a_data"), c2}); err != nil {
		t.Errorf("a chain: %v", err)
	}
}

// chainInput is raw -> clean (clean_data) -> by_cat and by_day.
func chainInput(t *testing.T, liveTables ...*Table) (Input, []*specs.Spec) {
	clean := chainSpec(t, "clean", "products")
	byCat := chainSpec(t, "by_cat", "clean_data")
	byDay := chainSpec(t, "by_day", "clean_data")
	in := Input{Live: live("", up("ch1:9000", 1, append([]*Table{sourceTable("MergeTree")}, liveTables...)...))}
	for _, s := range []*specs.Spec{byDay, byCat, clean} {
		in.Desired = append(in.Desired, Desired{Spec: s})
	}
	return in, []*specs.Spec{clean, byCat, byDay}
}

func TestDiffChainFromNothing(t *testing.T) {
	in, _ := chainInput(t)
	out := Diff(in)
	var order []string
	for _, c := range out {
		order = append(order, c.Address())
	}
	if got := strings.Join(order, " "); got != "shop.clean shop.by_cat shop.by_day" {
		t.Fatalf("order %s: want upstream first", got)
	}
	if c := out[0]; c.Action != Create || c.Blocked != "" || c.Deferred != "" || len(c.DependsOn) != 0 {
		t.Fatalf("upstream: %+v", c)
	}
	for _, c := range out[1:] {
		if c.Action != Create || c.Blocked != "" {
			t.Errorf("%s: action %s, blocked %q: want a deferred create", c.Address(), c.Action, c.Blocked)
		}
		if !strings.Contains(c.Deferred, "waits for shop.clean (shop.clean_data): this apply must first create it") {
			t.Errorf("%s: deferred %q", c.Address(), c.Deferred)
		}
		if len(c.DependsOn) != 1 || c.DependsOn[0].String() != "reads shop.clean_data, built by shop.clean" {
			t.Errorf("%s: edges %v", c.Address(), c.DependsOn)
		}
		if len(c.Steps) != 1 || c.Steps[0].Kind != StepWaitUpstream {
			t.Errorf("%s: steps %v", c.Address(), kinds(c.Steps))
		}
	}
	// The test's nodes report no version, as 18.16 would be read: the
	// rollups' views read clean's MV by name, their backfills clean_data.
	for _, c := range out[1:] {
		if c.ViewSource != "clean" {
			t.Errorf("%s: view source %q, want clean (18.16 fires MVs reading the upstream MV's name)", c.Address(), c.ViewSource)
		}
	}
	in.Live[""].Nodes[0].Node.Version = chclient.Version{Major: 26, Minor: 7}
	for _, c := range Diff(in)[1:] {
		if c.ViewSource != "" {
			t.Errorf("%s on 26.7: view source %q, want the target (none)", c.Address(), c.ViewSource)
		}
	}
	p := &Plan{Changes: out}
	if len(p.Deferred()) != 2 || !p.HasChanges() || p.Summary().Create != 3 {
		t.Errorf("deferred %d, summary %+v", len(p.Deferred()), p.Summary())
	}
	b, err := json.Marshal(JSONView(p))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"depends_on":[{"address":"shop.clean","table":"shop.clean_data"}]`) {
		t.Errorf("JSON lacks the edge: %s", b)
	}
}

func TestDiffChainWaitsForIncompleteUpstream(t *testing.T) {
	cleanData := &Table{Database: testDB, Name: "clean_data", Engine: "SummingMergeTree", Columns: []Column{{"id", "UInt64"}, {"category", "String"}, {"price", "Decimal(18, 2)"}}}
	in, ss := chainInput(t, cleanData)
	job := testJob(t, ss[0], "", state.StatusBackfilling)
	job.Applied = nil
	in.Jobs = []*state.Job{job}
	for _, c := range Diff(in) {
		if c.Name == "clean" {
			continue
		}
		if !strings.Contains(c.Deferred, "its job is backfilling") && !strings.Contains(c.Deferred, "this apply must first") {
			t.Errorf("%s: deferred %q: want it to wait for the backfill of shop.clean", c.Address(), c.Deferred)
		}
	}
}

func TestDiffChainDestroyOrderAndRefusal(t *testing.T) {
	_, ss := chainInput(t)
	var jobs []*state.Job
	for i, s := range ss {
		j := testJob(t, s, "", state.StatusCompleted)
		j.ID = int64(i + 1)
		jobs = append(jobs, j)
	}
	// Every spec removed, -destroy: downstream first.
	out := Diff(Input{Live: live("", up("ch1:9000", 1, sourceTable("MergeTree"))), Jobs: jobs, Destroy: true})
	var order []string
	for _, c := range out {
		if c.Action != Delete || c.Blocked != "" {
			t.Errorf("%s: %s blocked %q", c.Address(), c.Action, c.Blocked)
		}
		order = append(order, c.Address())
	}
	if got := strings.Join(order, " "); got != "shop.by_cat shop.by_day shop.clean" {
		t.Fatalf("destroy order %s: want downstream first", got)
	}
	// clean's spec removed while by_cat's spec still reads it: refused.
	in := Input{Live: live("", up("ch1:9000", 1, sourceTable("MergeTree"))), Jobs: jobs, Destroy: true,
		Desired: []Desired{{Spec: ss[1]}}}
	for _, c := range Diff(in) {
		if c.Name == "clean" && (c.Action != Delete || !strings.Contains(c.Blocked, "shop.by_cat reads what shop.clean builds (shop.clean_data")) {
			t.Errorf("destroy of an upstream MV that a spec reads: %s blocked %q", c.Action, c.Blocked)
		}
	}
}

func TestWithUpstream(t *testing.T) {
	_, ss := chainInput(t)
	other := chainSpec(t, "other", "products")
	got := WithUpstream(append(ss, other), ss[1])
	if len(got) != 2 || got[0].Name != "by_cat" || got[1].Name != "clean" {
		var names []string
		for _, s := range got {
			names = append(names, s.Name)
		}
		t.Fatalf("WithUpstream(by_cat) = %v, want by_cat, clean", names)
	}
}

func TestDependsOnGraph(t *testing.T) {
	a := chainSpec(t, "a", "products")
	b := chainSpec(t, "b", "products")
	a.Refresh = &specs.Refresh{Every: "1 hour", DependsOn: []string{"b"}}
	b.Refresh = &specs.Refresh{Every: "1 hour", DependsOn: []string{"shop.a"}}
	if err := CheckCycles([]*specs.Spec{a, b}); err == nil || !strings.Contains(err.Error(), "shop.a (a.yaml:1) -> shop.b (b.yaml:1) -> shop.a") {
		t.Errorf("a depends_on cycle: %v", err)
	}
	b.Refresh.DependsOn = nil
	if err := CheckCycles([]*specs.Spec{a, b}); err != nil {
		t.Fatal(err)
	}
	in := Input{Live: live("", up("ch1:9000", 1, sourceTable("MergeTree"))), Desired: []Desired{{Spec: a}, {Spec: b}}}
	in.Live[""].Nodes[0].Node.Features.RefreshableMVs = true
	out := Diff(in)
	if out[0].Name != "b" || out[1].Name != "a" {
		t.Fatalf("order %s, %s: want b first", out[0].Name, out[1].Name)
	}
	if len(out[1].DependsOn) != 1 || out[1].DependsOn[0].String() != "refreshed after shop.b (depends_on)" || !strings.Contains(out[1].Deferred, "waits for shop.b") {
		t.Errorf("a: edges %v, deferred %q", out[1].DependsOn, out[1].Deferred)
	}
	// A plain MV reading a refreshable MV's target would never fire.
	c := chainSpec(t, "c", "b_data")
	in.Desired = append(in.Desired, Desired{Spec: c})
	for _, ch := range Diff(in) {
		if ch.Name == "c" && !strings.Contains(ch.Blocked, "shop.b is a refreshable MV") {
			t.Errorf("c: blocked %q", ch.Blocked)
		}
	}
}
