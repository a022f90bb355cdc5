package sqlgen

import (
	"fmt"
	"strings"
)

// check refuses an MV whose defaults were not applied: an empty name would
// quote to an empty identifier and produce SQL that fails far from the cause.
func (m MV) check() error {
	if m.Spec == nil {
		return fmt.Errorf("%w: no spec", ErrInvalid)
	}
	s := m.Spec
	for _, f := range []struct{ name, value string }{
		{"name", s.Name},
		{"database", s.Database},
		{"source_table", s.SourceTable},
		{"target_table", s.TargetTable},
		{"backfill.key_column", s.Backfill.KeyColumn},
	} {
		if f.value == "" {
			return fmt.Errorf("%w: spec %q: %s is empty", ErrInvalid, s.Name, f.name)
		}
	}
	return nil
}

// CreateTarget creates the target table:
// CREATE TABLE IF NOT EXISTS `db`.`target` [ON CLUSTER `c`] (`col` Type, ...)
// ENGINE = E [PARTITION BY p] ORDER BY (k, ...).
func (m MV) CreateTarget(onCluster bool) (string, error) {
	if err := m.check(); err != nil {
		return "", err
	}
	cols, err := m.columnDefs()
	if err != nil {
		return "", err
	}
	clause := m.TargetEngine
	if clause == "" {
		clause = m.Spec.Engine
	}
	eng, err := parseEngine(clause)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + m.table(m.Spec.TargetTable) + m.onCluster(onCluster))
	b.WriteString(" (" + strings.Join(cols, ", ") + ")")
	// Printed from its parsed form, so the same engine written with other
	// spacing or without "()" gives the same DDL.
	b.WriteString(" ENGINE = " + eng.String())
	if p := strings.TrimSpace(m.Spec.PartitionBy); p != "" {
		expr, err := keyExpr("partition_by", p)
		if err != nil {
			return "", err
		}
		b.WriteString(" PARTITION BY " + expr)
	}
	order, err := m.orderBy()
	if err != nil {
		return "", err
	}
	if order == "" {
		// MergeTree needs ORDER BY; tuple() is ClickHouse's "no order".
		order = "tuple()"
	} else {
		order = "(" + order + ")"
	}
	b.WriteString(" ORDER BY " + order)
	return b.String(), nil
}

func (m MV) columnDefs() ([]string, error) {
	if len(m.Spec.Columns) == 0 {
		return nil, fmt.Errorf("%w: spec %q has no columns", ErrInvalid, m.Spec.Name)
	}
	seen := make(map[string]bool, len(m.Spec.Columns))
	defs := make([]string, 0, len(m.Spec.Columns))
	for _, c := range m.Spec.Columns {
		if c.Name == "" {
			return nil, fmt.Errorf("%w: spec %q has a column without a name", ErrInvalid, m.Spec.Name)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%w: spec %q: column %q is declared twice", ErrInvalid, m.Spec.Name, c.Name)
		}
		seen[c.Name] = true
		typ := strings.TrimSpace(c.Type)
		if err := checkFragment("type of column "+c.Name, typ); err != nil {
			return nil, err
		}
		defs = append(defs, Ident(c.Name)+" "+typ)
	}
	return defs, nil
}

// orderBy joins the target's order_by expressions, "" when there are none.
func (m MV) orderBy() (string, error) {
	exprs := make([]string, 0, len(m.Spec.OrderBy))
	for _, e := range m.Spec.OrderBy {
		expr, err := keyExpr("order_by", strings.TrimSpace(e))
		if err != nil {
			return "", err
		}
		exprs = append(exprs, expr)
	}
	return strings.Join(exprs, ", "), nil
}

// keyExpr checks an order_by or partition_by expression; a plain column name
// is quoted like every other identifier, anything else is pasted as written.
func keyExpr(what, e string) (string, error) {
	if err := checkFragment(what, e); err != nil {
		return "", err
	}
	if isPlainIdent(e) {
		return Ident(e), nil
	}
	return e, nil
}

// CreateMV creates the materialized view writing into the target, fenced so
// that it only handles rows with key > fence; the backfill covers the rest.
func (m MV) CreateMV(fence int64, onCluster bool) (string, error) {
	if m.Spec.Refresh != nil {
		return m.CreateRefreshable(onCluster)
	}
	return m.CreateMVOver(Range{After: &fence}, onCluster)
}

// CreateMVOver creates the materialized view with the key range r in its
// WHERE; Range{} for none, as an adopted MV (created without shirath) has.
func (m MV) CreateMVOver(r Range, onCluster bool) (string, error) {
	q, err := m.viewQuery(r)
	if err != nil {
		return "", err
	}
	return "CREATE MATERIALIZED VIEW IF NOT EXISTS " + m.table(m.Spec.Name) + m.onCluster(onCluster) +
		" TO " + m.table(m.Spec.TargetTable) + " AS " + q, nil
}

