package planner

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// Changes ripple down a chain. ClickHouse binds an MV to its source by name
// (CLICKHOUSE_NOTES, "bind by name"), and a changed MV's readers' name
// {target_table} is a Merge table over its live version, which receives no
// INSERT: so a downstream MV reads the upstream's physical version
// ({target_table}__vN; on 18.16 its view reads the MV's name {name}__vN,
// whose writes are the ones that fire it), recorded with its job
// (state.Reads). When the upstream is rebuilt, by a change or a Replace, the
// version it reads goes away, and every MV downstream is rebuilt too, over
// the new version:
//
//  1. the upstream's version N is built and backfilled; its switch is held
//     (HoldSwitch) while a downstream MV does not read version N yet;
//  2. each downstream MV is rebuilt beside its live version over version N
//     (deferred until version N is complete), backfilled, and switched: its
//     old version keeps reading the upstream's live version until then, so
//     every level stays complete for its readers;
//  3. once every downstream MV reads version N, the upstream switches.
//
// apply runs these as rounds (a deferred change is planned again once what
// it waits for is done); each step is read back from the jobs and the server
// by the next plan, so a crash anywhere is continued.

// linkRead sets what a downstream MV c reads of its upstream upc (which
// builds table), rebuilds it when that version changed, and defers it while
// the version it must read is not complete.
func linkRead(c, upc *ResourceChange, job, upJob *state.Job, table string, live *Live) {
	cascade := live == nil || cascadesThroughTarget(live)
	want, rebuilt, pending := upstreamVersion(upc, upJob, cascade)
	if c.Action == Delete || c.Action == Adopt {
		return
	}
	if job == nil {
		// A new MV: built over the upstream's version once it is complete.
		setReads(c, want)
		if pending != "" {
			defer_(c, upc.Address(), table, pending)
		}
		return
	}
	have := job.Reads
	if have == nil {
		have = legacyReads(upc, cascade)
	}
	// A Replace builds the same names again, under a job not known yet.
	same := have.Same(want) && upc.Action != Replace
	switch {
	case c.Action == Replace || c.Action == Change && c.Strategy == StrategyRebuild:
		setReads(c, want) // rebuilt anyway: over the version it must read
	case c.Action == Change && c.Strategy == StrategyModifyQuery && !same && c.Blocked == "":
		c.Blocked = fmt.Sprintf("its source %s is rebuilt (%s version %d): %s is rebuilt over it, which change_strategy: modify_query cannot do; remove change_strategy", table, upc.Address(), want.Version, c.Address())
		return
	case c.Action == Change && c.Strategy != StrategyRebuild, same, c.Blocked != "":
		setReads(c, have) // what its objects read
		if c.Action == NoOp || c.Blocked != "" || !same {
			return
		}
	default:
		ripple(c, job, have, want, table, rebuilt, live)
	}
	if pending != "" {
		defer_(c, upc.Address(), table, pending)
	}
}

func setReads(c *ResourceChange, r *state.Reads) {
	c.Reads, c.ViewSource = r, ""
	if r.View != r.Table {
		c.ViewSource = r.View
	}
}

// upstreamVersion says which version of the upstream a downstream MV must
// read: the one a change builds (or the one a Replace builds again), else the
// live one; whether the upstream is rebuilt by this plan or a change under
// way; and, when that version is not complete yet, why.
func upstreamVersion(upc *ResourceChange, upJob *state.Job, cascade bool) (want *state.Reads, rebuilt bool, pending string) {
	v, id := 1, int64(0)
	if upJob != nil {
		v, id = max(upJob.LiveVersion, 1), upJob.ID
	}
	switch {
	case upc.Blocked != "":
		pending = "it cannot be applied: " + upc.Blocked
	case upc.Action == Create || upJob == nil:
		pending = "this apply must first create it"
	case upc.Action == Replace:
		v, id, rebuilt, pending = 1, 0, true, "this apply must first rebuild it"
	case upc.Action == Change && upc.Strategy == StrategyRebuild:
		v, rebuilt, pending = upc.Version, true, fmt.Sprintf("this apply must first build its version %d", upc.Version)
	case upJob.Changing() && !(upc.Action == Change && upc.Strategy == StrategyAbandon):
		v, rebuilt = upJob.Version, true
		if upJob.Status != state.StatusCompleted {
			pending = fmt.Sprintf("its version %d is not complete (%s)", v, upJob.Status)
		}
	case upJob.Status != state.StatusCompleted:
		pending = "its job is " + string(upJob.Status)
	}
	return readsOf(upc.Spec, upc.Address(), id, v, cascade), rebuilt, pending
}

