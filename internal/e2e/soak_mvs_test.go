//go:build integration && soak

package e2e

import (
	"fmt"
	"strings"
)

// soakMV is one of the soak's MVs: its spec, and the two queries whose rows
// must be equal at the end (the target merged per group, and the same
// aggregate computed from the source).
type soakMV struct {
	name string
	kind int // 0 sum by category, 1 sum by bucket, 2 aggregate states, 3 plain rows
	m    int // the kind's parameter; a change of the MV changes it
}

// soakMVs are the 20 MVs of one deployment: four kinds (SummingMergeTree
// by a String and by a computed key, AggregatingMergeTree with exact
// states, a filtering MergeTree without GROUP BY), five of each.
func soakMVs() []*soakMV {
	var mvs []*soakMV
	for i := 0; i < 20; i++ {
		kind, m := i%4, i/4+1
		mvs = append(mvs, &soakMV{name: fmt.Sprintf("%s_%d", [...]string{"sum", "bucket", "agg", "rows"}[kind], m), kind: kind, m: m})
	}
	return mvs
}

// spec is the MV's spec; extra adds fields (cluster: auto).
func (v *soakMV) spec(extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nsource_table: products\n", v.name)
	switch v.kind {
	case 0:
		b.WriteString("engine: SummingMergeTree()\norder_by: [category]\ncolumns:\n" +
			"  - {name: category, type: String}\n  - {name: cnt, type: UInt64}\n  - {name: total, type: \"Decimal(18,2)\"}\n")
		fmt.Fprintf(&b, "select_query: \"SELECT category, count() AS cnt, sum(price * %d) AS total FROM {source_table} GROUP BY category\"\n", v.m)
	case 1:
		b.WriteString("engine: SummingMergeTree()\norder_by: [bucket]\ncolumns:\n" +
			"  - {name: bucket, type: UInt64}\n  - {name: cnt, type: UInt64}\n  - {name: total, type: \"Decimal(18,2)\"}\n")
		fmt.Fprintf(&b, "select_query: \"SELECT id %% %d AS bucket, count() AS cnt, sum(price) AS total FROM {source_table} GROUP BY bucket\"\n", v.m+6)
	case 2:
		b.WriteString("engine: AggregatingMergeTree()\norder_by: [category]\ncolumns:\n" +
			"  - {name: category, type: String}\n  - {name: ids, type: \"AggregateFunction(uniqExact, UInt64)\"}\n" +
			"  - {name: total, type: \"AggregateFunction(sum, Decimal(18, 2))\"}\n  - {name: n, type: AggregateFunction(count)}\n")
		fmt.Fprintf(&b, "select_query: \"SELECT category, uniqExactState(id) AS ids, sumState(price) AS total, countState() AS n FROM {source_table} WHERE id %% 5 != %d GROUP BY category\"\n", v.m-1)
	case 3:
		b.WriteString("engine: MergeTree()\norder_by: [id]\ncolumns:\n" +
			"  - {name: id, type: UInt64}\n  - {name: category, type: String}\n  - {name: price, type: \"Decimal(18,2)\"}\n")
		fmt.Fprintf(&b, "select_query: \"SELECT id, category, price FROM {source_table} WHERE id %% 10 = %d\"\n", v.m)
	}
	b.WriteString(extra)
	return b.String()
}

// got reads the target (through table, the local target or the
// Distributed table over it) merged per group.
func (v *soakMV) got(table string) string {
	switch v.kind {
	case 0:
		return "SELECT category, sum(cnt), sum(total) FROM " + table + " GROUP BY category ORDER BY category"
	case 1:
		return "SELECT bucket, sum(cnt), sum(total) FROM " + table + " GROUP BY bucket ORDER BY bucket"
	case 2:
		return "SELECT category, uniqExactMerge(ids), sumMerge(total), countMerge(n) FROM " + table + " GROUP BY category ORDER BY category"
	}
	return "SELECT category, count(), sum(id), sum(price) FROM " + table + " GROUP BY category ORDER BY category"
}

// want computes the same from the source, without shirath.
func (v *soakMV) want(source string) string {
	switch v.kind {
	case 0:
		return fmt.Sprintf("SELECT category, count(), sum(price * %d) FROM %s GROUP BY category ORDER BY category", v.m, source)
	case 1:
		return fmt.Sprintf("SELECT id %% %d AS bucket, count(), sum(price) FROM %s GROUP BY bucket ORDER BY bucket", v.m+6, source)
	case 2:
		return fmt.Sprintf("SELECT category, uniqExact(id), sum(price), count() FROM %s WHERE id %% 5 != %d GROUP BY category ORDER BY category", source, v.m-1)
	}
	return fmt.Sprintf("SELECT category, count(), sum(id), sum(price) FROM %s WHERE id %% 10 = %d GROUP BY category ORDER BY category", source, v.m)
}
