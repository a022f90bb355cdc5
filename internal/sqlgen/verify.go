package sqlgen

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	chparser "github.com/AfterShip/clickhouse-sql-parser/parser"

	"github.com/shirath/shirath/specs"
)

// Verification compares a target with its query run over the whole source,
// on the server: both sides are merged as the target's engine merges (one
// row per group), stacked with UNION ALL and grouped by the group key, and
// only the groups whose two sides differ come back. Every column goes
// through CAST to the target's type first, so that the two sides of the
// UNION have one type per column (on 18.16 too) and the expected side holds
// what the view would have written.

// VerifyShape says what a verification compares: the group key, the values
// merged per group, and the columns it cannot compare.
type VerifyShape struct {
	// Merge says how the target's engine merges, for messages.
	Merge string
	// Keys name the group key: order_by entries, or every column for a
	// MergeTree (whose rows are compared as a multiset).
	Keys []string
	// Values name what is compared per group.
	Values []string
	// NotCompared lists the columns whose merged value the engine leaves
	// undetermined (a SummingMergeTree's columns that are not summed,
	// ...), each with the reason.
	NotCompared []string

	keyExprs []string // over target columns
	keyCols  []string // the column each key is, "" for an expression
	types    map[string]string
	vals     []verifyValue
	having   string // over the v aliases: groups the engine drops on merge
	casts    []string
}

type verifyValue struct {
	expr  string // aggregate over target columns
	float bool   // compared with a relative tolerance
}

// Aliases of the verification query; they start with shirath_ so as not to
// meet a column of the spec.
const (
	vSide = "shirath_side"
	vKey  = "shirath_k"
	vVal  = "shirath_v"
)

// numericBase matches the types a SummingMergeTree sums.
var numericBase = regexp.MustCompile(`^(U?Int(8|16|32|64|128|256)|Float(32|64)|Decimal(32|64|128|256)?\(.*\))$`)

var identRe = regexp.MustCompile("`(?:[^`\\\\]|\\\\.)*`|[A-Za-z_][A-Za-z0-9_]*")

// referenced returns the column names an expression mentions.
func referenced(expr string, cols []specs.Column) map[string]bool {
	out := map[string]bool{}
	for _, tok := range identRe.FindAllString(expr, -1) {
		name := tok
		if strings.HasPrefix(tok, "`") {
			name = strings.ReplaceAll(tok[1:len(tok)-1], "\\", "")
		}
		for _, c := range cols {
			if c.Name == name {
				out[name] = true
			}
		}
	}
	return out
}

// aggregateFunction splits AggregateFunction(f(params), T...) and
// SimpleAggregateFunction(f, T) into the function (with its parameters) and
// whether it is the simple form; ok is false for other types.
func aggregateFunction(typ string) (fn, params string, simple, ok bool) {
	for _, p := range []string{"AggregateFunction(", "SimpleAggregateFunction("} {
		if !strings.HasPrefix(typ, p) || !strings.HasSuffix(typ, ")") {
			continue
		}
		inner := typ[len(p) : len(typ)-1]
		depth, end := 0, len(inner)
		for i, c := range inner {
			switch c {
			case '(':
				depth++
			case ')':
				depth--
			case ',':
				if depth == 0 && end == len(inner) {
					end = i
				}
			}
		}
		fn = strings.TrimSpace(inner[:end])
		if i := strings.IndexByte(fn, '('); i > 0 {
			fn, params = fn[:i], fn[i:]
		}
		return fn, params, p == "SimpleAggregateFunction(", true
	}
	return "", "", false, false
}

// aggregateMerge is the expression that merges an aggregate column:
// fMerge(params)(col) for a state, f(col) for a SimpleAggregateFunction.
func aggregateMerge(col, typ string) (string, bool) {
	fn, params, simple, ok := aggregateFunction(typ)
	if !ok {
		return "", false
	}
	if simple {
		return fn + "(" + Ident(col) + ")", true
	}
	return fn + "Merge" + params + "(" + Ident(col) + ")", true
}

