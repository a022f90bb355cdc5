package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

// MVCmd is `shirath mv`: the operator commands of the original design. With
// --server they go through a running daemon's REST API; without, they work
// on ClickHouse and PostgreSQL directly, in the foreground.
type MVCmd struct {
	Server    string `name:"server" env:"SHIRATH_SERVER" help:"URL of a running shirath serve, e.g. http://127.0.0.1:4000; without it, work on ClickHouse and PostgreSQL directly."`
	Token     string `name:"token" env:"SHIRATH_API_TOKEN" help:"API token of the server."`
	TokenFile string `name:"token-file" type:"existingfile" help:"File holding the API token of the server."`

	Create   MVCreateCmd   `cmd:"" help:"Store an MV spec and build the MV (from flags or -f spec.yaml)."`
	List     MVListCmd     `cmd:"" help:"List MVs: their jobs, and specs not started yet."`
	Status   MVStatusCmd   `cmd:"" help:"Show one MV: job, progress per shard, errors."`
	Backfill MVBackfillCmd `cmd:"" help:"Start, resume or rebuild an MV's backfill."`
	Drop     MVDropCmd     `cmd:"" help:"Drop an MV, its target and Distributed tables, its job and its spec."`
}

// AfterApply hands the shared flags to the subcommands.
func (m *MVCmd) AfterApply(kctx *kong.Context) error {
	kctx.Bind(m)
	return nil
}

