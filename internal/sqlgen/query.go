package sqlgen

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	chparser "github.com/AfterShip/clickhouse-sql-parser/parser"
)

// placeholder is how a spec's select_query names its source table.
const placeholder = "{source_table}"

// sourceSentinel stands in for the placeholder while the query is parsed (the
// parser cannot read "{source_table}"). It is an unquoted identifier that is
// refused in user text, so every occurrence in the printed query is ours and
// can be replaced by the quoted source name after printing; that also covers
// uses as a column qualifier ({source_table}.id), not only the FROM.
const sourceSentinel = "shirath_sqlgen_source_table_sentinel"

// Query is the spec's select with {source_table} replaced by the quoted
// source table, the casts applied and the range filter AND-ed into the outer
// query's WHERE.
//
// The filter is written into the outer WHERE by rewriting the parsed query,
// never by wrapping the source in a subquery: a materialized view on
// ClickHouse 18.16 ignores a WHERE inside a FROM subquery, and the fence
// would then let every row through. The key column must therefore be visible
// in the outer query (a column of the source, or of a FROM subquery that
// selects it).
func (m MV) Query(r Range) (string, error) { return m.query(r, nil) }

// query is Query with, when where is given, the condition it makes from the
// parsed query AND-ed into the outer WHERE as well ("" for none).
func (m MV) query(r Range, where func(*chparser.SelectQuery) string) (string, error) {
	if err := m.check(); err != nil {
		return "", err
	}
	if r.After != nil && r.UpTo != nil && *r.UpTo <= *r.After {
		return "", fmt.Errorf("%w: empty key range (%d, %d]", ErrInvalid, *r.After, *r.UpTo)
	}
	return m.build(r, where)
}

// build is query without its checks of the spec and the range: an empty
// range is allowed (FixedCostProbe), which m.check must have passed.
func (m MV) build(r Range, where func(*chparser.SelectQuery) string) (string, error) {
	sel, err := parseSelect(m.Spec.SelectQuery)
	if err != nil {
		return "", err
	}
	if err := applyCasts(sel, m.Casts); err != nil {
		return "", err
	}
	if err := checkKeyNotShadowed(sel, m.Spec.Backfill.KeyColumn); err != nil {
		return "", err
	}
	addFilter(sel, m.Spec.Backfill.KeyColumn, r)
	if where != nil {
		andWhere(sel, where(sel))
	}
	printed := sel.String()
	// "db.{source_table}" would print as db.`db`.`source`: the placeholder
	// already is a qualified name.
	if strings.Contains(printed, "."+sourceSentinel) {
		return "", fmt.Errorf("%w: select_query qualifies %s with a database; the placeholder already names one", ErrInvalid, placeholder)
	}
	return strings.ReplaceAll(printed, sourceSentinel, m.table(m.Spec.SourceTable)), nil
}

// parseSelect substitutes the placeholder and parses the query. It refuses
// what the parser would silently misread and what cannot carry a single
// outer filter.
func parseSelect(query string) (*chparser.SelectQuery, error) {
	if strings.Contains(strings.ToLower(query), sourceSentinel) {
		return nil, fmt.Errorf("%w: select_query must not contain %q", ErrInvalid, sourceSentinel)
	}
	segs, err := scan(query)
	if err != nil {
		return nil, fmt.Errorf("%w: select_query: %v", ErrInvalid, err)
	}
	var b strings.Builder
	n := 0
	for _, seg := range segs {
		switch seg.kind {
		case segQuoted:
			// The parser ends a quoted identifier at the next quote and
			// knows no escapes: `a``b` would come back as `a` AS `b`.
			if inner := seg.text[1 : len(seg.text)-1]; strings.ContainsAny(inner, "\\"+seg.text[:1]) {
				return nil, fmt.Errorf("%w: select_query: quoted identifier %s uses an escape, which is not supported", ErrInvalid, seg.text)
			}
		case segCode:
			n += strings.Count(seg.text, placeholder)
			// Spaces keep the sentinel a token of its own next to
			// other text, e.g. in "{source_table}AS s".
			b.WriteString(strings.ReplaceAll(seg.text, placeholder, " "+sourceSentinel+" "))
			continue
		case segComment:
			// The parser drops comments too; doing it here also
			// keeps a placeholder inside a comment from counting.
			b.WriteByte(' ')
			continue
		}
		b.WriteString(seg.text)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: select_query does not read from %s", ErrInvalid, placeholder)
	}
	stmts, err := chparser.NewParser(b.String()).ParseStmts()
	if err != nil {
		return nil, fmt.Errorf("%w: parse select_query: %v", ErrInvalid, err)
	}
	if len(stmts) != 1 {
		return nil, fmt.Errorf("%w: select_query must be exactly one statement, got %d", ErrInvalid, len(stmts))
	}
	sel, ok := stmts[0].(*chparser.SelectQuery)
	if !ok {
		return nil, fmt.Errorf("%w: select_query is not a SELECT", ErrInvalid)
	}
	switch {
	case sel.UnionAll != nil, sel.UnionDistinct != nil, sel.Except != nil:
		// Each branch would need its own filter, and a view only fires
		// for one source table anyway.
		return nil, fmt.Errorf("%w: select_query with UNION or EXCEPT is not supported", ErrInvalid)
	case sel.Format != nil:
		return nil, fmt.Errorf("%w: select_query must not have a FORMAT clause", ErrInvalid)
	}
	return sel, nil
}

