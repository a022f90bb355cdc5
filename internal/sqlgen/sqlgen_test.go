package sqlgen

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	chparser "github.com/AfterShip/clickhouse-sql-parser/parser"

	"github.com/shirath/shirath/specs"
)

func TestIdent(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain", "`plain`"},
		{"", "``"},
		{"with space", "`with space`"},
		{"a`b", "`a\\`b`"},
		{`a\b`, "`a\\\\b`"},
		{"a\\`b", "`a\\\\\\`b`"},
		{"`", "`\\``"},
		{`\`, "`\\\\`"},
		{"x`; DROP TABLE t; --", "`x\\`; DROP TABLE t; --`"},
		{"x` FROM system.one; SELECT `", "`x\\` FROM system.one; SELECT \\``"},
		{"quote'and\"dq", "`quote'and\"dq`"},
		{"naïve 名前", "`naïve 名前`"},
		{"line\nbreak", "`line\nbreak`"},
	}
	for _, c := range cases {
		if got := Ident(c.in); got != c.want {
			t.Errorf("Ident(%q) = %s, want %s", c.in, got, c.want)
		}
		if got := unquoteIdent(t, Ident(c.in)); got != c.in {
			t.Errorf("Ident(%q) reads back as %q", c.in, got)
		}
	}
	if got, want := Table("d`b", "t\\"), "`d\\`b`.`t\\\\`"; got != want {
		t.Errorf("Table = %s, want %s", got, want)
	}
	if got, want := quoteString(`it's a \ test`), `'it\'s a \\ test'`; got != want {
		t.Errorf("quoteString = %s, want %s", got, want)
	}
}

