package planner

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	parser "github.com/AfterShip/clickhouse-sql-parser/parser"

	"github.com/shirath/shirath/specs"
)

// ErrNotExpressible is wrapped when live objects cannot be described by a
// spec (an MV without TO, a JOIN, an unknown engine, ...): shirath can
// neither import nor adopt them. The message says why.
var ErrNotExpressible = errors.New("planner: cannot be described by a spec")

// LiveMV is an MV found on a node, described as a spec, with what the spec
// alone does not say about the live objects.
type LiveMV struct {
	// Spec describes the live MV and its target with its defaults applied;
	// its Cluster is left to the caller.
	Spec *specs.Spec
	// TargetEngine is the live target's engine clause as the server prints
	// it, normalised (specs.ParseEngine), Replicated form included.
	TargetEngine string
	// Distributed is the name of a Distributed table over the target on
	// that node ("" when none), and DistributedCluster its cluster.
	Distributed, DistributedCluster string
}

func notExpressible(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotExpressible, fmt.Sprintf(format, args...))
}

var (
	// "CREATE MATERIALIZED VIEW db.mv TO db.target (cols) AS SELECT ...":
	// 18.16 and 26.x print it so, names backquoted when they need it.
	nameRE    = "(?:`(?:[^`\\\\]|\\\\.)*`|[A-Za-z_][A-Za-z0-9_]*)"
	mvHeadRE  = regexp.MustCompile(`^CREATE MATERIALIZED VIEW ` + nameRE + `\.` + nameRE + `(?: TO (` + nameRE + `)\.(` + nameRE + `))?`)
	refreshRE = regexp.MustCompile(`^CREATE MATERIALIZED VIEW ` + nameRE + `\.` + nameRE + ` REFRESH `)
	// The clauses that follow the engine in engine_full.
	engineTailRE = regexp.MustCompile(` (PARTITION BY|ORDER BY|PRIMARY KEY|SAMPLE BY|TTL|SETTINGS) `)
)

func unquoteName(s string) string {
	if strings.HasPrefix(s, "`") && strings.HasSuffix(s, "`") && len(s) >= 2 {
		s = s[1 : len(s)-1]
		s = strings.ReplaceAll(s, "\\`", "`")
		s = strings.ReplaceAll(s, "\\\\", "\\")
	}
	return s
}

// SpecFromLive describes the MV db.name that a node holds (its tables as
// Inspect read them) as a spec: the target's columns, engine and keys, the
// view's query with {source_table} in place of its source. What a spec
// cannot express is refused with the reason, wrapped in ErrNotExpressible.
func SpecFromLive(tables map[string]*Table, db, name string) (*LiveMV, error) {
	mv := tables[db+"."+name]
	if mv == nil {
		return nil, fmt.Errorf("%s.%s does not exist", db, name)
	}
	if mv.Engine != "MaterializedView" {
		return nil, notExpressible("%s.%s is a %s table, not a materialized view", db, name, mv.Engine)
	}
	if refreshRE.MatchString(mv.CreateQuery) {
		return nil, notExpressible("%s.%s is a refreshable MV: import and adoption handle MVs that fire on inserts only", db, name)
	}
	head := mvHeadRE.FindStringSubmatch(mv.CreateQuery)
	if head == nil {
		return nil, notExpressible("the definition of %s.%s cannot be read: %.120s", db, name, mv.CreateQuery)
	}
	if head[1] == "" {
		return nil, notExpressible("%s.%s has no TO target: it writes into an inner table that shirath cannot manage (recreate it with TO a table of yours)", db, name)
	}
	tdb, tname := unquoteName(head[1]), unquoteName(head[2])
	if tdb != db {
		return nil, notExpressible("%s.%s writes into %s.%s, in another database", db, name, tdb, tname)
	}
	target := tables[db+"."+tname]
	if target == nil {
		return nil, notExpressible("%s.%s writes into %s.%s, which does not exist", db, name, db, tname)
	}
	i := strings.Index(mv.CreateQuery, " AS SELECT ")
	if i < 0 {
		return nil, notExpressible("the query of %s.%s is not a plain SELECT: %.120s", db, name, mv.CreateQuery)
	}
	query, source, err := placeholderQuery(mv.CreateQuery[i+len(" AS "):], db)
	if err != nil {
		return nil, fmt.Errorf("%w (%s.%s)", err, db, name)
	}
	engine, tail, err := targetEngine(target)
	if err != nil {
		return nil, err
	}
	s := &specs.Spec{
		Name: name, Database: db, SourceTable: source, TargetTable: tname,
		Engine: engine.String(), SelectQuery: query,
		OrderBy: splitKey(target.SortingKey), PartitionBy: strings.TrimSpace(target.PartitionKey),
	}
	if tail != "" {
		return nil, notExpressible("the target %s.%s has %s, which a spec cannot express", db, tname, tail)
	}
	for _, c := range target.Columns {
		s.Columns = append(s.Columns, specs.Column{Name: c.Name, Type: c.Type})
	}
	out := &LiveMV{Spec: s, TargetEngine: engine.String()}
	if src := tables[db+"."+source]; engine.Replicated && src != nil && strings.HasPrefix(src.Engine, "Replicated") {
		// Over a replicated source shirath makes the target replicated
		// itself: the spec names the engine without its replication.
		s.Engine = (specs.Engine{Name: engine.Base(), Params: engine.Params[2:]}).String()
	}
	for _, t := range tables {
		if t.Database != db || t.Engine != "Distributed" {
			continue
		}
		if cl, ok := distributedOver(t.EngineFull, db, tname); ok {
			out.Distributed, out.DistributedCluster = t.Name, cl
			if t.Name == s.Name+"_dist" {
				break // the default name wins over any other
			}
		}
	}
	if out.Distributed != "" {
		s.DistributedTable = out.Distributed
	}
	s.ApplyDefaults()
	if errs := s.Validate(); len(errs) > 0 {
		return nil, notExpressible("%s.%s as a spec is not valid: %v", db, name, errs)
	}
	return out, nil
}

