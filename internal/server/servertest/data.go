package servertest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/server"
)

// Ctx is a context that ends after d or with the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Products creates db.products as in the original design and fills it with
// n rows server side: ids 1..n, 13 categories, prices with cents.
func Products(t testing.TB, conn driver.Conn, db string, n int) {
	t.Helper()
	ctx := Ctx(t, 5*time.Minute)
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE %s.products (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = MergeTree ORDER BY id", db),
		fmt.Sprintf("INSERT INTO %s.products SELECT number + 1, concat('cat', toString(number %% 13)), toDecimal64(number %% 100000, 2) / 100, toDateTime('2024-01-01 00:00:00') + number FROM numbers(%d)", db, n),
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// Aggregate reads "category count sum" lines, with sums printed by the
// server (exact decimals).
func Aggregate(t testing.TB, conn driver.Conn, q string) string {
	t.Helper()
	rows, err := conn.Query(Ctx(t, time.Minute), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var cat, cnt, sum string
		if err := rows.Scan(&cat, &cnt, &sum); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s %s\n", cat, cnt, sum)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// CheckExact compares db.target (columns category, cnt, total_price) with
// the aggregate of db.products.
func CheckExact(t testing.TB, conn driver.Conn, db, target string) {
	t.Helper()
	want := Aggregate(t, conn, fmt.Sprintf("SELECT category, toString(count()), toString(sum(price)) FROM %s.products GROUP BY category ORDER BY category", db))
	got := Aggregate(t, conn, fmt.Sprintf("SELECT category, toString(sum(cnt)), toString(sum(total_price)) FROM %s.%s GROUP BY category ORDER BY category", db, target))
	if want == "" || got != want {
		t.Fatalf("target %s differs from the source's aggregate\ngot:\n%s\nwant:\n%s", target, got, want)
	}
}

// DecodeJob decodes a {"job": ...} answer, as the API and `shirath mv
// status --json` print it.
func DecodeJob(t testing.TB, body []byte) server.MV {
	t.Helper()
	var a struct {
		Job server.MV `json:"job"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return a.Job
}
