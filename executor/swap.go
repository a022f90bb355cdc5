package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// A change of a live MV: the new version is built beside the live one under
// physical names (sqlgen.Versioned) with its own fence and backfill, as a new
// MV is, while the live MV keeps filling the live target. Then swap switches
// readers at once and drops the old version. Every step checks the
// server's state first, so a crash anywhere is finished by the next apply.

// change starts a change (or continues one a previous apply started).
func (r *run) change(ctx context.Context) error {
	if r.job == nil {
		return fmt.Errorf("%w: the MV has no job any more (plan again)", ErrBlocked)
	}
	switch r.c.Strategy {
	case planner.StrategyAbandon:
		return r.abandon(ctx)
	case planner.StrategyModifyQuery:
		return r.modifyQuery(ctx)
	}
	hash := specs.Hash(r.c.Spec)
	if r.job.SpecHash == hash && r.job.Changing() && r.job.Reads.Same(r.c.Reads) {
		return r.converge(ctx) // started by an apply that stopped
	}
	if want := max(r.job.LiveVersion, 1) + 1; r.c.Version != want {
		return fmt.Errorf("%w: the plan builds version %d, and the job's next version is %d (plan again)", ErrBlocked, r.c.Version, want)
	}
	if r.job.Changing() {
		// An unfinished version built from another spec: readers never
		// saw it.
		r.emit(Event{Kind: EventStep, Step: planner.StepDrop, Message: fmt.Sprintf("drop the unfinished version %d", r.job.Version)})
		if err := r.dropVersion(ctx, specOf(r.job.Config, r.c), r.job.Version); err != nil {
			return err
		}
	} else {
		r.job.PreviousConfig = r.job.Config
	}
	cfg, err := json.Marshal(r.c.Spec)
	if err != nil {
		return err
	}
	if err := r.e.Store.DeleteShards(ctx, r.job.ID); err != nil {
		return err
	}
	j := r.job
	liveReads := j.Reads
	if j.Changing() && j.Reads != nil {
		liveReads = j.Reads.Live
	}
	j.Version, j.Config, j.SpecHash, j.SourceTable, j.Reads = r.c.Version, cfg, hash, r.c.Spec.SourceTable, r.c.Reads.Building(liveReads)
	j.Status, j.FenceVerified, j.ErrorMessage = state.StatusCreating, false, ""
	j.CutoffID, j.LastProcessedID, j.TotalRows, j.ProcessedRows = nil, nil, 0, 0
	j.Applied, j.Shards = map[string]state.AppliedObject{}, nil
	if err := r.e.Store.UpdateJob(ctx, j); err != nil {
		return err
	}
	crashPoint("change-recorded")
	r.emit(Event{Kind: EventStep, Step: planner.StepCreateTarget, Message: fmt.Sprintf("build version %d beside live version %d", j.Version, j.LiveVersion)})
	return r.converge(ctx)
}

// specOf reads a recorded spec; without one, the change's.
func specOf(cfg json.RawMessage, c *planner.ResourceChange) *specs.Spec {
	if s, err := specs.ParseJSON(cfg); err == nil {
		return s
	}
	return c.Spec
}

// nodeTables is what one node holds of the names a switch moves.
type nodeTables map[string]struct{ engine, full string }

func (r *run) readTables(ctx context.Context, n *planner.Node, names ...string) (nodeTables, error) {
	rows, err := n.Conn.Query(ctx, "SELECT name, engine, engine_full FROM system.tables WHERE database = ? AND has(?, name)", r.c.Database, names)
	if err != nil {
		return nil, fmt.Errorf("read system.tables on %s: %w", n.Addr, err)
	}
	defer rows.Close()
	out := nodeTables{}
	for rows.Next() {
		var name, engine, full string
		if err := rows.Scan(&name, &engine, &full); err != nil {
			return nil, fmt.Errorf("read system.tables on %s: %w", n.Addr, err)
		}
		out[name] = struct{ engine, full string }{engine, full}
	}
	return out, rows.Err()
}

// mergeOver reports whether the table is the Merge table over physical only.
func (t nodeTables) mergeOver(name, physical string) bool {
	x, ok := t[name]
	return ok && sqlgen.ReadersOver(x.engine, x.full, physical)
}

// reads reports whether the Distributed table reads physical.
func (t nodeTables) reads(name, physical string) bool {
	x, ok := t[name]
	return ok && sqlgen.DistributedOver(x.engine, x.full, physical)
}

func (t nodeTables) has(name string) bool { _, ok := t[name]; return ok }

// canExchange: EXCHANGE TABLES needs the server to have it and the database
// to be Atomic (or Replicated).
func (r *run) canExchange(ctx context.Context, n *planner.Node) (bool, error) {
	if !n.Features.Exchange {
		return false, nil
	}
	e, err := chclient.Strings(ctx, n.Conn, "SELECT engine FROM system.databases WHERE name = ?", r.c.Database)
	if err != nil {
		return false, fmt.Errorf("read the engine of database %s on %s: %w", r.c.Database, n.Addr, err)
	}
	return len(e) == 1 && (e[0] == "Atomic" || e[0] == "Replicated"), nil
}