// targetEngine reads the engine clause from engine_full, and says which
// clause a spec cannot express (TTL, SAMPLE BY, a PRIMARY KEY other than
// the ORDER BY, SETTINGS other than the default index_granularity).
func targetEngine(t *Table) (specs.Engine, string, error) {
	full := t.EngineFull
	loc := engineTailRE.FindStringIndex(full)
	clause := full
	if loc != nil {
		clause = full[:loc[0]]
	}
	e, err := specs.ParseEngine(clause)
	if err != nil {
		return specs.Engine{}, "", notExpressible("the engine of the target %s.%s is not one shirath knows: %v", t.Database, t.Name, err)
	}
	for _, m := range engineTailRE.FindAllStringSubmatchIndex(full, -1) {
		kw := full[m[2]:m[3]]
		rest := full[m[1]:]
		if n := engineTailRE.FindStringIndex(rest); n != nil {
			rest = rest[:n[0]]
		}
		switch kw {
		case "SAMPLE BY", "TTL":
			return e, kw + " " + rest, nil
		case "PRIMARY KEY":
			if normKey(rest) != normKey(t.SortingKey) {
				return e, kw + " " + rest, nil
			}
		case "SETTINGS":
			if strings.TrimSpace(rest) != "index_granularity = 8192" {
				return e, kw + " " + rest, nil
			}
		}
	}
	return e, "", nil
}

// distributedOver reports whether a Distributed table's engine_full reads
// db.table, and its cluster.
func distributedOver(full, db, table string) (string, bool) {
	open, end := strings.Index(full, "("), strings.LastIndex(full, ")")
	if !strings.HasPrefix(full, "Distributed(") || end < open {
		return "", false
	}
	args := splitKey(full[open+1 : end])
	if len(args) < 3 {
		return "", false
	}
	arg := func(i int) string { return unquoteName(strings.Trim(args[i], "'")) }
	if arg(2) != table || (arg(1) != db && args[1] != "currentDatabase()") {
		return "", false
	}
	return arg(0), true
}

// splitKey splits a sorting key as the server prints it ("a, b" on 18.16,
// "(a, b)" on newer servers) into its expressions.
func splitKey(k string) []string {
	k = stripParens(strings.TrimSpace(k))
	if k == "" {
		return nil
	}
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '`' || c == '"':
			quote = c
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(k[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(k[start:]))
}

// stripParens removes parentheses that enclose the whole text.
func stripParens(k string) string {
	for strings.HasPrefix(k, "(") && strings.HasSuffix(k, ")") {
		depth := 0
		whole := true
		for i := 0; i < len(k)-1; i++ {
			switch k[i] {
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				whole = false
				break
			}
		}
		if !whole {
			break
		}
		k = strings.TrimSpace(k[1 : len(k)-1])
	}
	return k
}

// normKey compares key expressions as the server and a spec write them:
// without spaces, backquotes or enclosing parentheses.
func normKey(k string) string {
	return strings.NewReplacer(" ", "", "`", "").Replace(stripParens(strings.TrimSpace(k)))
}

// placeholderQuery finds the one table the query reads and writes
// {source_table} in its place. A JOIN, a subquery, a table function or a
// source in another database is refused.
func placeholderQuery(q, db string) (query, source string, err error) {
	stmts, perr := parser.NewParser(q).ParseStmts()
	if perr != nil || len(stmts) != 1 {
		return "", "", notExpressible("its query cannot be parsed as one SELECT: %.160s", q)
	}
	sel, ok := stmts[0].(*parser.SelectQuery)
	if !ok || sel.From == nil {
		return "", "", notExpressible("its query is not a SELECT ... FROM a table")
	}
	if sel.UnionAll != nil || sel.UnionDistinct != nil || sel.Except != nil {
		return "", "", notExpressible("its query is a UNION of several SELECTs")
	}
	if _, ok := sel.From.Expr.(*parser.JoinExpr); ok {
		return "", "", notExpressible("its query JOINs several sources; a spec reads one source table")
	}
	jt, ok := sel.From.Expr.(*parser.JoinTableExpr)
	if !ok || jt.Table == nil {
		return "", "", notExpressible("its FROM is not one table")
	}
	expr := jt.Table.Expr
	if a, ok := expr.(*parser.AliasExpr); ok {
		expr = a.Expr
	}
	ti, ok := expr.(*parser.TableIdentifier)
	if !ok {
		return "", "", notExpressible("its FROM is not a table (a subquery or a table function): %.80s", expr.String())
	}
	if ti.Database != nil && ti.Database.Name != db {
		return "", "", notExpressible("its source %s.%s is in another database", ti.Database.Name, ti.Table.Name)
	}
	pos, end := int(ti.Pos()), int(ti.End())
	// The parser's positions leave out the backquotes of quoted names.
	if pos > 0 && pos <= len(q) && q[pos-1] == '`' {
		pos--
	}
	if end >= 0 && end < len(q) && q[end] == '`' {
		end++
	}
	if pos < 0 || end > len(q) || pos >= end {
		return "", "", notExpressible("the source of its query cannot be located")
	}
	return strings.TrimSpace(q[:pos] + specs.SourcePlaceholder + q[end:]), ti.Table.Name, nil
}