// Shape works out what verifying m's target compares, from its spec.
func (m MV) Shape() (*VerifyShape, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	s := m.Spec
	eng, err := specs.ParseEngine(s.Engine)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	types := map[string]string{}
	sh := &VerifyShape{types: types}
	for _, c := range s.Columns {
		typ, err := specs.ParseType(c.Type)
		if err != nil {
			return nil, fmt.Errorf("%w: column %s: %v", ErrInvalid, c.Name, err)
		}
		if err := checkFragment("type of column "+c.Name, typ); err != nil {
			return nil, err
		}
		types[c.Name] = typ
		if _, _, _, agg := aggregateFunction(typ); agg {
			// A state cannot be cast, and needs none: the planner refuses
			// a query whose state type differs from the column's.
			sh.casts = append(sh.casts, Ident(c.Name))
		} else {
			sh.casts = append(sh.casts, "CAST("+Ident(c.Name)+" AS "+typ+") AS "+Ident(c.Name))
		}
	}
	keyCols := map[string]bool{}
	byOrderBy := func() error {
		for _, k := range s.OrderBy {
			if err := checkFragment("order_by entry", k); err != nil {
				return err
			}
			sh.Keys = append(sh.Keys, k)
			sh.keyExprs = append(sh.keyExprs, k)
			col := ""
			if c := referenced(k, s.Columns); len(c) == 1 && (c[k] || c[strings.Trim(k, "`")]) {
				col = strings.Trim(k, "`")
			}
			sh.keyCols = append(sh.keyCols, col)
			for c := range referenced(k, s.Columns) {
				keyCols[c] = true
			}
		}
		return nil
	}
	notKey := func(f func(c specs.Column, typ string)) {
		for _, c := range s.Columns {
			if !keyCols[c.Name] {
				f(c, types[c.Name])
			}
		}
	}
	switch eng.Base() {
	case "SummingMergeTree":
		sh.Merge = "sums per group"
		if err := byOrderBy(); err != nil {
			return nil, err
		}
		var listed map[string]bool
		if p := eng.BaseParams(); len(p) == 1 {
			listed = referenced(p[0], s.Columns)
		}
		var zero []string
		notKey(func(c specs.Column, typ string) {
			if e, ok := aggregateMerge(c.Name, typ); ok {
				sh.add(c.Name, e, false)
				return
			}
			if numericBase.MatchString(typ) && (listed == nil || listed[c.Name]) {
				zero = append(zero, fmt.Sprintf("%s%d = 0", vVal, len(sh.vals)+1))
				sh.add(c.Name, "sum("+Ident(c.Name)+")", strings.HasPrefix(typ, "Float"))
				return
			}
			sh.NotCompared = append(sh.NotCompared, c.Name+" (not summed: a merge keeps any of its values)")
		})
		if len(zero) > 0 {
			// A merge drops a row whose summed columns are all zero.
			sh.having = "NOT (" + strings.Join(zero, " AND ") + ")"
		}
	case "AggregatingMergeTree":
		sh.Merge = "finalises the aggregate states per group"
		if err := byOrderBy(); err != nil {
			return nil, err
		}
		notKey(func(c specs.Column, typ string) {
			if e, ok := aggregateMerge(c.Name, typ); ok {
				sh.add(c.Name, e, false)
				return
			}
			sh.NotCompared = append(sh.NotCompared, c.Name+" (not an aggregate: a merge keeps any of its values)")
		})
	case "ReplacingMergeTree":
		if err := byOrderBy(); err != nil {
			return nil, err
		}
		p := eng.BaseParams()
		if len(p) == 0 {
			sh.Merge = "keeps one row per group (keys only: without a version column the kept row is the last inserted, which the source cannot tell)"
			notKey(func(c specs.Column, _ string) {
				sh.NotCompared = append(sh.NotCompared, c.Name+" (no version column)")
			})
			break
		}
		ver := p[0]
		sh.Merge = "keeps the row with the highest " + ver + " per group"
		var cols, names []string
		notKey(func(c specs.Column, _ string) {
			cols = append(cols, Ident(c.Name))
			names = append(names, c.Name)
		})
		if len(cols) > 0 {
			sh.add(strings.Join(names, ", "), "argMax(tuple("+strings.Join(cols, ", ")+"), "+Ident(ver)+")", false)
		}
	case "MergeTree":
		sel, err := parseSelect(s.SelectQuery)
		if err != nil {
			return nil, err
		}
		if sel.GroupBy != nil {
			return nil, fmt.Errorf("%w: %s: a MergeTree target of a GROUP BY query holds one partial row per group and insert block, so it cannot be compared with the query's result: use SummingMergeTree or AggregatingMergeTree", ErrInvalid, s.Name)
		}
		sh.Merge = "compares rows as a multiset"
		for _, c := range s.Columns {
			if _, _, _, agg := aggregateFunction(types[c.Name]); agg {
				return nil, fmt.Errorf("%w: %s: column %s holds aggregate states, which a MergeTree's rows cannot be compared by", ErrInvalid, s.Name, c.Name)
			}
			sh.Keys = append(sh.Keys, c.Name)
			sh.keyExprs = append(sh.keyExprs, Ident(c.Name))
			sh.keyCols = append(sh.keyCols, c.Name)
		}
		sh.add("rows", "count()", false)
	default:
		return nil, fmt.Errorf("%w: %s: verify does not support %s targets (only MergeTree, SummingMergeTree, AggregatingMergeTree and ReplacingMergeTree)", ErrInvalid, s.Name, eng.Base())
	}
	if len(sh.keyExprs) == 0 {
		return nil, fmt.Errorf("%w: %s: no group key to compare by", ErrInvalid, s.Name)
	}
	return sh, nil
}

