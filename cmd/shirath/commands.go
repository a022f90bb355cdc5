package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/internal/chclient"
	"github.com/shirath/shirath/internal/sqlgen"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// SavedPlan is the file written by plan -out: the plan and the desired specs
// it was made from, so that apply can rebuild the fingerprint.
type SavedPlan struct {
	planner.Plan
	Specs []*specs.Spec `json:"specs"`
}

// PlanCmd is `shirath plan`.
type PlanCmd struct {
	Paths            []string `arg:"" optional:"" default:"examples" help:"Spec files or directories." type:"path"`
	Out              string   `name:"out" short:"o" help:"Save the plan to this file, for apply." type:"path"`
	Format           string   `name:"format" enum:"human,json,markdown" default:"human" help:"Output: human, json (versioned, as --json) or markdown (for a pull-request comment)."`
	JSON             bool     `name:"json" help:"Print the plan as JSON (--format json)."`
	DetailedExitcode bool     `name:"detailed-exitcode" help:"Exit 0 when there are no changes, 1 on error, 2 when there are changes."`
	Destroy          bool     `name:"destroy" help:"Drop MVs whose spec is gone."`
	replaceFlag      `embed:""`
}

// Validate is called by kong once the flags are parsed.
func (c *PlanCmd) Validate() error {
	if c.JSON && c.Format == "markdown" {
		return errors.New("--json and --format markdown disagree: --json is --format json")
	}
	return nil
}

func loadSpecs(paths []string) ([]*specs.Spec, error) {
	var all []*specs.Spec
	var errs specs.Errors
	for _, p := range paths {
		ss, err := specs.LoadPath(p)
		var es specs.Errors
		switch {
		case errors.As(err, &es):
			errs = append(errs, es...)
		case err != nil:
			return nil, err
		}
		all = append(all, ss...)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid specs:\n%w", errs)
	}
	seen := map[string]string{}
	for _, s := range all {
		addr := s.Database + "." + s.Name
		if prev, ok := seen[addr]; ok {
			return nil, fmt.Errorf("%s is defined twice: %s and %s:%d", addr, prev, s.Origin.File, s.Origin.Line)
		}
		seen[addr] = fmt.Sprintf("%s:%d", s.Origin.File, s.Origin.Line)
	}
	if err := planner.CheckCycles(all); err != nil {
		return nil, err
	}
	return all, nil
}

// replaceFlag is plan's and apply's -replace.
type replaceFlag struct {
	Replace []string `name:"replace" placeholder:"NAME" help:"Rebuild this MV (name or database.name) beside its live version from the whole source and switch readers to it, although its spec did not change, as when verify found a difference. Repeatable."`
}

// replaceSet resolves -replace's names against the specs: each must name
// exactly one.
func replaceSet(desired []*specs.Spec, names []string) (map[string]bool, error) {
	set := map[string]bool{}
	for _, n := range names {
		var hits []string
		for _, s := range desired {
			if addr := s.Database + "." + s.Name; n == addr || n == s.Name {
				hits = append(hits, addr)
			}
		}
		switch len(hits) {
		case 0:
			return nil, fmt.Errorf("-replace %s: no spec among the paths given names it", n)
		case 1:
			set[hits[0]] = true
		default:
			return nil, fmt.Errorf("-replace %s: names %s: give database.name", n, strings.Join(hits, " and "))
		}
	}
	return set, nil
}

