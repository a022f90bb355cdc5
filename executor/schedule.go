package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/shirath/shirath/planner"
)

// errDependency marks an item that was not run because an item it depends
// on failed.
var errDependency = errors.New("executor: a dependency failed")

// schedule runs work(i) for every i in [0, n), at most limit at a time
// (every item at once when limit <= 0). Items start in index order, and
// item i starts only once every item after(i) names (nil: none; each must
// be lower than i) has finished without error: one that failed leaves i
// not run, with errDependency. Once ctx is done no further item starts:
// each gets ctx's error. A failed item does not stop the others. It
// returns each item's error, by index.
//
// Both the MVs of a plan and the shard streams of one backfill go through
// it; the dependencies are for MVs that read other MVs' targets.
func schedule(ctx context.Context, n, limit int, after func(i int) []int, work func(i int) error) []error {
	errs := make([]error, n)
	done := make([]chan struct{}, n)
	for i := range done {
		done[i] = make(chan struct{})
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if err := waitDeps(ctx, i, after, done, errs); err != nil {
			errs[i] = err
			close(done[i])
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = fmt.Errorf("not started: %w", ctx.Err())
			close(done[i])
			continue
		}
		if err := ctx.Err(); err != nil {
			<-sem
			errs[i] = fmt.Errorf("not started: %w", err)
			close(done[i])
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[i])
			defer func() { <-sem }()
			errs[i] = work(i)
		}()
	}
	wg.Wait()
	return errs
}

// waitDeps waits until every dependency of item i has finished, and says
// why i must not run when one failed or ctx ended first.
func waitDeps(ctx context.Context, i int, after func(int) []int, done []chan struct{}, errs []error) error {
	if after == nil {
		return nil
	}
	for _, d := range after(i) {
		if d < 0 || d >= i {
			return fmt.Errorf("item %d depends on item %d, which does not come before it", i, d)
		}
		select {
		case <-done[d]:
		case <-ctx.Done():
			return fmt.Errorf("not started: %w", ctx.Err())
		}
		// done[d] is closed after errs[d] was written: the read is ordered.
		if errs[d] != nil {
			return fmt.Errorf("%w (item %d): %v", errDependency, d, errs[d])
		}
	}
	return nil
}

// linked returns, for schedule, the earlier changes each change must wait
// for: those it depends on, and those that depend on it (a destroy waits
// for the destroy of the MVs reading it, which the plan puts first).
func linked(changes []*planner.ResourceChange) func(i int) []int {
	index := map[string]int{}
	for i, c := range changes {
		index[c.Address()] = i
	}
	after := make([][]int, len(changes))
	for i, c := range changes {
		for _, d := range c.DependsOn {
			j, ok := index[d.Address]
			switch {
			case !ok || j == i:
			case j < i:
				after[i] = append(after[i], j)
			default:
				after[j] = append(after[j], i)
			}
		}
	}
	return func(i int) []int { return after[i] }
}
