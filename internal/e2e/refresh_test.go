//go:build integration

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func refreshSpec(every string, k int) string {
	return fmt.Sprintf(`name: totals
source_table: products
engine: MergeTree()
order_by: [category]
columns:
  - {name: category, type: String}
  - {name: cnt, type: UInt64}
  - {name: total_price, type: "Decimal(18,2)"}
select_query: "SELECT category, count() AS cnt, sum(price * %d) AS total_price FROM {source_table} GROUP BY category"
refresh:
  every: %s
`, k, every)
}

// waitRefreshed waits until the target equals version k's query over the
// whole source, as the next refreshes make it.
func (f *fixture) waitRefreshed(k int) {
	f.t.Helper()
	got := "SELECT category, cnt, total_price FROM totals_data ORDER BY category"
	want := fmt.Sprintf("SELECT category, count(), sum(price * %d) FROM products GROUP BY category ORDER BY category", k)
	deadline := time.Now().Add(30 * time.Second)
	for strings.Join(f.rowsOf(got), "\n") != strings.Join(f.rowsOf(want), "\n") {
		if time.Now().After(deadline) {
			f.assertSame("totals_data after refreshes", got, want)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRefreshableMV: a spec with refresh: on a server with refreshable MVs
// creates REFRESH EVERY ... TO target, completes once the first refresh
// succeeded, follows new source rows at the next refreshes, changes its
// schedule in place (MODIFY REFRESH) and its query by rebuilding beside and
// switching; status shows the refresh state. On a server without them, the
// plan is refused naming the missing feature and the node.
func TestRefreshableMV(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, f *fixture) {
		f.createProducts(20_000)
		f.writeSpec("totals", refreshSpec("1 second", 1))
		p := f.run("plan", f.dir)
		if f.server.Version.Major < 23 { // system.view_refreshes: 23.12 and later
			if p.code != 1 || !strings.Contains(p.stdout+p.stderr, "refreshable MVs need system.view_refreshes") || !strings.Contains(p.stdout+p.stderr, f.addr) {
				t.Fatalf("plan of a refreshable MV on %s: exit %d, want it refused naming the feature and the node\n%s%s", f.server.Version, p.code, p.stdout, p.stderr)
			}
			return
		}
		if p.code != 0 || !strings.Contains(p.stdout, "REFRESH EVERY 1 SECOND TO") || strings.Contains(p.stdout, "+ backfill:") || strings.Contains(p.stdout, "+ fence:") {
			t.Fatalf("plan: exit %d\n%s%s", p.code, p.stdout, p.stderr)
		}
		r := f.mustRun("apply", "--auto-approve", f.dir)
		if !strings.Contains(r.stdout, "waiting for the first refresh") {
			t.Errorf("apply did not wait for the first refresh:\n%s", r.stdout)
		}
		// Completed means refreshed: the target is full at once.
		f.assertSame("totals_data after apply", "SELECT category, cnt, total_price FROM totals_data ORDER BY category",
			"SELECT category, count(), sum(price) FROM products GROUP BY category ORDER BY category")
		f.exec("INSERT INTO %s.products SELECT 20000 + number + 1, 'new', toDecimal64(3, 2), now() FROM numbers(100)", f.db)
		f.waitRefreshed(1)
		st := f.mustRun("status", f.db+".totals")
		if !strings.Contains(st.stdout, "refresh: ") || !strings.Contains(st.stdout, "last success 20") {
			t.Errorf("status does not show the refresh state:\n%s", st.stdout)
		}

		// A new schedule: in place.
		f.writeSpec("totals", refreshSpec("2 second", 1))
		p = f.mustRun("plan", f.dir)
		if !strings.Contains(p.stdout, "MODIFY REFRESH EVERY 2 SECOND") || strings.Contains(p.stdout, "rebuild") {
			t.Fatalf("plan of a new schedule:\n%s", p.stdout)
		}
		f.mustRun("apply", "--auto-approve", f.dir)
		if q := f.scalar("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'totals'"); !strings.Contains(q, "EVERY 2 SECOND") {
			t.Errorf("the view after MODIFY REFRESH: %s", q)
		}
		if p := f.run("plan", "--detailed-exitcode", f.dir); p.code != 0 {
			t.Errorf("plan after the new schedule: exit %d\n%s", p.code, p.stdout)
		}

		// A new query: rebuilt beside, then switched.
		f.writeSpec("totals", refreshSpec("2 second", 2))
		p = f.mustRun("plan", f.dir)
		if !strings.Contains(p.stdout, "rebuild beside live version 1 as version 2") {
			t.Fatalf("plan of a new query:\n%s", p.stdout)
		}
		f.mustRun("apply", "--auto-approve", f.dir)
		f.waitRefreshed(2)
		if v, live := f.versions("totals"); v != 2 || live != 2 {
			t.Errorf("after the new query: version %d, live %d", v, live)
		}
		if p := f.run("plan", "--detailed-exitcode", f.dir); p.code != 0 {
			t.Errorf("plan after the new query: exit %d\n%s", p.code, p.stdout)
		}
	})
}
