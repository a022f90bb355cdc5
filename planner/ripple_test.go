package planner

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// rippleWorld is the chain clean -> by_cat, by_day, applied and complete
// (jobs 1, 2, 3, every object live), with clean's spec then changed.
type rippleWorld struct {
	in                  Input
	clean, byCat, byDay *specs.Spec
	jobs                map[string]*state.Job
}

func newRippleWorld(t *testing.T, modern bool) *rippleWorld {
	t.Helper()
	in, ss := chainInput(t)
	w := &rippleWorld{in: in, clean: ss[0], byCat: ss[1], byDay: ss[2], jobs: map[string]*state.Job{}}
	node := in.Live[""].Nodes[0]
	if modern {
		node.Node.Version = chclient.Version{Major: 26, Minor: 7}
	}
	cols := []Column{{"id", "UInt64"}, {"category", "String"}, {"price", "Decimal(18, 2)"}}
	for _, n := range []string{"clean_data", "clean_data__v2", "clean_data__v3", "by_cat_data", "by_day_data", "by_cat_data__v2", "by_day_data__v2"} {
		node.Tables[testDB+"."+n] = &Table{Database: testDB, Name: n, Engine: "MergeTree", Columns: cols}
	}
	for _, n := range []string{"clean", "by_day", "clean__v2", "by_cat__v2", "by_day__v2"} {
		node.Tables[testDB+"."+n] = &Table{Database: testDB, Name: n, Engine: "MaterializedView", CreateQuery: "CREATE MATERIALIZED VIEW shop." + n + " TO shop." + n + "_data AS SELECT 1"}
	}
	// by_cat's live view reads clean by name, as on 18.16.
	node.Tables[testDB+".by_cat"] = &Table{Database: testDB, Name: "by_cat", Engine: "MaterializedView",
		CreateQuery: "CREATE MATERIALIZED VIEW shop.by_cat TO shop.by_cat_data AS SELECT category, count() AS cnt FROM shop.clean WHERE id > 5 GROUP BY category"}
	for i, s := range ss {
		j := testJob(t, s, "", state.StatusCompleted)
		j.ID, j.Applied, j.Version, j.LiveVersion = int64(i+1), nil, 1, 1
		w.jobs[s.Name] = j
		w.in.Jobs = append(w.in.Jobs, j)
	}
	changed := *w.clean
	changed.SelectQuery = strings.Replace(changed.SelectQuery, "GROUP BY", "WHERE price > 1 GROUP BY", 1)
	for i, d := range w.in.Desired {
		if d.Spec.Name == "clean" {
			w.in.Desired[i].Spec = &changed
		}
	}
	w.clean = &changed
	return w
}

func byName(out []*ResourceChange) map[string]*ResourceChange {
	m := map[string]*ResourceChange{}
	for _, c := range out {
		m[c.Name] = c
	}
	return m
}

// built records a version of an MV as built (complete) and, when live,
// switched to.
func (w *rippleWorld) built(name string, v int, live bool, reads *state.Reads) {
	j := w.jobs[name]
	j.Version = v
	if live {
		j.LiveVersion = v
	}
	j.Reads = reads
	if name == "clean" {
		j.SpecHash = specs.Hash(w.clean)
		j.PreviousConfig = j.Config
	}
}

