package planner

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// A change of a live MV (its query, columns, engine, keys or backfill
// options) is built beside the live version and switched to at once: see
// executor/swap.go and the README's "How a change stays exact".

// changeStrategy decides how a job whose spec differs from s is changed.
func changeStrategy(s *specs.Spec, job *state.Job) string {
	if job.Changing() {
		if prev, err := specs.ParseJSON(job.PreviousConfig); err == nil && specs.Hash(prev) == specs.Hash(s) {
			return StrategyAbandon
		}
	}
	if s.ChangeStrategy == specs.ChangeModifyQuery {
		return StrategyModifyQuery
	}
	return StrategyRebuild
}

// diffChange plans the change of a job whose spec hash differs from s's.
// c.Strategy and c.Version are set.
func diffChange(c *ResourceChange, s *specs.Spec, live *Live, job *state.Job) {
	c.Action = Change
	if c.Strategy == StrategyAbandon {
		c.Reason = fmt.Sprintf("the spec is back to live version %d's: the unfinished version %d is dropped, readers keep version %d", c.LiveVersion, job.Version, c.LiveVersion)
		c.Steps = []Step{{Kind: StepDrop, Detail: fmt.Sprintf("drop version %d's MV and tables (readers never saw them)", job.Version)}}
		c.Diff = specDiff(job, s, c)
		blockOnDown(c, live)
		return
	}
	c.Diff = specDiff(job, s, c)
	applied, err := specs.ParseJSON(job.Config)
	if err != nil {
		c.Blocked = fmt.Sprintf("the spec recorded with job %s cannot be read (%v): a change needs it to find the live objects", s.Name, err)
		return
	}
	if applied.TargetTable != s.TargetTable || applied.DistributedTable != s.DistributedTable {
		c.Blocked = fmt.Sprintf("target_table or distributed_table changed (%s, %s -> %s, %s): readers' names do not move in a change. "+
			"Create the new names as a new MV (another name), or put the old names back", applied.TargetTable, applied.DistributedTable, s.TargetTable, s.DistributedTable)
		return
	}
	if job.ClusterName != c.Cluster {
		c.Blocked = fmt.Sprintf("the MV lives on %s and the spec now resolves to %s: moving an MV between a node and a cluster is not a change; remove the spec, apply with -destroy, and apply the new one", where(job.ClusterName), where(c.Cluster))
		return
	}
	if blockOnDown(c, live) {
		return
	}
	// MVs that read this one's target are rebuilt along (ripple.go), or,
	// when they are not among the specs planned, refuse the change there.
	if c.Strategy == StrategyModifyQuery {
		modifyQuery(c, s, live, job, applied)
		return
	}
	c.Reason = fmt.Sprintf("the spec changed: rebuild beside live version %d as version %d (%s.%s), then switch readers at once", c.LiveVersion, c.Version, s.Database, sqlgen.VersionedName(s.TargetTable, c.Version))
	if job.Changing() {
		c.Steps = append(c.Steps, Step{Kind: StepDrop, Detail: fmt.Sprintf("drop the unfinished version %d (built from another spec; readers never saw it)", job.Version)})
	}
	c.Steps = append(c.Steps, createSteps(sqlgen.Versioned(s, c.Version), c.Cluster, live)...)
	c.Steps = append(c.Steps, switchSteps(s, c, live)...)
}

func where(cluster string) string {
	if cluster == "" {
		return "a single node"
	}
	return "cluster " + cluster
}

// blockOnDown blocks a change while a node does not answer: the switch and
// the drop of the old version must run on every node.
func blockOnDown(c *ResourceChange, live *Live) bool {
	down := live.Unreachable()
	if len(down) == 0 {
		return false
	}
	c.Blocked = "nodes do not answer: " + strings.Join(down, "; ") + ": a change builds and switches on every node of the cluster; apply again when they are back"
	c.Unreachable = down
	return true
}

