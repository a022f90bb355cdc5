//go:build integration

package state

import (
	"errors"
	"testing"
)

// TestScope: one job store, two ClickHouse deployments with an MV of the
// same name. Each deployment's store sees its own job and the jobs recorded
// before deployments were; an apply claims such a job for its deployment.
func TestScope(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t)
	a, b, legacy := newJob("by_category"), newJob("by_category"), newJob("legacy")
	a.Deployment, b.Deployment = "node:a", "cluster:b[127.0.0.1:1,127.0.0.1:2]"
	for _, j := range []*Job{a, b, legacy} {
		if err := s.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	dup := newJob("by_category")
	dup.Deployment = "node:a"
	if err := s.CreateJob(ctx, dup); err == nil {
		t.Fatal("a second job of the same name in the same deployment was accepted")
	}

	// Unscoped (tests, migrations): every job; the name is ambiguous.
	if all, err := s.ListJobs(ctx); err != nil || len(all) != 3 {
		t.Fatalf("unscoped ListJobs: %d jobs, %v", len(all), err)
	}
	if _, err := s.GetJob(ctx, a.Database, a.Name); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("unscoped GetJob of a name in two deployments: %v, want ErrAmbiguous", err)
	}

	s.SetScope([]string{"node:a"})
	got, err := s.ListJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != a.ID || got[1].ID != legacy.ID {
		t.Fatalf("scoped to node:a: %d jobs %+v, want by_category of node:a and the legacy job", len(got), got)
	}
	j, err := s.GetJob(ctx, a.Database, a.Name)
	if err != nil || j.ID != a.ID || j.Deployment != "node:a" {
		t.Fatalf("scoped GetJob: %+v, %v", j, err)
	}

	// An apply in deployment b claims the legacy job; a then no longer sees it.
	s.SetScope([]string{b.Deployment})
	l, err := s.GetJob(ctx, legacy.Database, legacy.Name)
	if err != nil {
		t.Fatal(err)
	}
	l.Deployment = b.Deployment
	if err := s.UpdateJob(ctx, l); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ListJobs(ctx); len(got) != 2 {
		t.Fatalf("scoped to b after the claim: %d jobs, want 2", len(got))
	}
	s.SetScope([]string{"node:a"})
	if got, _ := s.ListJobs(ctx); len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("scoped to node:a after b claimed the legacy job: %+v", got)
	}
	// A recorded deployment is never overwritten by another.
	j.Deployment = "node:other"
	if err := s.UpdateJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if j, _ := s.GetJob(ctx, a.Database, a.Name); j == nil || j.Deployment != "node:a" {
		t.Fatalf("UpdateJob moved a job to another deployment: %+v", j)
	}

	// An empty scope (a daemon that has not reached ClickHouse) sees no
	// recorded job.
	s.SetScope(nil)
	if got, _ := s.ListJobs(ctx); len(got) != 0 {
		t.Fatalf("empty scope: %d jobs", len(got))
	}
}
