//go:build integration

// These checks compare the package's view of types and queries with the
// real single nodes of internal/testenv (ClickHouse 18.16 and 26.7 on the
// local stack), each test once per server in a database of its own.
package specs

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/testenv"
)

func chConnect(t *testing.T, s *testenv.Single) (context.Context, driver.Conn, string) {
	t.Helper()
	conn, db := s.DB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx, conn, db
}

// TestClickHouseTypeNormalisation checks that ParseType's normal form is
// what the server prints in system.columns, so the planner can compare
// the two as strings. The list holds types ClickHouse 18.16 knows; 26.7
// prints every one of them as 18.16 does.
func TestClickHouseTypeNormalisation(t *testing.T) {
	t.Parallel()
	testenv.Load(t).EachSingle(t, func(t *testing.T, s *testenv.Single) {
		t.Parallel()
		checkTypeNormalisation(t, s)
	})
}

func checkTypeNormalisation(t *testing.T, s *testenv.Single) {
	ctx, conn, db := chConnect(t, s)
	types := []string{
		"String", "UInt64", "Int8", "Float64", "Date", "DateTime", "UUID",
		"Decimal(18,2)", "Decimal( 38 , 0 )", "Decimal32(2)", "Decimal64(4)", "Decimal128(3)",
		"DateTime('UTC')", "DateTime('Europe/Paris')", "FixedString(16)",
		"Enum8('a'=1,'b' = -2)", "Enum8('x' = 5, 'y' = 1, 'z' = 3)", "Enum16('it''s' = 1000)",
		"Nullable(String)", "Nullable(Decimal(18,2))", "Array(Array(UInt8))", "Array(Nullable(String))",
		"Tuple(UInt8,String)", "Tuple(a UInt8, b Nullable(String))",
		"AggregateFunction(uniq, UInt64)", "AggregateFunction(count)", "AggregateFunction(sum, Decimal(18,2))",
		"AggregateFunction(quantiles(0.5,0.9), Float64)", "AggregateFunction(quantile(0.50), Float64)",
		"AggregateFunction(argMax, String, DateTime)", "AggregateFunction(groupArray(10), UInt8)",
		"AggregateFunction(sequenceMatch('(?1)(?2)'), DateTime, UInt8, UInt8)",
	}
	for i, typ := range types {
		want, err := ParseType(typ)
		if err != nil {
			t.Errorf("ParseType(%q): %v", typ, err)
			continue
		}
		table := fmt.Sprintf("%s.t%d", db, i)
		if err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (c %s) ENGINE = Memory", table, typ)); err != nil {
			t.Errorf("server refuses %q: %v", typ, err)
			continue
		}
		var got string
		row := conn.QueryRow(ctx, "SELECT type FROM system.columns WHERE database = ? AND table = ?", db, fmt.Sprintf("t%d", i))
		if err := row.Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("ParseType(%q) = %q, server prints %q", typ, want, got)
		}
	}
}

// TestClickHouseExamples runs every example's select_query over the demo's
// products table, and creates its target table, to show the examples are
// valid on the server.
func TestClickHouseExamples(t *testing.T) {
	t.Parallel()
	testenv.Load(t).EachSingle(t, func(t *testing.T, s *testenv.Single) {
		t.Parallel()
		checkExamples(t, s)
	})
}

func checkExamples(t *testing.T, srv *testenv.Single) {
	ctx, conn, db := chConnect(t, srv)
	exec := func(q string) {
		t.Helper()
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s\n-> %v", q, err)
		}
	}
	exec("CREATE TABLE " + db + ".products (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = MergeTree() ORDER BY id")
	// INSERT ... VALUES through Exec waits for data blocks on the native
	// protocol; INSERT ... SELECT does not.
	exec("INSERT INTO " + db + ".products SELECT number + 1, if(number < 2, 'a', 'b'), toDecimal64(number + 1.5, 2), now() FROM system.numbers LIMIT 3")
	specs, err := LoadPath("../examples")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, s := range specs {
		if s.SourceTable != "products" {
			continue
		}
		checked++
		sel, err := s.ParsedQuery(db + ".products")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, "SELECT count() FROM ("+sel.String()+")")
		if err != nil {
			t.Errorf("%s: query refused: %v", s.Name, err)
			continue
		}
		rows.Close()
		var cols []string
		for _, c := range s.Columns {
			typ, _ := ParseType(c.Type)
			cols = append(cols, "`"+c.Name+"` "+typ)
		}
		engine, _ := ParseEngine(s.Engine)
		exec(fmt.Sprintf("CREATE TABLE %s.`%s` (%s) ENGINE = %s ORDER BY (%s)",
			db, s.TargetTable, strings.Join(cols, ", "), engine, strings.Join(s.OrderBy, ", ")))
		exec(fmt.Sprintf("INSERT INTO %s.`%s` %s", db, s.TargetTable, sel.String()))
	}
	if checked == 0 {
		t.Fatal("no example reads products: nothing was checked")
	}
}