// modifyQuery plans ALTER TABLE mv MODIFY QUERY where it is exact about what
// it does: the server has it, the change is the query alone, and the job is
// complete.
func modifyQuery(c *ResourceChange, s *specs.Spec, live *Live, job *state.Job, applied *specs.Spec) {
	c.Version = job.Version
	for _, ns := range live.Nodes {
		if !ns.Node.Features.ModifyQuery {
			c.Blocked = fmt.Sprintf("change_strategy: modify_query needs ALTER TABLE ... MODIFY QUERY, which %s (ClickHouse %s) does not have: remove change_strategy to rebuild instead", ns.Node.Addr, ns.Node.Version)
			return
		}
	}
	same := *applied
	same.SelectQuery, same.PreventDestroy, same.ChangeStrategy = s.SelectQuery, s.PreventDestroy, s.ChangeStrategy
	if specs.Hash(&same) != specs.Hash(s) {
		c.Blocked = "change_strategy: modify_query changes the query alone, and this change also touches the columns, engine, keys, source or backfill options: remove change_strategy to rebuild instead"
		return
	}
	if job.Status != state.StatusCompleted || job.Changing() {
		c.Blocked = fmt.Sprintf("change_strategy: modify_query needs a completed job, and this one is %s: apply the previous spec until it completes, or rebuild", job.Status)
		return
	}
	if job.CutoffID == nil {
		c.Blocked = "change_strategy: modify_query needs the job's fence, and none is recorded: rebuild instead"
		return
	}
	c.Fence = job.CutoffID
	c.Reason = "the query changed: replaced in place (change_strategy: modify_query). Rows already in the target keep the old query's result; rows inserted from now on get the new one"
	c.Steps = []Step{{Kind: StepModifyQuery, Detail: fmt.Sprintf("ALTER TABLE %s.%s MODIFY QUERY with the fence %s > %d kept, on every node", s.Database, sqlgen.VersionedName(s.Name, c.Version), s.Backfill.KeyColumn, *job.CutoffID)}}
}

// switchSteps are the steps that switch readers from the live version to
// c.Version and drop the old one.
func switchSteps(s *specs.Spec, c *ResourceChange, live *Live) []Step {
	db, t := s.Database, s.TargetTable
	phys := sqlgen.Versioned(s, c.Version)
	how := "RENAME TABLE " + t + " TO " + sqlgen.PrevName(t) + ", " + sqlgen.NextName(t) + " TO " + t
	if live != nil && exchangeEverywhere(live) {
		how = "EXCHANGE TABLES " + t + " AND " + sqlgen.NextName(t) + " (Atomic databases; RENAME elsewhere)"
	}
	steps := []Step{{Kind: StepSwitch, Detail: fmt.Sprintf("on every node: create %s.%s = Merge over %s only", db, sqlgen.NextName(t), phys.TargetTable)}}
	if c.Cluster != "" {
		steps = append(steps, Step{Kind: StepSwitch, Detail: fmt.Sprintf("on every node, in one statement: %s.%s becomes the Distributed table over %s", db, s.DistributedTable, phys.TargetTable)})
	}
	old := sqlgen.VersionedName(s.Name, c.LiveVersion)
	steps = append(steps,
		Step{Kind: StepSwitch, Detail: fmt.Sprintf("on every node: drop the old MV %s.%s (it writes into %s by name), then %s: readers of %s.%s see version %d at once", db, old, sqlgen.VersionedName(t, c.LiveVersion), how, db, t, c.Version)},
		Step{Kind: StepDropOld, Detail: fmt.Sprintf("record version %d as live, then drop version %d's tables", c.Version, c.LiveVersion)},
	)
	return steps
}

func exchangeEverywhere(live *Live) bool {
	for _, ns := range live.Nodes {
		if !ns.Node.Features.Exchange {
			return false
		}
	}
	return len(live.Nodes) > 0
}

// readersOf lists the live MVs, other than this MV's own versions, whose
// query reads the target by its readers' name. job is nil for an MV being
// adopted.
func readersOf(live *Live, s *specs.Spec, job *state.Job) []string {
	// What a reader may name: the target and its versions, and, on
	// servers where writes fire the MVs reading an MV's name (18.16, see
	// chclient.Version.CascadesThroughTarget), the MV's versions.
	own := map[string]bool{}
	var names []string
	versions := 1
	if job != nil {
		versions = max(job.Version, job.LiveVersion, 1)
	}
	for v := 1; v <= versions; v++ {
		own[sqlgen.VersionedName(s.Name, v)] = true
		names = append(names, regexp.QuoteMeta(sqlgen.VersionedName(s.TargetTable, v)), regexp.QuoteMeta(sqlgen.VersionedName(s.Name, v)))
	}
	re := regexp.MustCompile(`(?i)\bFROM\s+` + "`?" + regexp.QuoteMeta(s.Database) + "`?" + `\.` + "`?(" + strings.Join(names, "|") + ")`?" + `(\s|$|\))`)
	seen := map[string]bool{}
	var out []string
	for _, ns := range live.Nodes {
		for _, t := range ns.Tables {
			if t.Engine != "MaterializedView" || t.Database != s.Database && !strings.Contains(t.CreateQuery, s.Database) || own[t.Name] && t.Database == s.Database {
				continue
			}
			if re.MatchString(t.CreateQuery) && !seen[t.Database+"."+t.Name] {
				seen[t.Database+"."+t.Name] = true
				out = append(out, t.Database+"."+t.Name)
			}
		}
	}
	return out
}
