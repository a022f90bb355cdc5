//go:build integration

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

var shirathBin string

func TestMain(m *testing.M) { servertest.Main(m, filepath.Join("..", ".."), &shirathBin) }

// cli runs the command line in this process.
func cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, os.Stdin, &out, &errb)
	t.Logf("shirath %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return out.String() + errb.String(), code
}

func mvTables(t *testing.T, conn driver.Conn, db, prefix string) []string {
	t.Helper()
	rows, err := conn.Query(servertest.Ctx(t, 5*time.Minute), "SELECT name FROM system.tables WHERE database = ? AND startsWith(name, ?) ORDER BY name", db, prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func mvStatusJSON(t *testing.T, args ...string) server.MV {
	t.Helper()
	out, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("status: %d %s", code, out)
	}
	return servertest.DecodeJob(t, []byte(out))
}

const mvQuery = "SELECT category, count() as cnt, sum(price) as total_price FROM {source_table} GROUP BY category"

// TestMVDirect runs the mv commands against ClickHouse and PostgreSQL
// directly: create from flags applies in the foreground, list and status
// show the job, backfill refuses a completed MV and rebuilds it with
// --restart, drop removes everything.
func TestMVDirect(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 300_000)
		g := []string{"--clickhouse", s.Addr, "--postgres", env.PostgresDB(t)}
		key := db + ".by_cat"
		create := append([]string{"mv", "create", "--name", "by_cat", "--database", db, "--source", "products",
			"--engine", "SummingMergeTree()", "--order-by", "category",
			"--column", "category:String", "--column", "cnt:UInt64", "--column", "total_price:Decimal(18,2)",
			"--query", mvQuery}, g...)

		out, code := cli(t, create...)
		if code != 0 || !strings.Contains(out, "Apply complete!") || !strings.Contains(out, "backfill") {
			t.Fatalf("mv create: %d\n%s", code, out)
		}
		servertest.CheckExact(t, conn, db, "by_cat_data")

		out, code = cli(t, append([]string{"mv", "list"}, g...)...)
		if code != 0 || !strings.Contains(out, key) || !strings.Contains(out, "completed") || !strings.Contains(out, "api") {
			t.Fatalf("mv list: %d\n%s", code, out)
		}
		out, code = cli(t, append([]string{"mv", "status", key}, g...)...)
		if code != 0 || !strings.Contains(out, "completed") || !strings.Contains(out, "300000 of 300000 rows") {
			t.Fatalf("mv status: %d\n%s", code, out)
		}
		first := mvStatusJSON(t, append([]string{"mv", "status", key, "--json"}, g...)...)
		if first.Status != "completed" || first.ProgressPercent != 100 || first.ID == nil {
			t.Fatalf("mv status --json: %+v", first)
		}

		// The same spec again changes nothing; another spec under the name is refused.
		if out, code := cli(t, create...); code != 0 || !strings.Contains(out, "No changes") {
			t.Fatalf("create again: %d\n%s", code, out)
		}
		other := append([]string(nil), create...)
		for i, a := range other {
			if a == mvQuery {
				other[i] = strings.Replace(mvQuery, "GROUP BY", "WHERE price > 1 GROUP BY", 1)
			}
		}
		if out, code := cli(t, other...); code != 1 || !strings.Contains(out, "different spec") {
			t.Fatalf("create a different spec: %d\n%s", code, out)
		}
		// Bad flags are refused before anything is done.
		if out, code := cli(t, append([]string{"mv", "create", "--name", "x", "--column", "nocolon", "--database", db}, g...)...); code != 1 || !strings.Contains(out, "name:type") {
			t.Fatalf("bad column flag: %d\n%s", code, out)
		}
		if out, code := cli(t, append([]string{"mv", "create", "--name", "x; DROP TABLE products", "--database", db, "--source", "products",
			"--engine", "SummingMergeTree()", "--order-by", "category", "--column", "category:String", "--query", mvQuery}, g...)...); code != 1 || !strings.Contains(out, "invalid spec") {
			t.Fatalf("SQL in the name: %d\n%s", code, out)
		}

		// backfill: a completed MV needs --restart, which rebuilds it.
		if out, code := cli(t, append([]string{"mv", "backfill", key}, g...)...); code != 1 || !strings.Contains(out, "already completed") {
			t.Fatalf("backfill of a completed MV: %d\n%s", code, out)
		}
		if out, code := cli(t, append([]string{"mv", "backfill", key, "--restart"}, g...)...); code != 0 || !strings.Contains(out, "Apply complete!") {
			t.Fatalf("backfill --restart: %d\n%s", code, out)
		}
		second := mvStatusJSON(t, append([]string{"mv", "status", key, "--json"}, g...)...)
		if second.Status != "completed" || *second.ID == *first.ID {
			t.Fatalf("after --restart: %+v (first job %d)", second, *first.ID)
		}
		servertest.CheckExact(t, conn, db, "by_cat_data")

		// drop removes the view, its tables, the job and the spec.
		if out, code := cli(t, append([]string{"mv", "drop", key}, g...)...); code != 0 {
			t.Fatalf("drop: %d\n%s", code, out)
		}
		if left := mvTables(t, conn, db, "by_cat"); len(left) > 0 {
			t.Fatalf("left after drop: %v", left)
		}
		if out, code := cli(t, append([]string{"mv", "status", key}, g...)...); code != 1 || !strings.Contains(out, "no MV named") {
			t.Fatalf("status after drop: %d\n%s", code, out)
		}

		// create -f takes a spec file.
		file := filepath.Join(t.TempDir(), "spec.yaml")
		yaml := fmt.Sprintf("name: from_file\ndatabase: %s\nsource_table: products\nengine: SummingMergeTree()\norder_by: [category]\ncolumns:\n  - name: category\n    type: String\n  - name: cnt\n    type: UInt64\n  - name: total_price\n    type: Decimal(18,2)\nselect_query: %q\n", db, mvQuery)
		if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, code := cli(t, append([]string{"mv", "create", "-f", file}, g...)...); code != 0 || !strings.Contains(out, "Apply complete!") {
			t.Fatalf("create -f: %d\n%s", code, out)
		}
		servertest.CheckExact(t, conn, db, "from_file_data")
	})
}

