//go:build integration

package server_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// TestChainThroughDaemon: a chain POSTed to the daemon in the wrong order
// (the rollup first): the rollup waits for its upstream (WaitingForUpstream)
// and is built once clean is complete; both end exact.
func TestChainThroughDaemon(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 300_000)
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t)})
		rollup := strings.NewReplacer(`"products_by_category"`, `"by_cat"`, `"source_table": "products"`, `"source_table": "clean_data"`).Replace(designBody(db))
		clean := fmt.Sprintf(`{"name": "clean", "database": %q, "source_table": "products", "engine": "MergeTree()", "order_by": ["id"],
			"columns": [{"name": "id", "type": "UInt64"}, {"name": "category", "type": "String"}, {"name": "price", "type": "Decimal(18,2)"}],
			"select_query": "SELECT id, category, price FROM {source_table} WHERE price > 0"}`, db)
		for _, body := range []string{rollup, clean} {
			if r := do(t, "POST", d.URL+"/api/mv", "", body); r.status != http.StatusCreated {
				t.Fatalf("POST /api/mv: %d %s", r.status, r.body)
			}
		}
		c := d.Client("")
		waited := false
		for _, key := range []string{db + ".clean", db + ".by_cat"} {
			servertest.WaitFor(t, c, key, 3*time.Minute, func(mv *server.MV) bool {
				// The rollup may be seen blocked for a moment (reconciled
				// before clean's spec was stored): clean's spec pokes it.
				if mv.Reconcile != nil && mv.Reconcile.Terminal && key == db+".clean" {
					t.Fatalf("%s terminal: %+v", key, mv.Reconcile)
				}
				if mv.Reconcile != nil && mv.Reconcile.Reason == "WaitingForUpstream" {
					waited = true
				}
				return mv.Status == "completed"
			})
		}
		if !waited {
			t.Log("the rollup was not seen waiting for its upstream (clean completed before the rollup was reconciled)")
		}
		want := servertest.Aggregate(t, conn, fmt.Sprintf("SELECT category, toString(count()), toString(sum(price)) FROM %s.products WHERE price > 0 GROUP BY category ORDER BY category", db))
		got := servertest.Aggregate(t, conn, fmt.Sprintf("SELECT category, toString(sum(cnt)), toString(sum(total_price)) FROM %s.by_cat_data GROUP BY category ORDER BY category", db))
		if got != want {
			t.Fatalf("by_cat_data differs from the source's aggregate\ngot:\n%s\nwant:\n%s", got, want)
		}
	})
}

// TestChainChangeRefusedByDaemon: the daemon plans an MV with its upstream
// MVs only, so it cannot rebuild the MVs downstream of a changed MV: the
// change of clean's spec file is refused (Blocked), naming the rollup that
// reads it, and nothing is switched: clean stays at version 1 and the
// rollup keeps being fed.
func TestChainChangeRefusedByDaemon(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 20_000)
		dir := t.TempDir()
		write := func(name, body string) {
			if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte("database: "+db+"\n"+body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		clean := `name: clean
source_table: products
engine: MergeTree()
order_by: [id]
columns:
  - {name: id, type: UInt64}
  - {name: category, type: String}
  - {name: price, type: "Decimal(18,2)"}
select_query: "SELECT id, category, price FROM {source_table} WHERE price > 0"
`
		write("clean", clean)
		write("by_cat", `name: by_cat
source_table: clean_data
engine: SummingMergeTree()
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: cnt, type: UInt64}
select_query: "SELECT category, count() AS cnt FROM {source_table} GROUP BY category"
`)
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t)},
			"--specs", dir, "--scan-interval", "300ms", "--backoff-base", "300ms", "--backoff-max", "2s")
		c := d.Client("")
		for _, key := range []string{db + ".clean", db + ".by_cat"} {
			servertest.WaitFor(t, c, key, 2*time.Minute, func(mv *server.MV) bool { return mv.Status == "completed" })
		}
		write("clean", strings.Replace(clean, "price > 0", "price > 5", 1))
		var msg string
		servertest.WaitFor(t, c, db+".clean", 2*time.Minute, func(mv *server.MV) bool {
			if mv.Reconcile != nil && mv.Reconcile.Terminal {
				msg = mv.Reconcile.Reason + ": " + mv.Reconcile.Message
				return true
			}
			return false
		})
		if !strings.HasPrefix(msg, "Blocked: ") || !strings.Contains(msg, db+".by_cat read "+db+".clean_data and are not among the specs planned") {
			t.Fatalf("the daemon's answer to a change of clean, which by_cat reads: %s", msg)
		}
		var n string
		if err := conn.QueryRow(servertest.Ctx(t, time.Minute), "SELECT engine FROM system.tables WHERE database = ? AND name = 'clean_data'", db).Scan(&n); err != nil || n != "MergeTree" {
			t.Fatalf("clean_data is a %s (%v) after the refused change: want the table version 1 writes into", n, err)
		}
		if err := conn.Exec(servertest.Ctx(t, time.Minute), fmt.Sprintf("INSERT INTO %s.products SELECT number + 100001, 'cat0', 7, now() FROM numbers(10)", db)); err != nil {
			t.Fatal(err)
		}
		want := servertest.Aggregate(t, conn, fmt.Sprintf("SELECT category, toString(count()), '' FROM %s.products WHERE price > 0 GROUP BY category ORDER BY category", db))
		got := servertest.Aggregate(t, conn, fmt.Sprintf("SELECT category, toString(sum(cnt)), '' FROM %s.by_cat_data GROUP BY category ORDER BY category", db))
		if got != want {
			t.Fatalf("by_cat_data is not fed any more after the refused change\ngot:\n%s\nwant:\n%s", got, want)
		}
	})
}
