//go:build integration

// These checks run the generated SQL on the real servers of internal/testenv
// (the local stack of `make up`): the single-node statements on both single
// nodes (ClickHouse 18.16 and 26.7, one subtest each), the ON CLUSTER,
// Replicated and Distributed ones on the 18.16 cluster. Each test has a
// database of its own.
package sqlgen

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/shirath/shirath/internal/testenv"
	"github.com/shirath/shirath/specs"
)

type chCheck struct {
	t    *testing.T
	conn driver.Conn
	ctx  context.Context
}

func newCheck(t *testing.T, conn driver.Conn) *chCheck {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &chCheck{t: t, conn: conn, ctx: ctx}
}

// singleCheck gives a check on the single node s and a fresh database there.
func singleCheck(t *testing.T, s *testenv.Single) (*chCheck, string) {
	t.Helper()
	conn, db := s.DB(t)
	return newCheck(t, conn), db
}

// eachSingle runs f as a parallel subtest on every single node.
func eachSingle(t *testing.T, f func(t *testing.T, s *testenv.Single)) {
	t.Helper()
	testenv.Load(t).EachSingle(t, func(t *testing.T, s *testenv.Single) {
		t.Parallel()
		f(t, s)
	})
}

func (c *chCheck) exec(sql string) {
	c.t.Helper()
	if err := c.conn.Exec(c.ctx, sql); err != nil {
		c.t.Fatalf("%s\n-> %v", sql, err)
	}
	c.t.Logf("ok: %s", sql)
}

func (c *chCheck) gen(sql string, err error) string {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
	return sql
}