func (a *app) makePlan(ctx context.Context, desired []*specs.Spec, destroy bool, replace ...string) (*planner.Plan, *state.Store, *planner.Connector, error) {
	rs, err := replaceSet(desired, replace)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := a.store(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	conn := a.connector()
	p := &planner.Planner{Conn: conn, Store: st, Log: a.log.Named("planner"), Replace: rs}
	plan, _, err := p.Plan(ctx, desired, destroy)
	if err != nil {
		conn.Close()
		st.Close()
		return nil, nil, nil, err
	}
	return plan, st, conn, nil
}

func (c *PlanCmd) Run(a *app, ctx context.Context) error {
	desired, err := loadSpecs(c.Paths)
	if err != nil {
		return err
	}
	plan, st, conn, err := a.makePlan(ctx, desired, c.Destroy, c.Replace...)
	if err != nil {
		return err
	}
	defer st.Close()
	defer conn.Close()
	if c.JSON {
		c.Format = "json"
	}
	switch c.Format {
	case "json":
		if err := renderJSON(a.stdout, plan); err != nil {
			return err
		}
	case "markdown":
		renderMarkdown(a.stdout, plan)
	default:
		renderHuman(a.stdout, plan, a.stdoutTTY())
	}
	if refused := plan.Refused(); len(refused) > 0 {
		// As Terraform: a plan that would drop a protected MV fails, and
		// is not saved.
		var names []string
		for _, c := range refused {
			names = append(names, c.Address())
		}
		return fmt.Errorf("the plan would destroy or rebuild %s, protected by prevent_destroy", strings.Join(names, ", "))
	}
	// A plan that apply would refuse in part fails too (and is not saved):
	// in CI, the check goes red, naming what is in the way.
	var blocked []string
	for _, c := range plan.Changes {
		if c.Blocked != "" {
			blocked = append(blocked, c.Address()+": "+c.Blocked)
		}
	}
	if len(blocked) > 0 {
		return fmt.Errorf("%d change(s) cannot be applied:\n  %s", len(blocked), strings.Join(blocked, "\n  "))
	}
	if c.Out != "" {
		b, err := json.MarshalIndent(SavedPlan{Plan: *plan, Specs: desired}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(c.Out, b, 0o600); err != nil {
			return fmt.Errorf("save plan: %w", err)
		}
		if c.Format == "human" {
			fmt.Fprintf(a.stdout, "\nSaved the plan to %s. To apply exactly this plan: shirath apply %s\n", c.Out, c.Out)
		}
	}
	if c.DetailedExitcode && plan.HasChanges() {
		return exitError{2}
	}
	return nil
}

// ApplyCmd is `shirath apply`.
type ApplyCmd struct {
	Paths       []string      `arg:"" optional:"" default:"examples" help:"Spec files or directories, or one plan file saved by plan -out." type:"path"`
	AutoApprove bool          `name:"auto-approve" help:"Apply without asking."`
	Destroy     bool          `name:"destroy" help:"Drop MVs whose spec is gone."`
	WaitLock    bool          `name:"wait-lock" help:"Wait for a lock held by another apply instead of failing."`
	Headroom    time.Duration `name:"fence-headroom" default:"3s" help:"Seconds of the observed insert rate the fence leaves above max(key)."`
	SourceWait  time.Duration `name:"source-wait" default:"10m" help:"How long to wait for the source to pass the fence before leaving the job waiting."`
	DDLTimeout  time.Duration `name:"ddl-timeout" default:"30s" help:"distributed_ddl_task_timeout of ON CLUSTER statements: how soon a node that does not answer fails the call."`
	Parallelism int           `name:"parallelism" placeholder:"N" help:"Work on at most N MVs at once (default 4), and backfill at most N shards of an MV at once (default: every shard)."`
	replaceFlag `embed:""`
}

// readSavedPlan returns the saved plan when the single path is a plan file.
func readSavedPlan(paths []string) (*SavedPlan, error) {
	if len(paths) != 1 {
		return nil, nil
	}
	fi, err := os.Stat(paths[0])
	if err != nil || fi.IsDir() || strings.HasSuffix(paths[0], ".yaml") || strings.HasSuffix(paths[0], ".yml") {
		return nil, nil
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		return nil, err
	}
	var sp SavedPlan
	if err := json.Unmarshal(b, &sp); err != nil || sp.FormatVersion == "" {
		return nil, fmt.Errorf("%s is neither a spec file (.yaml) nor a plan saved by plan -out", paths[0])
	}
	if !strings.HasPrefix(sp.FormatVersion, "1.") {
		return nil, fmt.Errorf("%s: plan format %s is not supported by this shirath (it reads 1.x)", paths[0], sp.FormatVersion)
	}
	for _, s := range sp.Specs {
		s.ApplyDefaults()
	}
	return &sp, nil
}

func (c *ApplyCmd) Run(a *app, ctx context.Context) error {
	if c.Parallelism < 0 {
		return fmt.Errorf("-parallelism=%d: give a number of MVs of at least 1", c.Parallelism)
	}
	a.parallelism = c.Parallelism
	saved, err := readSavedPlan(c.Paths)
	if err != nil {
		return err
	}
	var plan *planner.Plan
	var st *state.Store
	var conn *planner.Connector
	var desired []*specs.Spec
	if saved != nil && len(c.Replace) > 0 {
		return errors.New("-replace belongs to plan when a saved plan is applied: the saved plan already says what it rebuilds")
	}
	if saved != nil {
		// Apply exactly the saved plan, if the live state is still the one
		// it was made from.
		var fresh *planner.Plan
		fresh, st, conn, err = a.makePlan(ctx, saved.Specs, saved.Destroy)
		if err != nil {
			return err
		}
		if fresh.Fingerprint != saved.Fingerprint {
			st.Close()
			conn.Close()
			return fmt.Errorf("saved plan is stale: the live state (ClickHouse objects, nodes or jobs) changed since it was made; run plan again")
		}
		plan = &saved.Plan
	} else {
		desired, err = loadSpecs(c.Paths)
		if err != nil {
			return err
		}
		plan, st, conn, err = a.makePlan(ctx, desired, c.Destroy, c.Replace...)
		if err != nil {
			return err
		}
	}
	defer st.Close()
	defer conn.Close()

	if saved == nil {
		renderHuman(a.stdout, plan, a.stdoutTTY())
	}
	if !plan.HasChanges() {
		return nil
	}
	if saved == nil && !c.AutoApprove {
		if !a.isTerminal(a.stdin) {
			return errors.New("apply needs confirmation and standard input is not a terminal: run with --auto-approve, or save a plan with plan -out and apply that file")
		}
		fmt.Fprint(a.stdout, "\nDo you want to perform these actions? Only 'yes' will be accepted.\n  Enter a value: ")
		line, _ := bufio.NewReader(a.stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return errors.New("apply cancelled")
		}
	}
	prog := newProgress(a.stdout, a.stdoutTTY())
	ex := &executor.Executor{
		Conn:  conn,
		Store: st,
		Log:   a.log.Named("executor"),
		Opts: executor.Options{
			WaitForLock:       c.WaitLock,
			FenceHeadroom:     c.Headroom,
			SourceWaitTimeout: c.SourceWait,
			DDLTimeout:        c.DDLTimeout,
			Parallelism:       c.Parallelism,
			ShardParallelism:  c.Parallelism,
			OnEvent:           prog.event,
		},
	}
	specsOf := desired
	if saved != nil {
		specsOf = saved.Specs
	}
	err = a.applyInRounds(ctx, ex, st, conn, plan, specsOf)
	prog.finish()
	s := plan.Summary()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "\nApply complete! Resources: %s%d created, %d changed, %d destroyed.\n", adoptedCount(s), s.Create, s.Change, s.Destroy)
	return nil
}

// applyInRounds applies the plan. A change deferred until its upstream MV
// is complete (a chain), or a switch held until the MVs downstream are
// rebuilt over the new version (a change rippling down a chain), is planned
// again once the round that completes it has finished, and applied, until
// none is left; a round that leaves the same changes deferred for the same
// reasons fails, naming what they wait for.
func (a *app) applyInRounds(ctx context.Context, ex *executor.Executor, st *state.Store, conn *planner.Connector, plan *planner.Plan, desired []*specs.Spec) error {
	for {
		err := ex.Apply(ctx, plan)
		deferred := plan.Deferred()
		if err != nil || len(deferred) == 0 {
			if err != nil && len(deferred) > 0 {
				err = fmt.Errorf("%w\nnot applied, as what they read is not complete: %s", err, strings.Join(deferredList(deferred), "; "))
			}
			return err
		}
		p := &planner.Planner{Conn: conn, Store: st, Log: a.log.Named("planner")}
		next, _, err := p.Plan(ctx, desired, false)
		if err != nil {
			return err
		}
		again := next.Deferred()
		if slices.Equal(deferredList(again), deferredList(deferred)) {
			// No progress: the same changes wait for the same things
			// (a change rippling down a chain defers different ones,
			// or the same ones for other reasons, in each round).
			return fmt.Errorf("%w: still deferred after their upstream MVs were applied: %s", executor.ErrBlocked, strings.Join(deferredList(again), "; "))
		}
		var names []string
		for _, c := range deferred {
			names = append(names, c.Address())
		}
		fmt.Fprintf(a.stdout, "\nPlanned again, now that what %s waited for is done:\n", strings.Join(names, ", "))
		renderHuman(a.stdout, next, a.stdoutTTY())
		if next.Blocked() > 0 {
			return fmt.Errorf("%w: the plan made again holds changes that cannot be applied (see '! cannot apply')", executor.ErrBlocked)
		}
		plan = next
	}
}

func deferredList(cs []*planner.ResourceChange) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Address()+" "+c.Deferred)
	}
	return out
}

