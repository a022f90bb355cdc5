package planner

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// Chains of MVs: a spec whose source_table is another MV's target (or its
// Distributed table) reads what that MV builds, and depends on it. The
// graph orders a plan (upstream first; destroys downstream first), defers a
// downstream MV until its source is complete (its fence and backfill read
// the source: an upstream still backfilling would add rows below the fence
// after the downstream read them), and refuses to destroy an MV that a spec
// still reads.

// Dependency is one edge: the change reads Table, built by the MV Address;
// or, with no Table, it is a refreshable MV refreshed after Address.
type Dependency struct {
	Address string `json:"address"`
	Table   string `json:"table"`
}

func (d Dependency) String() string {
	if d.Table == "" {
		return "refreshed after " + d.Address + " (depends_on)"
	}
	return fmt.Sprintf("reads %s, built by %s", d.Table, d.Address)
}

// producers maps "db.table" to the MV ("db.name") that builds it: its target
// and its Distributed table.
func producers(ss []*specs.Spec) map[string]string {
	out := map[string]string{}
	for _, s := range ss {
		addr := s.Database + "." + s.Name
		for _, t := range []string{s.TargetTable, s.DistributedTable} {
			if t != "" {
				out[s.Database+"."+t] = addr
			}
		}
	}
	return out
}