// outputName is the column name ClickHouse gives a select item, where it can
// be known without the server: an alias or a bare column name.
func outputName(it *chparser.SelectItem) (string, bool) {
	if it.Alias != nil {
		return it.Alias.Name, true
	}
	if id, ok := it.Expr.(*chparser.Ident); ok && id.Name != "*" {
		return id.Name, true
	}
	return "", false
}

// applyCasts wraps each named select item in CAST(expr AS type) AS name. A
// cast that matches no item, or more than one, is an error: the planner
// computed it from the query's output, so a miss means the two disagree.
//
// ClickHouse 18.16 stores such a view with the cast in its function form and
// the conditions fully parenthesised (seen in system.tables.create_table_query):
//
//	... AS SELECT category, count() AS cnt, CAST(sum(price), 'Decimal(18, 2)') AS total_price
//	FROM db.products  WHERE ((price > 0) OR (category = 'free')) AND (id > 10) GROUP BY category
//
// so comparing a live view with a spec has to normalise both sides.
func applyCasts(sel *chparser.SelectQuery, casts map[string]string) error {
	names := make([]string, 0, len(casts))
	for name := range casts {
		names = append(names, name)
	}
	sort.Strings(names) // errors must not depend on map order either
	for _, name := range names {
		typ := strings.TrimSpace(casts[name])
		if err := checkFragment("cast type for column "+name, typ); err != nil {
			return err
		}
		var match *chparser.SelectItem
		for _, it := range sel.SelectItems {
			if out, ok := outputName(it); ok && out == name {
				if match != nil {
					return fmt.Errorf("%w: cast for column %q: more than one select item has that name", ErrInvalid, name)
				}
				match = it
			}
		}
		if match == nil {
			return fmt.Errorf("%w: cast for column %q: no select item has that name (give the expression an alias)", ErrInvalid, name)
		}
		if match.Alias == nil {
			// Name comes from an identifier the parser read, which
			// parseSelect guarantees holds no quote or backslash.
			match.Alias = &chparser.Ident{Name: name, QuoteType: chparser.BackTicks}
		}
		match.Expr = rawExpr("CAST(" + match.Expr.String() + " AS " + typ + ")")
	}
	return nil
}

// checkKeyNotShadowed refuses a select item aliased to the key column unless
// it is that very column. ClickHouse resolves names in WHERE to select
// aliases first, so `max(id) AS id` would turn the fence into an aggregate in
// WHERE, and `CAST(id AS UInt32) AS id` would compare a truncated key.
func checkKeyNotShadowed(sel *chparser.SelectQuery, key string) error {
	for _, it := range sel.SelectItems {
		if it.Alias == nil || it.Alias.Name != key || isColumnRef(it.Expr, key) {
			continue
		}
		return fmt.Errorf("%w: select item %s hides the backfill key column %q that the fence filters on: use another alias", ErrInvalid, it.String(), key)
	}
	return nil
}

func isColumnRef(e chparser.Expr, name string) bool {
	switch e := e.(type) {
	case *chparser.Ident:
		return e.Name == name
	case *chparser.Path:
		return len(e.Fields) > 0 && e.Fields[len(e.Fields)-1].Name == name
	case *chparser.NestedIdentifier:
		if e.DotIdent != nil {
			return e.DotIdent.Name == name
		}
		return e.Ident != nil && e.Ident.Name == name
	}
	return false
}

// addFilter AND-s the range condition into the outer WHERE, keeping the
// existing condition in parentheses so that an OR in it cannot bind to the
// new terms.
func addFilter(sel *chparser.SelectQuery, key string, r Range) {
	var conds []string
	if r.After != nil {
		conds = append(conds, Ident(key)+" > "+strconv.FormatInt(*r.After, 10))
	}
	if r.UpTo != nil {
		conds = append(conds, Ident(key)+" <= "+strconv.FormatInt(*r.UpTo, 10))
	}
	andWhere(sel, strings.Join(conds, " AND "))
}

// andWhere AND-s cond ("" for none) into the outer WHERE.
func andWhere(sel *chparser.SelectQuery, cond string) {
	if cond == "" {
		return
	}
	if sel.Where != nil {
		cond = "(" + sel.Where.Expr.String() + ") AND " + cond
	}
	sel.Where = &chparser.WhereClause{Expr: rawExpr(cond)}
}

// rawExpr is SQL text we generated, placed in the parsed tree so that the
// parser's printer emits it in the right clause. It only lives between
// rewriting and printing.
type rawExpr string

func (r rawExpr) Pos() chparser.Pos                  { return 0 }
func (r rawExpr) End() chparser.Pos                  { return 0 }
func (r rawExpr) String() string                     { return string(r) }
func (r rawExpr) Accept(_ chparser.ASTVisitor) error { return nil }
