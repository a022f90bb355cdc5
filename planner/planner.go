// Package planner compares desired MV specs with live ClickHouse (every node
// of a cluster) and the job table, and produces an ordered, typed plan.
//
// Inspection reads a constant number of system-table queries per node, in
// parallel; the diff itself (Diff) is pure and needs no server.
package planner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// JobLister is what the planner needs from the job store.
type JobLister interface {
	ListJobs(ctx context.Context) ([]*state.Job, error)
}

// Planner builds plans.
type Planner struct {
	Conn  *Connector
	Store JobLister
	Log   hclog.Logger
	// Replace names the MVs ("database.name") to rebuild although their
	// spec did not change (apply -replace).
	Replace map[string]bool
}

// Snapshot is the live state a plan was made from.
type Snapshot struct {
	Live map[string]*Live
	Jobs []*state.Job
}

// Plan builds the plan that moves live state to the desired specs. Specs
// must have their defaults applied and be valid.
func (p *Planner) Plan(ctx context.Context, desired []*specs.Spec, destroy bool) (*Plan, *Snapshot, error) {
	if err := CheckCycles(desired); err != nil {
		return nil, nil, err
	}
	jobs, err := p.Store.ListJobs(ctx)
	if err != nil {
		return nil, nil, err
	}
	resolved := map[string]string{}
	var ds []Desired
	dbs := map[string]map[string]bool{} // cluster -> databases
	addDB := func(cluster, db string) {
		if dbs[cluster] == nil {
			dbs[cluster] = map[string]bool{}
		}
		dbs[cluster][db] = true
	}
	for _, s := range desired {
		d := Desired{Spec: s, Replace: p.Replace[s.Database+"."+s.Name]}
		name, ok := resolved[s.Cluster]
		if !ok {
			name, err = p.Conn.ResolveCluster(ctx, s.Cluster)
			if err != nil {
				d.Err = err
			}
			resolved[s.Cluster] = name
		}
		if d.Err == nil {
			d.Cluster = name
			addDB(name, s.Database)
		}
		ds = append(ds, d)
	}
	for _, j := range jobs {
		addDB(j.ClusterName, j.Database)
	}
	snap := &Snapshot{Live: map[string]*Live{}, Jobs: jobs}
	for cluster, set := range dbs {
		topo, err := p.Conn.Topology(ctx, cluster)
		if err != nil {
			return nil, nil, err
		}
		var names []string
		for db := range set {
			names = append(names, db)
		}
		sort.Strings(names)
		live := Inspect(ctx, topo, names)
		for _, ns := range live.Nodes {
			// A node that is down is reported in the plan; a node that
			// answers but whose system tables cannot be read is an error.
			if ns.Err != nil && ns.Node.Err == nil {
				return nil, nil, ns.Err
			}
		}
		snap.Live[cluster] = live
	}
	changes := Diff(Input{Desired: ds, Live: snap.Live, Jobs: jobs, Destroy: destroy})
	for _, c := range changes {
		if c.Blocked != "" || c.Deferred != "" || c.Spec == nil || (c.Action != Create && c.Action != Replace && !needsCasts(c)) {
			continue
		}
		if err := p.casts(ctx, c, snap.Live[c.Cluster]); err != nil {
			c.Blocked = err.Error()
		}
	}
	for _, c := range changes {
		if c.Action == Change && c.Spec != nil && c.Diff != "" {
			// The applied SQL carries the casts it was created with: the new
			// SQL must too, or every cast shows as a false change.
			if job := jobByID(jobs, c.JobID); job != nil && p.casts(ctx, c, snap.Live[c.Cluster]) == nil {
				c.Diff = specDiff(job, c.Spec, c)
			}
		}
		RenderSQL(c)
	}
	plan := &Plan{FormatVersion: FormatVersion, Fingerprint: Fingerprint(snap), Changes: changes, Destroy: destroy}
	for _, live := range snap.Live {
		plan.Unreachable = append(plan.Unreachable, live.Unreachable()...)
	}
	sort.Strings(plan.Unreachable)
	return plan, snap, nil
}

func jobByID(jobs []*state.Job, id int64) *state.Job {
	for _, j := range jobs {
		if j.ID == id {
			return j
		}
	}
	return nil
}

// needsCasts: a resumed creation recreates the MV, so it needs the casts too.
func needsCasts(c *ResourceChange) bool {
	for _, s := range c.Steps {
		if s.Kind == StepCreateMV || s.Kind == StepModifyQuery {
			return true
		}
	}
	return false
}

