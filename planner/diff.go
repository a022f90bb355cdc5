package planner

import (
	"fmt"
	"strings"

	"github.com/sergi/go-diff/diffmatchpatch"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// Desired is one spec with its cluster resolved.
type Desired struct {
	Spec    *specs.Spec
	Cluster string
	// Err is set when the spec could not be resolved (cluster unknown, ...).
	Err error
	// Replace rebuilds the live MV although its spec did not change (apply
	// -replace): beside the live version, then switched, as a change.
	Replace bool
}

// Input is everything the diff needs; the diff itself reads no server.
type Input struct {
	Desired []Desired
	Live    map[string]*Live // by resolved cluster name ("" = single node)
	Jobs    []*state.Job
	Destroy bool
}

// mutableEngines re-insert a row on every update of it (CDC sources), so an
// MV over them counts every version of a row.
var mutableEngines = []string{"ReplacingMergeTree", "CollapsingMergeTree", "VersionedCollapsingMergeTree"}

func mutableEngine(engine string) bool {
	base := strings.TrimPrefix(engine, "Replicated")
	for _, e := range mutableEngines {
		if base == e {
			return true
		}
	}
	return false
}

func integerType(t string) bool {
	t = strings.TrimSuffix(strings.TrimPrefix(t, "LowCardinality("), ")")
	switch t {
	case "UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64":
		return true
	}
	return false
}

// Diff compares the desired specs with the live state and the job table and
// returns the changes in the order of the chains (see linkChanges), by
// address otherwise. It is pure: the SQL of each step is
// filled in later by Render, once casts are known.
func Diff(in Input) []*ResourceChange {
	jobs := map[string]*state.Job{}
	for _, j := range in.Jobs {
		jobs[j.Database+"."+j.Name] = j
	}
	var out []*ResourceChange
	seen := map[string]bool{}
	for _, d := range in.Desired {
		s := d.Spec
		addr := s.Database + "." + s.Name
		seen[addr] = true
		c := &ResourceChange{Database: s.Database, Name: s.Name, Spec: s, Cluster: d.Cluster}
		out = append(out, c)
		job := jobs[addr]
		if job != nil {
			c.JobID = job.ID
		}
		if d.Err != nil {
			c.Action, c.Blocked, c.Reason = Create, d.Err.Error(), "the spec cannot be resolved"
			if job != nil {
				c.Action = Update
			}
			continue
		}
		live := in.Live[d.Cluster]
		diffOne(c, s, live, job, d.Replace)
		if c.Action == NoOp && c.Blocked == "" && job != nil && recordedPreventDestroy(job) != s.PreventDestroy {
			c.Action = Update
			c.Reason = fmt.Sprintf("prevent_destroy changed to %v: apply records it (nothing changes in ClickHouse)", s.PreventDestroy)
		}
	}
	for _, j := range in.Jobs {
		addr := j.Database + "." + j.Name
		if seen[addr] {
			continue
		}
		c := &ResourceChange{Database: j.Database, Name: j.Name, JobID: j.ID, Cluster: j.ClusterName}
		if sp, err := specs.ParseJSON(j.Config); err == nil {
			c.Spec = sp
		}
		if in.Destroy {
			c.Action = Delete
			c.Reason = "not in the specs any more"
			c.Steps = []Step{{Kind: StepDrop, Detail: "drop the MV, its target and Distributed tables, and the job"}}
		} else {
			c.Action = NoOp
			c.Reason = "not in the specs; kept (plan with -destroy to drop it)"
		}
		out = append(out, c)
	}
	for _, c := range out {
		preventDestroy(c)
	}
	return linkChanges(out, in)
}

// preventDestroy blocks a change that would drop or rebuild an MV whose spec
// sets prevent_destroy: the spec in the directory, or for an MV whose spec
// was removed, the one recorded with its job.
func preventDestroy(c *ResourceChange) {
	if (c.Action != Delete && c.Action != Replace) || c.Spec == nil || !c.Spec.PreventDestroy {
		return
	}
	verb := "destroy"
	if c.Action == Replace {
		verb = "rebuild"
	}
	c.Blocked = fmt.Sprintf("%s has prevent_destroy: true, and this plan would %s it (%s). "+
		"To allow it, set prevent_destroy: false in its spec and apply that first", c.Address(), verb, c.Reason)
	c.PreventDestroy = true
}

// recordedPreventDestroy reads prevent_destroy from the spec recorded with a
// job.
func recordedPreventDestroy(j *state.Job) bool {
	sp, err := specs.ParseJSON(j.Config)
	return err == nil && sp.PreventDestroy
}

func diffOne(c *ResourceChange, s *specs.Spec, live *Live, job *state.Job, replace bool) {
	db := s.Database
	c.Action = Create
	if job != nil {
		c.Action = Update
	}
	c.Reason = "new materialized view"
	if job != nil {
		c.Reason = "job " + string(job.Status)
	}
	if live == nil {
		c.Blocked = "no live state for this topology"
		return
	}
	if down := live.Unreachable(); len(down) == len(live.Nodes) {
		c.Blocked = "no ClickHouse node answered: " + strings.Join(down, "; ")
		c.Unreachable = down
		return
	}
	src := live.Table(db, s.SourceTable)
	if src == nil {
		c.Blocked = fmt.Sprintf("source table %s.%s does not exist, and no spec or live MV builds it", db, s.SourceTable)
		return
	}
	if miss := live.Missing(db, s.SourceTable); len(miss) > 0 {
		c.Blocked = fmt.Sprintf("source table %s.%s is missing on %s", db, s.SourceTable, strings.Join(miss, ", "))
		return
	}
	if s.Refresh != nil {
		if lack := lackRefresh(live); lack != "" {
			c.Blocked = "refreshable MVs need system.view_refreshes (ClickHouse 23.12 and later): " + lack + " does not have it"
			return
		}
	} else if mutableEngine(src.Engine) && !s.AllowMutableSource {
		c.Blocked = fmt.Sprintf("source table %s.%s is a %s: it stores a new row for every update of a row (as CDC does), so the MV would count every update as a new row. "+
			"Set allow_mutable_source: true in the spec if that is what you want", db, s.SourceTable, src.Engine)
		return
	}
	key := s.Backfill.KeyColumn
	kt := src.ColumnType(key)
	if s.Refresh != nil {
		kt = "UInt64" // no fence, no backfill: the key is not used
	}
	if kt == "" {
		c.Blocked = fmt.Sprintf("backfill key column %q is not a column of %s.%s: set backfill.key_column to a column that grows with every insert", key, db, s.SourceTable)
		return
	}
	if !integerType(kt) && !s.Backfill.Disabled {
		c.Blocked = fmt.Sprintf("backfill key column %q of %s.%s is %s: it must be an integer that grows with every insert", key, db, s.SourceTable, kt)
		return
	}
	c.Version, c.LiveVersion = 1, 1
	if job != nil {
		c.Version, c.LiveVersion = max(job.Version, 1), max(job.LiveVersion, 1)
		if job.SpecHash != specs.Hash(s) {
			c.Strategy = changeStrategy(s, job)
			if c.Strategy == StrategyRebuild {
				c.Version = c.LiveVersion + 1
			}
		} else if replace {
			if why := cannotReplace(s, job); why != "" {
				c.Action, c.Reason, c.Blocked = Change, "-replace", why
				return
			}
			c.Strategy, c.Version = StrategyRebuild, c.LiveVersion+1
		}
	}
	phys := sqlgen.Versioned(s, c.Version)
	c.TargetEngine = s.Engine
	if c.Cluster != "" && strings.HasPrefix(src.Engine, "Replicated") && !strings.HasPrefix(s.Engine, "Replicated") {
		// An MV fires only on the replica that received the INSERT: the
		// target must replicate for every replica to end up with the rows.
		e, err := sqlgen.ReplicatedEngine(s.Engine, sqlgen.ZKPath(db, phys.TargetTable))
		if err != nil {
			c.Blocked = err.Error()
			return
		}
		c.TargetEngine = e
	}

	objects := []string{s.TargetTable, s.Name}
	if c.Cluster != "" {
		objects = append(objects, s.DistributedTable)
	}
	if job == nil {
		if len(live.Present(db, s.Name)) > 0 || len(live.Present(db, s.TargetTable)) > 0 {
			adoptOne(c, s, live)
			return
		}
		for _, o := range objects {
			if p := live.Present(db, o); len(p) > 0 {
				c.Blocked = fmt.Sprintf("%s.%s already exists on %s and shirath has no job for it, without the MV and target it would read: drop it or choose another name", db, o, strings.Join(p, ", "))
				return
			}
		}
		c.Reason = "new materialized view"
		c.Steps = createSteps(s, c.Cluster, live)
		if down := live.Unreachable(); len(down) > 0 {
			// Every node needs the objects and the fence must hold on every
			// shard: a creation cannot run with a node missing.
			c.Blocked = "nodes do not answer: " + strings.Join(down, "; ") + ": creating an MV needs every node of the cluster"
			c.Unreachable = down
		}
		return
	}

	if job.SpecHash != specs.Hash(s) {
		diffChange(c, s, live, job)
		return
	}
	if replace {
		diffChange(c, s, live, job)
		if c.Blocked == "" {
			c.Reason = fmt.Sprintf("-replace: rebuild beside live version %d as version %d (%s.%s) from the whole source, then switch readers at once", c.LiveVersion, c.Version, s.Database, sqlgen.VersionedName(s.TargetTable, c.Version))
		}
		return
	}
	if job.Status == state.StatusNeedsAttention {
		c.Reason = "the job needs attention"
		c.Blocked = "job " + s.Name + " needs attention: " + job.ErrorMessage
		return
	}
	if job.Status != state.StatusCompleted {
		c.Reason = resumeReason(job)
		c.Steps = resumeSteps(phys, job)
		if job.Changing() {
			c.Reason = fmt.Sprintf("change to version %d: %s", job.Version, c.Reason)
			c.Steps = append(c.Steps, switchSteps(s, c, live)...)
			blockOnDown(c, live)
		}
		return
	}
	if job.Changing() {
		c.Reason = fmt.Sprintf("version %d is built: switch readers to it and drop version %d", job.Version, job.LiveVersion)
		c.Steps = switchSteps(s, c, live)
		blockOnDown(c, live)
		return
	}
	if was := recordedSchedule(job); s.Refresh != nil && was != s.Schedule() {
		c.Reason = fmt.Sprintf("refresh schedule changed from %s to %s: changed in place", was, s.Schedule())
		c.Steps = []Step{{Kind: StepModifyRefresh, Detail: fmt.Sprintf("ALTER TABLE %s.%s MODIFY REFRESH %s", db, phys.Name, s.Schedule())}}
		blockOnDown(c, live)
		return
	}
	// Completed: look for drift on every node.
	var lost []string
	for _, o := range []string{phys.TargetTable, phys.Name} {
		if m := live.Missing(db, o); len(m) > 0 {
			lost = append(lost, fmt.Sprintf("%s.%s missing on %s", db, o, strings.Join(m, ", ")))
		}
	}
	if len(lost) == 0 && job.Applied["mv"].Server != "" {
		// A view that differs from what was applied may have been changed
		// by hand, or the server may print it differently after an upgrade:
		// a rebuild would drop the target, so it is shown, not done.
		var differs []string
		var live0 string
		for _, ns := range live.Nodes {
			if t, ok := ns.Tables[db+"."+phys.Name]; ok && squashSpace(t.CreateQuery) != squashSpace(job.Applied["mv"].Server) {
				differs = append(differs, ns.Node.Addr)
				live0 = t.CreateQuery
			}
		}
		if len(differs) > 0 {
			c.Action = Change
			c.Reason = fmt.Sprintf("%s.%s on %s differs from what shirath applied", db, s.Name, strings.Join(differs, ", "))
			c.Diff = LineDiff(job.Applied["mv"].Server+"\n", live0+"\n")
			c.Blocked = "the live view is not the one shirath created (changed by hand, or printed differently by an upgraded server). " +
				"If it was changed, rebuild it beside the live one with `shirath apply -replace " + db + "." + s.Name + "`; shirath does not drop a target on its own for this"
			return
		}
	}
	if len(lost) > 0 {
		// Rows inserted while an MV was missing never reached its target:
		// only a rebuild makes the target exact again.
		c.Action = Replace
		c.Version, c.LiveVersion = 1, 1
		c.Reason = strings.Join(lost, "; ") + ": rows inserted meanwhile are not in the target, so it is rebuilt"
		c.Steps = append([]Step{{Kind: StepDrop, Detail: "drop the MV, its target and Distributed tables"}}, createSteps(s, c.Cluster, live)...)
		return
	}
	if left := leftovers(s, c.LiveVersion, live); len(left) > 0 {
		c.Reason = fmt.Sprintf("version %d is live; what earlier versions left is still there (a DROP that did not end): %s", c.LiveVersion, strings.Join(left, "; "))
		c.Steps = []Step{{Kind: StepDropOld, Detail: "drop " + strings.Join(left, "; ")}}
		return
	}
	if c.Cluster != "" {
		if m := live.Missing(db, s.DistributedTable); len(m) > 0 {
			c.Reason = fmt.Sprintf("%s.%s missing on %s", db, s.DistributedTable, strings.Join(m, ", "))
			c.Steps = []Step{{Kind: StepCreateDistributed, Detail: "create the Distributed table where it is missing", Nodes: m}}
			return
		}
	}
	if down := live.Unreachable(); len(down) > 0 {
		c.Action = NoOp
		c.Reason = "up to date on the nodes that answered; not checked: " + strings.Join(down, "; ")
		return
	}
	c.Action = NoOp
	c.Reason = "up to date"
	if job.DataNotVerified() {
		c.Reason = NotVerifiedReason(job)
	}
}

// NotVerifiedReason says that an adopted MV's data was never checked.
func NotVerifiedReason(j *state.Job) string {
	return fmt.Sprintf("up to date; adopted %s, data not verified (run shirath verify %s)", j.AdoptedAt.UTC().Format("2006-01-02 15:04:05Z"), j.Name)
}

func createSteps(s *specs.Spec, cluster string, live *Live) []Step {
	db, key := s.Database, s.Backfill.KeyColumn
	where := "on the node"
	if cluster != "" {
		where = "ON CLUSTER " + cluster
	}
	if s.Refresh != nil {
		steps := []Step{
			{Kind: StepCreateTarget, Detail: fmt.Sprintf("create %s.%s %s", db, s.TargetTable, where)},
			{Kind: StepCreateMV, Detail: fmt.Sprintf("create %s.%s REFRESH %s TO %s.%s %s: the whole query on schedule; no fence, no backfill", db, s.Name, s.Schedule(), db, s.TargetTable, where)},
		}
		if cluster != "" {
			steps = append(steps, Step{Kind: StepCreateDistributed, Detail: fmt.Sprintf("create %s.%s ON CLUSTER %s over %s.%s", db, s.DistributedTable, cluster, db, s.TargetTable)})
		}
		return append(steps, Step{Kind: StepFirstRefresh, Detail: "wait for the first refresh to succeed (system.view_refreshes)"})
	}
	steps := []Step{
		{Kind: StepCreateTarget, Detail: fmt.Sprintf("create %s.%s %s", db, s.TargetTable, where)},
		{Kind: StepFence, Detail: fmt.Sprintf("F = max(%s) of %s.%s + headroom for the observed insert rate", key, db, s.SourceTable)},
		{Kind: StepCreateMV, Detail: fmt.Sprintf("create %s.%s TO %s.%s %s with the fence %s > F in its WHERE; wait for INSERTs already running; check max(%s) <= F", db, s.Name, db, s.TargetTable, where, key, key)},
	}
	if cluster != "" {
		steps = append(steps, Step{Kind: StepCreateDistributed, Detail: fmt.Sprintf("create %s.%s ON CLUSTER %s over %s.%s", db, s.DistributedTable, cluster, db, s.TargetTable)})
	}
	if !s.Backfill.Disabled {
		steps = append(steps,
			Step{Kind: StepWait, Detail: fmt.Sprintf("wait until the source passes F, then %s", s.Backfill.SettleDelay.Duration)},
			Step{Kind: StepBackfill, Detail: fmt.Sprintf("INSERT INTO %s.%s SELECT ... WHERE %s > lo AND %s <= hi, server side, batches of about %s, up to F", db, s.TargetTable, key, key, s.Backfill.BatchDuration.Duration)},
		)
		if s.OptimizeAfterBackfill() {
			steps = append(steps, Step{Kind: StepOptimize, Detail: fmt.Sprintf("OPTIMIZE TABLE %s.%s FINAL%s", db, s.TargetTable, onEveryCopy(cluster))})
		}
	}
	return steps
}

func onEveryCopy(cluster string) string {
	if cluster == "" {
		return ""
	}
	return " on every copy (one replica per shard when the target replicates)"
}

func resumeReason(j *state.Job) string {
	switch {
	case !j.FenceVerified:
		return fmt.Sprintf("job %s: the fence was never verified; start over", j.Status)
	case j.Status == state.StatusFailed:
		return "the last apply failed: " + j.ErrorMessage
	case j.CutoffID != nil:
		last := "start"
		if j.LastProcessedID != nil {
			last = fmt.Sprint(*j.LastProcessedID)
		}
		return fmt.Sprintf("backfill %s at %s of cutoff %d (%d of %d rows)", j.Status, last, *j.CutoffID, j.ProcessedRows, j.TotalRows)
	}
	return "job " + string(j.Status)
}

// resumeSteps continues the job's creation; s carries the physical names of
// the job's version.
func resumeSteps(s *specs.Spec, j *state.Job) []Step {
	if !j.FenceVerified {
		return append([]Step{{Kind: StepDrop, Detail: "drop what an interrupted creation left"}}, createSteps(s, j.ClusterName, nil)...)
	}
	steps := []Step{{Kind: StepResumeBackfill, Detail: "continue the backfill from the recorded progress of every shard"}}
	if s.OptimizeAfterBackfill() && !s.Backfill.Disabled {
		steps = append(steps, Step{Kind: StepOptimize, Detail: fmt.Sprintf("OPTIMIZE TABLE %s.%s FINAL", s.Database, s.TargetTable)})
	}
	return steps
}

// specDiff shows the applied SQL next to the SQL the new spec gives.
func specDiff(j *state.Job, s *specs.Spec, c *ResourceChange) string {
	var old []string
	for _, k := range []string{"target", "mv"} {
		if a, ok := j.Applied[k]; ok {
			old = append(old, a.SQL)
		}
	}
	var fence int64
	if j.CutoffID != nil {
		fence = *j.CutoffID
	}
	// The applied version's names: the diff shows what the spec changed,
	// not the physical names of the version that will replace it.
	m := sqlgen.MV{Spec: sqlgen.Versioned(s, max(j.Version, 1)), Cluster: c.Cluster, TargetEngine: c.TargetEngine, Casts: c.Casts}
	var cur []string
	if q, err := m.CreateTarget(c.Cluster != ""); err == nil {
		cur = append(cur, q)
	}
	r := sqlgen.Range{After: &fence}
	if j.CutoffID == nil && j.AdoptedAt != nil {
		r = sqlgen.Range{} // adopted: the live view has no fence
	}
	if q, err := m.CreateMVOver(r, c.Cluster != ""); err == nil {
		cur = append(cur, q)
	}
	return LineDiff(strings.Join(old, "\n")+"\n", strings.Join(cur, "\n")+"\n")
}

func squashSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

// LineDiff renders a line diff: "- " old lines, "+ " new lines, "  " common.
func LineDiff(a, b string) string {
	a, b = breakSQL(a), breakSQL(b)
	dmp := diffmatchpatch.New()
	ca, cb, lines := dmp.DiffLinesToChars(a, b)
	diffs := dmp.DiffCharsToLines(dmp.DiffMain(ca, cb, false), lines)
	var out strings.Builder
	for _, d := range diffs {
		prefix := "  "
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			prefix = "- "
		case diffmatchpatch.DiffInsert:
			prefix = "+ "
		}
		for _, l := range strings.SplitAfter(d.Text, "\n") {
			if l == "" {
				continue
			}
			out.WriteString(prefix + strings.TrimSuffix(l, "\n") + "\n")
		}
	}
	return out.String()
}