// unquoteIdent reads a backtick-quoted identifier back the way ClickHouse
// does, and fails if the quoting ends before the end of the text, which is
// what an injection would need.
func unquoteIdent(t *testing.T, q string) string {
	t.Helper()
	if len(q) < 2 || q[0] != '`' || q[len(q)-1] != '`' {
		t.Fatalf("%s is not backtick-quoted", q)
	}
	var b strings.Builder
	for i := 1; i < len(q)-1; i++ {
		switch q[i] {
		case '\\':
			i++
		case '`':
			t.Fatalf("%s: unescaped backtick at %d", q, i)
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func TestZKPath(t *testing.T) {
	if got, want := ZKPath("shop", "totals"), "/clickhouse/tables/{shard}/shop/totals"; got != want {
		t.Errorf("ZKPath = %s, want %s", got, want)
	}
}

func queryMV(q string) MV {
	return MV{Spec: withSpec(func(s *specs.Spec) { s.SelectQuery = q })}
}

func TestQueryFilterGoesToOuterWhere(t *testing.T) {
	cases := []struct {
		name, query string
		r           Range
		want        string
	}{
		{
			name:  "subquery in WHERE keeps its own WHERE untouched",
			query: "SELECT category, count() AS cnt FROM {source_table} WHERE category IN (SELECT category FROM {source_table} WHERE price > 10) GROUP BY category",
			r:     Range{After: i64(5), UpTo: i64(9)},
			want:  "SELECT category, count() AS cnt FROM `shop`.`products` WHERE (category IN (SELECT category FROM `shop`.`products` WHERE price > 10)) AND `id` > 5 AND `id` <= 9 GROUP BY category",
		},
		{
			name:  "FROM subquery is filtered outside, never inside",
			query: "SELECT category, count() AS cnt FROM (SELECT id, category FROM {source_table} WHERE price > 0) GROUP BY category",
			r:     Range{After: i64(5)},
			want:  "SELECT category, count() AS cnt FROM (SELECT id, category FROM `shop`.`products` WHERE price > 0) WHERE `id` > 5 GROUP BY category",
		},
		{
			name:  "OR in the existing condition stays grouped",
			query: "SELECT category FROM {source_table} WHERE a = 1 OR b = 2",
			r:     Range{UpTo: i64(3)},
			want:  "SELECT category FROM `shop`.`products` WHERE (a = 1 OR b = 2) AND `id` <= 3",
		},
		{
			name:  "PREWHERE is left alone",
			query: "SELECT category FROM {source_table} PREWHERE a = 1",
			r:     Range{After: i64(-3)},
			want:  "SELECT category FROM `shop`.`products` PREWHERE a = 1 WHERE `id` > -3",
		},
		{
			name:  "no bounds, no filter",
			query: "SELECT category FROM {source_table}",
			want:  "SELECT category FROM `shop`.`products`",
		},
		{
			name:  "extreme bounds are printed as integers",
			query: "SELECT category FROM {source_table}",
			r:     Range{After: i64(-9223372036854775808), UpTo: i64(9223372036854775807)},
			want:  "SELECT category FROM `shop`.`products` WHERE `id` > -9223372036854775808 AND `id` <= 9223372036854775807",
		},
		{
			name:  "placeholder as qualifier, with alias, FINAL, comments and odd spacing",
			query: "SELECT {source_table}.category AS c -- the category\nFROM {source_table}AS s /* all */ FINAL\nWHERE s.price > 0",
			r:     Range{After: i64(1)},
			want:  "SELECT `shop`.`products`.category AS c FROM `shop`.`products` AS s FINAL WHERE (s.price > 0) AND `id` > 1",
		},
		{
			name:  "placeholder in literals and quoted names is not a placeholder",
			query: "SELECT '{source_table}' AS lit, `{source_table}x` AS q FROM {source_table}",
			want:  "SELECT '{source_table}' AS lit, `{source_table}x` AS q FROM `shop`.`products`",
		},
		{
			name:  "string escapes survive",
			query: `SELECT category FROM {source_table} WHERE category = 'it''s' OR category = 'a\'b\\'`,
			r:     Range{After: i64(0)},
			want:  "SELECT category FROM `shop`.`products` WHERE (category = 'it''s' OR category = 'a\\'b\\\\') AND `id` > 0",
		},
		{
			name:  "JOIN keeps the filter on the outer query",
			query: "SELECT category, count() AS cnt FROM {source_table} ANY LEFT JOIN (SELECT category, 1 AS x FROM dim WHERE x = 1) USING category GROUP BY category",
			r:     Range{After: i64(2)},
			want:  "SELECT category, count() AS cnt FROM `shop`.`products` ANY LEFT JOIN (SELECT category, 1 AS x FROM dim WHERE x = 1) USING category WHERE `id` > 2 GROUP BY category",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := queryMV(c.query).Query(c.r)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("Query:\ngot  %s\nwant %s", got, c.want)
			}
		})
	}
}

// TestFilterIsOnOuterQueryOnly checks the structure rather than the text:
// parsed back, the outer WHERE has the key condition and no nested query
// mentions the key.
func TestFilterIsOnOuterQueryOnly(t *testing.T) {
	m := queryMV("SELECT category, count() AS cnt FROM (SELECT id, category FROM {source_table} WHERE price > 0) WHERE category IN (SELECT category FROM {source_table} WHERE price > 10) GROUP BY category")
	got, err := m.Query(Range{After: i64(100)})
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := chparser.NewParser(got).ParseStmts()
	if err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, got)
	}
	outer := stmts[0].(*chparser.SelectQuery)
	if w := outer.Where.Expr.String(); !strings.HasSuffix(w, "AND `id` > 100") {
		t.Errorf("outer WHERE = %s", w)
	}
	var nested []*chparser.SelectQuery
	chparser.Walk(outer, func(e chparser.Expr) bool {
		if s, ok := e.(*chparser.SelectQuery); ok && s != outer {
			nested = append(nested, s)
		}
		return true
	})
	if len(nested) != 2 {
		t.Fatalf("found %d nested queries, want 2", len(nested))
	}
	for _, s := range nested {
		if strings.Contains(s.Where.String(), "`id`") {
			t.Errorf("nested query got the filter: %s", s)
		}
	}
}