// casts compares the query's real output types, as the server computes them,
// with the declared column types. A mismatch that a CAST can fix gets one
// (on 18.16 sum(Decimal(18,2)) is Decimal(38,2), and an MV writing it into a
// Decimal(18,2) column fails on every insert); an aggregate-state mismatch
// cannot be cast and blocks the plan with what to write instead.
func (p *Planner) casts(ctx context.Context, c *ResourceChange, live *Live) error {
	var node *Node
	for _, ns := range live.Nodes {
		if ns.Err == nil {
			node = ns.Node
			break
		}
	}
	if node == nil {
		return fmt.Errorf("no node answered")
	}
	types, err := QueryTypes(ctx, node, sqlgen.MV{Spec: c.Spec, Cluster: c.Cluster})
	if err != nil {
		return err
	}
	casts := map[string]string{}
	var bad []string
	for _, col := range c.Spec.Columns {
		got, ok := types[col.Name]
		if !ok {
			return fmt.Errorf("the query gives no column %q", col.Name)
		}
		if squash(got) == squash(col.Type) {
			continue
		}
		if strings.Contains(col.Type, "AggregateFunction(") || strings.Contains(got, "AggregateFunction(") {
			bad = append(bad, fmt.Sprintf("column %s is declared %s but the query gives %s: declare it as %s", col.Name, col.Type, got, got))
			continue
		}
		casts[col.Name] = col.Type
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	if len(casts) > 0 {
		c.Casts = casts
		// The cast itself must be valid on the server, now, not when rows arrive.
		if _, err := QueryTypes(ctx, node, sqlgen.MV{Spec: c.Spec, Cluster: c.Cluster, Casts: casts}); err != nil {
			return fmt.Errorf("casting to the declared column types fails: %w", err)
		}
	}
	return nil
}

func squash(t string) string { return strings.ReplaceAll(t, " ", "") }

// QueryTypes asks the server for the output column types of the MV's query
// (DESCRIBE of the query as a subquery: nothing is read, and aggregate-state
// types, which the client cannot decode as values, come back as text).
func QueryTypes(ctx context.Context, n *Node, m sqlgen.MV) (map[string]string, error) {
	q, err := m.Query(sqlgen.Range{})
	if err != nil {
		return nil, err
	}
	rows, err := n.Conn.Query(ctx, "DESCRIBE TABLE ("+q+")")
	if err != nil {
		return nil, fmt.Errorf("the select_query fails on %s: %w", n.Addr, err)
	}
	defer rows.Close()
	out := map[string]string{}
	// DESCRIBE has 5 columns on 18.16 and more on newer servers: only the
	// first two (name, type) matter.
	cols := make([]string, len(rows.Columns()))
	dest := make([]any, len(cols))
	for i := range cols {
		dest[i] = &cols[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("describe the select_query on %s: %w", n.Addr, err)
		}
		out[cols[0]] = cols[1]
	}
	return out, rows.Err()
}

// RenderSQL fills in the SQL of the steps whose statement is known at plan
// time.
func RenderSQL(c *ResourceChange) {
	if c.Spec == nil || c.Blocked != "" || c.Deferred != "" {
		return
	}
	m := c.MV()
	on := c.Cluster != ""
	for i := range c.Steps {
		st := &c.Steps[i]
		var q string
		var err error
		switch st.Kind {
		case StepCreateTarget:
			q, err = m.CreateTarget(on)
		case StepCreateMV:
			if c.Spec.Refresh != nil {
				q, err = m.CreateRefreshable(on)
			} else {
				q, err = m.Query(sqlgen.Range{})
			}
		case StepModifyRefresh:
			q = m.ModifyRefresh(on)
		case StepModifyQuery:
			if c.Fence != nil {
				q, err = m.ModifyQuery(*c.Fence)
			}
		case StepCreateDistributed:
			q, err = m.CreateDistributed(on && len(st.Nodes) == 0)
		case StepOptimize:
			// Run node by node (one replica per shard for a Replicated
			// target), not ON CLUSTER: see executor.optimize.
			q = m.Optimize(false)
		}
		if err != nil {
			c.Blocked = err.Error()
			return
		}
		st.SQL = q
	}
}

// Fingerprint hashes the parts of the live state a plan depends on: the
// managed objects on every node, which nodes answered, and the jobs. A saved
// plan is refused when it no longer matches.
func Fingerprint(s *Snapshot) string {
	h := sha256.New()
	var clusters []string
	for k := range s.Live {
		clusters = append(clusters, k)
	}
	sort.Strings(clusters)
	for _, cl := range clusters {
		live := s.Live[cl]
		fmt.Fprintf(h, "cluster %q\n", cl)
		nodes := append([]*NodeState(nil), live.Nodes...)
		sort.Slice(nodes, func(i, k int) bool { return nodes[i].Node.Addr < nodes[k].Node.Addr })
		for _, ns := range nodes {
			fmt.Fprintf(h, "node %s up=%v\n", ns.Node.Addr, ns.Err == nil)
			var names []string
			for name := range ns.Tables {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				fmt.Fprintf(h, "table %s %q\n", name, ns.Tables[name].CreateQuery)
			}
		}
	}
	jobs := append([]*state.Job(nil), s.Jobs...)
	sort.Slice(jobs, func(i, k int) bool { return jobs[i].ID < jobs[k].ID })
	for _, j := range jobs {
		fmt.Fprintf(h, "job %d %s.%s %s %s %v %v %v %d\n", j.ID, j.Database, j.Name, j.Status, j.SpecHash, ptr(j.CutoffID), ptr(j.LastProcessedID), j.FenceVerified, len(j.Shards))
		for _, sh := range j.Shards {
			fmt.Fprintf(h, " shard %d %s %s %v\n", sh.Shard, sh.Replica, sh.Status, ptr(sh.LastProcessedID))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func ptr(p *int64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}