func (sh *VerifyShape) add(name, expr string, float bool) {
	sh.Values = append(sh.Values, name)
	sh.vals = append(sh.vals, verifyValue{expr: expr, float: float})
}

// VerifyFilter restricts a verification to some groups, each given by its
// key values as the verification prints them (toString of each key).
type VerifyFilter [][]string

func (sh *VerifyShape) filter(f VerifyFilter) string {
	if f == nil {
		return ""
	}
	keys := make([]string, len(sh.keyExprs))
	for i, e := range sh.keyExprs {
		keys[i] = "toString(" + e + ")"
	}
	return " WHERE " + inList(keys, f)
}

// pushdown is the filter of the groups written over the source's rows, for
// the query's own WHERE: without it every re-check would aggregate the
// whole source. It is only made when every key is a column whose select
// item is a grouping expression (or, without GROUP BY, a plain column), so
// that a row's value is the group's; else "" (the filter over the query's
// result still applies).
func (sh *VerifyShape) pushdown(sel *chparser.SelectQuery, f VerifyFilter) string {
	if f == nil {
		return ""
	}
	var groups []string
	if sel.GroupBy != nil {
		if l, ok := sel.GroupBy.Expr.(*chparser.ColumnExprList); ok {
			for _, g := range l.Items {
				groups = append(groups, g.String())
			}
		} else {
			groups = append(groups, sel.GroupBy.Expr.String())
		}
	}
	// A WHERE reads a select item's alias before a source column of that
	// name: an expression naming such an alias would mean another thing
	// there.
	aliases := map[string]bool{}
	for _, it := range sel.SelectItems {
		if it.Alias != nil && !isColumnRef(it.Expr, it.Alias.Name) {
			aliases[it.Alias.Name] = true
		}
	}
	keys := make([]string, len(sh.keyCols))
	for i, col := range sh.keyCols {
		var item *chparser.SelectItem
		for _, it := range sel.SelectItems {
			if out, ok := outputName(it); ok && out == col {
				item = it
			}
		}
		if col == "" || item == nil || sh.types[col] == "" {
			return ""
		}
		e := item.Expr.String()
		for _, tok := range identRe.FindAllString(e, -1) {
			if aliases[strings.Trim(tok, "`")] {
				return ""
			}
		}
		_, plain := item.Expr.(*chparser.Ident)
		if sel.GroupBy != nil && !slices.Contains(groups, e) && !slices.Contains(groups, col) {
			return ""
		}
		if sel.GroupBy == nil && !plain {
			return ""
		}
		keys[i] = "toString(CAST(" + e + " AS " + sh.types[col] + "))"
	}
	return inList(keys, f)
}