func TestQueryCasts(t *testing.T) {
	m := queryMV("SELECT category, `total price`, sum(price) AS total FROM {source_table} GROUP BY category")
	m.Casts = map[string]string{"category": "String", "total price": "Decimal(18, 2)", "total": " Decimal(18, 2) "}
	got, err := m.Query(Range{})
	if err != nil {
		t.Fatal(err)
	}
	want := "SELECT CAST(category AS String) AS `category`, CAST(`total price` AS Decimal(18, 2)) AS `total price`, CAST(sum(price) AS Decimal(18, 2)) AS total FROM `shop`.`products` GROUP BY category"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestDeterministic guards against map order leaking into the SQL.
func TestDeterministic(t *testing.T) {
	casts := map[string]string{}
	var items []string
	for i := range 50 {
		name := fmt.Sprintf("c%02d", i)
		casts[name] = "UInt64"
		items = append(items, fmt.Sprintf("sum(x%d) AS %s", i, name))
	}
	m := queryMV("SELECT " + strings.Join(items, ", ") + " FROM {source_table}")
	m.Casts = casts
	first, err := m.BackfillBatch(Range{After: i64(1), UpTo: i64(2)}, true)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := m.BackfillBatch(Range{After: i64(1), UpTo: i64(2)}, true)
		if err != nil {
			t.Fatal(err)
		}
		if again != first {
			t.Fatalf("output changed between calls:\n%s\n%s", first, again)
		}
	}
	// The spec itself must not be modified by generating SQL from it.
	if m.Spec.SelectQuery != "SELECT "+strings.Join(items, ", ")+" FROM {source_table}" {
		t.Errorf("spec was modified: %s", m.Spec.SelectQuery)
	}
}