// TestRippleRounds walks a change of clean through the rounds of one apply:
// clean's version 2 built with its switch held, the rollups rebuilt over it,
// then clean's switch.
func TestRippleRounds(t *testing.T) {
	for _, modern := range []bool{false, true} {
		w := newRippleWorld(t, modern)
		view := "clean__v2" // 18.16: the rollups' views read clean's MV by name
		if modern {
			view = "clean_data__v2"
		}

		// Round 1: clean is rebuilt and holds its switch; the rollups wait
		// for its version 2, saying why they are rebuilt.
		out := byName(Diff(w.in))
		c := out["clean"]
		if c.Action != Change || c.Strategy != StrategyRebuild || c.Version != 2 || c.Blocked != "" || c.Deferred != "" {
			t.Fatalf("round 1, clean: %s %s v%d blocked %q deferred %q", c.Action, c.Strategy, c.Version, c.Blocked, c.Deferred)
		}
		if !strings.Contains(c.HoldSwitch, "waits until shop.by_cat, shop.by_day, which read shop.clean_data, are rebuilt over shop.clean_data__v2") {
			t.Errorf("round 1, clean: hold %q", c.HoldSwitch)
		}
		if ks := kinds(c.Steps); !containsKind(ks, StepWaitDownstream) || indexKind(ks, StepWaitDownstream) > indexKind(ks, StepSwitch) {
			t.Errorf("round 1, clean: steps %v: want the hold before the switch", ks)
		}
		for _, n := range []string{"by_cat", "by_day"} {
			d := out[n]
			if d.Action != Change || !strings.HasPrefix(d.Reason, "must be rebuilt: its source shop.clean_data is rebuilt (shop.clean version 2)") {
				t.Errorf("round 1, %s: %s, reason %q", n, d.Action, d.Reason)
			}
			if !strings.Contains(d.Deferred, "waits for shop.clean (shop.clean_data): this apply must first build its version 2") {
				t.Errorf("round 1, %s: deferred %q", n, d.Deferred)
			}
		}
		p := &Plan{Changes: Diff(w.in)}
		if s := p.Summary(); s.Change != 3 || s.Blocked != 0 {
			t.Errorf("round 1: summary %+v", s)
		}
		b, _ := json.Marshal(JSONView(p))
		if !strings.Contains(string(b), `"reason":"must be rebuilt: its source shop.clean_data is rebuilt (shop.clean version 2)`) || !strings.Contains(string(b), `"hold_switch":"the switch to version 2 waits`) {
			t.Errorf("round 1: the JSON plan lacks the reasons: %s", b)
		}

		// Round 2: clean's version 2 is built, its switch waits; the
		// rollups are rebuilt over it now.
		w.built("clean", 2, false, nil)
		out = byName(Diff(w.in))
		c = out["clean"]
		if c.Action != Update || !strings.Contains(c.Deferred, "the switch to version 2 waits until shop.by_cat, shop.by_day") || len(c.Steps) != 1 || c.Steps[0].Kind != StepWaitDownstream {
			t.Errorf("round 2, clean: %s deferred %q steps %v", c.Action, c.Deferred, kinds(c.Steps))
		}
		for _, n := range []string{"by_cat", "by_day"} {
			d := out[n]
			if d.Action != Change || d.Deferred != "" || d.Blocked != "" || d.Version != 2 || d.HoldSwitch != "" {
				t.Fatalf("round 2, %s: %s v%d deferred %q blocked %q hold %q", n, d.Action, d.Version, d.Deferred, d.Blocked, d.HoldSwitch)
			}
			m := d.MV()
			if m.Spec.SourceTable != "clean_data__v2" || m.Spec.Name != n+"__v2" || d.Reads.View != view {
				t.Errorf("round 2, %s: builds %s over %s, view reads %q; want over clean_data__v2, view %s", n, m.Spec.Name, m.Spec.SourceTable, d.Reads.View, view)
			}
			q, err := m.CreateMV(1000, false)
			if err != nil || !strings.Contains(q, "`shop`.`"+view+"`") {
				t.Errorf("round 2, %s: view %s (%v): want it to read %s", n, q, err, view)
			}
			if ks := kinds(d.Steps); !containsKind(ks, StepSwitch) || containsKind(ks, StepWaitDownstream) {
				t.Errorf("round 2, %s: steps %v", n, ks)
			}
		}

		// A crash after by_cat was built over version 2 but before its
		// switch: by_cat resumes, clean still waits.
		w.built("by_cat", 2, false, out["by_cat"].Reads)
		out = byName(Diff(w.in))
		if d := out["by_cat"]; d.Action != Update || d.Deferred != "" || !containsKind(kinds(d.Steps), StepSwitch) || !d.Reads.Same(w.jobs["by_cat"].Reads) {
			t.Errorf("by_cat built, not switched: %s deferred %q steps %v", d.Action, d.Deferred, kinds(d.Steps))
		}
		if c := out["clean"]; c.Deferred == "" {
			t.Errorf("clean switches before by_cat")
		}

		// Round 3: both rollups read version 2 and are live: clean switches.
		w.built("by_cat", 2, true, out["by_cat"].Reads)
		w.built("by_day", 2, true, out["by_cat"].Reads)
		out = byName(Diff(w.in))
		if c := out["clean"]; c.Action != Update || c.Deferred != "" || c.HoldSwitch != "" || !containsKind(kinds(c.Steps), StepSwitch) {
			t.Errorf("round 3, clean: %s deferred %q hold %q steps %v", c.Action, c.Deferred, c.HoldSwitch, kinds(c.Steps))
		}
		for _, n := range []string{"by_cat", "by_day"} {
			if d := out[n]; d.Action != NoOp {
				t.Errorf("round 3, %s: %s (%s)", n, d.Action, d.Reason)
			}
		}

		// Switched: nothing left. A change of by_cat alone builds over
		// clean's live version 2.
		w.built("clean", 2, true, nil)
		out = byName(Diff(w.in))
		for n, c := range out {
			if c.Action != NoOp {
				t.Errorf("after the switch, %s: %s (%s)", n, c.Action, c.Reason)
			}
		}
		changed := *w.byCat
		changed.SelectQuery = strings.Replace(changed.SelectQuery, "GROUP BY", "WHERE price > 2 GROUP BY", 1)
		w.in.Desired = append(w.in.Desired, Desired{Spec: &changed})
		for i, d := range w.in.Desired {
			if d.Spec.Name == "by_cat" && d.Spec != &changed {
				w.in.Desired = append(w.in.Desired[:i], w.in.Desired[i+1:]...)
				break
			}
		}
		out = byName(Diff(w.in))
		if d := out["by_cat"]; d.Action != Change || d.Deferred != "" || d.Version != 3 || d.MV().Spec.SourceTable != "clean_data__v2" || d.Reads.View != view {
			t.Errorf("change of by_cat alone: %s v%d deferred %q over %s", d.Action, d.Version, d.Deferred, d.MV().Spec.SourceTable)
		}
		if c := out["clean"]; c.Action != NoOp {
			t.Errorf("change of by_cat alone, clean: %s", c.Action)
		}
	}
}