// CreateDistributed creates the Distributed table over the target on every
// node of the cluster. The database and table are given as string literals
// rather than currentDatabase(), so the table does not depend on the session
// that created it.
func (m MV) CreateDistributed(onCluster bool) (string, error) {
	if err := m.check(); err != nil {
		return "", err
	}
	if m.Cluster == "" {
		return "", fmt.Errorf("%w: spec %q: a Distributed table needs a cluster", ErrInvalid, m.Spec.Name)
	}
	if m.Spec.DistributedTable == "" {
		return "", fmt.Errorf("%w: spec %q: distributed_table is empty", ErrInvalid, m.Spec.Name)
	}
	return "CREATE TABLE IF NOT EXISTS " + m.table(m.Spec.DistributedTable) + m.onCluster(onCluster) +
		" AS " + m.table(m.Spec.TargetTable) +
		" ENGINE = Distributed(" + quoteString(m.Cluster) + ", " + quoteString(m.Spec.Database) + ", " +
		quoteString(m.Spec.TargetTable) + ", rand())", nil
}

// BackfillBatch inserts the view's rows for one key range of the source:
//
//	INSERT INTO `db`.`target` (`c1`, ...) SELECT `c1`, ... FROM (<Query(r)>) [ORDER BY <order_by>]
//
// The spec's query is wrapped, unlike in the view, for two reasons. INSERT
// SELECT matches columns by position while a view matches them by name;
// selecting the target's columns by name from the query makes a batch land
// in the same columns as the view's own rows, whatever the select order. And
// the target's order_by is written in terms of target columns, which are the
// wrapper's input. The range filter is still in the outer WHERE of the
// spec's query itself, which reads the source directly.
//
// ordered sorts the batch so that a retried batch produces byte-identical
// blocks, which a Replicated target then deduplicates.
//
// r must have an upper bound: a batch without one would also insert the rows
// above the fence that the view already handles.
func (m MV) BackfillBatch(r Range, ordered bool) (string, error) {
	return m.backfillInto(m.Spec.TargetTable, r, ordered)
}

func (m MV) backfillInto(table string, r Range, ordered bool) (string, error) {
	if r.UpTo == nil {
		return "", fmt.Errorf("%w: a backfill batch needs an upper key bound", ErrInvalid)
	}
	q, err := m.Query(r)
	if err != nil {
		return "", err
	}
	if len(m.Spec.Columns) == 0 {
		return "", fmt.Errorf("%w: spec %q has no columns", ErrInvalid, m.Spec.Name)
	}
	list := m.columnList()
	stmt := "INSERT INTO " + m.table(table) + " (" + list + ") SELECT " + list + " FROM (" + q + ")"
	if ordered {
		// Every column that can be sorted (aggregate states cannot), so
		// that a retried batch sends byte-identical blocks, which is what
		// Replicated block deduplication recognises.
		var keys []string
		for _, c := range m.Spec.Columns {
			if !strings.HasPrefix(strings.TrimSpace(c.Type), "AggregateFunction(") {
				keys = append(keys, Ident(c.Name))
			}
		}
		if len(keys) == 0 {
			return "", fmt.Errorf("%w: spec %q: an ordered batch needs a column that is not an aggregate state", ErrInvalid, m.Spec.Name)
		}
		stmt += " ORDER BY " + strings.Join(keys, ", ")
	}
	return stmt, nil
}

// columnList is the spec's columns, quoted, comma-separated.
func (m MV) columnList() string {
	cols := make([]string, len(m.Spec.Columns))
	for i, c := range m.Spec.Columns {
		cols[i] = Ident(c.Name)
	}
	return strings.Join(cols, ", ")
}

// PaceProbe is a read of a batch's query over r that returns one number (its
// output rows) but makes the server compute every output column: ignore()
// evaluates its arguments, whereas count() over the bare subquery lets the
// server drop the columns it does not need (18.16 skipped a uniqExact
// column), so the probe's time would leave out the aggregates.
func (m MV) PaceProbe(r Range) (string, error) { return m.paceProbe(m.Query(r)) }

// FixedCostProbe is PaceProbe over the empty key range (at, at], which
// Query refuses: the same statement, whose index analysis selects no
// granule, so it reads nothing. Its time is the probe's fixed cost (a round
// trip, parsing, planning).
func (m MV) FixedCostProbe(at int64) (string, error) {
	if err := m.check(); err != nil {
		return "", err
	}
	return m.paceProbe(m.build(Range{After: &at, UpTo: &at}, nil))
}

// paceProbe wraps a batch's query q (err: building it failed) in the
// probe's count.
func (m MV) paceProbe(q string, err error) (string, error) {
	if len(m.Spec.Columns) == 0 {
		return "", fmt.Errorf("%w: spec %q has no columns", ErrInvalid, m.Spec.Name)
	}
	if err != nil {
		return "", err
	}
	return "SELECT count() FROM (" + q + ") WHERE NOT ignore(" + m.columnList() + ")", nil
}
