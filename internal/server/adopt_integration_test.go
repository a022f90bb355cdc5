//go:build integration

package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

func scalar(t *testing.T, conn driver.Conn, q string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(servertest.Ctx(t, time.Minute), "SELECT toString(("+q+"))").Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

// TestDaemonAdopts: the original design's MV made by hand on each single
// node, then its spec POSTed to the daemon: the daemon adopts it as apply
// does (a completed job with adopted_at and no fence, no DDL: the tables'
// metadata times are unchanged and a row planted in the target stays), and
// the API shows it as data not verified.
func TestDaemonAdopts(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 50_000)
		ctx := servertest.Ctx(t, time.Minute)
		for _, q := range []string{
			// SQLBuilder's statements; Decimal(38, 2) is what sum(Decimal(18, 2)) gives.
			"CREATE TABLE IF NOT EXISTS %[1]s.products_by_category_data (category String, cnt UInt64, total_price Decimal(38,2)) ENGINE = SummingMergeTree() ORDER BY (category)",
			"CREATE MATERIALIZED VIEW IF NOT EXISTS %[1]s.products_by_category TO %[1]s.products_by_category_data AS SELECT category, count() as cnt, sum(price) as total_price FROM %[1]s.products GROUP BY category",
			"INSERT INTO %[1]s.products SELECT 50000 + number + 1, 'cat1', toDecimal64(1, 2), now() FROM numbers(100)",
			"INSERT INTO %[1]s.products_by_category_data SELECT 'planted', 1, 1",
		} {
			if err := conn.Exec(ctx, fmt.Sprintf(q, db)); err != nil {
				t.Fatalf("%s: %v", fmt.Sprintf(q, db), err)
			}
		}
		modified := fmt.Sprintf("SELECT groupArray(toString(metadata_modification_time)) FROM (SELECT metadata_modification_time FROM system.tables WHERE database = '%s' ORDER BY name)", db)
		before := scalar(t, conn, modified)
		time.Sleep(1100 * time.Millisecond)

		const token = "adopt-token"
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t), Token: token})
		body := strings.Replace(designBody(db), "Decimal(18,2)", "Decimal(38,2)", 1)
		if r := do(t, "POST", d.URL+"/api/mv", token, body); r.status != http.StatusCreated {
			t.Fatalf("POST /api/mv: %d %s", r.status, r.body)
		}
		key := db + ".products_by_category"
		mv := servertest.WaitFor(t, d.Client(token), key, 2*time.Minute, func(mv *server.MV) bool {
			if mv.Reconcile != nil && mv.Reconcile.Terminal {
				t.Fatalf("terminal: %+v", mv.Reconcile)
			}
			return mv.Status == "completed"
		})
		if mv.AdoptedAt == nil || !mv.DataNotVerified || mv.CutoffID != nil || mv.ProcessedRows != 0 {
			t.Fatalf("the daemon did not adopt the MV: adopted_at %v, data_not_verified %v, cutoff %v, processed %d", mv.AdoptedAt, mv.DataNotVerified, mv.CutoffID, mv.ProcessedRows)
		}
		if after := scalar(t, conn, modified); after != before {
			t.Fatalf("the adoption touched the tables: metadata times %s, before %s", after, before)
		}
		if n := scalar(t, conn, fmt.Sprintf("SELECT count() FROM %s.products_by_category_data WHERE category = 'planted'", db)); n != "1" {
			t.Fatalf("the planted row: %s rows", n)
		}
		r := do(t, "GET", d.URL+"/api/mv/"+key, token, "")
		for _, f := range []string{`"adopted_at":"`, `"data_not_verified":true`} {
			if !strings.Contains(strings.ReplaceAll(string(r.body), " ", ""), f) {
				t.Fatalf("GET %s lacks %s: %s", key, f, r.body)
			}
		}
		if r := do(t, "GET", d.URL+"/api/plan", token, ""); !strings.Contains(string(r.body), `"no-op"`) || !strings.Contains(string(r.body), "data not verified") {
			t.Fatalf("plan after the adoption: %s", r.body)
		}
	})
}
