//go:build integration

package server_test

import (
	"fmt"
	"net/http"
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