// rows returns every row as its values joined by tabs.
func (c *chCheck) rows(sql string) []string {
	c.t.Helper()
	rs, err := c.conn.Query(c.ctx, sql)
	if err != nil {
		c.t.Fatalf("%s\n-> %v", sql, err)
	}
	defer rs.Close()
	types := rs.ColumnTypes()
	var out []string
	for rs.Next() {
		vals := make([]any, len(types))
		for i, ct := range types {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rs.Scan(vals...); err != nil {
			c.t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmt.Sprint(reflect.ValueOf(v).Elem().Interface())
		}
		out = append(out, strings.Join(parts, "\t"))
	}
	if err := rs.Err(); err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *chCheck) one(sql string) string {
	c.t.Helper()
	r := c.rows(sql)
	if len(r) != 1 {
		c.t.Fatalf("%s: %d rows, want 1", sql, len(r))
	}
	return r[0]
}

func (c *chCheck) equal(what string, got, want []string) {
	c.t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		c.t.Errorf("%s:\ngot\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// createProducts creates the products source table in db.
func (c *chCheck) createProducts(db, onCluster string) {
	c.t.Helper()
	c.exec("CREATE TABLE " + Table(db, "products") + onCluster +
		" (id UInt64, category String, price Decimal(18, 2)) ENGINE = MergeTree() ORDER BY id")
}

// insert sends rows as one native block, as a writer does. INSERT ...
// VALUES through Exec is not used: an 18.16 server then waits for a data
// block that the client never sends.
func (c *chCheck) insert(table string, rows ...[]any) error {
	c.t.Helper()
	cols := "(id, category, price)"
	if len(rows) > 0 && len(rows[0]) == 6 {
		cols = "(id, category, price, ts, tags, n)"
	}
	b, err := c.conn.PrepareBatch(c.ctx, "INSERT INTO "+table+" "+cols)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			return err
		}
	}
	return b.Send()
}

func (c *chCheck) mustInsert(table string, rows ...[]any) {
	c.t.Helper()
	if err := c.insert(table, rows...); err != nil {
		c.t.Fatalf("insert into %s: %v", table, err)
	}
	c.t.Logf("ok: inserted %d rows into %s", len(rows), table)
}

// product is one row of the products source table.
func product(id uint64, category, price string) []any {
	return []any{id, category, decimal.RequireFromString(price)}
}

var seedRows = [][]any{
	product(1, "a", "1.10"), product(2, "b", "2.20"), product(3, "a", "3.30"), product(4, "c", "4.40"),
	product(5, "b", "5.50"), product(6, "a", "6.60"), product(7, "c", "7.70"), product(8, "a", "8.80"),
	product(9, "b", "9.90"), product(10, "c", "10.01"),
}

func checkSpec(db string) *specs.Spec {
	s := productsSpec()
	s.Database = db
	return s
}

// sourceTotals is what the target must hold once view and backfill are done.
func (c *chCheck) sourceTotals(db string) []string {
	return c.rows("SELECT category, count(), sum(price) FROM " + Table(db, "products") + " GROUP BY category ORDER BY category")
}

func (c *chCheck) targetTotals(table string) []string {
	return c.rows("SELECT category, sum(cnt), sum(total_price) FROM " + table + " GROUP BY category ORDER BY category")
}

func (c *chCheck) logCreate(db, table string) {
	c.t.Helper()
	c.t.Logf("system.tables %s.%s: %s", db, table, c.one(
		"SELECT concat(create_table_query, ' | engine_full=', engine_full, ' | sorting_key=', sorting_key, ' | partition_key=', partition_key) FROM system.tables WHERE database = '"+
			db+"' AND name = '"+table+"'"))
}

// TestClickHouseFenceAndBackfill: the fenced view only sees rows above the
// fence, the backfill batches add the rest, and the target ends up equal to
// an aggregate over the whole source.
func TestClickHouseFenceAndBackfill(t *testing.T) {
	t.Parallel()
	eachSingle(t, checkFenceAndBackfill)
}

func checkFenceAndBackfill(t *testing.T, s *testenv.Single) {
	c, db := singleCheck(t, s)
	c.createProducts(db, "")
	c.mustInsert(Table(db, "products"), seedRows...)

	// The cast of category shadows a GROUP BY column with its own alias,
	// which ClickHouse must still group by correctly.
	m := MV{Spec: checkSpec(db), Casts: map[string]string{"total_price": "Decimal(18, 2)", "category": "String"}}
	m.Spec.SelectQuery = "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} WHERE price > 0 OR category = 'free' GROUP BY category"
	c.exec(c.gen(m.CreateTarget(false)))
	c.exec(c.gen(m.CreateTarget(false))) // IF NOT EXISTS: a retry is harmless
	c.exec(c.gen(m.CreateMV(10, false)))
	c.exec(c.gen(m.CreateMV(10, false)))
	c.logCreate(db, m.Spec.Name)
	c.logCreate(db, m.Spec.TargetTable)

	// One block with rows on both sides of the fence, as a concurrent
	// writer would produce; id 3 again stands for a late row below it.
	c.mustInsert(Table(db, "products"), product(3, "a", "100.00"), product(11, "a", "1.25"), product(12, "d", "2.50"))
	target := Table(db, m.Spec.TargetTable)
	c.equal("target after the fence, before the backfill", c.targetTotals(target), []string{"a\t1\t1.25", "d\t1\t2.5"})

	c.exec(c.gen(m.BackfillBatch(Range{UpTo: i64(5)}, true)))
	c.exec(c.gen(m.BackfillBatch(Range{After: i64(5), UpTo: i64(10)}, false)))
	c.equal("target after the backfill", c.targetTotals(target), c.sourceTotals(db))

	c.exec(m.Optimize(false))
	c.equal("target rows after OPTIMIZE FINAL",
		c.rows("SELECT category, cnt, total_price FROM "+target+" ORDER BY category"), c.sourceTotals(db))

	for _, sql := range []string{m.DropMV(false), m.DropTarget(false), m.DropDistributed(false), m.DropMV(false)} {
		c.exec(sql)
	}
	c.equal("tables left", c.rows("SELECT name FROM system.tables WHERE database = '"+db+"' ORDER BY name"), []string{"products"})
}

// TestClickHouseDecimalCast: sum(Decimal(18,2)) is Decimal(38,2) on both
// servers. On 18.16 a view writing it into a Decimal(18,2) column fails on
// insert, after the source has the rows; 26.7 converts it to the column's
// type. The cast makes the view work on both.
func TestClickHouseDecimalCast(t *testing.T) {
	t.Parallel()
	eachSingle(t, checkDecimalCast)
}

func checkDecimalCast(t *testing.T, s *testenv.Single) {
	c, db := singleCheck(t, s)
	c.createProducts(db, "")
	m := MV{Spec: checkSpec(db)}
	c.exec(c.gen(m.CreateTarget(false)))
	c.exec(c.gen(m.CreateMV(0, false)))
	src, target := Table(db, "products"), Table(db, m.Spec.TargetTable)
	c.equal("type of the query's sum", c.rows("SELECT toTypeName(sum(price)) FROM "+src), []string{"Decimal(38, 2)"})

	rows := [][]any{product(1, "a", "1.10"), product(2, "a", "2.20")}
	totals := "SELECT category, cnt, total_price, toTypeName(total_price) FROM " + target
	err := c.insert(src, rows...)
	t.Logf("insert through the view without cast: %v", err)
	if s.Version.Major < 19 {
		var ex *clickhouse.Exception
		if !errors.As(err, &ex) || ex.Code != 53 || !strings.Contains(ex.Message, "Type mismatch") {
			t.Fatalf("want code 53 Type mismatch on %s, got %v", s.Version, err)
		}
		c.equal("target after the failed insert", c.rows(totals), nil)
	} else {
		if err != nil {
			t.Fatalf("want the insert converted on %s, got %v", s.Version, err)
		}
		c.equal("target without cast", c.rows(totals), []string{"a\t2\t3.3\tDecimal(18, 2)"})
	}
	c.equal("source rows after the insert", c.rows("SELECT count() FROM "+src), []string{"2"})

	c.exec(m.DropMV(false))
	c.exec("TRUNCATE TABLE " + src)
	c.exec("TRUNCATE TABLE " + target)
	m.Casts = map[string]string{"total_price": "Decimal(18, 2)"}
	c.exec(c.gen(m.CreateMV(0, false)))
	c.logCreate(db, m.Spec.Name)
	t.Logf("SHOW CREATE: %s", c.one("SHOW CREATE TABLE "+Table(db, m.Spec.Name)))
	c.mustInsert(src, rows...)
	c.equal("target with cast", c.rows(totals), []string{"a\t2\t3.3\tDecimal(18, 2)"})
}

// TestClickHouseHostileNames: quoting survives names built to break out of
// it; the server ends up with exactly these names.
func TestClickHouseHostileNames(t *testing.T) {
	t.Parallel()
	eachSingle(t, checkHostileNames)
}

func checkHostileNames(t *testing.T, srv *testenv.Single) {
	c := newCheck(t, srv.Conn(t))
	// testenv's databases have plain names: this one is made here, unique
	// and of the same engine as theirs.
	db := testenv.UniqueName("sqlgen`check\\x")
	create, drop := "CREATE DATABASE "+Ident(db), "DROP DATABASE IF EXISTS "+Ident(db)
	if srv.Atomic {
		create, drop = create+" ENGINE = Atomic", drop+" SYNC"
	}
	c.exec(create)
	t.Cleanup(func() {
		if err := c.conn.Exec(context.Background(), drop); err != nil {
			t.Errorf("drop database %s: %v", db, err)
		}
	})
	c.createProducts(db, "")
	s := checkSpec(db)
	s.SourceTable = "products"
	s.TargetTable = "tar'get`; DROP TABLE x; --"
	s.Name = "mv\\\nline"
	s.DistributedTable = "dist\"x"
	m := MV{Spec: s, Casts: map[string]string{"total_price": "Decimal(18, 2)"}}
	c.exec(c.gen(m.CreateTarget(false)))
	c.exec(c.gen(m.CreateMV(5, false)))
	c.mustInsert(Table(db, "products"), seedRows...)
	c.exec(c.gen(m.BackfillBatch(Range{UpTo: i64(5)}, true)))
	c.exec(m.Optimize(false))
	c.equal("target", c.targetTotals(Table(db, s.TargetTable)), c.sourceTotals(db))
	got := c.rows("SELECT name FROM system.tables WHERE database = " + quoteString(db) + " ORDER BY name")
	want := []string{s.Name, "products", s.TargetTable}
	sort.Strings(want)
	c.equal("table names", got, want)
	c.exec(m.DropMV(false))
	c.exec(m.DropTarget(false))
	c.equal("tables left", c.rows("SELECT name FROM system.tables WHERE database = "+quoteString(db)), []string{"products"})
}

// TestClickHouseQueryFidelity: the parsed and reprinted query returns the
// same rows as the spec's text, so the rewrite changes nothing but the WHERE.
func TestClickHouseQueryFidelity(t *testing.T) {
	t.Parallel()
	eachSingle(t, checkQueryFidelity)
}

func checkQueryFidelity(t *testing.T, s *testenv.Single) {
	c, db := singleCheck(t, s)
	c.exec("CREATE TABLE " + Table(db, "products") + " (id UInt64, category String, price Decimal(18, 2), ts DateTime, tags Array(String), n Nullable(Int32)) ENGINE = MergeTree() ORDER BY id")
	ts := func(s string) time.Time { return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(mustDuration(s)) }
	n := func(v int32) *int32 { return &v }
	c.mustInsert(Table(db, "products"),
		append(product(1, "a", "1.10"), ts("10h"), []string{"x", "y"}, n(1)),
		append(product(2, "b", "2.20"), ts("11h30m"), []string{}, (*int32)(nil)),
		append(product(3, "it's", "3.30"), ts("24h"), []string{"z"}, n(-5)),
		append(product(4, `a\b`, "4.40"), ts("744h"), []string{"x"}, n(7)),
		append(product(5, "c", "0.00"), ts("804h"), []string{"y", "y"}, (*int32)(nil)),
	)
	queries := []string{
		"SELECT category, count() AS cnt, sum(price) AS total FROM {source_table} GROUP BY category",
		"SELECT category FROM {source_table} WHERE price > 1 AND (category = 'a' OR category = 'it''s') OR id = 5",
		"SELECT toDate(ts) AS d, uniq(category) AS u, max(price) AS m FROM {source_table} GROUP BY d HAVING u > 0",
		"SELECT toStartOfHour(ts) AS h, countIf(price > 2) AS c2, sumIf(price, price > 2) AS s2 FROM {source_table} GROUP BY h",
		"SELECT id, -price AS neg, id - -1 AS p, id % 2 AS odd, if(id > 2, 'hi', 'lo') AS hl, multiIf(id = 1, 1, id = 2, 2, 0) AS mi FROM {source_table}",
		"SELECT id, arrayJoin(tags) AS tag FROM {source_table}",
		"SELECT id, tag FROM {source_table} ARRAY JOIN tags AS tag WHERE tag != 'z'",
		"SELECT id, arrayMap(x -> concat(x, '!'), tags) AS t2, length(tags) AS l FROM {source_table}",
		"SELECT id, ifNull(n, 0) AS nn, n IS NULL AS isn FROM {source_table} WHERE n IS NOT NULL OR id IN (2, 5)",
		"SELECT category, count() AS c FROM {source_table} WHERE category IN (SELECT category FROM {source_table} WHERE price > 2) GROUP BY category",
		"SELECT category, count() AS c FROM (SELECT id, category FROM {source_table} WHERE price > 0) GROUP BY category",
		"SELECT p.category AS cat, sum(p.price) AS s FROM {source_table} AS p GROUP BY cat",
		"SELECT {source_table}.id AS i FROM {source_table}",
		"SELECT id, ts >= toDateTime('2024-01-02 00:00:00') - INTERVAL 1 DAY AS recent FROM {source_table}",
		"SELECT id, CAST(price AS Float64) AS f, toDecimal64(price, 4) AS d4, round(toFloat64(price) * 1.5, 1) AS r FROM {source_table}",
		"SELECT id, (id, category) AS tup, tup.1 AS first, [id, id * 2][2] AS second FROM {source_table}",
		"SELECT category, groupArray(id) AS ids, argMax(id, price) AS top FROM {source_table} GROUP BY category",
		"SELECT id, category LIKE 'a%' AS l, category NOT LIKE '%b' AS nl, NOT (id = 1 OR id = 2) AS n12 FROM {source_table}",
		"SELECT id, id BETWEEN 2 AND 4 AND price > 3 AS bt, id = 1 ? 'one' : 'other' AS tern FROM {source_table}",
		"SELECT `category` AS `the category`, \"id\" FROM {source_table} -- trailing comment",
		"SELECT quantile(0.5)(toFloat64(price)) AS med, quantiles(0.1, 0.9)(id) AS qs FROM {source_table}",
	}
	src := Table(db, "products")
	for _, q := range queries {
		m := queryMV(q)
		m.Spec.Database = db
		got, err := m.Query(Range{})
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		want := c.rows(strings.ReplaceAll(q, placeholder, src))
		have := c.rows(got)
		sort.Strings(want)
		sort.Strings(have)
		if len(want) == 0 {
			t.Errorf("%s returns no rows: a useless check", q)
		}
		c.equal(got, have, want)
	}
}

func mustDuration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// TestClickHouseOnCluster runs the ON CLUSTER forms with a Replicated target
// and checks that a retried ordered batch is deduplicated.
func TestClickHouseOnCluster(t *testing.T) {
	t.Parallel()
	cl := testenv.Load(t).ClusterDB(t)
	c := newCheck(t, cl.Nodes[0])
	db := cl.DB
	on := " ON CLUSTER " + Ident(cl.Name)
	c.createProducts(db, on)
	c.mustInsert(Table(db, "products"), seedRows...)

	s := checkSpec(db)
	// The path holds the test's own database, so that parallel tests and
	// earlier runs never share a replicated table.
	eng, err := ReplicatedEngine(s.Engine, ZKPath(db, s.TargetTable))
	if err != nil {
		t.Fatal(err)
	}
	m := MV{Spec: s, Cluster: cl.Name, TargetEngine: eng, Casts: map[string]string{"total_price": "Decimal(18, 2)"}}
	c.exec(c.gen(m.CreateTarget(true)))
	c.exec(c.gen(m.CreateMV(10, true)))
	c.exec(c.gen(m.CreateDistributed(true)))
	c.logCreate(db, s.TargetTable)
	c.logCreate(db, s.DistributedTable)
	c.mustInsert(Table(db, "products"), product(11, "a", "1.25"))

	batch := c.gen(m.BackfillBatch(Range{UpTo: i64(10)}, true))
	c.exec(batch)
	c.exec(batch) // a retry after a lost reply: same block, deduplicated
	dist := Table(db, s.DistributedTable)
	c.equal("totals through the Distributed table", c.targetTotals(dist), c.sourceTotals(db))

	// Only the first node's shard holds rows. OPTIMIZE ... ON CLUSTER is not
	// used on this Replicated target: 18.16 fails it with "Unknown log entry
	// type: 0" on the replicas of the empty shard, which is why the executor
	// optimizes shard by shard without ON CLUSTER. A replica that is not the
	// leader hands OPTIMIZE to the leader, which merges only the parts it
	// has fetched, so the replicas sync first; then OPTIMIZE waits for all
	// of them, since the Distributed table may read either.
	for i, node := range cl.Nodes {
		if err := node.Exec(c.ctx, "SYSTEM SYNC REPLICA "+Table(db, s.TargetTable)); err != nil {
			t.Fatalf("sync replica on %s: %v", cl.Addrs[i], err)
		}
	}
	wait := clickhouse.Context(c.ctx, clickhouse.WithSettings(clickhouse.Settings{"replication_alter_partitions_sync": 2}))
	if err := c.conn.Exec(wait, m.Optimize(false)); err != nil {
		t.Fatalf("%s\n-> %v", m.Optimize(false), err)
	}
	c.equal("after OPTIMIZE FINAL", c.rows("SELECT category, cnt, total_price FROM "+dist+" ORDER BY category"), c.sourceTotals(db))
	for _, sql := range []string{m.DropDistributed(true), m.DropMV(true), m.DropTarget(true)} {
		c.exec(sql)
	}
	for i, node := range cl.Nodes {
		n := newCheck(t, node)
		n.equal("tables left on "+cl.Addrs[i], n.rows("SELECT name FROM system.tables WHERE database = "+quoteString(db)+" ORDER BY name"), []string{"products"})
	}
}