// CheckCycles fails when the specs read each other in a cycle (through
// source_table, or a refreshable MV's depends_on), naming every MV in it
// and its file. It needs no server (validate calls it).
func CheckCycles(ss []*specs.Spec) error {
	prod := producers(ss)
	next := map[string][]string{} // a spec's address -> the specs it reads from
	where := map[string]string{}
	var addrs []string
	for _, s := range ss {
		addr := s.Database + "." + s.Name
		addrs = append(addrs, addr)
		if up, ok := prod[s.Database+"."+s.SourceTable]; ok {
			next[addr] = append(next[addr], up)
		}
		next[addr] = append(next[addr], s.DependsOnAddresses()...)
		if s.Origin.File != "" {
			where[addr] = fmt.Sprintf(" (%s:%d)", s.Origin.File, s.Origin.Line)
		}
	}
	sort.Strings(addrs)
	const (
		unseen = iota
		onPath
		done
	)
	color := map[string]int{}
	var path []string
	var visit func(a string) error
	visit = func(a string) error {
		color[a] = onPath
		path = append(path, a)
		for _, b := range next[a] {
			switch color[b] {
			case onPath:
				i := slices.Index(path, b)
				var cycle []string
				for _, x := range append(slices.Clone(path[i:]), b) {
					cycle = append(cycle, x+where[x])
				}
				return fmt.Errorf("the specs read each other in a cycle: %s; each reads the target of the next (or depends on it): break the cycle", strings.Join(cycle, " -> "))
			case unseen:
				if err := visit(b); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		color[a] = done
		return nil
	}
	for _, a := range addrs {
		if color[a] == unseen {
			if err := visit(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// linkChanges adds the edges to the changes, defers those whose upstream is
// not complete, refuses to destroy an MV that a spec reads, and orders the
// plan: destroys first, downstream before upstream, then the others,
// upstream before downstream (each group by address otherwise).
func linkChanges(out []*ResourceChange, in Input) []*ResourceChange {
	var desired, all []*specs.Spec
	for _, d := range in.Desired {
		desired = append(desired, d.Spec)
	}
	byAddr := map[string]*ResourceChange{}
	for _, c := range out {
		byAddr[c.Address()] = c
		if c.Spec != nil {
			all = append(all, c.Spec)
		}
	}
	jobs := map[string]*state.Job{}
	for _, j := range in.Jobs {
		jobs[j.Database+"."+j.Name] = j
	}
	prod := producers(all)
	readers := map[string][]string{} // upstream address -> desired specs reading it
	type link struct {
		c, up *ResourceChange
		table string
	}
	var reads []link
	for _, c := range out {
		if c.Spec == nil {
			continue
		}
		for _, dep := range c.Spec.DependsOnAddresses() {
			c.DependsOn = append(c.DependsOn, Dependency{Address: dep})
			if reason := unsettled(byAddr[dep], jobs[dep]); reason != "" && c.Action != Delete && c.Action != NoOp {
				defer_(c, dep, "depends_on", reason)
			}
		}
		table := c.Database + "." + c.Spec.SourceTable
		up, ok := prod[table]
		if !ok || up == c.Address() {
			continue
		}
		c.DependsOn = append(c.DependsOn, Dependency{Address: up, Table: table})
		if c.Action != Delete {
			readers[up] = append(readers[up], c.Address())
		}
		upc := byAddr[up]
		if upc == nil || upc.Spec == nil || c.Action == Delete {
			continue
		}
		// These two override what the diff found (the source may not exist
		// yet): they say what to write instead.
		if upc.Spec.Refresh != nil && !upc.Spec.Refresh.Append && c.Spec.Refresh == nil {
			c.Blocked = fmt.Sprintf("%s is a refreshable MV: each refresh replaces %s at once, which fires no MV reading it; make %s refreshable too, with depends_on: [%s]",
				up, table, c.Address(), upc.Spec.Name)
			continue
		}
		if c.Spec.SourceTable == upc.Spec.DistributedTable && c.Spec.SourceTable != upc.Spec.TargetTable {
			c.Blocked = fmt.Sprintf("source_table %s is the Distributed table of %s: an MV fires on the INSERTs into the table it reads, and rows reach %s on each node; read it instead",
				table, up, upc.Spec.TargetTable)
			continue
		}
		if c.Spec.Refresh != nil {
			// A refreshable MV reads its source with a SELECT on
			// schedule: the readers' name serves it, whatever version.
			if reason := unsettled(upc, jobs[up]); reason != "" && c.Action != NoOp {
				defer_(c, up, table, reason)
			}
			continue
		}
		reads = append(reads, link{c, upc, table})
	}
	// Upstream first: a downstream MV sees what its upstream's change
	// became (a rebuild rippling down a chain of several levels).
	rank := map[*ResourceChange]int{}
	for i, c := range orderChanges(slices.Clone(out)) {
		rank[c] = i
	}
	sort.SliceStable(reads, func(i, k int) bool { return rank[reads[i].c] < rank[reads[k].c] })
	for _, l := range reads {
		linkRead(l.c, l.up, jobs[l.c.Address()], jobs[l.up.Address()], l.table, in.Live[l.c.Cluster])
	}
	holdSwitches(out, in, jobs)
	for _, c := range out {
		if c.Action == Delete && len(readers[c.Address()]) > 0 && c.Blocked == "" {
			sort.Strings(readers[c.Address()])
			c.Blocked = fmt.Sprintf("%s reads what %s builds (%s): destroy or change it first",
				strings.Join(readers[c.Address()], ", "), c.Address(), strings.Join(producedBy(prod, c.Address()), ", "))
		}
	}
	return orderChanges(out)
}

// cascadesThroughTarget: whether every node that answered fires the MVs
// reading an MV's target when that MV writes into it (else they must read
// the MV's name; see chclient.Version.CascadesThroughTarget).
func cascadesThroughTarget(l *Live) bool {
	for _, ns := range l.Nodes {
		if ns.Node.Err == nil && !ns.Node.Version.CascadesThroughTarget() {
			return false
		}
	}
	return true
}

// unsettled says why an upstream MV is not yet a complete source; "" when it
// is.
func unsettled(up *ResourceChange, job *state.Job) string {
	switch {
	case up == nil:
		return ""
	case up.Blocked != "":
		return "it cannot be applied: " + up.Blocked
	case up.Action == Delete:
		return "it is destroyed by this plan"
	case up.Action != NoOp:
		return fmt.Sprintf("this apply must first %s it", verbOf(up.Action))
	case job == nil:
		return ""
	case job.Status != state.StatusCompleted:
		return "its job is " + string(job.Status)
	}
	return ""
}

func verbOf(a Action) string {
	switch a {
	case Create:
		return "create"
	case Change, Replace:
		return "rebuild"
	}
	return "complete"
}

// defer_ replaces what the diff found (the source may not exist yet) with a
// deferred change: apply plans it again once its upstream is complete.
func defer_(c *ResourceChange, up, table, reason string) {
	if c.Action == NoOp {
		return
	}
	if c.JobID == 0 {
		c.Action = Create
	}
	c.Blocked, c.Diff, c.Casts = "", "", nil
	c.Deferred = fmt.Sprintf("waits for %s (%s): %s; planned again once it is complete", up, table, reason)
	c.Steps = []Step{{Kind: StepWaitUpstream, Detail: c.Deferred}}
}

func producedBy(prod map[string]string, addr string) []string {
	var out []string
	for t, a := range prod {
		if a == addr {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// orderChanges puts destroys first, downstream before upstream, then the
// other changes, upstream before downstream; ties by address.
func orderChanges(out []*ResourceChange) []*ResourceChange {
	depth := map[string]int{}
	byAddr := map[string]*ResourceChange{}
	for _, c := range out {
		byAddr[c.Address()] = c
	}
	var level func(c *ResourceChange, seen map[string]bool) int
	level = func(c *ResourceChange, seen map[string]bool) int {
		if d, ok := depth[c.Address()]; ok {
			return d
		}
		if seen[c.Address()] {
			return 0 // a cycle: reported by CheckCycles
		}
		seen[c.Address()] = true
		d := 0
		for _, dep := range c.DependsOn {
			if up := byAddr[dep.Address]; up != nil {
				d = max(d, level(up, seen)+1)
			}
		}
		depth[c.Address()] = d
		return d
	}
	for _, c := range out {
		level(c, map[string]bool{})
	}
	sort.SliceStable(out, func(i, k int) bool {
		a, b := out[i], out[k]
		if (a.Action == Delete) != (b.Action == Delete) {
			return a.Action == Delete
		}
		da, db := depth[a.Address()], depth[b.Address()]
		if a.Action == Delete {
			da, db = -da, -db
		}
		if da != db {
			return da < db
		}
		return a.Address() < b.Address()
	})
	return out
}

// WithUpstream returns s and, from all, the specs it reads from, directly or
// through others: what a plan of s alone needs to see its chain.
func WithUpstream(all []*specs.Spec, s *specs.Spec) []*specs.Spec {
	prod := producers(all)
	byAddr := map[string]*specs.Spec{}
	for _, x := range all {
		byAddr[x.Database+"."+x.Name] = x
	}
	out := []*specs.Spec{s}
	seen := map[string]bool{s.Database + "." + s.Name: true}
	for cur := s; ; {
		up, ok := prod[cur.Database+"."+cur.SourceTable]
		if !ok || seen[up] || byAddr[up] == nil {
			return out
		}
		seen[up] = true
		cur = byAddr[up]
		out = append(out, cur)
	}
}
