package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// ErrCompleted is returned for a backfill request without restart on an MV
// whose backfill is already complete.
var ErrCompleted = errors.New("server: the backfill is already completed")

// DropChange is the executor change that drops the MV of job: the view
// first (so no insert pushes into a half-dropped target), then the
// Distributed and target tables, on every node, then the job and its shard
// progress. The objects are named from the spec the job was created with.
func DropChange(job *state.Job) *planner.ResourceChange {
	return &planner.ResourceChange{
		Database: job.Database,
		Name:     job.Name,
		Action:   planner.Delete,
		Reason:   "drop requested",
		JobID:    job.ID,
		Cluster:  job.ClusterName,
		Steps:    []planner.Step{{Kind: planner.StepDrop, Detail: "drop the MV, its target and Distributed tables, and the job"}},
	}
}

// BackfillRebuilds says what a backfill request does to an MV whose job is
// job (nil when it has none yet):
//
//   - no job, or a job still in progress (creating, waiting, backfilling,
//     optimizing): nothing is dropped; the MV is reconciled at once, and a
//     backfill in progress resumes from its recorded progress;
//   - a failed, needs_attention or paused job, or restart: the MV is
//     rebuilt: its view, target and Distributed tables and its job are
//     dropped, and it is created again from its spec, with a new fence and
//     a backfill of the whole history;
//   - a completed job without restart: ErrCompleted.
func BackfillRebuilds(job *state.Job, restart bool) (bool, error) {
	if job == nil {
		return false, nil
	}
	if restart {
		return true, nil
	}
	switch job.Status {
	case state.StatusFailed, state.StatusNeedsAttention, state.StatusPaused:
		return true, nil
	case state.StatusCompleted:
		return false, fmt.Errorf("%w: %s.%s (restart to drop the target and rebuild it from the source)", ErrCompleted, job.Database, job.Name)
	}
	return false, nil
}

// SpecRecord makes the store record of a valid spec.
func SpecRecord(s *specs.Spec, origin string) (state.SpecRecord, error) {
	doc, err := json.Marshal(s)
	if err != nil {
		return state.SpecRecord{}, fmt.Errorf("encode spec %s.%s: %w", s.Database, s.Name, err)
	}
	return state.SpecRecord{Database: s.Database, Name: s.Name, Spec: doc, SpecHash: specs.Hash(s), Origin: origin}, nil
}

// JobSpec reads back the spec a job was created from.
func JobSpec(job *state.Job) (*specs.Spec, error) {
	s, err := specs.ParseJSON(job.Config)
	if err != nil {
		return nil, fmt.Errorf("the spec job %s.%s was created from does not parse: %w", job.Database, job.Name, err)
	}
	return s, nil
}

// getJob returns the job of database.name, or nil.
func getJob(ctx context.Context, st Store, database, name string) (*state.Job, error) {
	j, err := st.GetJob(ctx, database, name)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	return j, err
}

// drop runs the drop change of job with its own connector.
func (s *Server) drop(ctx context.Context, job *state.Job) error {
	conn := s.cfg.Connect()
	defer conn.Close()
	opts := s.cfg.Executor
	opts.WaitForLock = false
	opts.OnEvent = s.onEvent
	ex := &executor.Executor{Conn: conn, Store: s.store, Log: s.log.Named("executor"), Opts: opts}
	return ex.ApplyChange(ctx, DropChange(job))
}
