//go:build integration

package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

// TestRefreshThroughDaemon: a refreshable MV POSTed to the daemon is created
// and completes once refreshed; its refresh state (system.view_refreshes)
// shows in GET /api/mv/{name} and in /metrics. Where the server has no
// refreshable MVs, the MV is blocked naming the missing feature.
func TestRefreshThroughDaemon(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 10_000)
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t)})
		body := strings.Replace(designBody(db), `"engine": "SummingMergeTree()"`, `"engine": "MergeTree()", "refresh": {"every": "1 second"}`, 1)
		if r := do(t, "POST", d.URL+"/api/mv", "", body); r.status != http.StatusCreated {
			t.Fatalf("POST /api/mv: %d %s", r.status, r.body)
		}
		key := db + ".products_by_category"
		c := d.Client("")
		if s.Version.Major < 23 {
			mv := servertest.WaitFor(t, c, key, time.Minute, func(mv *server.MV) bool { return mv.Reconcile != nil && mv.Reconcile.Terminal })
			if !strings.Contains(mv.Reconcile.Message, "refreshable MVs need system.view_refreshes") {
				t.Fatalf("on %s: condition %+v, want it blocked naming the missing feature", s.Version, mv.Reconcile)
			}
			return
		}
		mv := servertest.WaitFor(t, c, key, 2*time.Minute, func(mv *server.MV) bool {
			if mv.Reconcile != nil && mv.Reconcile.Terminal {
				t.Fatalf("terminal: %+v", mv.Reconcile)
			}
			return mv.Status == "completed" && mv.Refresh != nil && mv.Refresh.LastSuccess != nil
		})
		t.Logf("refresh state: %+v, last success %s", mv.Refresh, mv.Refresh.LastSuccess)
		if mv.Refresh.Exception != "" {
			t.Errorf("refresh exception: %s", mv.Refresh.Exception)
		}
		r := do(t, "GET", d.URL+"/metrics", "", "")
		fam := parseMetrics(t, r.body)["shirath_refresh_last_success_timestamp_seconds"]
		if fam == nil || len(fam.Metric) != 1 || fam.Metric[0].GetGauge().GetValue() < float64(time.Now().Add(-time.Hour).Unix()) {
			t.Fatalf("/metrics has no recent last success for %s: %v", key, fam)
		}
		servertest.CheckExact(t, conn, db, "products_by_category_data")
	})
}
