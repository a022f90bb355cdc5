//go:build integration

package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shirath/shirath/internal/server"
	"github.com/shirath/shirath/internal/server/servertest"
	"github.com/shirath/shirath/internal/testenv"
)

var bin string

func TestMain(m *testing.M) { servertest.Main(m, filepath.Join("..", ".."), &bin) }

func tableExists(t *testing.T, conn driver.Conn, db, name string) bool {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(servertest.Ctx(t, time.Minute), "SELECT count() FROM system.tables WHERE database = ? AND name = ?", db, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// designBody is the body of the original design's curl example, with the
// test's database.
func designBody(db string) string {
	return `{
    "name": "products_by_category",
    "database": "` + db + `",
    "source_table": "products",
    "engine": "SummingMergeTree()",
    "order_by": ["category"],
    "columns": [
      {"name": "category", "type": "String"},
      {"name": "cnt", "type": "UInt64"},
      {"name": "total_price", "type": "Decimal(18,2)"}
    ],
    "select_query": "SELECT category, count() as cnt, sum(price) as total_price FROM {source_table} GROUP BY category"
  }`
}

// smallBatches is the design's spec with 20,000-key batches, so that a
// backfill of a few million rows takes a while.
func smallBatches(db, name string) string {
	return `{
    "name": "` + name + `", "database": "` + db + `", "source_table": "products",
    "engine": "SummingMergeTree()", "order_by": ["category"],
    "columns": [{"name": "category", "type": "String"}, {"name": "cnt", "type": "UInt64"}, {"name": "total_price", "type": "Decimal(18,2)"}],
    "select_query": "SELECT category, count() as cnt, sum(price) as total_price FROM {source_table} GROUP BY category",
    "backfill": {"initial_batch_rows": 20000, "max_batch_rows": 20000}
  }`
}

type rawResp struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url, token, body string) rawResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(servertest.Ctx(t, 5*time.Minute), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := servertest.HTTPClient(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResp{resp.StatusCode, resp.Header, b}
}

// apiError decodes an error body and checks its shape.
func apiError(t *testing.T, r rawResp) (string, []string) {
	t.Helper()
	var e struct {
		Error   *string   `json:"error"`
		Details *[]string `json:"details"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == nil || e.Details == nil {
		t.Fatalf("error body is not {\"error\": ..., \"details\": [...]}: %v: %s", err, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return *e.Error, *e.Details
}

func parseMetrics(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, body)
	}
	return fams
}

func decodeJob(t *testing.T, r rawResp) server.MV {
	t.Helper()
	return servertest.DecodeJob(t, r.body)
}

// TestDesignExample runs the original design's curl example against the
// daemon: POST the spec, watch the progress rise to 100 and the status reach
// completed, and find the exact aggregate of the source in the target. Then
// the rest of the API on that MV: list, same spec again, a different spec
// under the name, plan, metrics, readiness, delete.
func TestDesignExample(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		const n = 1_500_000
		servertest.Products(t, conn, db, n)
		const token = "s3cret-token"
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t), Token: token})
		key := db + ".products_by_category"

		r := do(t, "POST", d.URL+"/api/mv", token, designBody(db))
		if r.status != http.StatusCreated {
			t.Fatalf("POST /api/mv: %d %s", r.status, r.body)
		}
		job := decodeJob(t, r)
		if job.Name != "products_by_category" || job.Database != db || job.SourceTable != "products" || job.TargetTable != "products_by_category_data" {
			t.Fatalf("created job: %+v", job)
		}
		for _, field := range []string{`"id"`, `"status"`, `"cutoff_id"`, `"total_rows"`, `"processed_rows"`, `"progress_percent"`, `"created_at"`, `"updated_at"`, `"shards"`, `"cluster_name"`} {
			if !bytes.Contains(r.body, []byte(field)) {
				t.Errorf("the job has no %s field: %s", field, r.body)
			}
		}

		c := d.Client(token)
		var seen []float64
		var lastRows int64
		final := servertest.WaitFor(t, c, key, 5*time.Minute, func(mv *server.MV) bool {
			if mv.ProgressPercent < 0 || mv.ProgressPercent > 100 {
				t.Errorf("progress %v out of range", mv.ProgressPercent)
			}
			if len(seen) == 0 || seen[len(seen)-1] != mv.ProgressPercent {
				seen = append(seen, mv.ProgressPercent)
			}
			if mv.ProcessedRows < lastRows {
				t.Errorf("processed_rows went back from %d to %d", lastRows, mv.ProcessedRows)
			}
			lastRows = mv.ProcessedRows
			if mv.Reconcile != nil && mv.Reconcile.Terminal {
				t.Fatalf("terminal: %+v", mv.Reconcile)
			}
			return mv.Status == "completed"
		})
		t.Logf("progress seen: %v", seen)
		if final.ProgressPercent != 100 || final.ProcessedRows != n || final.TotalRows != n {
			t.Fatalf("completed job: progress %v, %d/%d rows, want 100 and %d", final.ProgressPercent, final.ProcessedRows, final.TotalRows, n)
		}
		if final.CutoffID == nil || *final.CutoffID != n {
			t.Fatalf("cutoff %v, want %d (no insert ran: the fence is max(id))", final.CutoffID, n)
		}
		if _, err := time.Parse(time.RFC3339, final.CreatedAt); err != nil {
			t.Errorf("created_at %q: %v", final.CreatedAt, err)
		}
		if _, err := time.Parse(time.RFC3339, final.UpdatedAt); err != nil {
			t.Errorf("updated_at %q: %v", final.UpdatedAt, err)
		}
		servertest.CheckExact(t, conn, db, "products_by_category_data")

		// The list holds it.
		mvs, err := c.List(servertest.Ctx(t, time.Minute))
		if err != nil || len(mvs) != 1 || mvs[0].Key() != key || mvs[0].Status != "completed" {
			t.Fatalf("list: %v %+v", err, mvs)
		}
		// The same spec again: 200 with the job; a different one: 409.
		if r := do(t, "POST", d.URL+"/api/mv", token, designBody(db)); r.status != http.StatusOK || decodeJob(t, r).Status != "completed" {
			t.Fatalf("same spec again: %d %s", r.status, r.body)
		}
		other := strings.Replace(designBody(db), "GROUP BY category", "WHERE price > 1 GROUP BY category", 1)
		if r := do(t, "POST", d.URL+"/api/mv", token, other); r.status != http.StatusConflict {
			t.Fatalf("different spec, same name: %d %s", r.status, r.body)
		} else {
			apiError(t, r)
		}
		// The plan: the CLI's JSON format, nothing to do.
		r = do(t, "GET", d.URL+"/api/plan", token, "")
		var plan struct {
			FormatVersion string `json:"format_version"`
			Changes       []struct {
				Database, Name, Action string
			} `json:"resource_changes"`
			Summary map[string]int `json:"summary"`
		}
		if err := json.Unmarshal(r.body, &plan); err != nil || r.status != 200 {
			t.Fatalf("plan: %d %v %s", r.status, err, r.body)
		}
		if plan.FormatVersion == "" || len(plan.Changes) != 1 || plan.Changes[0].Action != "no-op" || plan.Summary["create"] != 0 {
			t.Fatalf("plan of a completed MV: %s", r.body)
		}
		// Backfill of a completed MV needs restart.
		if r := do(t, "POST", d.URL+"/api/mv/"+key+"/backfill", token, ""); r.status != http.StatusConflict {
			t.Fatalf("backfill of a completed MV: %d %s", r.status, r.body)
		}
		// Health, readiness, metrics: no token needed.
		for _, p := range []string{"/healthz", "/readyz"} {
			if r := do(t, "GET", d.URL+p, "", ""); r.status != 200 {
				t.Fatalf("%s: %d %s", p, r.status, r.body)
			}
		}
		r = do(t, "GET", d.URL+"/metrics", "", "")
		for _, want := range []string{
			`shirath_mv_jobs{status="completed"} 1`,
			`shirath_backfill_batch_duration_seconds_count `,
			`shirath_reconcile_errors_total{kind="error"} 0`,
		} {
			if !strings.Contains(string(r.body), want) {
				t.Errorf("metrics lack %q:\n%s", want, r.body)
			}
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Errorf("metrics Content-Type %q", ct)
		}
		// Values are floats in the exposition (1.5e+06): compare them parsed.
		fams := parseMetrics(t, r.body)
		if rows := fams["shirath_backfill_rows_total"]; rows == nil || rows.GetMetric()[0].GetCounter().GetValue() != n {
			t.Errorf("shirath_backfill_rows_total is not %d: %v", n, rows)
		}
		for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
			if fams[name] == nil {
				t.Errorf("metrics lack %s", name)
			}
		}
		// The daemon serves the document the tests check against.
		if r := do(t, "GET", d.URL+"/api/openapi.json", token, ""); r.status != 200 || !bytes.Equal(r.body, server.OpenAPI()) {
			t.Errorf("GET /api/openapi.json: %d %.300s", r.status, r.body)
		}

		// Delete: the view and its tables are gone, and so is the MV.
		r = do(t, "DELETE", d.URL+"/api/mv/"+key, token, "")
		if r.status != 200 || strings.TrimSpace(string(r.body)) != "{\n  \"status\": \"deleted\"\n}" {
			t.Fatalf("DELETE: %d %s", r.status, r.body)
		}
		for _, tbl := range []string{"products_by_category", "products_by_category_data", "products_by_category_dist"} {
			if tableExists(t, conn, db, tbl) {
				t.Errorf("%s.%s still exists after DELETE", db, tbl)
			}
		}
		if r := do(t, "GET", d.URL+"/api/mv/"+key, token, ""); r.status != http.StatusNotFound {
			t.Fatalf("GET after DELETE: %d %s", r.status, r.body)
		}
		if r := do(t, "DELETE", d.URL+"/api/mv/"+key, token, ""); r.status != http.StatusNotFound {
			t.Fatalf("DELETE twice: %d %s", r.status, r.body)
		}
	})
}

// TestAPIRefuses: no token, malformed bodies, unknown fields, SQL injected
// into a name, a type or the query, unknown MVs and routes. Every refusal is
// a JSON error and nothing reaches ClickHouse.
func TestAPIRefuses(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		servertest.Products(t, conn, db, 1000)
		const token = "another-token"
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t), Token: token})
		valid := designBody(db)

		for _, tc := range []struct {
			name, method, path, token, body string
			status                          int
			detail                          string // a detail must contain this
		}{
			{"no token", "GET", "/api/mv", "", "", 401, "Bearer"},
			{"wrong token", "GET", "/api/mv", "wrong", "", 401, ""},
			{"no token on POST", "POST", "/api/mv", "", valid, 401, ""},
			{"no token on an unknown MV", "GET", "/api/mv/x", "", "", 401, ""},
			{"malformed JSON", "POST", "/api/mv", token, `{"name": "x",`, 400, "JSON"},
			{"not an object", "POST", "/api/mv", token, `[1, 2]`, 400, ""},
			{"empty body", "POST", "/api/mv", token, ``, 400, ""},
			{"unknown field", "POST", "/api/mv", token, strings.Replace(valid, `"engine"`, `"bogus_field": 1, "engine"`, 1), 400, "bogus_field"},
			{"SQL in the name", "POST", "/api/mv", token, strings.Replace(valid, `"products_by_category"`, `"x; DROP TABLE products"`, 1), 400, "name"},
			{"SQL in a type", "POST", "/api/mv", token, strings.Replace(valid, `"UInt64"`, `"UInt64) ENGINE = Memory; DROP TABLE products; --"`, 1), 400, "columns[1].type"},
			{"SQL in the query", "POST", "/api/mv", token, strings.Replace(valid, `GROUP BY category"`, `GROUP BY category; DROP TABLE products"`, 1), 400, "select_query"},
			{"SQL in the source", "POST", "/api/mv", token, strings.Replace(valid, `"source_table": "products"`, `"source_table": "products; DROP TABLE products"`, 1), 400, "source_table"},
			{"unknown MV", "GET", "/api/mv/" + db + ".nope", token, "", 404, ""},
			{"unknown MV in default", "GET", "/api/mv/nope_at_all", token, "", 404, ""},
			{"bad MV name", "GET", "/api/mv/a.b.c", token, "", 400, ""},
			{"delete unknown", "DELETE", "/api/mv/" + db + ".nope", token, "", 404, ""},
			{"backfill unknown", "POST", "/api/mv/" + db + ".nope/backfill", token, "", 404, ""},
			{"backfill unknown field", "POST", "/api/mv/" + db + ".nope/backfill", token, `{"restrat": true}`, 400, "restrat"},
			{"method not allowed", "PUT", "/api/mv", token, valid, 405, "allowed"},
			{"unknown route", "GET", "/api/nothing", token, "", 404, ""},
			{"body too large", "POST", "/api/mv", token, `{"name": "` + strings.Repeat("x", 2<<20) + `"}`, 413, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := do(t, tc.method, d.URL+tc.path, tc.token, tc.body)
				if r.status != tc.status {
					t.Fatalf("%s %s: %d, want %d: %s", tc.method, tc.path, r.status, tc.status, r.body)
				}
				_, details := apiError(t, r)
				if tc.detail != "" && !strings.Contains(strings.Join(details, "\n"), tc.detail) {
					t.Fatalf("details %q lack %q", details, tc.detail)
				}
			})
		}

		// Every problem of a body at once.
		bad := strings.Replace(strings.Replace(valid, `"UInt64"`, `"Uint64x"`, 1), `"products_by_category"`, `"1bad name"`, 1)
		r := do(t, "POST", d.URL+"/api/mv", token, bad)
		if msg, details := apiError(t, r); r.status != 400 || msg != "invalid spec" || len(details) < 2 {
			t.Fatalf("two problems: %d %q %q", r.status, msg, details)
		}
		if r := do(t, "GET", d.URL+"/api/mv", token, ""); r.status != 200 || !bytes.Contains(r.body, []byte(`"jobs": []`)) {
			t.Fatalf("after refusals the list is not empty: %d %s", r.status, r.body)
		}
		if !tableExists(t, conn, db, "products") {
			t.Fatal("products was dropped")
		}
		if r := do(t, "GET", d.URL+"/healthz", "", ""); r.status != 200 {
			t.Fatalf("healthz without token: %d", r.status)
		}
	})
}

// TestSigtermResumes stops the daemon with SIGTERM in the middle of a
// backfill and starts it again: the job continues from where it stopped
// (processed_rows does not go back to 0, the fence is the same) and the
// target is exact.
func TestSigtermResumes(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		const n = 3_000_000
		servertest.Products(t, conn, db, n)
		pg := env.PostgresDB(t)
		denv := servertest.Env{CHAddr: s.Addr, PGURL: pg}
		d1 := servertest.Start(t, bin, denv)
		key := db + ".slow"
		if r := do(t, "POST", d1.URL+"/api/mv", "", smallBatches(db, "slow")); r.status != 201 {
			t.Fatalf("POST: %d %s", r.status, r.body)
		}
		mid := servertest.WaitFor(t, d1.Client(""), key, 3*time.Minute, func(mv *server.MV) bool {
			return mv.Status == "backfilling" && mv.ProcessedRows >= n/20
		})
		start := time.Now()
		if err := d1.Stop(); err != nil {
			t.Fatalf("stop: %v\n%s", err, d1.Log(5000))
		}
		s.Settle(t)
		t.Logf("stopped at %d/%d rows in %s", mid.ProcessedRows, mid.TotalRows, time.Since(start))
		if !strings.Contains(d1.Stdout(), "shirath: stopped") {
			t.Errorf("no clean stop on stdout: %q", d1.Stdout())
		}

		d2 := servertest.Start(t, bin, denv)
		c := d2.Client("")
		first, err := c.Get(servertest.Ctx(t, time.Minute), key)
		if err != nil {
			t.Fatal(err)
		}
		if first.Status == "completed" {
			t.Fatalf("the backfill completed before SIGTERM took effect: make it longer")
		}
		if first.ProcessedRows < mid.ProcessedRows || first.ProcessedRows == 0 {
			t.Fatalf("after the restart processed_rows is %d, it was %d before SIGTERM", first.ProcessedRows, mid.ProcessedRows)
		}
		if *first.CutoffID != *mid.CutoffID || *first.ID != *mid.ID {
			t.Fatalf("the job was rebuilt: id %d cutoff %d, was %d and %d", *first.ID, *first.CutoffID, *mid.ID, *mid.CutoffID)
		}
		low := first.ProcessedRows
		final := servertest.WaitFor(t, c, key, 5*time.Minute, func(mv *server.MV) bool {
			if mv.ProcessedRows < low {
				t.Fatalf("processed_rows went back from %d to %d", low, mv.ProcessedRows)
			}
			low = mv.ProcessedRows
			return mv.Status == "completed"
		})
		if final.ProcessedRows != n {
			t.Fatalf("processed %d rows, want %d", final.ProcessedRows, n)
		}
		servertest.CheckExact(t, conn, db, "slow_data")
	})
}

// TestFailuresStayApart: a blocked MV (no source table), an invalid spec
// file and a failing backfill do not hold up a good MV; the blocked and the
// invalid ones are terminal (not retried), the failing one is retried with
// backoff and resumes without counting a row twice; a backfill request
// restarts the blocked one once its source exists, and a restart rebuilds a
// completed one.
func TestFailuresStayApart(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	env.EachSingle(t, func(t *testing.T, s *testenv.Single) {
		conn, db := s.DB(t)
		const n = 2_000_000
		servertest.Products(t, conn, db, n)
		dir := t.TempDir()
		good := fmt.Sprintf(`name: from_file
database: %s
source_table: products
engine: SummingMergeTree()
order_by: [category]
columns:
  - name: category
    type: String
  - name: cnt
    type: UInt64
  - name: total_price
    type: Decimal(18,2)
select_query: SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY category
`, db)
		bad := strings.Replace(strings.Replace(good, "from_file", "bad_file", 1), "type: UInt64", "type: UInt64; DROP TABLE products", 1)
		if err := os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(good), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		d := servertest.Start(t, bin, servertest.Env{CHAddr: s.Addr, PGURL: env.PostgresDB(t)},
			"--specs", dir, "--scan-interval", "300ms", "--backoff-base", "300ms", "--backoff-max", "2s")
		c := d.Client("")

		// Blocked: the source does not exist.
		blocked := strings.Replace(designBody(db), `"products"`, `"products_later"`, 1)
		blocked = strings.Replace(blocked, "products_by_category", "later", 1)
		if r := do(t, "POST", d.URL+"/api/mv", "", blocked); r.status != 201 {
			t.Fatalf("POST blocked: %d %s", r.status, r.body)
		}
		// Failing: its target disappears mid-backfill.
		if r := do(t, "POST", d.URL+"/api/mv", "", smallBatches(db, "flaky")); r.status != 201 {
			t.Fatalf("POST flaky: %d %s", r.status, r.body)
		}
		servertest.WaitFor(t, c, db+".flaky", 3*time.Minute, func(mv *server.MV) bool {
			return mv.Status == "backfilling" && mv.ProcessedRows > 0
		})
		ctx := servertest.Ctx(t, 5*time.Minute)
		if err := conn.Exec(ctx, fmt.Sprintf("RENAME TABLE %s.flaky_data TO %s.flaky_away", db, db)); err != nil {
			t.Fatal(err)
		}
		failed := servertest.WaitFor(t, c, db+".flaky", time.Minute, func(mv *server.MV) bool {
			return mv.Reconcile != nil && mv.Reconcile.State == server.CondRetrying && mv.Reconcile.Failures >= 2
		})
		t.Logf("flaky while its target is away: %s at %d rows: %s", failed.Status, failed.ProcessedRows, failed.Reconcile.Message)
		if err := conn.Exec(ctx, fmt.Sprintf("RENAME TABLE %s.flaky_away TO %s.flaky_data", db, db)); err != nil {
			t.Fatal(err)
		}

		// The good MV from the file completes meanwhile.
		mv := servertest.WaitFor(t, c, db+".from_file", 3*time.Minute, func(mv *server.MV) bool {
			if mv.Reconcile != nil && mv.Reconcile.Terminal {
				t.Fatalf("from_file: %+v", mv.Reconcile)
			}
			return mv.Status == "completed"
		})
		if mv.Origin == nil || *mv.Origin != "file" {
			t.Fatalf("from_file origin %v", mv.Origin)
		}
		servertest.CheckExact(t, conn, db, "from_file_data")

		// The invalid file is terminal, with the file's error.
		inv := servertest.WaitFor(t, c, db+".bad_file", time.Minute, func(mv *server.MV) bool {
			return mv.Reconcile != nil && mv.Reconcile.Terminal
		})
		if inv.Reconcile.State != server.CondInvalid || inv.ErrorMessage == nil || !strings.Contains(*inv.ErrorMessage, "bad.yaml:") || inv.Status != "pending" {
			t.Fatalf("invalid spec file: %+v %v", inv.Reconcile, inv.ErrorMessage)
		}
		// Blocked is terminal and not retried.
		bl := servertest.WaitFor(t, c, db+".later", time.Minute, func(mv *server.MV) bool {
			return mv.Reconcile != nil && mv.Reconcile.Terminal
		})
		if bl.Reconcile.State != server.CondBlocked || !strings.Contains(bl.Reconcile.Message, "does not exist") {
			t.Fatalf("blocked: %+v", bl.Reconcile)
		}
		time.Sleep(2 * time.Second) // several scans and backoff periods
		bl2, err := c.Get(ctx, db+".later")
		if err != nil {
			t.Fatal(err)
		}
		if !bl2.Reconcile.UpdatedAt.Equal(bl.Reconcile.UpdatedAt) {
			t.Fatalf("a blocked MV was tried again: %+v then %+v", bl.Reconcile, bl2.Reconcile)
		}
		// A spec from the directory cannot be deleted through the API.
		if r := do(t, "DELETE", d.URL+"/api/mv/"+db+".from_file", "", ""); r.status != http.StatusConflict {
			t.Fatalf("DELETE of a file spec: %d %s", r.status, r.body)
		}

		// The flaky one resumed and counted nothing twice.
		servertest.WaitFor(t, c, db+".flaky", 3*time.Minute, func(mv *server.MV) bool { return mv.Status == "completed" })
		servertest.CheckExact(t, conn, db, "flaky_data")

		// The source appears; a backfill request retries the blocked MV.
		if err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.products_later AS %s.products", db, db)); err != nil {
			t.Fatal(err)
		}
		if err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s.products_later SELECT * FROM %s.products WHERE id <= 1000", db, db)); err != nil {
			t.Fatal(err)
		}
		if r := do(t, "POST", d.URL+"/api/mv/"+db+".later/backfill", "", ""); r.status != 200 {
			t.Fatalf("backfill of the blocked MV: %d %s", r.status, r.body)
		}
		servertest.WaitFor(t, c, db+".later", 3*time.Minute, func(mv *server.MV) bool { return mv.Status == "completed" })

		// Restart rebuilds a completed MV: a new job, the same exact result.
		before, err := c.Get(ctx, db+".flaky")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Backfill(ctx, db+".flaky", true); err != nil {
			t.Fatal(err)
		}
		after := servertest.WaitFor(t, c, db+".flaky", 3*time.Minute, func(mv *server.MV) bool {
			return mv.ID != nil && *mv.ID != *before.ID && mv.Status == "completed"
		})
		if after.ProcessedRows != n {
			t.Fatalf("rebuilt: %d rows, want %d", after.ProcessedRows, n)
		}
		servertest.CheckExact(t, conn, db, "flaky_data")

		r := do(t, "GET", d.URL+"/metrics", "", "")
		for _, kind := range []string{"blocked", "invalid", "error"} {
			if !regexp.MustCompile(`(?m)^shirath_reconcile_errors_total\{kind="` + kind + `"\} [1-9]`).Match(r.body) {
				t.Errorf("metrics count no %s reconcile error:\n%s", kind, r.body)
			}
		}
	})
}

// TestClusterThroughDaemon builds an MV ON CLUSTER (2 shards x 2 replicas)
// through the API: the aggregate read through its Distributed table equals
// the source's, and DELETE removes it from every node.
func TestClusterThroughDaemon(t *testing.T) {
	t.Parallel()
	env := testenv.Load(t)
	cl := env.ClusterDB(t)
	ctx := servertest.Ctx(t, 5*time.Minute)
	db := cl.DB
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE %s.products ON CLUSTER %s (id UInt64, category String, price Decimal(18,2), created_at DateTime) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/%s/products', '{replica}') ORDER BY id", db, cl.Name, db),
		fmt.Sprintf("CREATE TABLE %s.products_all ON CLUSTER %s AS %s.products ENGINE = Distributed(%s, %s, products, intHash64(id))", db, cl.Name, db, cl.Name, db),
	} {
		if err := cl.Nodes[0].Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	const n = 300_000
	ins := fmt.Sprintf("INSERT INTO %s.products_all SELECT number + 1, concat('cat', toString(number %% 13)), toDecimal64(number %% 100000, 2) / 100, now() FROM numbers(%d)", db, n)
	if err := cl.Nodes[0].Exec(clickhouseSync(ctx), ins); err != nil {
		t.Fatal(err)
	}
	d := servertest.Start(t, bin, servertest.Env{CHAddr: cl.Addrs[0], PGURL: env.PostgresDB(t)})
	body := strings.Replace(designBody(db), `"source_table"`, `"cluster": "`+cl.Name+`", "source_table"`, 1)
	if r := do(t, "POST", d.URL+"/api/mv", "", body); r.status != 201 {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	key := db + ".products_by_category"
	mv := servertest.WaitFor(t, d.Client(""), key, 4*time.Minute, func(mv *server.MV) bool {
		if mv.Reconcile != nil && mv.Reconcile.Terminal {
			t.Fatalf("terminal: %+v", mv.Reconcile)
		}
		return mv.Status == "completed"
	})
	if mv.ClusterName == nil || *mv.ClusterName != cl.Name || mv.ProcessedRows != n || len(mv.Shards) != 2 {
		t.Fatalf("cluster job: %+v", mv)
	}
	want := servertest.Aggregate(t, cl.Nodes[0], fmt.Sprintf("SELECT category, toString(count()), toString(sum(price)) FROM %s.products_all GROUP BY category ORDER BY category", db))
	got := servertest.Aggregate(t, cl.Nodes[0], fmt.Sprintf("SELECT category, toString(sum(cnt)), toString(sum(total_price)) FROM %s.products_by_category_dist GROUP BY category ORDER BY category", db))
	if want == "" || got != want {
		t.Fatalf("through the Distributed table\ngot:\n%s\nwant:\n%s", got, want)
	}
	if r := do(t, "DELETE", d.URL+"/api/mv/"+key, "", ""); r.status != 200 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	for i, node := range cl.Nodes {
		for _, tbl := range []string{"products_by_category", "products_by_category_data", "products_by_category_dist"} {
			if tableExists(t, node, db, tbl) {
				t.Errorf("%s.%s still exists on %s after DELETE", db, tbl, cl.Addrs[i])
			}
		}
	}
}

func clickhouseSync(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
}