// swap switches readers from the live version to the one just built, node by
// node, then drops the old version and records the new one as live:
//
//  1. on every node, T__next = Merge over the new physical target only;
//  2. on a cluster, on every node, the Distributed table is switched to one
//     over the new physical target (EXCHANGE, or one two-table RENAME);
//  3. on every node, the old MV is dropped: it writes into T by name, and T
//     is about to become a Merge table, which takes no INSERT;
//  4. on every node, T and T__next are switched in one statement: readers
//     see the old complete version, then the new complete one. Between 3
//     and 4 (milliseconds) T holds the old version as of the drop;
//  5. the old version's tables are dropped, then version N is recorded as
//     live.
func (r *run) swap(ctx context.Context) error {
	if down := r.topo.Down(); len(down) > 0 {
		return fmt.Errorf("nodes %s do not answer: the switch runs on every node; apply again when they are back", strings.Join(down, ", "))
	}
	prev := specOf(r.job.PreviousConfig, r.c)
	live := max(r.job.LiveVersion, 1)
	t, d := r.c.Spec.TargetTable, r.c.Spec.DistributedTable
	newT, newD := r.mv.Spec.TargetTable, r.mv.Spec.DistributedTable
	next, prevT := sqlgen.NextName(t), sqlgen.PrevName(t)
	names := []string{t, next, prevT, newT}
	if r.topo.Cluster != "" {
		names = append(names, d, newD, sqlgen.PrevName(d))
	}
	old := sqlgen.MV{Spec: sqlgen.Versioned(prev, live), DropSync: r.mv.DropSync}
	r.emit(Event{Kind: EventStep, Step: planner.StepSwitch, Message: fmt.Sprintf("switch readers of %s from version %d to version %d", t, live, r.job.Version)})

	type phase struct {
		name string
		do   func(n *planner.Node, tb nodeTables, exchange bool) []string
	}
	phases := []phase{
		{"swap-prepared", func(n *planner.Node, tb nodeTables, _ bool) []string {
			if tb.mergeOver(t, newT) || !tb.has(t) {
				return nil
			}
			var qs []string
			if tb.has(prevT) {
				qs = append(qs, r.mv.Drop(prevT, false)) // left by an earlier change
			}
			if tb.has(next) && !tb.mergeOver(next, newT) {
				qs = append(qs, r.mv.Drop(next, false))
			}
			return append(qs, sqlgen.CreateReaders(r.c.Database, next, newT))
		}},
		{"swap-distributed", func(n *planner.Node, tb nodeTables, exchange bool) []string {
			switch {
			case r.topo.Cluster == "" || tb.reads(d, newT):
				return nil
			case !tb.has(d) && tb.has(newD):
				return []string{sqlgen.Rename(r.c.Database, newD, d)} // a RENAME that stopped half way
			case exchange:
				return []string{sqlgen.Exchange(r.c.Database, d, newD)}
			}
			return []string{r.mv.Drop(sqlgen.PrevName(d), false), sqlgen.Rename(r.c.Database, d, sqlgen.PrevName(d), newD, d)}
		}},
		{"swap-old-mv-dropped", func(*planner.Node, nodeTables, bool) []string {
			return []string{old.Drop(old.Spec.Name, false)}
		}},
		{"swap-switched", func(n *planner.Node, tb nodeTables, exchange bool) []string {
			switch {
			case tb.mergeOver(t, newT):
				return nil
			case !tb.has(t) && tb.has(next):
				return []string{sqlgen.Rename(r.c.Database, next, t)} // a RENAME that stopped half way
			case exchange:
				return []string{sqlgen.Exchange(r.c.Database, t, next)}
			}
			return []string{sqlgen.Rename(r.c.Database, t, prevT, next, t)}
		}},
	}
	for _, p := range phases {
		ctx := withStep(ctx, p.name)
		for _, n := range r.topo.Nodes {
			tb, err := r.readTables(ctx, n, names...)
			if err != nil {
				return err
			}
			exchange, err := r.canExchange(ctx, n)
			if err != nil {
				return err
			}
			for _, q := range p.do(n, tb, exchange) {
				// A switch statement is local DDL and quick; one that hangs
				// fails the apply naming it, and the next apply continues
				// from the server's state.
				sctx, cancel := context.WithTimeout(ctx, 2*r.e.Opts.DDLTimeout)
				err := r.exec(sctx, n, q)
				cancel()
				if err != nil {
					return fmt.Errorf("switch to version %d (%s): %w", r.job.Version, p.name, err)
				}
			}
		}
		crashPoint(p.name)
	}
	// Readers see version N on every node that was switched: what the old
	// version and the switch left is dropped on every node at once. A DROP
	// that does not end in time does not undo the change: the next plan
	// shows what is left, and the next apply drops it.
	left, err := r.dropLeftovers(withStep(ctx, "swap-cleaned"), r.job.Version)
	if err != nil {
		return fmt.Errorf("switch to version %d: %w", r.job.Version, err)
	}
	crashPoint("swap-cleaned")
	// Every node must be switched before the new version is recorded live.
	for _, n := range r.topo.Nodes {
		tb, err := r.readTables(ctx, n, names...)
		if err != nil {
			return err
		}
		if !tb.mergeOver(t, newT) {
			return fmt.Errorf("switch to version %d: %s.%s on %s is not the Merge table over %s after the switch", r.job.Version, r.c.Database, t, n.Addr, newT)
		}
	}
	now := time.Now()
	r.job.LiveVersion, r.job.SwitchedAt, r.job.Reads = r.job.Version, &now, r.job.Reads.Switched()
	if err := r.e.Store.UpdateJob(ctx, r.job); err != nil {
		return err
	}
	crashPoint("swap-recorded")
	if len(left) > 0 {
		r.emit(Event{Kind: EventStep, Step: planner.StepDropOld, Message: fmt.Sprintf("version %d is live; left for the next apply to drop: %s", r.job.Version, strings.Join(left, "; "))})
		return nil
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepDropOld, Message: fmt.Sprintf("version %d is live; version %d dropped", r.job.Version, live)})
	return nil
}

