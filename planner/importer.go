package planner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/shirath/shirath/specs"
)

// Imported is one live MV described as a spec, or the reason it cannot be.
type Imported struct {
	Database, Name string
	// Spec is nil when Refused says why the MV cannot be described.
	Spec    *specs.Spec
	Refused string
	// Notes are what the user should check before planning the spec.
	Notes []string
}

// Address is database.name.
func (i *Imported) Address() string { return i.Database + "." + i.Name }

// Import describes live MVs as specs: the MVs named (database.name, or name
// in database "default"), and every materialized view of the databases in
// all. Objects on every node of one cluster (other than ClickHouse's
// built-in examples) get `cluster:` set to it; otherwise the spec is for the
// seed node alone. It reads the seed and each cluster's nodes once.
func (c *Connector) Import(ctx context.Context, names, all []string) ([]*Imported, error) {
	type addr struct{ db, name string }
	var want []addr
	dbs := map[string]bool{}
	for _, n := range names {
		db, name, ok := strings.Cut(n, ".")
		if !ok {
			db, name = specs.DefaultDatabase, n
		}
		want = append(want, addr{db, name})
		dbs[db] = true
	}
	for _, db := range all {
		dbs[db] = true
	}
	var dbList []string
	for db := range dbs {
		dbList = append(dbList, db)
	}
	sort.Strings(dbList)
	seed, err := c.Topology(ctx, "")
	if err != nil {
		return nil, err
	}
	sl := Inspect(ctx, seed, dbList)
	if sl.Nodes[0].Err != nil {
		return nil, sl.Nodes[0].Err
	}
	tables := sl.Nodes[0].Tables
	for _, db := range all {
		var found []addr
		for _, t := range tables {
			if t.Database == db && t.Engine == "MaterializedView" {
				found = append(found, addr{db, t.Name})
			}
		}
		sort.Slice(found, func(i, k int) bool { return found[i].name < found[k].name })
		want = append(want, found...)
	}
	clusters, err := c.clustersHolding(ctx, dbList)
	if err != nil {
		return nil, err
	}
	var out []*Imported
	seen := map[addr]bool{}
	for _, a := range want {
		if seen[a] {
			continue
		}
		seen[a] = true
		im := &Imported{Database: a.db, Name: a.name}
		out = append(out, im)
		lm, err := SpecFromLive(tables, a.db, a.name)
		if err != nil {
			im.Refused = strings.TrimPrefix(err.Error(), ErrNotExpressible.Error()+": ")
			continue
		}
		im.Spec = lm.Spec
		for _, cl := range clusters {
			if lm2, ok := cl.holds(a.db, a.name, lm); ok {
				im.Spec.Cluster = cl.live.Topology.Cluster
				if lm2.Distributed != "" {
					im.Spec.DistributedTable = lm2.Distributed
				} else {
					im.Notes = append(im.Notes, fmt.Sprintf("no Distributed table over %s.%s: apply creates %s.%s", a.db, lm.Spec.TargetTable, a.db, im.Spec.DistributedTable))
				}
				break
			}
		}
		if im.Spec.Cluster == "" {
			im.Spec.DistributedTable = ""
			for _, cl := range clusters {
				if down := cl.live.Unreachable(); len(down) > 0 {
					im.Notes = append(im.Notes, fmt.Sprintf("cluster %s was not checked (%s do not answer): if the MV is on every node of it, set cluster: %s",
						cl.live.Topology.Cluster, strings.Join(down, "; "), cl.live.Topology.Cluster))
				}
			}
		}
		src := tables[a.db+"."+lm.Spec.SourceTable]
		if src == nil || !integerType(src.ColumnType(specs.DefaultKeyColumn)) {
			im.Notes = append(im.Notes, fmt.Sprintf("the source %s.%s has no integer column %s: set backfill.key_column to a column that grows with every insert (a change backfills by it)",
				a.db, lm.Spec.SourceTable, specs.DefaultKeyColumn))
		}
	}
	return out, nil
}

// clusterLive is one cluster's inspected state.
type clusterLive struct{ live *Live }

// holds reports whether every node of the cluster holds the MV as lm
// describes it.
func (cl clusterLive) holds(db, name string, lm *LiveMV) (*LiveMV, bool) {
	var last *LiveMV
	for _, ns := range cl.live.Nodes {
		if ns.Err != nil {
			return nil, false
		}
		got, err := SpecFromLive(ns.Tables, db, name)
		if err != nil || len(adoptDiffs(lm.Spec, lm.TargetEngine, got)) > 0 {
			return nil, false
		}
		if got.Distributed == "" || got.DistributedCluster != cl.live.Topology.Cluster {
			got.Distributed = ""
		}
		if last != nil && last.Distributed != got.Distributed {
			got.Distributed = ""
		}
		last = got
	}
	return last, last != nil
}

// clustersHolding inspects every real cluster the seed knows, with the
// seed among its nodes.
func (c *Connector) clustersHolding(ctx context.Context, dbs []string) ([]clusterLive, error) {
	seed, err := c.Conn(ctx, c.Seed)
	if err != nil {
		return nil, err
	}
	rows, err := seed.Query(ctx, "SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster")
	if err != nil {
		return nil, fmt.Errorf("read system.clusters on %s: %w", c.Seed, err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		if !builtinCluster(n) {
			names = append(names, n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []clusterLive
	for _, n := range names {
		topo, err := c.Topology(ctx, n)
		if err != nil {
			if errors.Is(err, ErrNoCluster) {
				continue
			}
			return nil, err
		}
		out = append(out, clusterLive{Inspect(ctx, topo, dbs)})
	}
	return out, nil
}