// inList is (k1, k2) IN (('a', 'b'), ...), or k IN ('a', ...) for one key;
// 0 for no group.
func inList(keys []string, f VerifyFilter) string {
	if len(f) == 0 {
		return "0"
	}
	tuples := make([]string, len(f))
	for i, g := range f {
		vals := make([]string, len(g))
		for k, v := range g {
			vals[k] = quoteString(v)
		}
		if len(keys) == 1 {
			tuples[i] = vals[0]
		} else {
			tuples[i] = "(" + strings.Join(vals, ", ") + ")"
		}
	}
	lhs := keys[0]
	if len(keys) > 1 {
		lhs = "(" + strings.Join(keys, ", ") + ")"
	}
	return lhs + " IN (" + strings.Join(tuples, ", ") + ")"
}

// merged groups rows of from by the key, merging the values as the engine
// does.
func (sh *VerifyShape) merged(from, where string) string {
	items := make([]string, 0, len(sh.keyExprs)+len(sh.vals))
	group := make([]string, len(sh.keyExprs))
	for i, e := range sh.keyExprs {
		group[i] = fmt.Sprintf("%s%d", vKey, i+1)
		items = append(items, e+" AS "+group[i])
	}
	for i, v := range sh.vals {
		items = append(items, fmt.Sprintf("%s AS %s%d", v.expr, vVal, i+1))
	}
	q := "SELECT " + strings.Join(items, ", ") + " FROM " + from + where + " GROUP BY " + strings.Join(group, ", ")
	if sh.having != "" {
		q += " HAVING " + sh.having
	}
	return q
}

// VerifyQuery compares the target (m.Spec.TargetTable, a local table) with
// the view's query over the local source. It returns one row per group that
// differs, at most limit rows ordered by key, every column as a String: the
// key values, then the number of rows of the group in the target and in the
// query's result (0 or 1: a group missing on one side), then for each value
// the target's and the query's. filter, when not nil, restricts both sides
// to those groups.
//
// How many groups differ in all is the query's rows_before_limit.
func (m MV) VerifyQuery(sh *VerifyShape, filter VerifyFilter, limit int) (string, error) {
	q, err := m.query(Range{}, func(sel *chparser.SelectQuery) string { return sh.pushdown(sel, filter) })
	if err != nil {
		return "", err
	}
	where := sh.filter(filter)
	target := sh.merged(m.table(m.Spec.TargetTable), where)
	expected := sh.merged("(SELECT "+strings.Join(sh.casts, ", ")+" FROM ("+q+"))", where)

	n := len(sh.keyExprs)
	var items, group, differs []string
	for i := 1; i <= n; i++ {
		k := fmt.Sprintf("%s%d", vKey, i)
		group = append(group, k)
		items = append(items, "toString("+k+")")
	}
	side := func(s int) string { return fmt.Sprintf("%s = %d", vSide, s) }
	items = append(items, "toString(countIf("+side(0)+"))", "toString(countIf("+side(1)+"))")
	differs = append(differs, "countIf("+side(0)+") != countIf("+side(1)+")")
	for i, v := range sh.vals {
		a := fmt.Sprintf("%s%d", vVal, i+1)
		t, e := "anyIf("+a+", "+side(0)+")", "anyIf("+a+", "+side(1)+")"
		items = append(items, "toString("+t+")", "toString("+e+")")
		if v.float {
			// Float sums depend on the order of the additions.
			differs = append(differs, "abs("+t+" - "+e+") > 1e-9 * greatest(greatest(abs("+t+"), abs("+e+")), 1)")
		} else {
			differs = append(differs, t+" != "+e)
		}
	}
	return "SELECT " + strings.Join(items, ", ") +
		" FROM (SELECT 0 AS " + vSide + ", * FROM (" + target + ") UNION ALL SELECT 1 AS " + vSide + ", * FROM (" + expected + "))" +
		" GROUP BY " + strings.Join(group, ", ") +
		" HAVING " + strings.Join(differs, " OR ") +
		" ORDER BY " + strings.Join(group, ", ") +
		fmt.Sprintf(" LIMIT %d", max(limit, 1)), nil
}

