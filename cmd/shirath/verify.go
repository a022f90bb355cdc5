package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shirath/shirath/internal/verify"
	"github.com/shirath/shirath/state"
)

// VerifyCmd is `shirath verify [NAME...]`. Its exit codes are diff's: 0 when
// every target matches its query, 1 when one differs, 2 when one could not
// be verified (an error), so that CI can tell a wrong target from trouble.
type VerifyCmd struct {
	Names         []string      `arg:"" optional:"" help:"MV names (name or database.name); default: every MV with a job."`
	Format        string        `name:"format" enum:"human,json" default:"human" help:"Output: human or json."`
	Show          int           `name:"show" default:"10" help:"Differences printed per MV (human output); json prints every one returned."`
	Limit         int           `name:"limit" default:"1000" help:"Differing groups a check returns and re-checks; how many differ in all is always counted."`
	ConfirmRounds int           `name:"confirm-rounds" default:"5" help:"Checks in a row a group must differ in to be reported while rows are written."`
	ClearRounds   int           `name:"clear-rounds" default:"2" help:"Checks in a row a group must match in to count as rows in flight."`
	MaxRounds     int           `name:"max-rounds" default:"40" help:"Re-checks at most; a group still unsettled is reported."`
	Delay         time.Duration `name:"recheck-delay" default:"200ms" help:"Pause between re-checks of differing groups."`
}

// Exit codes of verify.
const (
	verifyDiffers = 1
	verifyFailed  = 2
)

func (c *VerifyCmd) Run(a *app, ctx context.Context) error {
	st, err := a.store(ctx)
	if err != nil {
		return exitWith(a, verifyFailed, err)
	}
	defer st.Close()
	jobs, err := verifyJobs(ctx, st, c.Names)
	if err != nil {
		return exitWith(a, verifyFailed, err)
	}
	conn := a.connector()
	defer conn.Close()
	v := &verify.Verifier{Conn: conn, Log: a.log.Named("verify"), Opts: verify.Options{
		Limit: c.Limit, ConfirmRounds: c.ConfirmRounds, ClearRounds: c.ClearRounds, MaxRounds: c.MaxRounds, Delay: c.Delay,
	}}
	var reports []*verify.Report
	var failures []string
	code := 0
	for _, job := range jobs {
		rep, err := v.VerifyJob(ctx, st, job)
		if err != nil {
			failures = append(failures, err.Error())
			code = verifyFailed
			continue
		}
		reports = append(reports, rep)
		if !rep.OK && code == 0 {
			code = verifyDiffers
		}
	}
	if c.Format == "json" {
		if reports == nil {
			reports = []*verify.Report{}
		}
		if failures == nil {
			failures = []string{}
		}
		if err := printJSON(a.stdout, map[string]any{"reports": reports, "errors": failures}); err != nil {
			return err
		}
	} else {
		for i, rep := range reports {
			if i > 0 {
				fmt.Fprintln(a.stdout)
			}
			renderVerify(a.stdout, rep, c.Show)
		}
	}
	for _, f := range failures {
		fmt.Fprintf(a.stderr, "Error: %s\n", f)
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// exitWith prints err and exits with code.
func exitWith(a *app, code int, err error) error {
	fmt.Fprintf(a.stderr, "Error: %v\n", err)
	return exitError{code}
}

// verifyJobs returns the jobs named (name or database.name), or every job.
func verifyJobs(ctx context.Context, st *state.Store, names []string) ([]*state.Job, error) {
	all, err := st.ListJobs(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		if len(all) == 0 {
			return nil, errors.New("no MV jobs to verify")
		}
		return all, nil
	}
	var out []*state.Job
	for _, n := range names {
		found := false
		for _, j := range all {
			// As status: a bare name matches the MV in every database.
			if j.Name == n || j.Database+"."+j.Name == n {
				out = append(out, j)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("no MV job named %q (see shirath status)", n)
		}
	}
	return out, nil
}

func renderVerify(w io.Writer, r *verify.Report, show int) {
	verdict := "OK: the target matches its query"
	if !r.OK {
		verdict = fmt.Sprintf("DIFFERS: %d groups", r.Count())
	}
	fmt.Fprintf(w, "%s.%s: %s\n", r.Database, r.Name, verdict)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  Target:\t%s.%s (version %d), %s\n", r.Database, r.Target, r.Version, r.Merge)
	fmt.Fprintf(tw, "  Compared:\tby (%s): %s\n", strings.Join(r.Keys, ", "), strings.Join(r.Values, ", "))
	if len(r.NotCompared) > 0 {
		fmt.Fprintf(tw, "  Not compared:\t%s\n", strings.Join(r.NotCompared, "; "))
	}
	fmt.Fprintf(tw, "  Groups:\t%d in the target, %d equal, %d differ, %d missing, %d extra", r.Groups, r.Equal, r.Differ, r.Missing, r.Extra)
	if r.Unchecked > 0 {
		fmt.Fprintf(tw, ", %d more differ (beyond --limit, not re-checked)", r.Unchecked)
	}
	fmt.Fprintln(tw)
	checks, transient := 0, 0
	for _, s := range r.Scopes {
		checks += s.Checks
		transient += s.Transient
	}
	fmt.Fprintf(tw, "  Checks:\t%d on %d node(s) in %.1fs; %d group(s) differed only while rows were in flight\n", checks, len(r.Scopes), r.Seconds, transient)
	tw.Flush()
	if len(r.Differences) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SHARD\tKIND\tGROUP\tTARGET\tQUERY")
	for i, d := range r.Differences {
		if i == show {
			fmt.Fprintf(tw, "  ...\t%d more\t\t\t\n", len(r.Differences)-show)
			break
		}
		kind := d.Kind
		if d.Unstable {
			kind += " (unstable)"
		}
		fmt.Fprintf(tw, "  %d\t%s\t(%s)\t%s\t%s\n", d.Shard, kind, strings.Join(d.Key, ", "), values(d.Target), values(d.Expected))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n  To rebuild the target from the whole source beside the live one, readers switched at once:\n    shirath apply -replace %s.%s SPEC_PATHS\n", r.Database, r.Name)
}

func values(v []string) string {
	if v == nil {
		return "-"
	}
	return "(" + strings.Join(v, ", ") + ")"
}

// verifiedLine says when a verify last passed, and how the last one ended
// when it did not.
func verifiedLine(at *string, last *state.VerifySummary) string {
	line := "never"
	if at != nil {
		line = *at
	}
	if last != nil && !last.OK {
		line += fmt.Sprintf("; the last verify (%s, version %d) found %d differences", last.At.UTC().Format(time.RFC3339), last.Version, last.Differences)
	}
	return line
}