// TestRippleNewDownstreamOverChangedUpstream: a new MV over an upstream
// whose live version is 2 reads that version's physical objects, not the
// readers' name (a Merge table, which fires no MV).
func TestRippleNewDownstreamOverChangedUpstream(t *testing.T) {
	for _, modern := range []bool{false, true} {
		w := newRippleWorld(t, modern)
		w.built("clean", 2, true, nil)
		w.in.Jobs = []*state.Job{w.jobs["clean"]}
		for _, n := range []string{"by_cat", "by_cat_data", "by_day", "by_day_data"} {
			delete(w.in.Live[""].Nodes[0].Tables, testDB+"."+n)
		}
		out := byName(Diff(w.in))
		d := out["by_cat"]
		want := "clean__v2"
		if modern {
			want = "clean_data__v2"
		}
		if d.Action != Create || d.Deferred != "" || d.MV().Spec.SourceTable != "clean_data__v2" || d.Reads.View != want {
			t.Errorf("new by_cat over clean v2 (modern %v): %s deferred %q reads %+v", modern, d.Action, d.Deferred, d.Reads)
		}
	}
}

// TestRippleRefusedForMVsNotPlanned: an MV reading clean that is not among
// the specs planned (the daemon plans an MV with its upstream only, or one
// made by hand) cannot be rebuilt along: clean's change is refused, naming it.
func TestRippleRefusedForMVsNotPlanned(t *testing.T) {
	w := newRippleWorld(t, false)
	w.in.Desired = []Desired{{Spec: w.clean}}
	c := byName(Diff(w.in))["clean"]
	if !strings.Contains(c.Blocked, "shop.by_cat read shop.clean_data and are not among the specs planned") {
		t.Errorf("clean changed while shop.by_cat, not planned, reads it: blocked %q", c.Blocked)
	}
}

func containsKind(ks []StepKind, k StepKind) bool { return indexKind(ks, k) >= 0 }

func indexKind(ks []StepKind, k StepKind) int {
	for i, x := range ks {
		if x == k {
			return i
		}
	}
	return -1
}

// TestRippleOnReplace: an upstream whose MV went missing is rebuilt from
// nothing (Replace); the MVs reading it are rebuilt too, once it is
// complete, over its new job.
func TestRippleOnReplace(t *testing.T) {
	w := newRippleWorld(t, true)
	w.built("clean", 1, true, nil) // the spec is applied: no change
	delete(w.in.Live[""].Nodes[0].Tables, testDB+".clean")
	for _, j := range w.jobs {
		if j.Name != "clean" {
			j.Reads = readsOf(w.clean, "shop.clean", w.jobs["clean"].ID, 1, true)
		}
	}
	out := byName(Diff(w.in))
	if c := out["clean"]; c.Action != Replace {
		t.Fatalf("clean without its MV: %s (%s)", c.Action, c.Reason)
	}
	d := out["by_cat"]
	if d.Action != Change || !strings.HasPrefix(d.Reason, "must be rebuilt: its source shop.clean_data is rebuilt (shop.clean version 1)") ||
		!strings.Contains(d.Deferred, "this apply must first rebuild it") {
		t.Errorf("by_cat over a replaced clean: %s, reason %q, deferred %q", d.Action, d.Reason, d.Deferred)
	}
	// Replaced: a new job; by_cat reads the old one's version.
	w.jobs["clean"].ID = 42
	delete(w.in.Live[""].Nodes[0].Tables, testDB+".by_day") // unrelated drift, kept out of the way
	w.in.Live[""].Nodes[0].Tables[testDB+".clean"] = &Table{Database: testDB, Name: "clean", Engine: "MaterializedView", CreateQuery: "CREATE MATERIALIZED VIEW shop.clean TO shop.clean_data AS SELECT 1"}
	d = byName(Diff(w.in))["by_cat"]
	if d.Action != Change || d.Deferred != "" || d.Reads.Job != 42 || !strings.Contains(d.Reason, "is now shop.clean version 1") {
		t.Errorf("by_cat after clean was replaced: %s deferred %q reads %+v reason %q", d.Action, d.Deferred, d.Reads, d.Reason)
	}
}