// dropVersion drops the MV, the Distributed table and the target of one
// physical version (never readers' names: version 1's are left alone).
func (r *run) dropVersion(ctx context.Context, s *specs.Spec, v int) error {
	if v <= 1 {
		return fmt.Errorf("refusing to drop version %d: its names are readers' names", v)
	}
	return r.dropObjects(ctx, sqlgen.MV{Spec: sqlgen.Versioned(s, v), Cluster: r.c.Cluster, DropSync: r.mv.DropSync})
}

// abandon drops an unfinished version: the spec is back to the live one's.
func (r *run) abandon(ctx context.Context) error {
	if !r.job.Changing() {
		return fmt.Errorf("%w: no unfinished version to drop (plan again)", ErrBlocked)
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepDrop, Message: fmt.Sprintf("drop the unfinished version %d; version %d stays live", r.job.Version, r.job.LiveVersion)})
	if err := r.dropVersion(ctx, specOf(r.job.Config, r.c), r.job.Version); err != nil {
		return err
	}
	if err := r.e.Store.DeleteShards(ctx, r.job.ID); err != nil {
		return err
	}
	j := r.job
	live := max(j.LiveVersion, 1)
	srv, err := r.serverCreateQuery(ctx, sqlgen.VersionedName(r.c.Name, live))
	if err != nil {
		return err
	}
	cfg, err := json.Marshal(r.c.Spec)
	if err != nil {
		return err
	}
	j.Version, j.Config, j.SpecHash, j.SourceTable = live, cfg, specs.Hash(r.c.Spec), r.c.Spec.SourceTable
	if j.Reads != nil {
		j.Reads = j.Reads.Live // what the live version reads
	}
	j.Status, j.FenceVerified, j.ErrorMessage = state.StatusCompleted, true, ""
	j.Applied, j.Shards = map[string]state.AppliedObject{"mv": {Server: srv}}, nil
	return r.e.Store.UpdateJob(ctx, j)
}

// modifyQuery replaces the live view's query in place on every node, keeping
// its fence, then records the new spec.
func (r *run) modifyQuery(ctx context.Context) error {
	if r.c.Fence == nil || r.job.CutoffID == nil || *r.c.Fence != *r.job.CutoffID || r.job.Changing() {
		return fmt.Errorf("%w: the job moved since the plan (plan again)", ErrBlocked)
	}
	q, err := r.mv.ModifyQuery(*r.c.Fence)
	if err != nil {
		return err
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepModifyQuery, Message: "ALTER TABLE " + r.mv.Spec.Name + " MODIFY QUERY"})
	for _, n := range r.topo.Nodes {
		if err := r.exec(ctx, n, q); err != nil {
			return err
		}
	}
	crashPoint("modify-query-altered")
	srv, cfg, err := r.alteredView(ctx)
	if err != nil {
		return err
	}
	j := r.job
	j.PreviousConfig, j.Config, j.SpecHash = j.Config, cfg, specs.Hash(r.c.Spec)
	j.Applied["mv"] = state.AppliedObject{SQL: "ALTER TABLE ... MODIFY QUERY " + q, Server: srv}
	if err := r.e.Store.UpdateJob(ctx, j); err != nil {
		return err
	}
	r.emit(Event{Kind: EventDone, Message: "query replaced"})
	return nil
}
