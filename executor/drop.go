package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
)

// destroy drops the MV first (so no insert pushes into a half-dropped
// target), then the Distributed table and the target, then the job.
func (r *run) destroy(ctx context.Context) error {
	// The spec of the change decides (it is the recorded one when the spec
	// was removed); without one, the spec recorded with the job.
	protected := r.c.Spec != nil && r.c.Spec.PreventDestroy
	if r.c.Spec == nil && r.job != nil {
		sp, err := specs.ParseJSON(r.job.Config)
		protected = err == nil && sp.PreventDestroy
	}
	if protected {
		return fmt.Errorf("%w: %s has prevent_destroy: true; set prevent_destroy: false in its spec and apply that first", ErrBlocked, r.c.Address())
	}
	if readers, err := r.liveReaders(ctx); err != nil {
		return err
	} else if len(readers) > 0 {
		return fmt.Errorf("%w: %s reads what %s builds: destroy it first (it would stop receiving rows)", ErrBlocked, strings.Join(readers, ", "), r.c.Address())
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepDrop, Message: "drop"})
	if err := r.dropEveryVersion(ctx); err != nil {
		return err
	}
	if r.job != nil {
		if err := r.e.Store.DeleteJob(ctx, r.job.ID); err != nil {
			return err
		}
	}
	return nil
}

// liveReaders lists the other MVs of the job store whose recorded spec
// reads this MV's target or Distributed table (a chain), however the drop
// was asked for (apply -destroy, mv drop, the API, a rebuild).
func (r *run) liveReaders(ctx context.Context) ([]string, error) {
	m := r.mvForDrop()
	jobs, err := r.e.Store.ListJobs(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, j := range jobs {
		if j.Database != r.c.Database || j.Name == r.c.Name {
			continue
		}
		if j.SourceTable == m.Spec.TargetTable || j.SourceTable == m.Spec.DistributedTable {
			out = append(out, j.Database+"."+j.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// mvForDrop works without a spec in the plan: it takes the one the job was
// created from.
func (r *run) mvForDrop() sqlgen.MV {
	if r.c.Spec != nil {
		return r.mv
	}
	s := &specs.Spec{}
	if r.job != nil {
		if err := json.Unmarshal(r.job.Config, s); err != nil {
			s = &specs.Spec{}
		}
	}
	if s.Name == "" {
		s.Name, s.Database = r.c.Name, r.c.Database
	}
	s.ApplyDefaults()
	return sqlgen.MV{Spec: s, Cluster: r.c.Cluster, DropSync: r.topo.DropSync()}
}

// dropEveryVersion drops every object of the MV: its versions' MVs first,
// then the readers' tables, the versions' tables and what a switch leaves.
func (r *run) dropEveryVersion(ctx context.Context) error {
	base := r.mvForDrop()
	versions := []int{1}
	var specsOf []*specs.Spec
	specsOf = append(specsOf, base.Spec)
	if r.job != nil {
		versions = append(versions, r.job.Version, r.job.LiveVersion)
		if s, err := specs.ParseJSON(r.job.PreviousConfig); err == nil {
			specsOf = append(specsOf, s)
		}
	}
	var mvs, tables []string
	seen := map[string]bool{}
	add := func(list *[]string, name string) {
		if name != "" && !seen[name] {
			seen[name] = true
			*list = append(*list, name)
		}
	}
	for _, s := range specsOf {
		for _, v := range versions {
			p := sqlgen.Versioned(s, v)
			add(&mvs, p.Name)
			add(&tables, p.DistributedTable)
			add(&tables, p.TargetTable)
		}
		for _, n := range []string{s.TargetTable, s.DistributedTable} {
			if n != "" {
				add(&tables, sqlgen.NextName(n))
				add(&tables, sqlgen.PrevName(n))
			}
		}
	}
	for _, name := range append(mvs, tables...) {
		if err := r.ddlAll(ctx, base.Drop(name, true)); err != nil {
			return err
		}
	}
	if r.stageCapable() {
		return r.ddlAll(ctx, base.DropStage(true))
	}
	return nil
}
