package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/shirath/shirath/executor"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/state"
)

const (
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	red    = "\x1b[31m"
	bold   = "\x1b[1m"
	reset  = "\x1b[0m"
)

type painter bool

func (p painter) paint(color, s string) string {
	if !p {
		return s
	}
	return color + s + reset
}

func actionColor(a planner.Action) string {
	switch a {
	case planner.Create:
		return green
	case planner.Update, planner.Change:
		return yellow
	case planner.Delete, planner.Replace:
		return red
	}
	return ""
}

var actionVerb = map[planner.Action]string{
	planner.Create:  "will be created",
	planner.Update:  "will be updated",
	planner.Replace: "must be replaced",
	planner.Delete:  "will be destroyed",
	planner.Change:  "has changed",
}

// renderHuman prints a plan the way Terraform does: one block per change
// with its reason and ordered steps, then a summary. Colours only on a
// terminal.
func renderHuman(w io.Writer, p *planner.Plan, color bool) {
	paint := painter(color)
	for _, u := range p.Unreachable {
		fmt.Fprintf(w, "%s node %s did not answer: its objects were not checked\n", paint.paint(yellow, "Warning:"), u)
	}
	if !p.HasChanges() {
		fmt.Fprintln(w, "No changes. The live ClickHouse objects and jobs match the specs.")
		for _, c := range p.Changes {
			if c.Reason != "" && c.Reason != "up to date" {
				fmt.Fprintf(w, "  %s: %s\n", c.Address(), c.Reason)
			}
		}
		return
	}
	fmt.Fprintln(w, "shirath will perform the following actions:")
	for _, c := range p.Changes {
		if c.Action == planner.NoOp {
			continue
		}
		col := actionColor(c.Action)
		fmt.Fprintf(w, "\n  %s\n", paint.paint(bold, fmt.Sprintf("# %s %s", c.Address(), actionVerb[c.Action])))
		fmt.Fprintf(w, "  # (%s)\n", c.Reason)
		fmt.Fprintf(w, "  %s materialized view %s", paint.paint(col, c.Action.Symbol()), c.Address())
		if c.Spec != nil {
			fmt.Fprintf(w, " <- %s.%s", c.Database, c.Spec.SourceTable)
		}
		if c.Cluster != "" {
			fmt.Fprintf(w, " on cluster %s", c.Cluster)
		}
		fmt.Fprintln(w)
		for _, st := range c.Steps {
			fmt.Fprintf(w, "      %s %s: %s\n", paint.paint(col, c.Action.Symbol()), st.Kind, st.Detail)
			if st.SQL != "" {
				for _, l := range strings.Split(st.SQL, "\n") {
					fmt.Fprintf(w, "          %s\n", l)
				}
			}
		}
		if len(c.Casts) > 0 {
			var parts []string
			for _, col := range sortedKeys(c.Casts) {
				parts = append(parts, fmt.Sprintf("%s to %s", col, c.Casts[col]))
			}
			fmt.Fprintf(w, "      note: the query's own types differ from the declared columns; cast %s\n", strings.Join(parts, ", "))
		}
		if c.Diff != "" {
			fmt.Fprintln(w, "      diff (applied -> spec):")
			for _, l := range strings.Split(strings.TrimRight(c.Diff, "\n"), "\n") {
				lc := ""
				if strings.HasPrefix(l, "- ") {
					lc = red
				} else if strings.HasPrefix(l, "+ ") {
					lc = green
				}
				if lc != "" {
					l = paint.paint(lc, l)
				}
				fmt.Fprintf(w, "        %s\n", l)
			}
		}
		if c.Blocked != "" {
			fmt.Fprintf(w, "      %s %s\n", paint.paint(red, "! cannot apply:"), c.Blocked)
		}
	}
	s := p.Summary()
	fmt.Fprintf(w, "\n%s %d to create, %d to change, %d to destroy.\n", paint.paint(bold, "Plan:"), s.Create, s.Change, s.Destroy)
	if s.Blocked > 0 {
		fmt.Fprintf(w, "%d change(s) cannot be applied; apply will refuse them (see '! cannot apply').\n", s.Blocked)
	}
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// jsonPlan is the machine-readable view: versioned, actions as strings.
type jsonPlan struct {
	*planner.Plan
	Summary jsonSummary `json:"summary"`
}

// jsonSummary gives the summary the snake_case keys of the rest of the
// document (planner.Summary has no JSON tags).
type jsonSummary struct {
	Create  int `json:"create"`
	Change  int `json:"change"`
	Destroy int `json:"destroy"`
	Blocked int `json:"blocked"`
}

func renderJSON(w io.Writer, p *planner.Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonPlan{Plan: p, Summary: jsonSummary(p.Summary())})
}

