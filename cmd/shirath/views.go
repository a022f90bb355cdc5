package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"

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
	case planner.Create, planner.Adopt:
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
	planner.Adopt:   "will be adopted",
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
		for _, d := range c.DependsOn {
			fmt.Fprintf(w, "      %s\n", d)
		}
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
			if c.Action == planner.Adopt {
				fmt.Fprintln(w, "      diff (live -> spec):")
			} else {
				fmt.Fprintln(w, "      diff (applied -> spec):")
			}
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
	fmt.Fprintf(w, "\n%s %s%d to create, %d to change, %d to destroy.\n", paint.paint(bold, "Plan:"), adoptCount(s), s.Create, s.Change, s.Destroy)
	if s.Blocked > 0 {
		fmt.Fprintf(w, "%d change(s) cannot be applied; apply will refuse them (see '! cannot apply').\n", s.Blocked)
	}
}

// adoptCount is the summary's "N to adopt, " when there is something to
// adopt (and nothing otherwise, as before adoption existed).
func adoptCount(s planner.Summary) string {
	if s.Adopt == 0 {
		return ""
	}
	return fmt.Sprintf("%d to adopt, ", s.Adopt)
}

func adoptedCount(s planner.Summary) string {
	if s.Adopt == 0 {
		return ""
	}
	return fmt.Sprintf("%d adopted, ", s.Adopt)
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// renderJSON prints the machine-readable view (planner.JSONView, the one the
// daemon's GET /api/plan returns): versioned, actions as strings.
func renderJSON(w io.Writer, p *planner.Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(planner.JSONView(p))
}

// renderMarkdown renders a plan for a pull-request comment (GitHub Flavored
// Markdown): a one-line summary that names blocked changes first, then one
// collapsible section per change with its steps and its SQL in a diff block.
// Text that comes from servers or specs is escaped, so that a reason cannot
// open a tag or end a code block.
func renderMarkdown(w io.Writer, p *planner.Plan) {
	var b strings.Builder
	s := p.Summary()
	if p.HasChanges() {
		b.WriteString("**Plan:** ")
		if s.Blocked > 0 {
			fmt.Fprintf(&b, "⛔ **%d blocked** (apply will refuse %s), ", s.Blocked, plural(s.Blocked, "it", "them"))
		}
		fmt.Fprintf(&b, "%s%d to create, %d to change, %d to destroy.\n", adoptCount(s), s.Create, s.Change, s.Destroy)
	} else {
		b.WriteString("**No changes.** The live ClickHouse objects and jobs match the specs.\n")
	}
	if len(p.Unreachable) > 0 {
		b.WriteString("\n> [!WARNING]\n> These nodes did not answer; their objects were not checked:\n")
		for _, u := range p.Unreachable {
			fmt.Fprintf(&b, "> - %s\n", mdText(u))
		}
	}
	if !p.HasChanges() {
		var notes []string
		for _, c := range p.Changes {
			if c.Reason != "" && c.Reason != "up to date" {
				notes = append(notes, fmt.Sprintf("- %s: %s\n", mdCode(c.Address()), mdText(c.Reason)))
			}
		}
		if len(notes) > 0 {
			b.WriteString("\n" + strings.Join(notes, ""))
		}
	}
	for _, c := range p.Changes {
		if c.Action != planner.NoOp {
			markdownChange(&b, c)
		}
	}
	io.WriteString(w, b.String())
}

func markdownChange(b *strings.Builder, c *planner.ResourceChange) {
	open, blocked := "", ""
	if c.Blocked != "" {
		// A reviewer must see why apply will fail without clicking.
		open, blocked = " open", ": ⛔ blocked"
	}
	fmt.Fprintf(b, "\n<details%s>\n<summary><code>%s</code> <b>%s</b> %s%s</summary>\n\n",
		open, html.EscapeString(c.Action.Symbol()), html.EscapeString(c.Address()), actionVerb[c.Action], blocked)
	if c.Blocked != "" {
		fmt.Fprintf(b, "> [!CAUTION]\n> **Cannot apply:** %s\n\n", mdText(c.Blocked))
	}
	fmt.Fprintf(b, "- **reason:** %s\n", mdText(c.Reason))
	if c.Spec != nil {
		fmt.Fprintf(b, "- **source:** %s\n", mdCode(c.Database+"."+c.Spec.SourceTable))
	}
	for _, d := range c.DependsOn {
		fmt.Fprintf(b, "- **reads** %s, built by %s\n", mdCode(d.Table), mdCode(d.Address))
	}
	if c.Cluster != "" {
		fmt.Fprintf(b, "- **cluster:** %s\n", mdCode(c.Cluster))
	}
	if len(c.Casts) > 0 {
		var parts []string
		for _, col := range sortedKeys(c.Casts) {
			parts = append(parts, fmt.Sprintf("%s to %s", mdCode(col), mdCode(c.Casts[col])))
		}
		fmt.Fprintf(b, "- **note:** the query's own types differ from the declared columns; cast %s\n", strings.Join(parts, ", "))
	}
	if len(c.Steps) > 0 {
		b.WriteString("\n**Steps**\n\n")
		for i, st := range c.Steps {
			fmt.Fprintf(b, "%d. `%s`: %s", i+1, st.Kind, mdText(st.Detail))
			if len(st.Nodes) > 0 {
				fmt.Fprintf(b, " (on %s)", mdText(strings.Join(st.Nodes, ", ")))
			}
			b.WriteString("\n")
		}
	}
	if label, diff := markdownDiff(c); diff != "" {
		fence := codeFence(diff)
		fmt.Fprintf(b, "\n**%s**\n\n%sdiff\n%s%s\n", label, fence, diff, fence)
	}
	b.WriteString("\n</details>\n")
}

// markdownDiff is the SQL of a change as a diff: the applied and the new SQL
// of a changed MV, or the statements a change will run, all added.
func markdownDiff(c *planner.ResourceChange) (label, diff string) {
	if c.Diff != "" {
		if c.Action == planner.Adopt {
			return "SQL diff (live → spec)", strings.TrimRight(c.Diff, "\n") + "\n"
		}
		return "SQL diff (applied → spec)", strings.TrimRight(c.Diff, "\n") + "\n"
	}
	var b strings.Builder
	for _, st := range c.Steps {
		if st.SQL == "" {
			continue
		}
		fmt.Fprintf(&b, "  -- %s\n", st.Kind)
		for _, l := range strings.Split(strings.TrimRight(st.SQL, "\n"), "\n") {
			b.WriteString("+ " + l + "\n")
		}
	}
	return "SQL diff (statements to run)", b.String()
}

// codeFence is a backtick fence longer than any run of backticks in s, so
// that s cannot close the block (quoted identifiers use backticks).
func codeFence(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// mdCode is s as an inline code span.
func mdCode(s string) string {
	if strings.ContainsAny(s, "`\n") {
		return mdText(s)
	}
	return "`" + s + "`"
}

// mdText escapes s for running text: what could start HTML, and the
// characters that start Markdown inline syntax. An underscore inside a word
// is left alone (it cannot emphasise there), so identifiers stay readable in
// the raw text.
func mdText(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		switch r {
		case '<':
			// Only what could start a tag, a comment or an autolink: "id <= hi" stays.
			if i+1 < len(rs) && (unicode.IsLetter(rs[i+1]) || strings.ContainsRune("/!?", rs[i+1])) {
				b.WriteString("&lt;")
			} else {
				b.WriteRune(r)
			}
		case '&':
			if i+1 < len(rs) && (unicode.IsLetter(rs[i+1]) || rs[i+1] == '#') {
				b.WriteString("&amp;")
			} else {
				b.WriteRune(r)
			}
		case '\n':
			b.WriteString("<br>")
		case '\\', '`', '*', '[', ']', '~', '|', '#':
			b.WriteString("\\" + string(r))
		case '_':
			if i > 0 && i < len(rs)-1 && wordRune(rs[i-1]) && wordRune(rs[i+1]) {
				b.WriteRune(r)
			} else {
				b.WriteString("\\_")
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func wordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
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
		st := string(j.Status)
		if j.DataNotVerified() {
			st += " (adopted, data not verified)"
		}
		fmt.Fprintf(tw, "%s.%s\t%s\t%.1f%%\t%d/%d\t%s\t%s\t%s\n", j.Database, j.Name, st, j.ProgressPercent(), j.ProcessedRows, j.TotalRows, cutoff, cl, j.UpdatedAt.UTC().Format(time.RFC3339))
	}
	tw.Flush()
	if !detail {
		return
	}
	for _, j := range jobs {
		if j.ErrorMessage != "" {
			fmt.Fprintf(w, "\n%s.%s: %s\n", j.Database, j.Name, j.ErrorMessage)
		}
		if j.VerifiedAt != nil || j.LastVerify != nil {
			var at *string
			if j.VerifiedAt != nil {
				s := j.VerifiedAt.UTC().Format(time.RFC3339)
				at = &s
			}
			fmt.Fprintf(w, "\n%s.%s verified: %s\n", j.Database, j.Name, verifiedLine(at, j.LastVerify))
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
	line bool   // a bar is drawn on the current line
	bar  string // the MV whose bar it is
}

func newProgress(w io.Writer, tty bool) *progress { return &progress{w: w, tty: tty} }

func (p *progress) event(ev executor.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.Kind == executor.EventProgress && p.tty {
		pct := percent(ev.Processed, ev.Total)
		const width = 30
		n := int(pct / 100 * width)
		if p.line && p.bar != ev.MV {
			// Several MVs are applied at once: each redraws its own bar,
			// never another MV's.
			fmt.Fprintln(p.w)
		}
		p.bar = ev.MV
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
