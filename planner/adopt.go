package planner

import (
	"fmt"
	"strings"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/specs"
)

// Adoption: live objects carry a spec's names and shirath has no job for
// them (an MV made by hand, or by another tool). When they match the spec,
// apply records the job as completed at version 1 without any DDL or
// backfill; when they differ, apply adopts them as version 1 and changes
// them at once through the change path (build beside, then switch).
//
// How "match" is decided. The live side is what the server prints: the
// target's columns and types from system.columns, its keys from
// system.tables, its engine from engine_full, and the view's query from its
// create_table_query. The spec's side cannot be printed by the server
// without creating objects: 18.16 has no formatQuery and no EXPLAIN SYNTAX,
// and creating the spec's view, even in a scratch database over a copy of
// the source, is DDL on every plan (and a view over the real source would
// fire on every insert). So both sides are brought to one form here:
// types and engines through the spec's own parsers (Decimal(18,2) and
// Decimal(18, 2), SummingMergeTree and SummingMergeTree() are equal), keys
// without spaces, backquotes and enclosing parentheses ("(category)" on
// 26.x, "category" on 18.16), and both queries parsed and printed by
// clickhouse-sql-parser, the source replaced by one placeholder (the server
// qualifies it with the database and upper-cases keywords). A difference
// that only this normalisation misses shows as a change, never as a match:
// the cost of a miss is a rebuild, not a wrong adoption.

// adoptOne plans the adoption of the live objects at the spec's names.
// c.TargetEngine is set.
func adoptOne(c *ResourceChange, s *specs.Spec, live *Live) {
	db := s.Database
	c.Action = Adopt
	c.Reason = "objects exist at the spec's names and shirath has no job for them"
	if down := live.Unreachable(); len(down) > 0 {
		c.Blocked = "nodes do not answer: " + strings.Join(down, "; ") + ": adopting an MV reads it on every node"
		c.Unreachable = down
		return
	}
	refuse := func(why string) {
		c.Blocked = fmt.Sprintf("shirath has no job for %s.%s and cannot adopt the objects at its names: %s. Drop them or choose another name", db, s.Name, why)
	}
	for _, o := range []string{s.Name, s.TargetTable} {
		if m := live.Missing(db, o); len(m) > 0 {
			if p := live.Present(db, o); len(p) > 0 {
				refuse(fmt.Sprintf("%s.%s is on %s but missing on %s (adopting needs the MV and its target on every node)", db, o, strings.Join(p, ", "), strings.Join(m, ", ")))
			} else {
				other := s.TargetTable
				if o == s.TargetTable {
					other = s.Name
				}
				refuse(fmt.Sprintf("%s.%s exists without %s.%s", db, other, db, o))
			}
			return
		}
	}
	var first *LiveMV
	var firstNode string
	var distMissing []string
	for _, ns := range live.Nodes {
		lm, err := SpecFromLive(ns.Tables, db, s.Name)
		if err != nil {
			refuse(fmt.Sprintf("on %s: %v", ns.Node.Addr, strings.TrimPrefix(err.Error(), ErrNotExpressible.Error()+": ")))
			return
		}
		if first == nil {
			first, firstNode = lm, ns.Node.Addr
		} else if d := adoptDiffs(first.Spec, first.TargetEngine, lm); len(d) > 0 {
			refuse(fmt.Sprintf("it differs between %s and %s: %s", firstNode, ns.Node.Addr, strings.Join(d, "; ")))
			return
		}
		if c.Cluster == "" {
			continue
		}
		switch t := ns.Tables[db+"."+s.DistributedTable]; {
		case t == nil:
			distMissing = append(distMissing, ns.Node.Addr)
		case lm.Distributed != s.DistributedTable:
			refuse(fmt.Sprintf("%s.%s on %s is not a Distributed table over %s.%s", db, s.DistributedTable, ns.Node.Addr, db, s.TargetTable))
			return
		case lm.DistributedCluster != c.Cluster:
			refuse(fmt.Sprintf("%s.%s on %s is over cluster %s, the spec's is %s", db, s.DistributedTable, ns.Node.Addr, lm.DistributedCluster, c.Cluster))
			return
		}
	}
	if first.Spec.TargetTable != s.TargetTable {
		refuse(fmt.Sprintf("%s.%s writes into %s.%s, and the spec's target is %s.%s (readers' names do not move: set target_table: %s)",
			db, s.Name, db, first.Spec.TargetTable, db, s.TargetTable, first.Spec.TargetTable))
		return
	}
	ls := first.Spec
	ls.Cluster, ls.Backfill, ls.AllowMutableSource, ls.PreventDestroy = s.Cluster, s.Backfill, s.AllowMutableSource, s.PreventDestroy
	if c.Cluster != "" {
		ls.DistributedTable = s.DistributedTable
	}
	c.LiveSpec = ls
	c.Version, c.LiveVersion = 1, 1
	where := "on the node"
	if c.Cluster != "" {
		where = "on every node of " + c.Cluster
	}
	c.Steps = []Step{{Kind: StepAdopt, Detail: fmt.Sprintf("record the job of %s.%s (TO %s.%s %s) as completed at version 1, adopted: no DDL, no backfill", db, s.Name, db, s.TargetTable, where)}}
	if len(distMissing) > 0 {
		c.Steps = append(c.Steps, Step{Kind: StepCreateDistributed, Detail: fmt.Sprintf("create %s.%s over %s.%s where it is missing", db, s.DistributedTable, db, s.TargetTable), Nodes: distMissing})
	}
	diffs := adoptDiffs(s, c.TargetEngine, first)
	if len(diffs) == 0 {
		c.Reason = fmt.Sprintf("%s.%s and %s.%s exist and match the spec: they will be adopted as they are. Their data is not verified: run shirath verify after apply", db, s.Name, db, s.TargetTable)
		return
	}
	c.Diff = adoptedDiff(first, s, c)
	if rs := readersOf(live, s, nil); len(rs) > 0 {
		c.Steps = nil
		c.Blocked = fmt.Sprintf("it differs from the spec (%s), and %s read %s.%s: a change makes %s a Merge table over the new version, which would stop feeding them. "+
			"Changing an MV that other MVs read is not supported yet", strings.Join(diffs, "; "), strings.Join(rs, ", "), db, s.TargetTable, s.TargetTable)
		return
	}
	c.Strategy, c.Version = StrategyRebuild, 2
	if c.TargetEngine != s.Engine {
		// The Replicated form over a replicated source: version 2 has a
		// ZooKeeper path of its own.
		e, err := sqlgen.ReplicatedEngine(s.Engine, sqlgen.ZKPath(db, sqlgen.VersionedName(s.TargetTable, 2)))
		if err != nil {
			c.Blocked = err.Error()
			return
		}
		c.TargetEngine = e
	}
	c.Reason = fmt.Sprintf("%s.%s exists and differs from the spec (%s): it will be adopted as live version 1, then rebuilt beside as version 2 (%s.%s) and readers switched at once",
		db, s.Name, strings.Join(diffs, "; "), db, sqlgen.VersionedName(s.TargetTable, 2))
	if s.ChangeStrategy == specs.ChangeModifyQuery {
		c.Reason += " (change_strategy: modify_query needs a fence, which an adopted MV has not: rebuilt instead)"
	}
	c.Steps = append(c.Steps, createSteps(sqlgen.Versioned(s, 2), c.Cluster, live)...)
	c.Steps = append(c.Steps, switchSteps(s, c, live)...)
}

