package planner

import (
	"encoding/json"
	"fmt"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// FormatVersion is the version of the JSON plan format. Bump the major
// number on an incompatible change.
const FormatVersion = "1.0"

// Action is what a change does to one MV, in Terraform's terms.
type Action int

const (
	NoOp    Action = iota
	Create         // new MV: objects, fence, backfill
	Update         // existing MV moved forward: resume a backfill, repair a missing object
	Replace        // drop everything and build again (delete then create)
	Delete         // drop the MV, its tables and its job
	Change         // the spec changed: shown, not yet applicable
	Adopt          // live objects at the spec's names, without a job: recorded (and changed if they differ)
)

var actionNames = map[Action]string{
	NoOp: "no-op", Create: "create", Update: "update", Replace: "replace", Delete: "delete", Change: "change", Adopt: "adopt",
}

func (a Action) String() string { return actionNames[a] }

// Symbol is the one-character marker of the human rendering.
func (a Action) Symbol() string {
	switch a {
	case Create:
		return "+"
	case Update, Change:
		return "~"
	case Replace:
		return "-/+"
	case Delete:
		return "-"
	case Adopt:
		return "<="
	}
	return " "
}

func (a Action) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

func (a *Action) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for k, v := range actionNames {
		if v == s {
			*a = k
			return nil
		}
	}
	return fmt.Errorf("unknown plan action %q", s)
}

// StepKind names one ordered step of a change.
type StepKind string

const (
	StepCreateTarget      StepKind = "create_target"
	StepFence             StepKind = "fence"
	StepCreateMV          StepKind = "create_mv"
	StepCreateDistributed StepKind = "create_distributed"
	StepWait              StepKind = "wait_for_source"
	StepBackfill          StepKind = "backfill"
	StepResumeBackfill    StepKind = "resume_backfill"
	StepOptimize          StepKind = "optimize"
	StepDrop              StepKind = "drop"
	StepSwitch            StepKind = "switch"
	StepDropOld           StepKind = "drop_old_version"
	StepModifyQuery       StepKind = "modify_query"
	StepWaitUpstream      StepKind = "wait_for_upstream"
	StepWaitDownstream    StepKind = "wait_for_downstream"
	StepModifyRefresh     StepKind = "modify_refresh"
	StepFirstRefresh      StepKind = "first_refresh"
	StepAdopt             StepKind = "adopt"
)

// The strategies of a Change (ResourceChange.Strategy).
const (
	// StrategyRebuild builds the new version beside the live one, then
	// switches readers to it and drops the old one.
	StrategyRebuild = "rebuild"
	// StrategyModifyQuery replaces the view's query in place.
	StrategyModifyQuery = "modify_query"
	// StrategyAbandon drops an unfinished version: the spec is back to the
	// live one's.
	StrategyAbandon = "abandon"
)

// Step is one ordered action of a change, with the SQL it will run where
// that SQL is known at plan time.
type Step struct {
	Kind   StepKind `json:"kind"`
	Detail string   `json:"detail"`
	SQL    string   `json:"sql,omitempty"`
	// Nodes lists the nodes a repair runs on; empty means every node.
	Nodes []string `json:"nodes,omitempty"`
}

