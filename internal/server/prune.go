package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/planner"
)

// pruning reports whether key's spec file was removed and the MV is to be
// dropped (--prune).
func (s *Server) pruning(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ks := s.keys[key]
	return s.cfg.Prune && ks != nil && ks.prune
}

// prune drops the MV of a removed spec file, as `plan -destroy` would: a
// protected MV (prevent_destroy) is refused and stays.
func (s *Server) prune(ctx context.Context, key string) (Result, error) {
	conn := s.cfg.Connect()
	defer conn.Close()
	p := &planner.Planner{Conn: conn, Store: s.store, Log: s.log.Named("planner")}
	plan, _, err := p.Plan(ctx, nil, true)
	if err != nil {
		return Result{}, fmt.Errorf("plan: %w", err)
	}
	var ch *planner.ResourceChange
	for _, c := range plan.Changes {
		if c.Address() == key && c.Action == planner.Delete {
			ch = c
		}
	}
	if ch != nil {
		if ch.Blocked != "" {
			return Result{}, terminal(CondBlocked, "Blocked", errors.New(ch.Blocked))
		}
		s.setCond(key, CondRunning, "Prune", "its spec file was removed")
		opts := s.cfg.Executor
		opts.WaitForLock = false
		opts.OnEvent = s.onEvent
		ex := &executor.Executor{Conn: conn, Store: s.store, Log: s.log.Named("executor"), Opts: opts}
		if err := ex.ApplyChange(ctx, ch); err != nil {
			if errors.Is(err, executor.ErrBlocked) {
				return Result{}, terminal(CondBlocked, "Blocked", err)
			}
			return Result{}, err
		}
		s.log.Info("dropped: its spec file was removed (--prune)", "mv", key)
	}
	s.mu.Lock()
	delete(s.keys, key)
	s.mu.Unlock()
	return Result{}, nil
}