// VerifyGroups counts the groups of the target, merged as its engine does.
func (m MV) VerifyGroups(sh *VerifyShape) string {
	return "SELECT toString(count()) FROM (" + sh.merged(m.table(m.Spec.TargetTable), "") + ")"
}

// Columns returns the number of columns VerifyQuery returns.
func (sh *VerifyShape) Columns() int { return len(sh.keyExprs) + 2 + 2*len(sh.vals) }

// VerifyMarks reads, for the source and the target, a number that every
// INSERT (or replicated fetch) raises and merges leave alone: the sum over
// partitions of the highest block number of the active parts. Equal marks
// before and after a check, with no INSERT running at either end, mean no
// row was in flight during it. With replicated tables, rows are in flight
// too while a replication queue holds entries, while the replica has not
// yet copied the table's log into its queue (log_pointer <= log_max_index;
// a log that never had an entry reads 0 and 0), and for 2 s after a part of
// the source became active: the source and the target replicate on their
// own, and the target's part of an INSERT made on another replica may not
// be in its log yet when this replica already holds the source's (seen in
// CI: a shard judged quiet whose target lagged its source by one INSERT).
func (m MV) VerifyMarks(replicated bool) string {
	blocks := func(tag, table string) string {
		return "SELECT concat('" + tag + " ', toString(sum(b))) FROM (SELECT max(max_block_number) AS b FROM system.parts WHERE database = " +
			quoteString(m.Spec.Database) + " AND table = " + quoteString(table) + " AND active GROUP BY partition_id)"
	}
	q := blocks("source", m.Spec.SourceTable) + " UNION ALL " + blocks("target", m.Spec.TargetTable) +
		" UNION ALL SELECT concat('inserts ', toString(count())) FROM system.processes" +
		" WHERE positionCaseInsensitive(query, 'insert') > 0 AND positionCaseInsensitive(query, 'system.processes') = 0"
	if replicated {
		both := " WHERE database = " + quoteString(m.Spec.Database) + " AND table IN (" + quoteString(m.Spec.SourceTable) + ", " + quoteString(m.Spec.TargetTable) + ")"
		q += " UNION ALL SELECT concat('queue ', toString(count())) FROM system.replication_queue" + both +
			" UNION ALL SELECT concat('unpulled ', toString(count())) FROM system.replicas" + both + " AND log_max_index > 0 AND log_pointer <= log_max_index" +
			" UNION ALL SELECT concat('fresh ', toString(count())) FROM system.parts WHERE database = " + quoteString(m.Spec.Database) +
			" AND table = " + quoteString(m.Spec.SourceTable) + " AND active AND modification_time > now() - 2"
	}
	return q
}

// SyncReplica makes a replica fetch what its replication queue knows of.
func (m MV) SyncReplica(table string) string {
	return "SYSTEM SYNC REPLICA " + m.table(table)
}

// VerifyTables reads the engines of the source and the target on a node,
// as "name engine" lines.
func (m MV) VerifyTables() string {
	return "SELECT concat(name, ' ', engine) FROM system.tables WHERE database = " + quoteString(m.Spec.Database) +
		" AND name IN (" + quoteString(m.Spec.SourceTable) + ", " + quoteString(m.Spec.TargetTable) + ")"
}
