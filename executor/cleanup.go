package executor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
)

// cleanupTimeout bounds one DROP of what an earlier version left. On 18.16
// the DROP of a Replicated table removes its ZooKeeper tree one node per
// request: a target fed by an MV under a writer holds a part node (and its
// children) per INSERT for old_parts_lifetime (8 minutes), and its DROP was
// measured at 25-30 s per node on the 2x2 test cluster under load, never
// hung. A DROP still running at the bound is left to the server, and what it
// drops is shown by the next plan (planner: leftovers) and dropped by the
// next apply.
const cleanupTimeout = 5 * time.Minute

// dropLeftovers drops, on every node at once, what the versions before live
// and the switches to it left (sqlgen.Leftovers), only on the nodes whose
// readers' name already reads version live: never what readers may still
// see. It returns what it could not drop in time ("name on node"), said as
// a warning; any other failure is an error.
func (r *run) dropLeftovers(ctx context.Context, live int) ([]string, error) {
	s := r.c.Spec
	names := sqlgen.Leftovers(s, live)
	if len(names) == 0 {
		return nil, nil
	}
	t, d := s.TargetTable, s.DistributedTable
	physT, physD := sqlgen.VersionedName(t, live), sqlgen.VersionedName(d, live)
	var (
		mu   sync.Mutex
		left []string
		errs []error
		wg   sync.WaitGroup
	)
	for _, n := range r.topo.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := r.dropLeftoversOn(ctx, n, names, func(tb nodeTables, name string) bool {
				if !tb.has(name) || !tb.mergeOver(t, physT) {
					return false
				}
				// After an EXCHANGE the old Distributed table is under the
				// live version's name; before the switch that name is the
				// new one.
				return name != physD || tb.reads(d, physT)
			})
			mu.Lock()
			defer mu.Unlock()
			left = append(left, l...)
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return left, errs[0]
	}
	return left, nil
}

func (r *run) dropLeftoversOn(ctx context.Context, n *planner.Node, names []string, drop func(nodeTables, string) bool) ([]string, error) {
	tb, err := r.readTables(ctx, n, append([]string{r.c.Spec.TargetTable, r.c.Spec.DistributedTable}, names...)...)
	if err != nil {
		return nil, err
	}
	var todo, left []string
	for _, name := range names {
		if drop(tb, name) {
			todo = append(todo, name)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	r.emit(Event{Kind: EventStep, Step: planner.StepDropOld, Message: fmt.Sprintf("drop on %s what earlier versions left: %s", n.Addr, strings.Join(todo, ", "))})
	for _, name := range todo {
		sctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		start := time.Now()
		err := r.exec(sctx, n, r.mv.Drop(name, false))
		timedOut := sctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case err != nil && timedOut:
			// The driver reports the deadline as a read timeout: the
			// context says which it was. The server goes on dropping.
			msg := fmt.Sprintf("DROP of %s.%s on %s did not end within %s (the server may still be dropping it; the next apply drops what is left): %v", r.c.Database, name, n.Addr, cleanupTimeout, err)
			r.log().Warn(msg)
			r.emit(Event{Kind: EventStep, Step: planner.StepDropOld, Message: msg})
			left = append(left, name+" on "+n.Addr)
		case err != nil:
			return left, fmt.Errorf("drop what earlier versions left: %w", err)
		default:
			r.log().Debug("dropped", "table", name, "node", n.Addr, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	return left, nil
}
