// Package sqlgen generates every SQL statement shirath sends to ClickHouse for
// a materialized view: the target table, the fenced view, the Distributed
// table, backfill batches, OPTIMIZE and the drops.
//
// Keeping all of it here means identifiers are quoted in exactly one place and
// the rules that keep a backfill exact (the filter goes into the outer WHERE
// of the view's own query, never into a FROM subquery, because ClickHouse 18.16
// ignores the latter in a materialized view) are enforced in exactly one
// place. The output must run on ClickHouse 18.16 and on 23.x-25.x, and the
// same input always gives byte-identical SQL, so that plans are stable and
// retried INSERT blocks deduplicate.
package sqlgen

import (
	"errors"
	"strings"

	"github.com/shirath/shirath/specs"
)

// ErrInvalid is wrapped by every error this package returns: the input
// (spec, range, engine clause, cast) cannot be turned into safe SQL. Retrying
// does not help; the spec or the caller has to change.
var ErrInvalid = errors.New("sqlgen: invalid input")

// Ident backtick-quotes an identifier. Backslash escapes are understood
// inside backticks by ClickHouse 18.16 as well as by current releases, so any
// byte string, including one holding backticks, round-trips.
func Ident(s string) string {
	return quote(s, '`')
}

// Table quotes a database-qualified table name: `db`.`name`.
func Table(db, name string) string {
	return Ident(db) + "." + Ident(name)
}

// quoteString makes a ClickHouse string literal.
func quoteString(s string) string {
	return quote(s, '\'')
}

func quote(s string, q byte) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		// Byte-wise is safe for UTF-8: both special bytes are ASCII and never
		// occur inside a multi-byte sequence.
		if c := s[i]; c == q || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte(q)
	return b.String()
}

// MV is one materialized view together with the facts about the live
// installation that the spec alone does not give.
type MV struct {
	// Spec has its defaults applied: Database, TargetTable,
	// DistributedTable and Backfill.KeyColumn are set.
	Spec *specs.Spec
	// Cluster is "" on a single node, else the cluster used for ON CLUSTER
	// and by the Distributed table. Statements only get ON CLUSTER when
	// asked for and Cluster is set.
	Cluster string
	// TargetEngine is the engine clause of the target, e.g. the Replicated
	// form of Spec.Engine; "" means Spec.Engine.
	TargetEngine string
	// Casts maps an output column name of the select to the ClickHouse type
	// it must be cast to, because on 18.16 the query's own type (e.g.
	// sum(Decimal(18,2)) is Decimal(38,2)) makes the view's insert fail
	// with "Type mismatch".
	Casts map[string]string
	// DropSync makes drops synchronous (DROP TABLE ... SYNC, on servers
	// that have it): in an Atomic database a dropped table's data, and a
	// Replicated table's ZooKeeper path, are otherwise released minutes
	// later, and a rebuild under the same path fails.
	DropSync bool
	// ViewSource, when set, is what the view itself reads instead of
	// Spec.SourceTable, in CREATE MATERIALIZED VIEW only (backfill and
	// fence read the source table): the upstream MV's name, on a server
	// where rows an MV writes into its target fire only the MVs reading
	// that MV's name (chclient.Version.CascadesThroughTarget).
	ViewSource string
}

// viewQuery is Query as the view reads: from ViewSource when set.
func (m MV) viewQuery(r Range) (string, error) {
	if m.ViewSource != "" {
		s := *m.Spec
		s.SourceTable = m.ViewSource
		m.Spec = &s
	}
	return m.Query(r)
}

// Range selects source rows by the backfill key: key > *After AND key <=
// *UpTo. A nil bound is absent.
type Range struct{ After, UpTo *int64 }

// Optimize is OPTIMIZE TABLE target FINAL, which merges the rows the backfill
// and the view wrote for the same key.
func (m MV) Optimize(onCluster bool) string {
	return "OPTIMIZE TABLE " + m.table(m.Spec.TargetTable) + m.onCluster(onCluster) + " FINAL"
}

// DropMV drops the materialized view. DROP TABLE rather than DROP VIEW
// because 18.16 has no DROP VIEW.
func (m MV) DropMV(onCluster bool) string { return m.drop(m.Spec.Name, onCluster) }

// DropTarget drops the view's target table.
func (m MV) DropTarget(onCluster bool) string { return m.drop(m.Spec.TargetTable, onCluster) }

// DropDistributed drops the Distributed table over the target.
func (m MV) DropDistributed(onCluster bool) string {
	return m.drop(m.Spec.DistributedTable, onCluster)
}

func (m MV) drop(name string, onCluster bool) string {
	q := "DROP TABLE IF EXISTS " + m.table(name) + m.onCluster(onCluster)
	if m.DropSync {
		q += " SYNC"
	}
	return q
}

func (m MV) table(name string) string { return Table(m.Spec.Database, name) }

// onCluster gives the ON CLUSTER clause with its leading space, or "". It is
// ignored without a cluster so that single-node callers can pass true
// unconditionally.
func (m MV) onCluster(want bool) string {
	if !want || m.Cluster == "" {
		return ""
	}
	return " ON CLUSTER " + Ident(m.Cluster)
}

// ZKPath is the ZooKeeper path of a replicated table. It spells out database
// and table because the {database} and {table} macros do not exist on 18.16;
// {shard} comes from each server's macros.
func ZKPath(db, table string) string {
	return "/clickhouse/tables/{shard}/" + db + "/" + table
}