// ResourceChange is the plan for one MV.
type ResourceChange struct {
	Database string `json:"database"`
	Name     string `json:"name"`
	Action   Action `json:"action"`
	Reason   string `json:"reason"`
	Steps    []Step `json:"steps,omitempty"`
	Diff     string `json:"diff,omitempty"`
	// Blocked says why apply refuses this change; empty when it can be applied.
	Blocked string `json:"blocked,omitempty"`
	// Unreachable: Blocked only because these nodes do not answer, which
	// may pass (a node restarting): apply refuses the change now, and the
	// daemon tries it again later instead of waiting for a new spec.
	Unreachable []string `json:"-"`
	// PreventDestroy: Blocked because the change would drop or rebuild an
	// MV whose spec sets prevent_destroy; such a plan fails.
	PreventDestroy bool        `json:"prevent_destroy,omitempty"`
	Spec           *specs.Spec `json:"spec,omitempty"`
	// Version is the version of the MV the change builds or works on: 1
	// for the spec's own names, N >= 2 for the physical names of
	// sqlgen.Versioned. LiveVersion is the one readers see.
	Version     int `json:"version,omitempty"`
	LiveVersion int `json:"live_version,omitempty"`
	// Strategy says how a Change is made (StrategyRebuild, ...).
	Strategy string `json:"strategy,omitempty"`
	// Fence is the live MV's fence, kept by a modify_query change.
	Fence   *int64 `json:"fence,omitempty"`
	JobID   int64  `json:"job_id,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	// Casts maps output columns to the declared types they are cast to,
	// because the query's own type differs (see specs: sum(Decimal) widens).
	Casts map[string]string `json:"casts,omitempty"`
	// TargetEngine is the engine clause the target is created with (the
	// spec's, or its Replicated form over a replicated source).
	TargetEngine string `json:"target_engine,omitempty"`
	// DependsOn lists the MVs whose tables this one reads (a chain).
	DependsOn []Dependency `json:"depends_on,omitempty"`
	// Deferred says why the change waits for an upstream MV: apply plans it
	// again once that one is complete. Empty when it can be applied now.
	Deferred string `json:"deferred,omitempty"`
	// ViewSource is what the view reads live rows from when it is not the
	// source table: the upstream MV's name, on servers where an MV's
	// writes into its target fire only MVs reading the MV's name.
	ViewSource string `json:"view_source,omitempty"`
	// Reads is the physical version of the upstream MV that this one's
	// view, fence and backfill read (a chain; see ripple.go), recorded with
	// the job. nil when the source is a plain table.
	Reads *state.Reads `json:"reads,omitempty"`
	// HoldSwitch says why the switch of a change waits once its version is
	// built: MVs downstream must first be rebuilt over that version and
	// switched (apply plans them, then the switch, in further rounds).
	HoldSwitch string `json:"hold_switch,omitempty"`
	// LiveSpec describes the live objects an Adopt change adopts: the job
	// records it as version 1 (the spec itself when they match).
	LiveSpec *specs.Spec `json:"live_spec,omitempty"`
}

// MV is the SQL generator of the version the change works on.
// A chain's downstream MV reads the upstream's physical version (Reads):
// its fence and backfill read Reads.Table, its view Reads.View.
func (c *ResourceChange) MV() sqlgen.MV {
	s := sqlgen.Versioned(c.Spec, c.Version)
	view := c.ViewSource
	if c.Reads != nil {
		s.SourceTable, view = c.Reads.Table, ""
		if c.Reads.View != c.Reads.Table {
			view = c.Reads.View
		}
	}
	return sqlgen.MV{Spec: s, Cluster: c.Cluster, TargetEngine: c.TargetEngine, Casts: c.Casts, ViewSource: view}
}

// Address is database.name.
func (c *ResourceChange) Address() string { return c.Database + "." + c.Name }

// Plan is an ordered list of changes, with the fingerprint of the live state
// it was made from so that a saved plan can be refused once that state moved.
type Plan struct {
	FormatVersion string            `json:"format_version"`
	Fingerprint   string            `json:"fingerprint"`
	Changes       []*ResourceChange `json:"resource_changes"`
	// Destroy is true when the plan was made with deletions allowed.
	Destroy bool `json:"destroy"`
	// Unreachable lists the nodes that did not answer, with why: their
	// state is unknown and the plan does not cover them.
	Unreachable []string `json:"unreachable,omitempty"`
}

// Deferred lists the changes that wait for an upstream MV.
func (p *Plan) Deferred() []*ResourceChange {
	var out []*ResourceChange
	for _, c := range p.Changes {
		if c.Deferred != "" {
			out = append(out, c)
		}
	}
	return out
}

// Blocked counts the changes apply refuses.
func (p *Plan) Blocked() int { return p.Summary().Blocked }

// Summary counts changes by kind.
type Summary struct{ Adopt, Create, Change, Destroy, Blocked int }

func (p *Plan) Summary() Summary {
	var s Summary
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			s.Create++
		case Update, Change:
			s.Change++
		case Replace:
			s.Create++
			s.Destroy++
		case Delete:
			s.Destroy++
		case Adopt:
			s.Adopt++
			if c.Strategy != "" {
				s.Change++
			}
		}
		if c.Blocked != "" {
			s.Blocked++
		}
	}
	return s
}

// HasChanges reports whether the plan would do anything.
func (p *Plan) HasChanges() bool {
	for _, c := range p.Changes {
		if c.Action != NoOp {
			return true
		}
	}
	return false
}

// Refused lists the changes that fail the whole plan: those that would drop
// or rebuild an MV protected by prevent_destroy.
func (p *Plan) Refused() []*ResourceChange {
	var out []*ResourceChange
	for _, c := range p.Changes {
		if c.PreventDestroy {
			out = append(out, c)
		}
	}
	return out
}
