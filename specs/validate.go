package specs

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// identRE is a plain ClickHouse identifier. Names are backtick-quoted in
// generated SQL anyway; the plain form keeps them usable by hand in
// clickhouse-client and in ZooKeeper paths.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

const maxIdentLen = 64

// Limits that catch typos (a batch of "2h", a settle delay of "1000s")
// rather than enforce policy.
const (
	maxBatchDuration = time.Hour
	maxSettleDelay   = 10 * time.Minute
	maxBatchRows     = 1 << 40
)

// IsIdentifier reports whether s is a plain ClickHouse identifier of at
// most 64 characters, as required of every name in a spec.
func IsIdentifier(s string) bool { return len(s) <= maxIdentLen && identRE.MatchString(s) }

// ErrorAt returns an Error located at a field of the spec ("columns[1].type",
// "backfill.key_column"), for checks made outside this package, such as the
// planner finding that the key column is missing from the source table.
func (s *Spec) ErrorAt(field, msg, hint string) *Error {
	line, col := s.Origin.fields.at(field)
	if line == 0 {
		line = s.Origin.Line
	}
	return &Error{File: s.Origin.File, Line: line, Column: col, Field: field, Msg: msg, Hint: hint}
}

type validator struct {
	s    *Spec
	ix   *fieldIndex
	errs Errors
}

