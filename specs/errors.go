package specs

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in one spec. File, Line and Column locate it in a
// YAML file (they are empty for a JSON body, where Field says where it is).
type Error struct {
	File   string
	Line   int
	Column int
	// Field is the path of the field, e.g. "columns[1].type".
	Field string
	Msg   string
	// Hint says how to fix it.
	Hint string
}

// Error formats the problem as
//
//	examples/x.yaml:12:5: columns[1].type: "String); DROP TABLE x" is not a ClickHouse type (hint: ...)
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, "%d:", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Errors is every problem found in one run, so that a user fixes them all
// at once instead of one per attempt.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns es as an error, or a true nil when there is no problem (a nil
// Errors stored in an error interface would not compare equal to nil).
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// maxErrors is how many problems a run reports; past that, the rest are
// most likely consequences of the same mistake.
const maxErrors = 100

// finalize sorts the problems and caps their number.
func (es Errors) finalize() Errors {
	es.sort()
	if len(es) > maxErrors {
		more := len(es) - maxErrors
		es = append(es[:maxErrors:maxErrors], &Error{Msg: fmt.Sprintf("%d more errors not shown", more),
			Hint: "fix the errors above and run again"})
	}
	return es
}

// sort orders problems by place so that the output reads top to bottom;
// problems without a line keep their relative order.
func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// suggest returns the candidate closest to word when it is close enough to
// be a likely typo ("sourcetable" for "source_table", "string" for
// "String"), or "".
func suggest(word string, candidates []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
	}
	nw := norm(word)
	best, bestDist := "", 0
	for _, c := range slices.Sorted(slices.Values(candidates)) {
		if norm(c) == nw {
			return c
		}
		d := levenshtein(strings.ToLower(word), strings.ToLower(c))
		if limit := max(1, min(3, len(c)/3)); d <= limit && (best == "" || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b)) // not a typo of a field name; avoid quadratic work
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