func readsOf(up *specs.Spec, addr string, job int64, v int, cascade bool) *state.Reads {
	r := &state.Reads{Upstream: addr, Job: job, Version: v, Table: sqlgen.VersionedName(up.TargetTable, v)}
	r.View = r.Table
	if !cascade {
		r.View = sqlgen.VersionedName(up.Name, v)
	}
	return r
}

// legacyReads is what a job recorded before Reads was kept reads: version
// 1's names (a change of an MV that others read was refused then).
func legacyReads(upc *ResourceChange, cascade bool) *state.Reads {
	return readsOf(upc.Spec, upc.Address(), 0, 1, cascade)
}

// ripple turns c into a rebuild over the version want of its upstream.
func ripple(c *ResourceChange, job *state.Job, have, want *state.Reads, table string, rebuilt bool, live *Live) {
	s := c.Spec
	why := fmt.Sprintf("its source %s is rebuilt (%s version %d)", table, want.Upstream, want.Version)
	if !rebuilt {
		// The upstream's live version is not the one this MV reads (a
		// change of the upstream abandoned, or a Replace done by another
		// apply).
		why = fmt.Sprintf("it reads %s, and its source %s is now %s version %d", have.Table, table, want.Upstream, want.Version)
	}
	c.Action, c.Strategy, c.Diff, c.Casts = Change, StrategyRebuild, "", nil
	c.LiveVersion = max(job.LiveVersion, 1)
	c.Version = c.LiveVersion + 1
	setReads(c, want)
	if c.TargetEngine != s.Engine {
		// The Replicated form carries the version's own ZooKeeper path.
		if e, err := sqlgen.ReplicatedEngine(s.Engine, sqlgen.ZKPath(s.Database, sqlgen.VersionedName(s.TargetTable, c.Version))); err == nil {
			c.TargetEngine = e
		}
	}
	c.Reason = fmt.Sprintf("must be rebuilt: %s. Rebuild beside live version %d as version %d (%s.%s) over %s.%s, then switch readers at once",
		why, c.LiveVersion, c.Version, s.Database, sqlgen.VersionedName(s.TargetTable, c.Version), s.Database, want.Table)
	c.Steps = nil
	if job.Changing() {
		c.Steps = append(c.Steps, Step{Kind: StepDrop, Detail: fmt.Sprintf("drop the unfinished version %d (built over another version of %s; readers never saw it)", job.Version, want.Upstream)})
	}
	phys := sqlgen.Versioned(s, c.Version)
	phys.SourceTable = want.Table
	c.Steps = append(c.Steps, createSteps(phys, c.Cluster, live)...)
	c.Steps = append(c.Steps, switchSteps(s, c, live)...)
	blockOnDown(c, live)
}

