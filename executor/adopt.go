package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// adopt records the job of live objects made without shirath, at the spec's
// names (version 1), as completed: no DDL on the MV or its target, no fence,
// no backfill (the live MV has been filling its target since it was
// created). A Distributed table missing on a cluster is created. When the
// live objects differ from the spec, the job records them as they are and
// the change path then rebuilds them beside and switches readers.
func (r *run) adopt(ctx context.Context) error {
	if r.job != nil {
		return fmt.Errorf("%w: the MV has a job now (plan again)", ErrBlocked)
	}
	live := r.c.LiveSpec
	if live == nil {
		return fmt.Errorf("%w: the plan does not describe the live objects (plan again)", ErrBlocked)
	}
	recorded := r.c.Spec
	if r.c.Strategy != "" {
		recorded = live
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepAdopt, Message: fmt.Sprintf("adopt %s as version 1 (no DDL, no backfill)", r.c.Address())})
	// The objects are read back now: they may have gone since the plan.
	applied := map[string]state.AppliedObject{}
	gen := sqlgen.MV{Spec: recorded, Cluster: r.c.Cluster}
	if r.c.Strategy == "" {
		gen.TargetEngine = r.c.TargetEngine // the spec's, or its Replicated form
	}
	for key, name := range map[string]string{"target": recorded.TargetTable, "mv": recorded.Name} {
		srv, err := r.serverCreateQuery(ctx, name)
		if err != nil {
			return fmt.Errorf("%w: %v (plan again)", ErrBlocked, err)
		}
		var q string
		if key == "target" {
			q, err = gen.CreateTarget(r.c.Cluster != "")
		} else {
			q, err = gen.CreateMVOver(sqlgen.Range{}, r.c.Cluster != "")
		}
		if err != nil {
			return err
		}
		applied[key] = state.AppliedObject{SQL: q, Server: srv}
	}
	for _, st := range r.c.Steps {
		if st.Kind == planner.StepCreateDistributed && len(st.Nodes) > 0 {
			if err := r.createDistributed(ctx, st.Nodes); err != nil {
				return err
			}
		}
	}
	cfg, err := json.Marshal(recorded)
	if err != nil {
		return err
	}
	var nodes []string
	for _, n := range r.topo.Nodes {
		nodes = append(nodes, n.Addr)
	}
	now := time.Now()
	j := &state.Job{
		Name: r.c.Name, Database: r.c.Database, SourceTable: recorded.SourceTable, TargetTable: recorded.TargetTable,
		Status: state.StatusCompleted, ClusterName: r.c.Cluster, Nodes: nodes, Config: cfg, SpecHash: specs.Hash(recorded),
		Applied: applied, FenceVerified: true, Deployment: r.topo.Deployment, Version: 1, LiveVersion: 1, AdoptedAt: &now,
	}
	if err := r.e.Store.CreateJob(ctx, j); err != nil {
		return err
	}
	r.job = j
	if r.c.Strategy == "" {
		r.emit(Event{Kind: EventDone, Message: "adopted; its data is not verified (shirath verify)"})
		return nil
	}
	return r.change(ctx)
}