func (v *validator) add(line, col int, field, hint, format string, args ...any) {
	if v.ix.broken(field) {
		return // the decoder already reported this field; its value is a zero stand-in
	}
	if line == 0 {
		line = v.s.Origin.Line
	}
	if p := v.ix.get(field); p.cutLine > 0 {
		hint = fmt.Sprintf(`YAML ended this unquoted value at the " #" on line %d, column %d, which starts a comment: quote the whole value, or write it as a block (%s: | and the text on the lines below, indented)`,
			p.cutLine, p.cutCol, field[strings.LastIndex(field, ".")+1:])
	}
	v.errs = append(v.errs, &Error{File: v.s.Origin.File, Line: line, Column: col, Field: field,
		Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// missing reports a required field without a value. A value that YAML
// read as null ("name: null", "name: ~") was most likely meant as text.
func (v *validator) missing(field, hint string) {
	if p := v.ix.get(field); p.null && p.nullText != "" && p.line > 0 { // not JSON's null
		hint = fmt.Sprintf("YAML reads %s as no value: quote it if you mean the text: %q", p.nullText, p.nullText)
	}
	v.at(field, hint, "missing required field")
}

// at reports a problem at a field's value.
func (v *validator) at(field, hint, format string, args ...any) {
	line, col := v.ix.at(field)
	v.add(line, col, field, hint, format, args...)
}

// atOffset reports a problem at byte off of a field's value (-1: the start).
func (v *validator) atOffset(field, value string, off int, hint, format string, args ...any) {
	line, col := v.ix.atOffset(field, value, off)
	v.add(line, col, field, hint, format, args...)
}

// Validate checks a spec whose defaults have been applied (the loaders do
// both) and returns every problem found, each with its position when the
// spec came from a file.
func (s *Spec) Validate() Errors {
	v := &validator{s: s, ix: s.Origin.fields}
	if v.ix.broken("") {
		return nil // the document is not a mapping; the decoder said so
	}
	v.required()
	v.names()
	cols, complete := v.columns()
	if !complete {
		// References to columns cannot be checked against a broken or
		// missing column list without reporting every one of them again.
		cols = nil
	}
	v.engine(cols)
	v.keys(cols)
	v.query(cols)
	v.cluster()
	v.backfill()
	v.changeStrategy()
	v.refresh()
	v.errs.sort()
	return v.errs
}

func (v *validator) required() {
	s := v.s
	for _, f := range []struct {
		field, hint string
		missing     bool
	}{
		{"name", "name the materialized view, e.g. name: products_by_category", s.Name == ""},
		{"source_table", "name the table the view reads, e.g. source_table: products", s.SourceTable == ""},
		{"engine", "e.g. engine: SummingMergeTree()", s.Engine == ""},
		{"order_by", "list the sorting key columns, e.g. order_by: [category]", len(s.OrderBy) == 0},
		{"columns", "list the target columns with name and type", len(s.Columns) == 0},
		{"select_query", "e.g. select_query: SELECT category, count() AS cnt FROM {source_table} GROUP BY category", strings.TrimSpace(s.SelectQuery) == ""},
	} {
		if f.missing && !v.ix.broken(f.field) {
			v.missing(f.field, f.hint)
		}
	}
}

// ident checks a name. derived, when not empty, says where a defaulted
// name came from ("{name}_data"), for the hint.
func (v *validator) ident(field, value, derived string) bool {
	if value == "" || v.ix.broken(field) {
		return false
	}
	hint := "use letters, digits and _, starting with a letter or _"
	switch {
	case derived != "":
		hint = fmt.Sprintf("it defaults to %s; set %s explicitly or shorten name", derived, field)
	case strings.Contains(value, "{"):
		hint = "names are written out: {name} and {source_table} are not replaced here (target_table and distributed_table default to {name}_data and {name}_dist when left out)"
	}
	switch {
	case len(value) > maxIdentLen:
		v.at(field, hint, "%q is longer than %d characters", clip(value), maxIdentLen)
		return false
	case !identRE.MatchString(value):
		v.at(field, hint, "%q is not a plain identifier", clip(value))
		return false
	}
	return true
}

func (v *validator) names() {
	s := v.s
	nameOK := v.ident("name", s.Name, "")
	v.ident("source_table", s.SourceTable, "")
	v.ident("database", s.Database, "")
	derived := func(field, suffix string) string {
		if v.ix.has(field) {
			return ""
		}
		if !nameOK {
			return "-" // derived from a bad name: already reported
		}
		return "{name}" + suffix
	}
	for _, f := range []struct{ field, value, suffix string }{
		{"target_table", s.TargetTable, "_data"},
		{"distributed_table", s.DistributedTable, "_dist"},
	} {
		if d := derived(f.field, f.suffix); d != "-" {
			v.ident(f.field, f.value, d)
		}
	}
	// The view, its target, its Distributed table and the source are four
	// different tables in one database.
	type named struct{ field, value string }
	all := []named{{"name", s.Name}, {"source_table", s.SourceTable}, {"target_table", s.TargetTable}, {"distributed_table", s.DistributedTable}}
	for i := 1; i < len(all); i++ {
		for j := 0; j < i; j++ {
			a, b := all[j], all[i]
			if a.value == "" || a.value != b.value {
				continue
			}
			field := b.field
			if !v.ix.has(field) && v.ix.has(a.field) {
				field = a.field
			}
			v.at(field, fmt.Sprintf("give %s and %s different names", a.field, b.field),
				"%s %q is the same table as %s", b.field, b.value, a.field)
		}
	}
}

// columns checks names and types, and returns the set of declared names
// and whether every column has a valid name.
func (v *validator) columns() (map[string]bool, bool) {
	cols := map[string]bool{}
	complete := len(v.s.Columns) > 0 && !v.ix.broken("columns")
	first := map[string]string{}
	for i, c := range v.s.Columns {
		base := fmt.Sprintf("columns[%d]", i)
		if v.ix.broken(base) {
			complete = false
			continue
		}
		switch {
		case c.Name == "":
			complete = false
			v.missing(base+".name", "every column needs a name and a type")
		case !v.ident(base+".name", c.Name, ""):
			complete = false
		default:
			if prev, dup := first[c.Name]; dup {
				v.at(base+".name", "give every column its own name", "column %q is already declared at %s", c.Name, prev)
			} else {
				first[c.Name] = base
			}
			cols[c.Name] = true
		}
		field := base + ".type"
		switch {
		case v.ix.broken(field):
		case c.Type == "":
			v.missing(field, "e.g. type: UInt64")
		default:
			n, err := parseTypeNode(c.Type)
			if err != nil {
				le := asLexError(err)
				v.atOffset(field, c.Type, le.off, le.hint, "%q is not a ClickHouse type: %s", clip(c.Type), le.msg)
			} else if nested := findNested(n); nested != nil {
				v.atOffset(field, c.Type, nested.off, "declare one Array column per field instead",
					"Nested is not supported: ClickHouse splits it into columns named %s.<field>, which no select output can match", c.Name)
			}
		}
	}
	return cols, complete
}

func (v *validator) engine(cols map[string]bool) {
	s := v.s
	if s.Engine == "" || v.ix.broken("engine") {
		return
	}
	_, refs, err := parseEngine(s.Engine)
	if err != nil {
		le := asLexError(err)
		v.atOffset("engine", s.Engine, le.off, le.hint, "%q is not a valid engine: %s", clip(s.Engine), le.msg)
		return
	}
	for _, r := range refs {
		if cols != nil && !cols[r.name] {
			v.atOffset("engine", s.Engine, r.off, "engine parameters name columns of the target table; declare it under columns",
				"%q is not a declared column", r.name)
		}
	}
}

func (v *validator) keys(cols map[string]bool) {
	s := v.s
	names := slices.Sorted(maps.Keys(cols))
	seen := map[string]bool{}
	for i, e := range s.OrderBy {
		field := fmt.Sprintf("order_by[%d]", i)
		if v.ix.broken(field) {
			continue
		}
		for _, p := range checkKeyExpr(e, cols, names, "order_by") {
			v.atOffset(field, e, p.off, p.hint, "%s", p.msg)
		}
		if k := strings.TrimSpace(e); seen[k] {
			v.at(field, "list each sorting key once", "%q appears twice in order_by", clip(k))
		} else {
			seen[k] = true
		}
	}
	if s.PartitionBy != "" && !v.ix.broken("partition_by") {
		for _, p := range checkKeyExpr(s.PartitionBy, cols, names, "partition_by") {
			v.atOffset("partition_by", s.PartitionBy, p.off, p.hint, "%s", p.msg)
		}
	}
}

func (v *validator) query(cols map[string]bool) {
	s := v.s
	q := s.SelectQuery
	if strings.TrimSpace(q) == "" || v.ix.broken("select_query") {
		return
	}
	key := s.Backfill.KeyColumn
	if key == "" {
		key = DefaultKeyColumn
	}
	info, probs := checkSelect(q, key)
	for _, p := range probs {
		v.atOffset("select_query", q, p.off, p.hint, "%s", p.msg)
	}
	if info == nil || cols == nil {
		return
	}
	// The view inserts into the target by column name: every output must
	// have a column and every column an output.
	out := map[string]bool{}
	var outNames []string
	for _, o := range info.outputs {
		out[o.name] = true
		outNames = append(outNames, o.name)
		if !cols[o.name] {
			hint := "declare it under columns with its type, or rename the output with AS"
			if sug := suggest(o.name, slices.Sorted(maps.Keys(cols))); sug != "" && !out[sug] {
				hint = "did you mean " + sug + "? outputs match columns by name"
			}
			v.atOffset("select_query", q, o.off, hint, "output column %q is not declared in columns", o.name)
		}
	}
	if info.unnamed > 0 {
		return // an unnamed output may well be the missing column: that error says it all
	}
	for i, c := range s.Columns {
		if cols[c.Name] && !out[c.Name] {
			v.at(fmt.Sprintf("columns[%d].name", i),
				fmt.Sprintf("add an output named %s to select_query (... AS %s), or remove the column", c.Name, c.Name),
				"column %q is not an output of select_query (outputs: %s)", c.Name, strings.Join(outNames, ", "))
		}
	}
}

func (v *validator) cluster() {
	c := v.s.Cluster
	if c == "" || c == "auto" || v.ix.broken("cluster") {
		return
	}
	if !IsIdentifier(c) {
		v.at("cluster", `leave it empty for one server, write "auto" to use the one cluster in system.clusters, or a cluster name`,
			"%q is not a cluster name", clip(c))
	}
}

func (v *validator) backfill() {
	b := v.s.Backfill
	v.ident("backfill.key_column", b.KeyColumn, "")
	if d := b.BatchDuration.Duration; d <= 0 || d > maxBatchDuration {
		v.at("backfill.batch_duration", `write a duration such as "2s"; the batch size adapts to it`,
			"batch_duration %s is out of range (0, %s]", d, maxBatchDuration)
	}
	if d := b.SettleDelay.Duration; d < 0 || d > maxSettleDelay {
		v.at("backfill.settle_delay", `write a duration such as "1s"; it covers inserts still in flight`,
			"settle_delay %s is out of range [0s, %s]", d, maxSettleDelay)
	}
	if n := b.InitialBatchRows; n == 0 || n > maxBatchRows {
		v.at("backfill.initial_batch_rows", "write a key range such as 1000000",
			"initial_batch_rows %d is out of range [1, %d]", n, uint64(maxBatchRows))
	}
	if n := b.MaxBatchRows; n != 0 && n < b.InitialBatchRows {
		v.at("backfill.max_batch_rows", "leave it out for no cap, or make it at least initial_batch_rows",
			"max_batch_rows %d is below initial_batch_rows %d", n, b.InitialBatchRows)
	}
}

// findNested returns the first Nested type inside n, or nil.
func findNested(n *typeNode) *typeNode {
	if n == nil {
		return nil
	}
	if n.kind == nodeName && n.name == "Nested" {
		return n
	}
	if f := findNested(n.elem); f != nil {
		return f
	}
	for _, a := range n.args {
		if f := findNested(a); f != nil {
			return f
		}
	}
	return nil
}

func (v *validator) changeStrategy() {
	switch v.s.ChangeStrategy {
	case "", ChangeRebuild, ChangeModifyQuery:
		return
	}
	if v.ix.broken("change_strategy") {
		return
	}
	v.at("change_strategy", `write "rebuild" (the default: build the new version beside the live one, then switch readers) or "modify_query" (replace the view's query in place)`,
		"%q is not a change strategy", clip(v.s.ChangeStrategy))
}