func renderStatus(w io.Writer, jobs []*state.Job, detail bool) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "No MV jobs.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MV\tSTATUS\tPROGRESS\tROWS\tCUTOFF\tCLUSTER\tUPDATED")
	for _, j := range jobs {
		cutoff := "-"
		if j.CutoffID != nil {
			cutoff = fmt.Sprint(*j.CutoffID)
		}
		cl := j.ClusterName
		if cl == "" {
			cl = "-"
		}
		fmt.Fprintf(tw, "%s.%s\t%s\t%.1f%%\t%d/%d\t%s\t%s\t%s\n", j.Database, j.Name, j.Status, j.ProgressPercent(), j.ProcessedRows, j.TotalRows, cutoff, cl, j.UpdatedAt.UTC().Format(time.RFC3339))
	}
	tw.Flush()
	if !detail {
		return
	}
	for _, j := range jobs {
		if j.ErrorMessage != "" {
			fmt.Fprintf(w, "\n%s.%s: %s\n", j.Database, j.Name, j.ErrorMessage)
		}
		if len(j.Shards) == 0 {
			continue
		}
		// A name can match jobs in several databases: say whose shards these are.
		fmt.Fprintf(w, "\n%s.%s shards:\n", j.Database, j.Name)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SHARD\tREPLICA\tSTATUS\tPROGRESS\tROWS\tLAST KEY")
		for _, s := range j.Shards {
			last := "-"
			if s.LastProcessedID != nil {
				last = fmt.Sprint(*s.LastProcessedID)
			}
			rep := s.Replica
			if rep == "" {
				rep = "(any)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%.1f%%\t%d/%d\t%s\n", s.Shard, rep, s.Status, s.ProgressPercent(), s.ProcessedRows, s.TotalRows, last)
		}
		tw.Flush()
	}
}

// progress shows apply events: a redrawn bar on a terminal, plain lines
// otherwise (logs, CI).
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	line bool // a bar is drawn on the current line
}

func newProgress(w io.Writer, tty bool) *progress { return &progress{w: w, tty: tty} }

func (p *progress) event(ev executor.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.Kind == executor.EventProgress && p.tty {
		pct := percent(ev.Processed, ev.Total)
		const width = 30
		n := int(pct / 100 * width)
		fmt.Fprintf(p.w, "\r%s: [%s%s] %5.1f%% %d/%d rows", ev.MV, strings.Repeat("#", n), strings.Repeat("-", width-n), pct, ev.Processed, ev.Total)
		p.line = true
		return
	}
	if p.line {
		fmt.Fprintln(p.w)
		p.line = false
	}
	switch ev.Kind {
	case executor.EventProgress:
		fmt.Fprintf(p.w, "%s: backfill %.1f%% (%d/%d rows) shard %d %s\n", ev.MV, percent(ev.Processed, ev.Total), ev.Processed, ev.Total, ev.Shard, ev.Message)
	default:
		fmt.Fprintf(p.w, "%s: %s\n", ev.MV, ev.Message)
	}
}

// percent is capped at 100 as in status: the total is counted before the
// backfill starts and can fall short of what the batches copy.
func percent(done, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return max(min(float64(done)/float64(total)*100, 100), 0)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.line {
		fmt.Fprintln(p.w)
		p.line = false
	}
}