func TestErrors(t *testing.T) {
	base := productsSpec()
	cases := []struct {
		name string
		run  func() (string, error)
		msg  string // part of the error text
	}{
		{"no placeholder", func() (string, error) { return queryMV("SELECT 1 FROM products").Query(Range{}) }, "does not read from"},
		{"placeholder only in a literal", func() (string, error) { return queryMV("SELECT '{source_table}' FROM t").Query(Range{}) }, "does not read from"},
		{"union", func() (string, error) {
			return queryMV("SELECT category FROM {source_table} UNION ALL SELECT category FROM {source_table}").Query(Range{})
		}, "UNION"},
		{"two statements", func() (string, error) {
			return queryMV("SELECT 1 FROM {source_table}; SELECT 2 FROM {source_table}").Query(Range{})
		}, "exactly one statement"},
		{"not a select", func() (string, error) { return queryMV("DROP TABLE {source_table}").Query(Range{}) }, "not a SELECT"},
		{"format", func() (string, error) { return queryMV("SELECT 1 FROM {source_table} FORMAT JSON").Query(Range{}) }, "FORMAT"},
		{"unparsable", func() (string, error) { return queryMV("SELECT (( FROM {source_table}").Query(Range{}) }, "parse select_query"},
		{"sentinel in user text", func() (string, error) {
			return queryMV("SELECT " + strings.ToUpper(sourceSentinel) + " FROM {source_table}").Query(Range{})
		}, "must not contain"},
		{"placeholder qualified with a database", func() (string, error) {
			return queryMV("SELECT a FROM other.{source_table}").Query(Range{})
		}, "qualifies"},
		{"doubled backtick", func() (string, error) { return queryMV("SELECT `a``b` FROM {source_table}").Query(Range{}) }, "escape"},
		{"backslash in backticks", func() (string, error) { return queryMV("SELECT `a\\`b` FROM {source_table}").Query(Range{}) }, "escape"},
		{"unterminated string", func() (string, error) { return queryMV("SELECT 'a FROM {source_table}").Query(Range{}) }, "unterminated"},
		{"alias hides key", func() (string, error) {
			return queryMV("SELECT category, max(id) AS id FROM {source_table} GROUP BY category").Query(Range{After: i64(1)})
		}, "hides the backfill key"},
		{"cast hides key", func() (string, error) {
			m := queryMV("SELECT id, category FROM {source_table}")
			m.Casts = map[string]string{"id": "UInt32"}
			return m.Query(Range{After: i64(1)})
		}, "hides the backfill key"},
		{"cast to unknown column", func() (string, error) {
			m := MV{Spec: base, Casts: map[string]string{"nope": "UInt8"}}
			return m.Query(Range{})
		}, "no select item"},
		{"cast to unnamed expression", func() (string, error) {
			m := queryMV("SELECT count() FROM {source_table}")
			m.Casts = map[string]string{"count()": "UInt8"}
			return m.Query(Range{})
		}, "no select item"},
		{"cast to ambiguous column", func() (string, error) {
			m := queryMV("SELECT a, b AS a FROM {source_table}")
			m.Casts = map[string]string{"a": "UInt8"}
			return m.Query(Range{})
		}, "more than one"},
		{"cast type with semicolon", func() (string, error) {
			m := MV{Spec: base, Casts: map[string]string{"cnt": "UInt8; DROP TABLE x"}}
			return m.Query(Range{})
		}, "';'"},
		{"empty range", func() (string, error) { return MV{Spec: base}.Query(Range{After: i64(5), UpTo: i64(5)}) }, "empty key range"},
		{"nil spec", func() (string, error) { return MV{}.Query(Range{}) }, "no spec"},
		{"defaults not applied", func() (string, error) {
			return MV{Spec: withSpec(func(s *specs.Spec) { s.Backfill.KeyColumn = "" })}.CreateMV(1, false)
		}, "key_column is empty"},
		{"batch without upper bound", func() (string, error) { return MV{Spec: base}.BackfillBatch(Range{After: i64(1)}, false) }, "upper key bound"},
		{"ordered batch of aggregate states only", func() (string, error) {
			return MV{Spec: withSpec(func(s *specs.Spec) {
				s.Columns = []specs.Column{{Name: "category", Type: "AggregateFunction(any, String)"}, {Name: "cnt", Type: "AggregateFunction(count)"}, {Name: "total_price", Type: "AggregateFunction(sum, Decimal(18, 2))"}}
			})}.BackfillBatch(Range{UpTo: i64(1)}, true)
		}, "not an aggregate state"},
		{"distributed without cluster", func() (string, error) { return MV{Spec: base}.CreateDistributed(true) }, "needs a cluster"},
		{"no columns", func() (string, error) {
			return MV{Spec: withSpec(func(s *specs.Spec) { s.Columns = nil })}.CreateTarget(false)
		}, "no columns"},
		{"duplicate column", func() (string, error) {
			return MV{Spec: withSpec(func(s *specs.Spec) { s.Columns = append(s.Columns, s.Columns[0]) })}.CreateTarget(false)
		}, "declared twice"},
		{"column type injection", func() (string, error) {
			return MV{Spec: withSpec(func(s *specs.Spec) { s.Columns[0].Type = "String) ENGINE = Memory; --" })}.CreateTarget(false)
		}, "type of column"},
		{"order_by comment", func() (string, error) {
			return MV{Spec: withSpec(func(s *specs.Spec) { s.OrderBy = []string{"category /* x */"} })}.CreateTarget(false)
		}, "comment"},
		{"partition_by unbalanced", func() (string, error) {
			return MV{Spec: withSpec(func(s *specs.Spec) { s.PartitionBy = "toYYYYMM(day))" })}.CreateTarget(false)
		}, "unbalanced"},
		{"engine with trailing text", func() (string, error) {
			return MV{Spec: withSpec(func(s *specs.Spec) { s.Engine = "MergeTree() SETTINGS index_granularity = 1" })}.CreateTarget(false)
		}, "after the engine parameters"},
		{"engine with semicolon", func() (string, error) {
			return MV{Spec: base, TargetEngine: "MergeTree(); DROP TABLE x"}.CreateTarget(false)
		}, "';'"},
		{"engine empty", func() (string, error) {
			return MV{Spec: withSpec(func(s *specs.Spec) { s.Engine = "" })}.CreateTarget(false)
		}, "engine is empty"},
		{"replicated Memory", func() (string, error) { return ReplicatedEngine("Memory", "/p") }, "not supported for a target table"},
		{"replicated empty path", func() (string, error) { return ReplicatedEngine("MergeTree()", "") }, "empty ZooKeeper path"},
		{"replicated hash comment", func() (string, error) { return ReplicatedEngine("MergeTree() # x", "/p") }, "comment"},
		{"replicated empty argument", func() (string, error) { return ReplicatedEngine("ReplacingMergeTree(v,)", "/p") }, "not a valid engine"},
		{"replicated no name", func() (string, error) { return ReplicatedEngine("(x)", "/p") }, "not a valid engine"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.run()
			if err == nil {
				t.Fatalf("no error; got %s", got)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
		})
	}
}

