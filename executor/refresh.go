package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

// A refreshable MV (spec.refresh) has no fence and no backfill: each
// refresh runs the whole query and replaces the target (or appends to it).
// Its creation is: target, MV, Distributed table on a cluster, then the
// first refresh, waited for so that the job is completed only once readers
// see a full target.

// createRefreshable creates the objects from scratch (a crash in the middle
// leaves nothing to trust, as for a fence).
func (r *run) createRefreshable(ctx context.Context) error {
	if err := r.setStatus(ctx, state.StatusCreating, ""); err != nil {
		return err
	}
	if err := r.dropObjects(ctx, r.mv); err != nil {
		return err
	}
	createTarget, err := r.mv.CreateTarget(true)
	if err != nil {
		return err
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepCreateTarget, Message: "create " + r.mv.Spec.TargetTable})
	if err := r.ddlAll(ctx, createTarget); err != nil {
		return err
	}
	createMV, err := r.mv.CreateRefreshable(true)
	if err != nil {
		return err
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepCreateMV, Message: fmt.Sprintf("create %s REFRESH %s", r.mv.Spec.Name, r.mv.Spec.Schedule())})
	if err := r.ddlAll(ctx, createMV); err != nil {
		return err
	}
	crashPoint("refreshable-created")
	return r.fenceVerified(ctx, createTarget, createMV)
}

// firstRefresh waits until the view has refreshed once with success on
// every node that runs it, then completes the job.
func (r *run) firstRefresh(ctx context.Context) error {
	r.emit(Event{Kind: EventStep, Step: planner.StepFirstRefresh, Message: "waiting for the first refresh of " + r.mv.Spec.Name})
	deadline := time.Now().Add(r.e.Opts.SourceWaitTimeout)
	for {
		pending, failure, err := r.refreshPending(ctx)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return r.setStatus(ctx, state.StatusCompleted, "")
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("no successful refresh of %s yet on %v", r.mv.Spec.Name, pending)
			if failure != "" {
				msg += ": " + failure
			}
			return fmt.Errorf("%w: %s", ErrWaiting, msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// refreshPending lists the nodes where the view has no successful refresh
// yet, with the last exception seen.
func (r *run) refreshPending(ctx context.Context) (pending []string, failure string, err error) {
	for _, n := range r.topo.Healthy() {
		st, err := chclient.ReadRefreshState(ctx, n.Conn, r.c.Database, r.mv.Spec.Name)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", n.Addr, err)
		}
		if st.LastSuccess == nil {
			pending = append(pending, n.Addr)
			if st.Exception != "" {
				failure = st.Exception
			}
		}
	}
	return pending, failure, nil
}

// modifyRefresh changes the schedule in place, then records the spec and
// the server's new text of the view in one update: a crash before the
// record is planned again (the recorded schedule still differs) and the
// ALTER, which sets the same schedule again, is repeated.
func (r *run) modifyRefresh(ctx context.Context) error {
	q := r.mv.ModifyRefresh(true)
	r.emit(Event{Kind: EventStep, Step: planner.StepModifyRefresh, Message: "MODIFY REFRESH " + r.mv.Spec.Schedule()})
	if err := r.ddlAll(ctx, q); err != nil {
		return err
	}
	crashPoint("refresh-modified")
	srv, cfg, err := r.alteredView(ctx)
	if err != nil {
		return err
	}
	r.job.Config = cfg
	if r.job.Applied == nil {
		r.job.Applied = map[string]state.AppliedObject{}
	}
	mv := r.job.Applied["mv"]
	mv.Server = srv
	r.job.Applied["mv"] = mv
	return r.e.Store.UpdateJob(ctx, r.job)
}

// alteredView reads back the server's text of a view altered in place and
// the spec to record with it.
func (r *run) alteredView(ctx context.Context) (string, json.RawMessage, error) {
	srv, err := r.serverCreateQuery(ctx, r.mv.Spec.Name)
	if err != nil {
		return "", nil, err
	}
	cfg, err := json.Marshal(r.c.Spec)
	if err != nil {
		return "", nil, err
	}
	return srv, cfg, nil
}