// TestMVThroughServer runs the mv commands through a running daemon's API.
func TestMVThroughServer(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 300_000)
		const token = "cli-token"
		d := servertest.Start(t, shirathBin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t), Token: token})
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// Neither ClickHouse nor PostgreSQL is named: everything goes through the API.
		g := []string{"--server", d.URL, "--token", token, "--clickhouse", "127.0.0.1:1", "--postgres", "postgres://nobody@127.0.0.1:1/x"}
		key := db + ".by_cat"

		out, code := cli(t, append([]string{"mv", "create", "--name", "by_cat", "--database", db, "--source", "products",
			"--engine", "SummingMergeTree()", "--order-by", "category",
			"--column", "category:String", "--column", "cnt:UInt64", "--column", "total_price:Decimal(18,2)",
			"--query", mvQuery, "--wait"}, g...)...)
		if code != 0 || !strings.Contains(out, key+": created") || !strings.Contains(out, "completed 100.0%") {
			t.Fatalf("mv create --server --wait: %d\n%s", code, out)
		}
		servertest.CheckExact(t, conn, db, "by_cat_data")

		if out, code := cli(t, "mv", "list", "--server", d.URL, "--token-file", tokenFile); code != 0 || !strings.Contains(out, key) || !strings.Contains(out, "synced") {
			t.Fatalf("mv list: %d\n%s", code, out)
		}
		if out, code := cli(t, append([]string{"mv", "status", key}, g...)...); code != 0 || !strings.Contains(out, "completed") || !strings.Contains(out, "Reconcile:") {
			t.Fatalf("mv status: %d\n%s", code, out)
		}
		first := mvStatusJSON(t, append([]string{"mv", "status", key, "--json"}, g...)...)
		if out, code := cli(t, append([]string{"mv", "backfill", key}, g...)...); code != 1 || !strings.Contains(out, "already completed") {
			t.Fatalf("backfill of a completed MV: %d\n%s", code, out)
		}
		if out, code := cli(t, append([]string{"mv", "backfill", key, "--restart", "--wait"}, g...)...); code != 0 || !strings.Contains(out, "completed 100.0%") {
			t.Fatalf("backfill --restart --wait: %d\n%s", code, out)
		}
		second := mvStatusJSON(t, append([]string{"mv", "status", key, "--json"}, g...)...)
		if second.ID == nil || *second.ID == *first.ID {
			t.Fatalf("--restart did not rebuild: job %v, was %v", second.ID, first.ID)
		}
		servertest.CheckExact(t, conn, db, "by_cat_data")

		if out, code := cli(t, "mv", "list", "--server", d.URL); code != 1 || !strings.Contains(out, "unauthorized") {
			t.Fatalf("mv list without a token: %d\n%s", code, out)
		}
		if out, code := cli(t, append([]string{"mv", "drop", key}, g...)...); code != 0 {
			t.Fatalf("drop: %d\n%s", code, out)
		}
		if left := mvTables(t, conn, db, "by_cat"); len(left) > 0 {
			t.Fatalf("left after drop: %v", left)
		}
		if out, code := cli(t, append([]string{"mv", "status", key}, g...)...); code != 1 || !strings.Contains(out, "not found") {
			t.Fatalf("status after drop: %d\n%s", code, out)
		}
	})
}