// holdSwitches holds the switch of every change whose readers must first be
// rebuilt over its new version, and refuses a change that would stop feeding
// an MV that is not among the specs planned (made by hand, or whose spec is
// not in the set: the daemon plans an MV with its upstream MVs only).
func holdSwitches(out []*ResourceChange, in Input, jobs map[string]*state.Job) {
	desired := map[string]bool{}
	for _, d := range in.Desired {
		desired[d.Spec.Database+"."+d.Spec.Name] = true
	}
	readers := map[string][]*ResourceChange{}
	for _, c := range out {
		for _, dep := range c.DependsOn {
			if dep.Table != "" && desired[c.Address()] && c.Spec != nil && c.Spec.Refresh == nil && c.Action != Delete {
				readers[dep.Address] = append(readers[dep.Address], c)
			}
		}
	}
	for _, c := range out {
		job := jobs[c.Address()]
		if c.Spec == nil || job == nil || c.Blocked != "" || c.Deferred != "" {
			continue
		}
		switches := c.Action == Change && c.Strategy == StrategyRebuild ||
			c.Action == Update && job.Changing() && c.Strategy != StrategyAbandon
		if !switches {
			continue
		}
		if rs := unplanned(in.Live[c.Cluster], c.Spec, job, desired); len(rs) > 0 {
			c.Blocked = fmt.Sprintf("%s read %s.%s and are not among the specs planned: rebuilding %s would stop feeding them (they read it by name). "+
				"Apply it with shirath apply on a directory holding their specs, which rebuilds them along (the daemon plans an MV with its upstream MVs only), or drop them first",
				strings.Join(rs, ", "), c.Database, c.Spec.TargetTable, c.Address())
			continue
		}
		want := readsOf(c.Spec, c.Address(), job.ID, c.Version, in.Live[c.Cluster] == nil || cascadesThroughTarget(in.Live[c.Cluster]))
		var wait, stuck []string
		for _, r := range readers[c.Address()] {
			rj := jobs[r.Address()]
			if rj == nil || (!rj.Changing() && rj.Reads.Same(want)) {
				continue // a new MV is built over the live version once this one is settled
			}
			wait = append(wait, r.Address())
			if r.Blocked != "" {
				stuck = append(stuck, r.Address()+": "+r.Blocked)
			}
		}
		if len(wait) == 0 {
			continue
		}
		sort.Strings(wait)
		if len(stuck) > 0 {
			c.Blocked = fmt.Sprintf("MVs reading %s.%s must be rebuilt over version %d before it switches, and cannot be: %s", c.Database, c.Spec.TargetTable, c.Version, strings.Join(stuck, "; "))
			continue
		}
		hold := fmt.Sprintf("the switch to version %d waits until %s, which read %s.%s, are rebuilt over %s.%s and switched (downstream first: readers of every level see the old chain until then)",
			c.Version, strings.Join(wait, ", "), c.Database, c.Spec.TargetTable, c.Database, want.Table)
		if c.Action == Update && job.Status == state.StatusCompleted {
			// Built: only the switch is left, and it waits.
			c.Deferred = hold
			c.Steps = []Step{{Kind: StepWaitDownstream, Detail: hold}}
			continue
		}
		c.HoldSwitch = hold
		for i, st := range c.Steps {
			if st.Kind == StepSwitch {
				c.Steps = append(c.Steps[:i:i], append([]Step{{Kind: StepWaitDownstream, Detail: "hold: " + hold}}, c.Steps[i:]...)...)
				break
			}
		}
	}
}

// unplanned lists the live MVs that read the target of s (by any of its
// names) and are not among the desired specs: a rebuild cannot take them
// along.
func unplanned(live *Live, s *specs.Spec, job *state.Job, desired map[string]bool) []string {
	if live == nil {
		return nil
	}
	var out []string
	for _, r := range readersOf(live, s, job) {
		if !desired[r] && !desired[ownerOf(r)] {
			out = append(out, r)
		}
	}
	return out
}

// ownerOf maps the physical name of an MV's version (db.name__vN) to the MV.
func ownerOf(addr string) string {
	i := strings.LastIndex(addr, "__v")
	if i <= 0 || i+3 == len(addr) || strings.Trim(addr[i+3:], "0123456789") != "" {
		return addr
	}
	return addr[:i]
}