// adoptDiffs lists how the live MV differs from spec s, whose target would be
// created with engine clause targetEngine; none when it matches.
func adoptDiffs(s *specs.Spec, targetEngine string, lm *LiveMV) []string {
	l := lm.Spec
	var out []string
	if l.SourceTable != s.SourceTable {
		out = append(out, fmt.Sprintf("source %s, the spec's is %s", l.SourceTable, s.SourceTable))
	}
	if !sameColumns(l.Columns, s.Columns) {
		out = append(out, fmt.Sprintf("columns (%s), the spec's are (%s)", columnList(l.Columns), columnList(s.Columns)))
	}
	if !sameEngine(lm.TargetEngine, targetEngine) {
		out = append(out, fmt.Sprintf("engine %s, the spec's is %s", lm.TargetEngine, targetEngine))
	}
	if normKey(strings.Join(l.OrderBy, ",")) != normKey(strings.Join(s.OrderBy, ",")) {
		out = append(out, fmt.Sprintf("ORDER BY (%s), the spec's is (%s)", strings.Join(l.OrderBy, ", "), strings.Join(s.OrderBy, ", ")))
	}
	if normKey(l.PartitionBy) != normKey(s.PartitionBy) {
		out = append(out, fmt.Sprintf("PARTITION BY %q, the spec's is %q", l.PartitionBy, s.PartitionBy))
	}
	lq, lerr := normQuery(l)
	sq, serr := normQuery(s)
	if lerr != nil || serr != nil || lq != sq {
		out = append(out, "the query differs")
	}
	return out
}

func sameColumns(a, b []specs.Column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || normType(a[i].Type) != normType(b[i].Type) {
			return false
		}
	}
	return true
}

func normType(t string) string {
	if n, err := specs.ParseType(t); err == nil {
		return n
	}
	return squash(t)
}

func columnList(cs []specs.Column) string {
	var p []string
	for _, c := range cs {
		p = append(p, c.Name+" "+c.Type)
	}
	return strings.Join(p, ", ")
}

// sameEngine compares engine clauses in their parsed form; two Replicated
// engines are equal whatever their ZooKeeper path and replica name.
func sameEngine(a, b string) bool {
	ea, erra := specs.ParseEngine(a)
	eb, errb := specs.ParseEngine(b)
	if erra != nil || errb != nil {
		return squash(a) == squash(b)
	}
	if ea.Replicated && eb.Replicated && len(ea.Params) >= 2 && len(eb.Params) >= 2 {
		return ea.Name == eb.Name && strings.Join(ea.Params[2:], ",") == strings.Join(eb.Params[2:], ",")
	}
	return ea.String() == eb.String()
}

// adoptSource stands for the source in normalised queries.
const adoptSource = "shirath_adopted_source"

// normQuery prints a spec's query as clickhouse-sql-parser prints it, the
// source replaced by one placeholder name, spaces squashed.
func normQuery(s *specs.Spec) (string, error) {
	sel, err := s.ParsedQuery(adoptSource)
	if err != nil {
		return "", err
	}
	return squashSpace(sel.String()), nil
}

// adoptedDiff shows the live objects (as a spec describes them) next to the
// objects the spec would create, both without a fence.
func adoptedDiff(live *LiveMV, s *specs.Spec, c *ResourceChange) string {
	render := func(sp *specs.Spec, engine string) string {
		m := sqlgen.MV{Spec: sp, Cluster: c.Cluster, TargetEngine: engine}
		var out []string
		if q, err := m.CreateTarget(c.Cluster != ""); err == nil {
			out = append(out, q)
		}
		if q, err := m.CreateMVOver(sqlgen.Range{}, c.Cluster != ""); err == nil {
			out = append(out, q)
		}
		return strings.Join(out, "\n") + "\n"
	}
	return LineDiff(render(live.Spec, live.TargetEngine), render(s, c.TargetEngine))
}