// ValidateCmd is `shirath validate`.
type ValidateCmd struct {
	Paths []string `arg:"" help:"Spec files or directories." type:"path"`
}

func (c *ValidateCmd) Run(a *app) error {
	ss, err := loadSpecs(c.Paths)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d specs valid.\n", len(ss))
	return nil
}

// MigrateCmd is `shirath migrate`.
type MigrateCmd struct{}

func (c *MigrateCmd) Run(a *app, ctx context.Context) error {
	st, err := state.Open(ctx, a.g.Postgres)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := st.Migrate(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "job store up to date (%d migrations applied now)\n", len(applied))
	return nil
}

// StatusCmd is `shirath status`.
type StatusCmd struct {
	Name string `arg:"" optional:"" help:"MV name (database.name or name)."`
	JSON bool   `name:"json" help:"Print JSON."`
}

func (c *StatusCmd) Run(a *app, ctx context.Context) error {
	st, err := a.store(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	jobs, err := st.ListJobs(ctx)
	if err != nil {
		return err
	}
	if c.Name != "" {
		var found []*state.Job
		for _, j := range jobs {
			if j.Name == c.Name || j.Database+"."+j.Name == c.Name {
				found = append(found, j)
			}
		}
		if len(found) == 0 {
			return fmt.Errorf("no MV job named %q", c.Name)
		}
		jobs = found
	}
	var refresh *chclient.RefreshState
	if c.Name != "" && len(jobs) == 1 {
		refresh = a.refreshState(ctx, jobs[0])
	}
	if c.JSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if c.Name != "" && len(jobs) == 1 {
			out := map[string]any{"job": jobs[0]}
			if refresh != nil {
				out["refresh"] = refresh
			}
			return enc.Encode(out)
		}
		return enc.Encode(map[string]any{"jobs": jobs})
	}
	renderStatus(a.stdout, jobs, c.Name != "")
	if refresh != nil {
		when := func(t *time.Time) string {
			if t == nil {
				return "none"
			}
			return t.Format(time.RFC3339)
		}
		fmt.Fprintf(a.stdout, "refresh: %s, last success %s, next refresh %s\n", refresh.Status, when(refresh.LastSuccess), when(refresh.NextRefresh))
		if refresh.Exception != "" {
			fmt.Fprintf(a.stdout, "refresh failed: %s\n", refresh.Exception)
		}
	}
	return nil
}

// refreshState reads a refreshable MV's state from system.view_refreshes on
// the first node that answers; nil for another MV, or when no node answers
// (said on standard error: the job's own status is still shown).
func (a *app) refreshState(ctx context.Context, j *state.Job) *chclient.RefreshState {
	sp, err := specs.ParseJSON(j.Config)
	if err != nil || sp.Refresh == nil {
		return nil
	}
	conn := a.connector()
	defer conn.Close()
	topo, err := conn.Topology(ctx, j.ClusterName)
	if err == nil {
		for _, n := range topo.Healthy() {
			st, rerr := chclient.ReadRefreshState(ctx, n.Conn, j.Database, sqlgen.VersionedName(j.Name, max(j.LiveVersion, 1)))
			if rerr == nil {
				return st
			}
			err = rerr
		}
	}
	fmt.Fprintf(a.stderr, "refresh state of %s.%s not read: %v\n", j.Database, j.Name, err)
	return nil
}