func TestCheckFragment(t *testing.T) {
	ok := []string{
		"String",
		"Decimal(18, 2)",
		"Enum8('a;b' = 1, 'c--d' = 2, 'e/*f' = 3)",
		"Nullable(String)",
		"toYYYYMM(`day`)",
		"cityHash64(`we;ird`)",
		`DateTime('Europe/Moscow')`,
		`'it''s' || 'a\'b'`,
	}
	for _, s := range ok {
		if err := checkFragment("x", s); err != nil {
			t.Errorf("checkFragment(%q) = %v, want ok", s, err)
		}
	}
	bad := []string{"", "  ", "a;b", "a -- b", "a /* b */", "a # b", "f(a", "f(a))", ")(", "'open", "`open", "a/*"}
	for _, s := range bad {
		if err := checkFragment("x", s); err == nil {
			t.Errorf("checkFragment(%q) = nil, want an error", s)
		}
	}
}

func TestParseEngine(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{"MergeTree", "MergeTree()"},
		{" MergeTree ( ) ", "MergeTree()"},
		{"SummingMergeTree((a, b))", "SummingMergeTree((a, b))"},
		{"ReplicatedReplacingMergeTree('/a,b', '{replica}', ver)", "ReplicatedReplacingMergeTree('/a,b', '{replica}', ver)"},
	}
	for _, c := range cases {
		e, err := parseEngine(c.in)
		if err != nil {
			t.Errorf("parseEngine(%q): %v", c.in, err)
			continue
		}
		if e.String() != c.want {
			t.Errorf("parseEngine(%q) = %s, want %s", c.in, e, c.want)
		}
	}
	for _, in := range []string{"MergeTree() ORDER BY x", "MergeTree(a) (b)", "MergeTree(a", "1MergeTree()", "Merge Tree()", "Memory", "Log", "Distributed(c, d, t)"} {
		_, err := parseEngine(in)
		var se *specs.Error
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("parseEngine(%q) = %v, want ErrInvalid", in, err)
		}
		if err != nil && !strings.Contains(err.Error(), "parentheses") && !errors.As(err, &se) {
			t.Errorf("parseEngine(%q) = %v, want the specs error kept", in, err)
		}
	}
}

func TestReplicatedEngineKeepsUserReplicatedClause(t *testing.T) {
	in := "ReplicatedSummingMergeTree('/my/{shard}/x', '{replica}', (a))"
	got, err := ReplicatedEngine(in, "/ignored")
	if err != nil || got != in {
		t.Errorf("ReplicatedEngine(%q) = %q, %v; want it unchanged", in, got, err)
	}
	got, err = ReplicatedEngine("MergeTree()", "/p/it's")
	if want := `ReplicatedMergeTree('/p/it\'s', '{replica}')`; err != nil || got != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
}

func TestOnClusterIgnoredWithoutCluster(t *testing.T) {
	m := MV{Spec: productsSpec()}
	if got := m.Optimize(true); strings.Contains(got, "ON CLUSTER") {
		t.Errorf("Optimize(true) without a cluster: %s", got)
	}
}

