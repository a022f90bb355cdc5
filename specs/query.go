package specs

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/AfterShip/clickhouse-sql-parser/parser"
)

// SourcePlaceholder is the text in select_query that stands for the source
// table; sqlgen replaces it with the quoted, database-qualified name.
const SourcePlaceholder = "{source_table}"

// sourceSentinel replaces the placeholder before parsing, because the
// parser cannot read "{source_table}". Validation then checks that the
// query reads exactly this table.
const sourceSentinel = "__shirath_source__"

// reservedPrefix may not appear in a query at all, in any case, so that
// stand-ins such as sourceSentinel (and sqlgen's own) are never confused
// with user text.
const reservedPrefix = "shirath_"

// queryProblem is one thing wrong with a query, at a byte offset of the
// text as the user wrote it (-1 when there is no better place than the
// start of the field).
type queryProblem struct {
	off  int
	msg  string
	hint string
}

// selectInfo is what validation learns from a select_query.
type selectInfo struct {
	outputs []outputColumn
	unnamed int // outputs without a usable name (reported)
}

type outputColumn struct {
	name string
	off  int
}

// tableFunctions are the table functions and function names that read or
// write outside the source table: files, URLs, object stores, other
// servers, other databases, processes. Any of them in a query is refused,
// in FROM and anywhere else (newer servers have a scalar file()).
// Compared in lower case.
var tableFunctions = map[string]bool{
	"file": true, "filecluster": true, "url": true, "urlcluster": true, "s3": true, "s3cluster": true,
	"gcs": true, "cosn": true, "oss": true, "azureblobstorage": true, "azureblobstoragecluster": true,
	"hdfs": true, "hdfscluster": true, "remote": true, "remotesecure": true, "cluster": true,
	"clusterallreplicas": true, "mysql": true, "postgresql": true, "mongodb": true, "redis": true,
	"sqlite": true, "jdbc": true, "odbc": true, "input": true, "executable": true, "numbers": true,
	"numbers_mt": true, "zeros": true, "zeros_mt": true, "generaterandom": true, "merge": true,
	"dictionary": true, "view": true, "deltalake": true, "iceberg": true, "hudi": true, "values": true,
	"null": true, "loop": true, "fuzzjson": true, "generate_series": true,
}

// sqlWord is a bare word of a query, outside strings and quoted names.
type sqlWord struct {
	text string
	off  int
}

// scanSQL is a first pass over raw SQL text that needs no parser. It finds
// what must never reach a generated statement even when the parser would
// accept it or silently drop it: comments (a trailing "--" would swallow the
// WHERE that sqlgen appends), semicolons, control characters. It returns
// the bare words for keyword checks.
func scanSQL(q string) ([]sqlWord, []queryProblem) {
	var words []sqlWord
	var probs []queryProblem
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			escaped := false
			for j < len(q) {
				if q[j] == '\\' {
					j += 2
					escaped = true
					continue
				}
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						j += 2
						escaped = true
						continue
					}
					break
				}
				j++
			}
			if j >= len(q) {
				probs = append(probs, queryProblem{i, fmt.Sprintf("unterminated %c quote", c), "close the quote"})
				return words, probs
			}
			if escaped && c != '\'' {
				// The parser ends a quoted name at the next quote and
				// knows no escapes: `a``b` would read as `a` AS `b`.
				probs = append(probs, queryProblem{i, "escapes in quoted names are not supported",
					"rename the column, or alias it to a plain name"})
			}
			i = j + 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-', c == '#':
			probs = append(probs, queryProblem{i, "SQL comments are not allowed",
				"remove the comment; YAML comments (# at the start of a YAML line, outside the value) are fine"})
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			probs = append(probs, queryProblem{i, "SQL comments are not allowed",
				"remove the comment; YAML comments (# at the start of a YAML line, outside the value) are fine"})
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return words, probs
			}
			i += end + 4
		case c == ';' && strings.TrimSpace(q[i+1:]) == "":
			probs = append(probs, queryProblem{i, "a trailing ';' is not allowed",
				"remove the ';' at the end: select_query is one SELECT, which shirath extends (the backfill fence adds a WHERE), not a statement to run"})
			i++
		case c == ';':
			probs = append(probs, queryProblem{i, "';' is not allowed",
				"write one statement without a trailing semicolon"})
			i++
		case strings.HasPrefix(q[i:], "\u00a0"):
			probs = append(probs, queryProblem{i, "non-breaking space (U+00A0)", nbspHint})
			i += len("\u00a0")
		case strings.HasPrefix(q[i:], "“"), strings.HasPrefix(q[i:], "”"), strings.HasPrefix(q[i:], "‘"), strings.HasPrefix(q[i:], "’"):
			r, w := utf8.DecodeRuneInString(q[i:])
			probs = append(probs, queryProblem{i, fmt.Sprintf("typographic quote %c outside a string", r), typoQuoteHint})
			i += w
		case (c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f:
			probs = append(probs, queryProblem{i, fmt.Sprintf("control character 0x%02x", c), "remove it"})
			i++
		case isIdentStart(c) || isDigit(c):
			j := i
			for j < len(q) && isIdentChar(q[j]) {
				j++
			}
			if isIdentStart(c) {
				words = append(words, sqlWord{q[i:j], i})
			}
			i = j
		default:
			i++
		}
	}
	return words, probs
}