// client returns the API client, or nil without --server.
func (m *MVCmd) client() (*server.Client, error) {
	if m.Server == "" {
		return nil, nil
	}
	tok := m.Token
	if m.TokenFile != "" {
		b, err := os.ReadFile(m.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		tok = string(b)
	}
	return &server.Client{BaseURL: m.Server, Token: strings.TrimSpace(tok)}, nil
}

// target parses the MV argument of a subcommand (name or database.name)
// and returns the API client, nil without --server.
func (m *MVCmd) target(arg string) (db, name string, cl *server.Client, err error) {
	if db, name, err = server.ParseKey(arg); err != nil {
		return "", "", nil, err
	}
	cl, err = m.client()
	return db, name, cl, err
}

// MVCreateCmd is `shirath mv create`.
type MVCreateCmd struct {
	File     string        `name:"file" short:"f" type:"existingfile" help:"Spec file (YAML), instead of the flags below."`
	Name     string        `name:"name" help:"MV name."`
	Source   string        `name:"source" help:"Source table."`
	Engine   string        `name:"engine" help:"Engine of the target table, e.g. SummingMergeTree()."`
	OrderBy  []string      `name:"order-by" sep:"none" help:"ORDER BY column or expression of the target (repeatable)."`
	Columns  []string      `name:"column" sep:"none" help:"Target column as name:type (repeatable), e.g. --column total:Decimal(18,2)."`
	Query    string        `name:"query" help:"SELECT of the MV, with {source_table}."`
	Cluster  string        `name:"cluster" help:"Cluster name, or auto."`
	Database string        `name:"database" help:"Database (default: default)."`
	Wait     bool          `name:"wait" help:"With --server: follow the progress until the MV is complete."`
	WaitLock bool          `name:"wait-lock" help:"Without --server: wait for a lock held by another shirath instead of failing."`
	Headroom time.Duration `name:"fence-headroom" default:"3s" help:"Without --server: seconds of the observed insert rate the fence leaves above max(key)."`
}

// documents returns the spec documents to create, as JSON bodies.
func (c *MVCreateCmd) documents() ([][]byte, error) {
	flags := c.Name != "" || c.Source != "" || c.Engine != "" || len(c.OrderBy) > 0 || len(c.Columns) > 0 || c.Query != "" || c.Cluster != "" || c.Database != ""
	if c.File != "" {
		if flags {
			return nil, errors.New("give either -f FILE or the spec flags, not both")
		}
		ss, err := specs.LoadPath(c.File)
		if err != nil {
			return nil, fmt.Errorf("invalid specs:\n%w", err)
		}
		var out [][]byte
		for _, s := range ss {
			b, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		return out, nil
	}
	if !flags {
		return nil, errors.New("give -f FILE, or --name, --source, --engine, --order-by, --column and --query")
	}
	doc := map[string]any{
		"name":         c.Name,
		"source_table": c.Source,
		"engine":       c.Engine,
		"order_by":     nonNil(c.OrderBy),
		"select_query": c.Query,
	}
	cols := []map[string]string{}
	var bad []string
	for _, col := range c.Columns {
		n, t, ok := strings.Cut(col, ":")
		if !ok {
			bad = append(bad, fmt.Sprintf("--column %q: write name:type", col))
			continue
		}
		cols = append(cols, map[string]string{"name": strings.TrimSpace(n), "type": strings.TrimSpace(t)})
	}
	if len(bad) > 0 {
		return nil, errors.New(strings.Join(bad, "\n"))
	}
	doc["columns"] = cols
	if c.Cluster != "" {
		doc["cluster"] = c.Cluster
	}
	if c.Database != "" {
		doc["database"] = c.Database
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return [][]byte{b}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (c *MVCreateCmd) Run(a *app, ctx context.Context, m *MVCmd) error {
	docs, err := c.documents()
	if err != nil {
		return err
	}
	cl, err := m.client()
	if err != nil {
		return err
	}
	if cl != nil {
		for _, doc := range docs {
			mv, created, err := cl.Create(ctx, doc)
			if err != nil {
				return err
			}
			verb := "created"
			if !created {
				verb = "already stored with the same spec"
			}
			fmt.Fprintf(a.stdout, "%s: %s; status %s\n", mv.Key(), verb, mv.Status)
			if c.Wait {
				if err := follow(ctx, a.stdout, cl, mv.Key()); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var ss []*specs.Spec
	for _, doc := range docs {
		s, err := specs.ParseJSON(doc)
		if err != nil {
			return fmt.Errorf("invalid spec:\n%w", err)
		}
		ss = append(ss, s)
	}
	st, err := a.store(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, s := range ss {
		key := server.Key(s.Database, s.Name)
		job, err := findJob(ctx, st, s.Database, s.Name)
		if err != nil {
			return err
		}
		if job != nil && job.SpecHash != specs.Hash(s) {
			return fmt.Errorf("%s exists with a different spec: drop it first (shirath mv drop %s)", key, key)
		}
		rec, err := server.SpecRecord(s, state.OriginAPI)
		if err != nil {
			return err
		}
		if _, err := st.PutSpec(ctx, rec, false); errors.Is(err, state.ErrSpecConflict) {
			return fmt.Errorf("a different spec is stored under %s: drop it first (shirath mv drop %s)", key, key)
		} else if err != nil {
			return err
		}
	}
	return a.applySpecs(ctx, ss, c.WaitLock, c.Headroom)
}

// applySpecs plans the specs and applies their changes in the foreground
// with progress, like apply --auto-approve for those specs alone.
func (a *app) applySpecs(ctx context.Context, ss []*specs.Spec, waitLock bool, headroom time.Duration) error {
	plan, st, conn, err := a.makePlan(ctx, ss, false)
	if err != nil {
		return err
	}
	defer st.Close()
	defer conn.Close()
	renderHuman(a.stdout, plan, a.stdoutTTY())
	if !plan.HasChanges() {
		return nil
	}
	prog := newProgress(a.stdout, a.stdoutTTY())
	ex := &executor.Executor{Conn: conn, Store: st, Log: a.log.Named("executor"), Opts: executor.Options{
		WaitForLock: waitLock, FenceHeadroom: headroom, OnEvent: prog.event,
	}}
	err = a.applyInRounds(ctx, ex, st, conn, plan, ss)
	prog.finish()
	if err != nil {
		return err
	}
	s := plan.Summary()
	fmt.Fprintf(a.stdout, "\nApply complete! Resources: %d created, %d changed, %d destroyed.\n", s.Create, s.Change, s.Destroy)
	return nil
}

// follow polls an MV through the API until it is complete, printing its
// progress when it changes; a failed or terminal MV is an error.
func follow(ctx context.Context, w io.Writer, cl *server.Client, key string) error {
	last := ""
	for {
		mv, err := cl.Get(ctx, key)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s: %s %.1f%% (%d/%d rows)", key, mv.Status, mv.ProgressPercent, mv.ProcessedRows, mv.TotalRows)
		if mv.Reconcile != nil && mv.Reconcile.State != server.CondRunning && mv.Reconcile.State != server.CondSynced {
			line += " [" + mv.Reconcile.State + "]"
		}
		if line != last {
			fmt.Fprintln(w, line)
			last = line
		}
		switch {
		case mv.Status == state.StatusCompleted:
			return nil
		case mv.Reconcile != nil && mv.Reconcile.Terminal:
			return fmt.Errorf("%s: %s: %s", key, mv.Reconcile.State, mv.Reconcile.Message)
		case mv.Status == state.StatusNeedsAttention:
			return fmt.Errorf("%s needs attention: %s", key, deref(mv.ErrorMessage))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// MVListCmd is `shirath mv list`.
type MVListCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *MVListCmd) Run(a *app, ctx context.Context, m *MVCmd) error {
	cl, err := m.client()
	if err != nil {
		return err
	}
	var mvs []server.MV
	if cl != nil {
		if mvs, err = cl.List(ctx); err != nil {
			return err
		}
	} else {
		st, err := a.store(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		jobs, err := st.ListJobs(ctx)
		if err != nil {
			return err
		}
		recs, err := st.ListSpecs(ctx)
		if err != nil {
			return err
		}
		if mvs, err = localMVs(jobs, recs); err != nil {
			return err
		}
	}
	if c.JSON {
		return printJSON(a.stdout, map[string]any{"jobs": nonNilMVs(mvs)})
	}
	renderMVs(a.stdout, mvs)
	return nil
}

func nonNilMVs(m []server.MV) []server.MV {
	if m == nil {
		return []server.MV{}
	}
	return m
}

// localMVs shows jobs and stored specs as the API would, without the
// daemon's reconcile condition, so that both ways print the same.
func localMVs(jobs []*state.Job, recs []*state.SpecRecord) ([]server.MV, error) {
	views, err := server.Views(jobs, server.StoredSpecs(recs), nil)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(views)
	if err != nil {
		return nil, err
	}
	var mvs []server.MV
	return mvs, json.Unmarshal(b, &mvs)
}

// findJob returns the MV's job, or nil when it has none.
func findJob(ctx context.Context, st *state.Store, db, name string) (*state.Job, error) {
	job, err := st.GetJob(ctx, db, name)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	return job, err
}

// findMV returns the MV's job and its stored spec, each nil when missing;
// an MV with neither does not exist.
func findMV(ctx context.Context, st *state.Store, db, name string) (*state.Job, *state.SpecRecord, error) {
	job, err := findJob(ctx, st, db, name)
	if err != nil {
		return nil, nil, err
	}
	rec, err := st.GetSpec(ctx, db, name)
	if errors.Is(err, state.ErrNotFound) {
		rec, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if job == nil && rec == nil {
		return nil, nil, errNoMV(server.Key(db, name))
	}
	return job, rec, nil
}

func errNoMV(key string) error {
	return fmt.Errorf("no MV named %s: neither a spec nor a job", key)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func renderMVs(w io.Writer, mvs []server.MV) {
	if len(mvs) == 0 {
		fmt.Fprintln(w, "No MVs.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MV\tSTATUS\tPROGRESS\tROWS\tCUTOFF\tSPEC\tRECONCILE")
	for _, mv := range mvs {
		cutoff := "-"
		if mv.CutoffID != nil {
			cutoff = fmt.Sprint(*mv.CutoffID)
		}
		origin := "-"
		if mv.Origin != nil {
			origin = *mv.Origin
		}
		rec := "-"
		if mv.Reconcile != nil {
			rec = mv.Reconcile.State
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t%d/%d\t%s\t%s\t%s\n", mv.Key(), mv.Status, mv.ProgressPercent, mv.ProcessedRows, mv.TotalRows, cutoff, origin, rec)
	}
	tw.Flush()
	for _, mv := range mvs {
		if mv.ErrorMessage != nil {
			fmt.Fprintf(w, "\n%s: %s\n", mv.Key(), *mv.ErrorMessage)
		}
	}
}

// MVStatusCmd is `shirath mv status NAME`.
type MVStatusCmd struct {
	Name string `arg:"" help:"MV name (name or database.name)."`
	JSON bool   `name:"json" help:"Print JSON."`
}

func (c *MVStatusCmd) Run(a *app, ctx context.Context, m *MVCmd) error {
	db, name, cl, err := m.target(c.Name)
	if err != nil {
		return err
	}
	var mv *server.MV
	if cl != nil {
		if mv, err = cl.Get(ctx, server.Key(db, name)); err != nil {
			return err
		}
	} else {
		st, err := a.store(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		job, rec, err := findMV(ctx, st, db, name)
		if err != nil {
			return err
		}
		var jobs []*state.Job
		if job != nil {
			jobs = append(jobs, job)
		}
		var recs []*state.SpecRecord
		if rec != nil {
			recs = append(recs, rec)
		}
		mvs, err := localMVs(jobs, recs)
		if err != nil {
			return err
		}
		mv = &mvs[0]
	}
	if c.JSON {
		return printJSON(a.stdout, map[string]any{"job": mv})
	}
	renderMV(a.stdout, mv)
	return nil
}

func renderMV(w io.Writer, mv *server.MV) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	opt := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	str := func(p *string) string {
		if p == nil || *p == "" {
			return "-"
		}
		return *p
	}
	fmt.Fprintf(tw, "MV:\t%s\n", mv.Key())
	fmt.Fprintf(tw, "Job:\t%s\n", opt(mv.ID))
	fmt.Fprintf(tw, "Status:\t%s\n", mv.Status)
	fmt.Fprintf(tw, "Source:\t%s.%s\n", mv.Database, mv.SourceTable)
	fmt.Fprintf(tw, "Target:\t%s.%s\n", mv.Database, mv.TargetTable)
	fmt.Fprintf(tw, "Cluster:\t%s\n", str(mv.ClusterName))
	fmt.Fprintf(tw, "Cutoff:\t%s\n", opt(mv.CutoffID))
	fmt.Fprintf(tw, "Progress:\t%.1f%% (%d of %d rows, last key %s)\n", mv.ProgressPercent, mv.ProcessedRows, mv.TotalRows, opt(mv.LastProcessedID))
	fmt.Fprintf(tw, "Spec:\t%s\n", str(mv.Origin))
	fmt.Fprintf(tw, "Created:\t%s\n", mv.CreatedAt)
	fmt.Fprintf(tw, "Updated:\t%s\n", mv.UpdatedAt)
	if mv.Reconcile != nil {
		r := mv.Reconcile
		line := r.State + " (" + r.Reason + ")"
		if r.Failures > 0 {
			line += fmt.Sprintf(", %d failures", r.Failures)
		}
		if r.NextAttemptAt != nil {
			line += ", next attempt " + r.NextAttemptAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "Reconcile:\t%s\n", line)
	}
	tw.Flush()
	if mv.ErrorMessage != nil {
		fmt.Fprintf(w, "\nError: %s\n", *mv.ErrorMessage)
	}
	if mv.Reconcile != nil && mv.Reconcile.Message != "" && (mv.ErrorMessage == nil || *mv.ErrorMessage != mv.Reconcile.Message) {
		fmt.Fprintf(w, "\nReconcile: %s\n", mv.Reconcile.Message)
	}
	if len(mv.Shards) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tREPLICA\tSTATUS\tPROGRESS\tROWS\tLAST KEY")
	for _, s := range mv.Shards {
		rep := s.Replica
		if rep == "" {
			rep = "(any)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.1f%%\t%d/%d\t%s\n", s.Shard, rep, s.Status, s.ProgressPercent, s.ProcessedRows, s.TotalRows, opt(s.LastProcessedID))
	}
	tw.Flush()
}

// MVBackfillCmd is `shirath mv backfill NAME [--restart]`.
type MVBackfillCmd struct {
	Name     string        `arg:"" help:"MV name (name or database.name)."`
	Restart  bool          `name:"restart" help:"Rebuild: drop the view, target and Distributed tables and the job, then create them again and backfill the whole history."`
	Wait     bool          `name:"wait" help:"With --server: follow the progress until the MV is complete."`
	WaitLock bool          `name:"wait-lock" help:"Without --server: wait for a lock held by another shirath instead of failing."`
	Headroom time.Duration `name:"fence-headroom" default:"3s" help:"Without --server: seconds of the observed insert rate the fence leaves above max(key)."`
}

// Run starts, resumes or rebuilds the backfill. A job in progress resumes
// from its recorded progress; a failed, needs_attention or paused job, or
// --restart, is rebuilt (see server.BackfillRebuilds); a completed job needs
// --restart.
func (c *MVBackfillCmd) Run(a *app, ctx context.Context, m *MVCmd) error {
	db, name, cl, err := m.target(c.Name)
	if err != nil {
		return err
	}
	key := server.Key(db, name)
	if cl != nil {
		mv, err := cl.Backfill(ctx, key, c.Restart)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s: backfill requested; status %s\n", key, mv.Status)
		if c.Wait {
			return follow(ctx, a.stdout, cl, key)
		}
		return nil
	}
	st, err := a.store(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	job, rec, err := findMV(ctx, st, db, name)
	if err != nil {
		return err
	}
	var spec *specs.Spec
	if rec != nil {
		d := server.StoredSpecs([]*state.SpecRecord{rec})[key]
		if d.Err != nil {
			return d.Err
		}
		spec = d.Spec
	} else if spec, err = server.JobSpec(job); err != nil {
		return err
	}
	rebuild, err := server.BackfillRebuilds(job, c.Restart)
	if err != nil {
		return err
	}
	if rebuild {
		fmt.Fprintf(a.stdout, "%s: job %s: dropping the view, its target and Distributed tables and the job to rebuild them\n", key, job.Status)
		if err := a.dropJob(ctx, st, job, c.WaitLock); err != nil {
			return err
		}
	}
	return a.applySpecs(ctx, []*specs.Spec{spec}, c.WaitLock, c.Headroom)
}

func (a *app) dropJob(ctx context.Context, st *state.Store, job *state.Job, waitLock bool) error {
	conn := a.connector()
	defer conn.Close()
	prog := newProgress(a.stdout, a.stdoutTTY())
	ex := &executor.Executor{Conn: conn, Store: st, Log: a.log.Named("executor"), Opts: executor.Options{WaitForLock: waitLock, OnEvent: prog.event}}
	err := ex.ApplyChange(ctx, server.DropChange(job))
	prog.finish()
	return err
}

// MVDropCmd is `shirath mv drop NAME`.
type MVDropCmd struct {
	Name     string `arg:"" help:"MV name (name or database.name)."`
	WaitLock bool   `name:"wait-lock" help:"Without --server: wait for a lock held by another shirath instead of failing."`
}

func (c *MVDropCmd) Run(a *app, ctx context.Context, m *MVCmd) error {
	db, name, cl, err := m.target(c.Name)
	if err != nil {
		return err
	}
	key := server.Key(db, name)
	if cl != nil {
		if err := cl.Delete(ctx, key); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s: dropped\n", key)
		return nil
	}
	st, err := a.store(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	job, err := findJob(ctx, st, db, name)
	if err != nil {
		return err
	}
	err = st.DeleteSpec(ctx, db, name)
	hadSpec := err == nil
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return err
	}
	if job == nil && !hadSpec {
		return errNoMV(key)
	}
	if job != nil {
		if err := a.dropJob(ctx, st, job, c.WaitLock); err != nil {
			return err
		}
	}
	fmt.Fprintf(a.stdout, "%s: dropped\n", key)
	return nil
}