func TestStageStatements(t *testing.T) {
	m := MV{Spec: withSpec(func(s *specs.Spec) { s.Database = "we`ird" })}
	want := map[string]string{
		"create":   "CREATE TABLE IF NOT EXISTS `we\\`ird`.`_shirath_stage_category_totals` AS `we\\`ird`.`category_totals`",
		"truncate": "TRUNCATE TABLE IF EXISTS `we\\`ird`.`_shirath_stage_category_totals`",
		"move":     "ALTER TABLE `we\\`ird`.`_shirath_stage_category_totals` MOVE PARTITION ID 'it\\'s' TO TABLE `we\\`ird`.`category_totals`",
		"drop":     "DROP TABLE IF EXISTS `we\\`ird`.`_shirath_stage_category_totals` SYNC",
	}
	m.DropSync = true
	got := map[string]string{"create": m.CreateStage(), "truncate": m.TruncateStage(), "move": m.MoveStagePartition("it's"), "drop": m.DropStage(true)}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s:\n got %s\nwant %s", k, got[k], w)
		}
	}
	q, err := m.StageBatch(Range{After: i64(10), UpTo: i64(20)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(q, "INSERT INTO `we\\`ird`.`_shirath_stage_category_totals` (`category`, `cnt`, `total_price`) SELECT") || !strings.Contains(q, "`id` > 10") {
		t.Errorf("stage batch: %s", q)
	}
}

// TestViewSource: the view reads the upstream MV's name, the backfill the
// source table.
func TestViewSource(t *testing.T) {
	s := &specs.Spec{Name: "by_cat", Database: "db", SourceTable: "clean_data", TargetTable: "by_cat_data",
		Engine: "SummingMergeTree()", OrderBy: []string{"category"},
		Columns:     []specs.Column{{Name: "category", Type: "String"}, {Name: "cnt", Type: "UInt64"}},
		SelectQuery: "SELECT category, count() AS cnt FROM {source_table} GROUP BY category"}
	s.Backfill.KeyColumn = "id"
	m := MV{Spec: s, ViewSource: "clean"}
	q, err := m.CreateMV(10, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(q, "FROM `db`.`clean` WHERE") {
		t.Errorf("CREATE MATERIALIZED VIEW does not read the view source:\n%s", q)
	}
	b, err := m.BackfillBatch(Range{UpTo: i64(10)}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b, "FROM `db`.`clean_data` WHERE") {
		t.Errorf("the backfill does not read the source table:\n%s", b)
	}
}

// TestLeftovers: the names a switch to version 3 may leave, MVs first, and
// never the live version's MV or target or readers' names.
func TestLeftovers(t *testing.T) {
	s := &specs.Spec{Database: "db", Name: "m", TargetTable: "t", DistributedTable: "d"}
	got := strings.Join(Leftovers(s, 3), " ")
	want := "m m__v2 d__v2 d__prev d__v3 t__prev t__next t__v2 _shirath_stage_t__v2"
	if got != want {
		t.Errorf("Leftovers(3):\n got %s\nwant %s", got, want)
	}
	if l := Leftovers(s, 1); l != nil {
		t.Errorf("Leftovers(1) = %v, want none", l)
	}
}

// TestFixedCostProbe: the fixed-cost probe is the pace probe's statement
// over an empty key range, which Query and PaceProbe refuse.
func TestFixedCostProbe(t *testing.T) {
	m := MV{Spec: productsSpec()}
	got, err := m.FixedCostProbe(5)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.PaceProbe(Range{After: i64(5), UpTo: i64(6)})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Replace(want, "<= 6", "<= 5", 1) != got {
		t.Errorf("FixedCostProbe(5) =\n%s\nwant the pace probe over (5, 5]:\n%s", got, want)
	}
	if _, err := m.PaceProbe(Range{After: i64(5), UpTo: i64(5)}); err == nil || !strings.Contains(err.Error(), "empty key range") {
		t.Errorf("PaceProbe over (5, 5]: err = %v, want the empty range refused", err)
	}
}