// substitution maps offsets of the query with the placeholder replaced back
// to offsets of the query as written.
type substitution struct {
	at     []int // offsets in the substituted text where a replacement starts
	oldLen int
	newLen int
}

func (s substitution) orig(off int) int {
	shift := 0
	for _, a := range s.at {
		switch {
		case off >= a+s.newLen:
			shift += s.newLen - s.oldLen
		case off >= a:
			return a - shift
		}
	}
	return off - shift
}

// substitute replaces placeholder outside quotes only, as sqlgen does: in
// '...' it is text, and in `...` or "..." part of a quoted name.
func substitute(q, placeholder, with string) (string, substitution) {
	sub := substitution{oldLen: len(placeholder), newLen: len(with)}
	var b strings.Builder
	for i := 0; i < len(q); {
		switch {
		case q[i] == '\'' || q[i] == '"' || q[i] == '`':
			end := quotedEnd(q, i)
			b.WriteString(q[i:end])
			i = end
		case strings.HasPrefix(q[i:], placeholder):
			sub.at = append(sub.at, b.Len())
			b.WriteString(with)
			i += len(placeholder)
		default:
			b.WriteByte(q[i])
			i++
		}
	}
	return b.String(), sub
}

// quotedEnd returns the index just past the quoted literal or name that
// starts at q[i], or len(q) when it is not closed.
func quotedEnd(q string, i int) int {
	c := q[i]
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			j++
		case c:
			if j+1 < len(q) && q[j+1] == c {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

var parserErrRE = regexp.MustCompile(`^line (\d+):(\d+) (.*)`)

// parseSQL runs the parser, turning its panics (it is a third-party parser
// fed with user text) and its "line L:C msg" errors into problems.
func parseSQL(q string) (stmts []parser.Expr, prob *queryProblem) {
	defer func() {
		if r := recover(); r != nil {
			stmts, prob = nil, &queryProblem{-1, fmt.Sprintf("SQL parser failed: %v", r), "simplify the query"}
		}
	}()
	stmts, err := parser.NewParser(q).ParseStmts()
	if err == nil {
		return stmts, nil
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	p := &queryProblem{-1, "does not parse: " + first, "check the SQL syntax"}
	if m := parserErrRE.FindStringSubmatch(first); m != nil {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		off := 0
		for l := 0; l < line; l++ {
			nl := strings.IndexByte(q[off:], '\n')
			if nl < 0 {
				break
			}
			off += nl + 1
		}
		p.off = min(off+col, len(q))
		p.msg = "does not parse: " + m[3]
	}
	return nil, p
}

func stmtName(n parser.Expr) string {
	t := reflect.TypeOf(n)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return strings.TrimSuffix(strings.TrimSuffix(t.Name(), "Stmt"), "Expr")
}

// checkSelect checks a select_query for use as a materialized view over
// one source table, and finds its output columns. keyColumn is the
// backfill key, which no alias may shadow. Offsets in the problems refer
// to q as written.
func checkSelect(q, keyColumn string) (*selectInfo, []queryProblem) {
	words, probs := scanSQL(q)
	for i, w := range words {
		up := strings.ToUpper(w.text)
		next := ""
		if i+1 < len(words) {
			next = strings.ToUpper(words[i+1].text)
		}
		switch {
		case up == "INTO" && next == "OUTFILE":
			probs = append(probs, queryProblem{w.off, "INTO OUTFILE is not allowed",
				"a materialized view writes to its target table; remove INTO OUTFILE"})
		case up == "WITH" && (next == "TOTALS" || next == "ROLLUP" || next == "CUBE"):
			probs = append(probs, queryProblem{w.off, "WITH " + next + " is not allowed",
				"an MV would store the extra total rows of every inserted block; compute totals when reading the target"})
		case up == "WITH":
			probs = append(probs, queryProblem{w.off, "WITH is not allowed",
				"write the expressions inline; WITH clauses and modifiers are not supported in an MV query here"})
		}
	}
	if i := strings.Index(strings.ToLower(q), reservedPrefix); i >= 0 {
		probs = append(probs, queryProblem{i, "text containing " + reservedPrefix + " is reserved for shirath's internal names",
			"write " + SourcePlaceholder + " for the source table, and rename anything else that contains " + reservedPrefix})
	}
	if strings.TrimSpace(q) == "" {
		return nil, []queryProblem{{-1, "is empty", "write SELECT ... FROM " + SourcePlaceholder + " ..."}}
	}
	// A missing placeholder is reported at the table read instead, when
	// the query parses well enough to find it.
	missing := []queryProblem(nil)
	if _, sub := substitute(q, SourcePlaceholder, sourceSentinel); len(sub.at) == 0 {
		missing = append(missing, queryProblem{-1, "does not contain the " + SourcePlaceholder + " placeholder",
			"write FROM " + SourcePlaceholder + " instead of the table name, so that the source is quoted and qualified in one place"})
	}
	if len(probs) > 0 {
		// Parsing text with comments or semicolons in it would mostly
		// repeat the problems above in the parser's words.
		return nil, append(probs, missing...)
	}
	// findWord locates a keyword the AST keeps no position for (FINAL,
	// JOIN), for precise error positions.
	findWord := func(word string, from int) int {
		for _, w := range words {
			if w.off >= from && strings.EqualFold(w.text, word) {
				return w.off
			}
		}
		return -1
	}

	text, sub := substitute(q, SourcePlaceholder, sourceSentinel)
	bad := func(n parser.Expr, msg, hint string) {
		off := -1
		if n != nil && !reflect.ValueOf(n).IsNil() {
			off = sub.orig(int(n.Pos()))
		}
		probs = append(probs, queryProblem{off, msg, hint})
	}
	badAt := func(off int, msg, hint string) { probs = append(probs, queryProblem{off, msg, hint}) }
	stmts, perr := parseSQL(text)
	if perr != nil {
		if perr.off >= 0 {
			perr.off = sub.orig(perr.off)
		}
		return nil, append([]queryProblem{*perr}, missing...)
	}
	if len(stmts) == 0 {
		return nil, []queryProblem{{-1, "is empty", "write SELECT ... FROM " + SourcePlaceholder + " ..."}}
	}
	if len(stmts) > 1 {
		bad(stmts[1], "has more than one statement", "write exactly one SELECT")
		return nil, probs
	}
	sel, ok := stmts[0].(*parser.SelectQuery)
	if !ok {
		bad(stmts[0], fmt.Sprintf("must be a SELECT, got %s", stmtName(stmts[0])),
			"write SELECT ... FROM "+SourcePlaceholder+"; shirath creates the tables and the view itself")
		return nil, probs
	}

	checkSelectClauses(sel, bad)
	if !checkFrom(sel, sub, findWord, bad, badAt) {
		probs = append(probs, missing...)
	}
	checkNodes(sel, keyColumn, bad)
	info := &selectInfo{}
	info.outputs, info.unnamed = selectOutputs(sel, sub, bad)
	if len(probs) > 0 {
		return info, probs
	}
	return info, nil
}

// checkSelectClauses refuses the clauses that make no sense, or give wrong
// results, when a query runs once per inserted block instead of once over
// the whole table.
func checkSelectClauses(sel *parser.SelectQuery, bad func(parser.Expr, string, string)) {
	perBlock := "an MV runs the query on each inserted block separately, so "
	for _, other := range []*parser.SelectQuery{sel.UnionAll, sel.UnionDistinct, sel.Except} {
		if other != nil {
			bad(other, "UNION and EXCEPT are not allowed", "an MV has one SELECT over the source table; make one spec per SELECT")
			break
		}
	}
	if sel.With != nil {
		bad(sel.With, "WITH is not allowed", "write the expressions inline")
	}
	if sel.Top != nil {
		bad(sel.Top, "TOP is not allowed", perBlock+"TOP would keep some rows of every block; remove it")
	}
	if sel.DistinctOn != nil {
		bad(sel.DistinctOn, "DISTINCT ON is not allowed", perBlock+"use a ReplacingMergeTree target to keep one row per key")
	}
	if sel.Prewhere != nil {
		bad(sel.Prewhere, "PREWHERE is not allowed", "ClickHouse refuses PREWHERE in a materialized view; write WHERE")
	}
	if sel.Window != nil {
		bad(sel.Window, "WINDOW is not allowed", perBlock+"window functions would only see one block")
	}
	if sel.Having != nil {
		bad(sel.Having, "HAVING is not allowed", perBlock+"HAVING would filter partial aggregates; filter when reading the target table")
	}
	if sel.WithTotal {
		bad(sel.GroupBy, "WITH TOTALS is not allowed", perBlock+"totals would be stored as rows; remove it")
	}
	if sel.OrderBy != nil {
		bad(sel.OrderBy, "ORDER BY is not allowed", "the target table is sorted by order_by; remove ORDER BY from the query")
	}
	if sel.LimitBy != nil {
		bad(sel.LimitBy, "LIMIT BY is not allowed", perBlock+"LIMIT BY would keep rows of every block; remove it")
	}
	if sel.Limit != nil {
		bad(sel.Limit, "LIMIT is not allowed", perBlock+"LIMIT would drop rows and the backfill could not match; remove it")
	}
	if sel.Settings != nil {
		bad(sel.Settings, "SETTINGS is not allowed", "query settings of an MV are not managed by shirath; remove the SETTINGS clause")
	}
	if sel.Format != nil {
		bad(sel.Format, "FORMAT is not allowed", "an MV writes to its target table; remove the FORMAT clause")
	}
}

// checkFrom requires FROM to be the source table itself. A subquery in
// FROM is refused because ClickHouse 18.16 ignores a WHERE inside it when
// the query runs as an MV, and because the backfill filter must bind to
// the outer query. It reports whether FROM reads something other than
// the placeholder (which then says all a missing placeholder would).
func checkFrom(sel *parser.SelectQuery, sub substitution, findWord func(string, int) int,
	bad func(parser.Expr, string, string), badAt func(int, string, string)) (otherTable bool) {
	if sel.From == nil {
		bad(sel, "has no FROM clause", "write FROM "+SourcePlaceholder)
		return false
	}
	from := sub.orig(int(sel.From.Pos()))
	jt, ok := sel.From.Expr.(*parser.JoinTableExpr)
	if !ok {
		if _, isJoin := sel.From.Expr.(*parser.JoinExpr); isJoin {
			msg, hint := "JOIN is not allowed", "an MV is triggered by inserts into one table and reads only that block; join when reading the target, or use dictGet"
			if off := findWord("JOIN", from); off >= 0 {
				badAt(off, msg, hint)
			} else {
				bad(sel.From.Expr, msg, hint)
			}
		} else {
			bad(sel.From.Expr, "FROM must be "+SourcePlaceholder, "write FROM "+SourcePlaceholder)
		}
		return false
	}
	if jt.SampleRatio != nil {
		bad(jt.SampleRatio, "SAMPLE is not allowed", "ClickHouse refuses SAMPLE in a materialized view, which must see every inserted row; remove it")
	}
	if jt.HasFinal || (jt.Table != nil && jt.Table.HasFinal) {
		msg, hint := "FINAL is not allowed", "ClickHouse refuses FINAL in a materialized view, which reads only the inserted block; remove it"
		if off := findWord("FINAL", from); off >= 0 {
			badAt(off, msg, hint)
		} else {
			bad(jt, msg, hint)
		}
	}
	if jt.Table == nil {
		bad(jt, "FROM must be "+SourcePlaceholder, "write FROM "+SourcePlaceholder)
		return false
	}
	expr := fromTable(sel)
	switch t := expr.(type) {
	case *parser.TableIdentifier:
		switch {
		case t.Table == nil:
			bad(t, "FROM must be "+SourcePlaceholder, "write FROM "+SourcePlaceholder)
		case t.Database != nil && t.Table.Name == sourceSentinel:
			bad(t, "the source table must not be qualified with a database", "write FROM "+SourcePlaceholder+" and set the database field")
		case t.Table.Name == SourcePlaceholder:
			bad(t, "the "+SourcePlaceholder+" placeholder must not be quoted", "write FROM "+SourcePlaceholder+" without quotes")
			return true
		case t.Table.Name != sourceSentinel:
			bad(t, fmt.Sprintf("reads table %q instead of %s", t.String(), SourcePlaceholder),
				"write FROM "+SourcePlaceholder+"; the spec's source_table and database say which table it is")
			return true
		}
	case *parser.SubQuery, *parser.SelectQuery:
		bad(expr, "a subquery in FROM is not allowed",
			"ClickHouse 18.16 ignores a WHERE inside a FROM subquery of an MV; write FROM "+SourcePlaceholder+" WHERE ... in one query")
	case *parser.TableFunctionExpr:
		bad(expr, fmt.Sprintf("table function %s is not allowed", t.Name), "write FROM "+SourcePlaceholder)
		return true
	default:
		bad(expr, "FROM must be "+SourcePlaceholder, "write FROM "+SourcePlaceholder)
	}
	return false
}

// checkNodes walks the whole query for what may not appear anywhere:
// subqueries, table functions, window functions, and aliases that would
// capture the backfill key column. What checkFrom reports about FROM
// itself is not reported again.
//
// parser.Walk stops the whole walk, not just the subtree, when the
// callback returns false, so the callback always returns true and skips
// by node identity instead.
func checkNodes(sel *parser.SelectQuery, keyColumn string, bad func(parser.Expr, string, string)) {
	checkAlias := func(alias *parser.Ident, expr parser.Expr) {
		if alias == nil || keyColumn == "" || alias.Name != keyColumn {
			return
		}
		if id, ok := expr.(*parser.Ident); ok && id.Name == keyColumn {
			return // "id AS id" is the key column itself
		}
		bad(alias, fmt.Sprintf("alias %q shadows the backfill key column", alias.Name),
			"the backfill filters on "+keyColumn+" > N, which would bind to this alias; choose another alias or set backfill.key_column")
	}
	// Nodes already reported by checkFrom, checkSelectClauses or an
	// enclosing node.
	reported := map[parser.Expr]bool{sel.UnionAll: true, sel.UnionDistinct: true, sel.Except: true}
	if from := fromTable(sel); from != nil {
		reported[from] = true
		if sq, ok := from.(*parser.SubQuery); ok {
			reported[sq.Select] = true
		}
	}
	parser.Walk(sel, func(n parser.Expr) bool {
		if reported[n] {
			return true
		}
		switch t := n.(type) {
		case *parser.SelectQuery:
			if t != sel {
				bad(t, "subqueries are not allowed", "an MV reads only the inserted rows of "+SourcePlaceholder+"; remove the subquery")
			}
		case *parser.SubQuery:
			reported[t.Select] = true
			bad(t, "subqueries are not allowed", "an MV reads only the inserted rows of "+SourcePlaceholder+"; remove the subquery")
		case *parser.TableFunctionExpr:
			bad(t, fmt.Sprintf("table function %s is not allowed", t.Name), "an MV reads only "+SourcePlaceholder)
		case *parser.FunctionExpr:
			if t.Name != nil && tableFunctions[strings.ToLower(t.Name.Name)] {
				bad(t, fmt.Sprintf("function %s is not allowed", t.Name.Name), "it reads data from outside the source table")
			}
		case *parser.WindowFunctionExpr:
			bad(t, "window functions are not allowed", "an MV runs on each inserted block, so a window would only see one block")
		case *parser.SelectItem:
			checkAlias(t.Alias, t.Expr)
		case *parser.ColumnExpr:
			checkAlias(t.Alias, t.Expr)
		}
		return true
	})
}

// fromTable returns the table expression of a plain FROM (alias removed),
// or nil.
func fromTable(sel *parser.SelectQuery) parser.Expr {
	if sel.From == nil {
		return nil
	}
	jt, ok := sel.From.Expr.(*parser.JoinTableExpr)
	if !ok || jt.Table == nil {
		return nil
	}
	if a, ok := jt.Table.Expr.(*parser.AliasExpr); ok {
		return a.Expr
	}
	return jt.Table.Expr
}

// selectOutputs names the output columns: the alias, or the column name of
// a bare column. An expression without an alias has a name such as
// "count()" that no target column can have, so it must be aliased.
func selectOutputs(sel *parser.SelectQuery, sub substitution, bad func(parser.Expr, string, string)) (outs []outputColumn, unnamed int) {
	seen := map[string]bool{}
	for _, item := range sel.SelectItems {
		if item == nil || item.Expr == nil {
			continue
		}
		if len(item.Modifiers) > 0 {
			bad(item.Expr, "column modifiers (EXCEPT, REPLACE, APPLY) are not allowed", "list the output columns one by one")
			unnamed++
			continue
		}
		var name string
		var at parser.Expr
		switch {
		case item.Alias != nil:
			name, at = item.Alias.Name, item.Alias
		default:
			if id, ok := item.Expr.(*parser.Ident); ok {
				if id.Name == "*" {
					bad(id, "SELECT * is not allowed", "list the output columns, so that they match columns")
					unnamed++
					continue
				}
				name, at = id.Name, id
			}
		}
		if name == "" {
			bad(item.Expr, fmt.Sprintf("output %s has no name", item.Expr.String()),
				"give it the name of its target column: "+item.Expr.String()+" AS <column>")
			unnamed++
			continue
		}
		if seen[name] {
			bad(at, fmt.Sprintf("output column %q appears twice", name), "give every output column its own name")
			continue
		}
		seen[name] = true
		outs = append(outs, outputColumn{name: name, off: sub.orig(int(at.Pos()))})
	}
	return outs, unnamed
}

// checkKeyExpr checks one order_by entry or the partition_by expression:
// a single expression (a column, or functions of columns) whose every
// identifier is a declared column. A nil columns skips that last check.
// Offsets refer to expr.
func checkKeyExpr(expr string, columns map[string]bool, columnNames []string, field string) []queryProblem {
	if strings.TrimSpace(expr) == "" {
		return []queryProblem{{-1, "is empty", "write a column name or an expression of columns"}}
	}
	if _, probs := scanSQL(expr); len(probs) > 0 {
		return probs
	}
	const prefix = "SELECT "
	stmts, perr := parseSQL(prefix + expr)
	if perr != nil {
		perr.off = max(perr.off-len(prefix), -1)
		return []queryProblem{*perr}
	}
	var probs []queryProblem
	bad := func(n parser.Expr, msg, hint string) {
		off := -1
		if n != nil && !reflect.ValueOf(n).IsNil() {
			off = max(int(n.Pos())-len(prefix), -1)
		}
		probs = append(probs, queryProblem{off, msg, hint})
	}
	sel, ok := (*parser.SelectQuery)(nil), len(stmts) == 1
	if ok {
		sel, ok = stmts[0].(*parser.SelectQuery)
	}
	if !ok || sel.From != nil || sel.With != nil || sel.Where != nil || sel.GroupBy != nil || sel.ArrayJoin != nil ||
		sel.Prewhere != nil || sel.Having != nil || sel.OrderBy != nil || sel.Limit != nil || sel.LimitBy != nil ||
		sel.Settings != nil || sel.Format != nil || sel.UnionAll != nil || sel.UnionDistinct != nil || sel.Except != nil ||
		sel.Top != nil || sel.DistinctOn != nil || sel.HasDistinct || sel.Window != nil || len(sel.SelectItems) == 0 {
		return []queryProblem{{-1, "must be a single expression", "write a column name or an expression such as toYYYYMM(created_at)"}}
	}
	if len(sel.SelectItems) > 1 {
		hint := "write one expression per order_by entry"
		if field == "partition_by" {
			hint = "write a tuple: (a, b)"
		}
		bad(sel.SelectItems[1].Expr, "must be a single expression", hint)
		return probs
	}
	item := sel.SelectItems[0]
	if item.Alias != nil || len(item.Modifiers) > 0 {
		bad(item.Expr, "aliases are not allowed here", "remove AS ...")
		return probs
	}
	// notColumn holds identifiers that name something other than a
	// column: functions, interval units, types in CAST, aliases.
	notColumn := map[*parser.Ident]bool{}
	reported := map[parser.Expr]bool{}
	markIdents := func(n parser.Expr) {
		parser.Walk(n, func(c parser.Expr) bool {
			if id, ok := c.(*parser.Ident); ok {
				notColumn[id] = true
			}
			return true
		})
	}
	parser.Walk(item.Expr, func(n parser.Expr) bool {
		if reported[n] {
			return true
		}
		switch t := n.(type) {
		case *parser.SelectQuery, *parser.SubQuery:
			if sq, ok := t.(*parser.SubQuery); ok {
				reported[sq.Select] = true
			}
			markIdents(t)
			bad(t, "subqueries are not allowed here", "use columns of the target table")
		case *parser.TableFunctionExpr, *parser.WindowFunctionExpr:
			markIdents(t)
			bad(t, "not allowed here", "use columns of the target table")
		case *parser.Path:
			markIdents(t)
			bad(t, fmt.Sprintf("qualified name %s is not allowed", t.String()), "write the bare column name")
		case *parser.ScalarType, *parser.TypeWithParams, *parser.ComplexType, *parser.NestedType,
			*parser.EnumType, *parser.JSONType, *parser.PropertyType, *parser.ColumnTypeExpr:
			markIdents(t) // the type of a CAST
		case *parser.FunctionExpr:
			if t.Name != nil {
				notColumn[t.Name] = true
				if tableFunctions[strings.ToLower(t.Name.Name)] {
					bad(t, fmt.Sprintf("function %s is not allowed", t.Name.Name), "use columns of the target table")
				}
			}
		case *parser.IntervalExpr:
			if t.Unit != nil {
				notColumn[t.Unit] = true
			}
		case *parser.ColumnExpr:
			if t.Alias != nil {
				bad(t.Alias, "aliases are not allowed here", "remove AS ...")
				notColumn[t.Alias] = true
			}
		case *parser.Ident:
			if columns != nil && !notColumn[t] && !columns[t.Name] {
				hint := "refer to columns declared under columns"
				if s := suggest(t.Name, columnNames); s != "" {
					hint = "did you mean " + s + "?"
				}
				bad(t, fmt.Sprintf("%q is not a declared column", t.Name), hint)
			}
		}
		return true
	})
	return probs
}

func (s *Spec) keyColumn() string {
	if s.Backfill.KeyColumn == "" {
		return DefaultKeyColumn
	}
	return s.Backfill.KeyColumn
}

// queryErrors positions select_query problems like Validate does.
func (s *Spec) queryErrors(probs []queryProblem) Errors {
	v := &validator{s: s, ix: s.Origin.fields}
	for _, p := range probs {
		v.atOffset("select_query", s.SelectQuery, p.off, p.hint, "%s", p.msg)
	}
	return v.errs
}

// OutputColumns returns the names of select_query's output columns in
// select order (the alias, or the name of a bare column). The error is an
// Errors when the query is not valid for a view.
func (s *Spec) OutputColumns() ([]string, error) {
	info, probs := checkSelect(s.SelectQuery, s.keyColumn())
	if len(probs) > 0 {
		return nil, s.queryErrors(probs)
	}
	names := make([]string, len(info.outputs))
	for i, o := range info.outputs {
		names[i] = o.name
	}
	return names, nil
}

// ParsedQuery checks select_query as Validate does and returns it parsed
// with {source_table} replaced by source, which must be a plain identifier
// or database.table of plain identifiers (quote or qualify it in the AST
// afterwards if needed). The AST is fresh on every call and may be
// rewritten by the caller.
func (s *Spec) ParsedQuery(source string) (*parser.SelectQuery, error) {
	db, table, qualified := strings.Cut(source, ".")
	if !qualified {
		table = db
	}
	if !IsIdentifier(table) || (qualified && !IsIdentifier(db)) {
		return nil, fmt.Errorf("specs: source %q is not a plain identifier or database.table", source)
	}
	if _, probs := checkSelect(s.SelectQuery, s.keyColumn()); len(probs) > 0 {
		return nil, s.queryErrors(probs)
	}
	text, _ := substitute(s.SelectQuery, SourcePlaceholder, source)
	stmts, perr := parseSQL(text)
	if perr != nil {
		return nil, fmt.Errorf("specs: parse select_query with source %s: %s", source, perr.msg)
	}
	sel, ok := stmts[0].(*parser.SelectQuery)
	if !ok || len(stmts) != 1 {
		return nil, fmt.Errorf("specs: select_query with source %s is not one SELECT", source)
	}
	return sel, nil
}