// breakSQL puts the main clauses of a statement on their own lines, so that
// a line diff points at the clause that changed.
func breakSQL(s string) string {
	for _, kw := range []string{" ENGINE = ", " PARTITION BY ", " ORDER BY ", " AS SELECT ", " FROM ", " WHERE ", " GROUP BY ", " HAVING ", " TO "} {
		s = strings.ReplaceAll(s, kw, "\n"+strings.TrimPrefix(kw, " "))
	}
	return s
}

// lackRefresh names the nodes without refreshable MVs; "" when every node
// that answered has them.
func lackRefresh(live *Live) string {
	var out []string
	for _, ns := range live.Nodes {
		if ns.Node.Err == nil && !ns.Node.Features.RefreshableMVs {
			out = append(out, fmt.Sprintf("%s (ClickHouse %s)", ns.Node.Addr, ns.Node.Version))
		}
	}
	return strings.Join(out, ", ")
}

// recordedSchedule is the refresh schedule of the spec recorded with a job.
func recordedSchedule(j *state.Job) string {
	sp, err := specs.ParseJSON(j.Config)
	if err != nil {
		return ""
	}
	return sp.Schedule()
}

// leftovers lists what the versions before live and the switches to it left
// (sqlgen.Leftovers) on the nodes whose readers already read version live,
// as "db.table on node, node".
func leftovers(s *specs.Spec, live int, l *Live) []string {
	physT, physD := sqlgen.VersionedName(s.TargetTable, live), sqlgen.VersionedName(s.DistributedTable, live)
	var out []string
	for _, name := range sqlgen.Leftovers(s, live) {
		var on []string
		for _, ns := range l.Nodes {
			if ns.Err != nil || ns.Tables[s.Database+"."+name] == nil {
				continue
			}
			t, d := ns.Tables[s.Database+"."+s.TargetTable], ns.Tables[s.Database+"."+s.DistributedTable]
			if t == nil || !sqlgen.ReadersOver(t.Engine, t.EngineFull, physT) {
				continue // not switched there: never what readers may see
			}
			if name == physD && (d == nil || !sqlgen.DistributedOver(d.Engine, d.EngineFull, physT)) {
				continue
			}
			on = append(on, ns.Node.Addr)
		}
		if len(on) > 0 {
			out = append(out, fmt.Sprintf("%s.%s on %s", s.Database, name, strings.Join(on, ", ")))
		}
	}
	return out
}

// cannotReplace says why apply -replace cannot rebuild the job's MV now, or
// "" when it can: only a completed MV is rebuilt beside itself.
func cannotReplace(s *specs.Spec, job *state.Job) string {
	switch {
	case s.Refresh != nil:
		return "-replace rebuilds an MV and its backfill; a refreshable MV refills its target at each refresh (SYSTEM REFRESH VIEW " + s.Database + "." + s.Name + " runs one now)"
	case job.Changing():
		return fmt.Sprintf("version %d is being built and not yet switched to: apply without -replace to finish it", job.Version)
	case job.Status != state.StatusCompleted:
		return fmt.Sprintf("the job is %s: -replace rebuilds a completed MV; apply without it to finish this one, or rebuild it with `shirath mv backfill %s --restart`", job.Status, s.Name)
	}
	return ""
}
