package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shirath/shirath/state"
)

// downStore answers every call with an error, as a store whose server is
// unreachable would: the routes tested here must decide before they need it.
type downStore struct{}

var errDown = errors.New("store down")

func (downStore) GetJob(context.Context, string, string) (*state.Job, error) { return nil, errDown }
func (downStore) CreateJob(context.Context, *state.Job) error                { return errDown }
func (downStore) UpdateJob(context.Context, *state.Job) error                { return errDown }
func (downStore) DeleteJob(context.Context, int64) error                     { return errDown }
func (downStore) UpsertShard(context.Context, int64, state.ShardProgress) error {
	return errDown
}
func (downStore) DeleteShards(context.Context, int64) error { return errDown }
func (downStore) BeginBatch(context.Context, int64, int, string, int64, int64, string) error {
	return errDown
}
func (downStore) CompleteBatch(context.Context, int64, int, string, int64, int64) error {
	return errDown
}
func (downStore) MarkInDoubt(context.Context, int64, int, string) error { return errDown }
func (downStore) Lock(context.Context, string, string, bool, func(string, time.Time)) (func(), error) {
	return nil, errDown
}
func (downStore) ListJobs(context.Context) ([]*state.Job, error) { return nil, errDown }
func (downStore) PutSpec(context.Context, state.SpecRecord, bool) (bool, error) {
	return false, errDown
}
func (downStore) GetSpec(context.Context, string, string) (*state.SpecRecord, error) {
	return nil, errDown
}
func (downStore) ListSpecs(context.Context) ([]*state.SpecRecord, error) { return nil, errDown }
func (downStore) DeleteSpec(context.Context, string, string) error       { return errDown }
func (downStore) RecordVerify(context.Context, int64, state.VerifySummary) error {
	return errDown
}

const validSpec = `{"name": "by_cat", "source_table": "products", "engine": "SummingMergeTree()",
  "order_by": ["category"], "columns": [{"name": "category", "type": "String"}, {"name": "cnt", "type": "UInt64"}],
  "select_query": "SELECT category, count() AS cnt FROM {source_table} GROUP BY category"}`

func testServer(token string) http.Handler {
	return New(Config{Store: downStore{}, Token: token}).Handler()
}

// serve sends one request to h and checks the answer against the OpenAPI
// document.
func serve(t *testing.T, h http.Handler, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	checkDocumented(t, req, []byte(body), w)
	return w
}

func errorBody(t *testing.T, w *httptest.ResponseRecorder) Error {
	t.Helper()
	var e struct {
		Error   *string   `json:"error"`
		Details *[]string `json:"details"`
	}
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == nil || e.Details == nil {
		t.Fatalf("not an error body: %v: %s", err, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return Error{Status: w.Code, Message: *e.Error, Details: *e.Details}
}

func TestRoutesAndErrors(t *testing.T) {
	h := testServer("tok")
	const auth = "Bearer tok"
	for _, tc := range []struct {
		name, method, path, auth, body string
		status                         int
		contains                       string // in the message or a detail
	}{
		{"no token", "GET", "/api/mv", "", "", 401, "Authorization: Bearer"},
		{"wrong token", "GET", "/api/mv", "Bearer nope", "", 401, ""},
		{"token prefix", "GET", "/api/mv", "Bearer to", "", 401, ""},
		{"basic scheme", "GET", "/api/mv", "Basic dG9rOg==", "", 401, ""},
		{"no token on an unknown /api route", "GET", "/api/else", "", "", 401, ""},
		{"no token on /api", "GET", "/api", "", "", 401, ""},
		{"unknown api route", "GET", "/api/else", auth, "", 404, "no such route"},
		{"unknown route", "GET", "/nothing", "", "", 404, "no such route"},
		{"wrong method", "PUT", "/api/mv", auth, "", 405, "allowed: GET, HEAD, POST"},
		{"wrong method on an MV", "PATCH", "/api/mv/x", auth, "", 405, "DELETE"},
		{"malformed JSON", "POST", "/api/mv", auth, `{"name":`, 400, "not valid JSON"},
		{"unknown field", "POST", "/api/mv", auth, strings.Replace(validSpec, `"engine"`, `"nope": 1, "engine"`, 1), 400, "nope"},
		{"SQL in a type", "POST", "/api/mv", auth, strings.Replace(validSpec, `"UInt64"`, `"UInt64); DROP TABLE products --"`, 1), 400, "columns[1].type"},
		{"too large", "POST", "/api/mv", auth, `{"name": "` + strings.Repeat("a", MaxBodyBytes) + `"}`, 413, "1048576"},
		{"bad name", "GET", "/api/mv/a.b.c", auth, "", 400, "not an MV name"},
		{"bad name with SQL", "DELETE", "/api/mv/x;DROP", auth, "", 400, ""},
		{"backfill bad body", "POST", "/api/mv/x/backfill", auth, `{"restart": "yes"}`, 400, "malformed"},
		{"backfill unknown field", "POST", "/api/mv/x/backfill", auth, `{"force": true}`, 400, "force"},
		{"backfill trailing data", "POST", "/api/mv/x/backfill", auth, `{} {}`, 400, "after the JSON value"},
		{"backfill bad restart", "POST", "/api/mv/x/backfill?restart=maybe", auth, ``, 400, "restart"},
		{"store down", "GET", "/api/mv", auth, "", 500, "store down"},
		{"readyz with the store down", "GET", "/readyz", "", "", 503, "postgresql"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, h, tc.method, tc.path, tc.auth, tc.body)
			if w.Code != tc.status {
				t.Fatalf("%d, want %d: %s", w.Code, tc.status, w.Body)
			}
			e := errorBody(t, w)
			all := e.Message + "\n" + strings.Join(e.Details, "\n")
			if !strings.Contains(all, tc.contains) {
				t.Fatalf("%q lacks %q", all, tc.contains)
			}
			if tc.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if tc.status == 405 && w.Header().Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
}

// Every problem of a body is reported, not the first only.
func TestCreateReportsEveryError(t *testing.T) {
	body := strings.Replace(strings.Replace(validSpec, `"UInt64"`, `"Uint64x"`, 1), `"by_cat"`, `"1 bad"`, 1)
	w := serve(t, testServer(""), "POST", "/api/mv", "", body)
	e := errorBody(t, w)
	if w.Code != 400 || e.Message != "invalid spec" || len(e.Details) < 2 {
		t.Fatalf("%d %+v", w.Code, e)
	}
}

func TestNoTokenConfigured(t *testing.T) {
	h := testServer("")
	if w := serve(t, h, "GET", "/healthz", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"ok"`) {
		t.Fatalf("healthz: %d %s", w.Code, w.Body)
	}
	// Without a token the API is open: the request reaches the store.
	if w := serve(t, h, "GET", "/api/mv", "", ""); w.Code != 500 {
		t.Fatalf("GET /api/mv without a configured token: %d %s", w.Code, w.Body)
	}
}

func TestMetricsWithoutStore(t *testing.T) {
	w := serve(t, testServer("tok"), "GET", "/metrics", "", "")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
	}
	body := w.Body.String()
	if strings.Contains(body, "shirath_mv_jobs{") {
		t.Fatalf("job gauge without a store:\n%s", body)
	}
	if !strings.Contains(body, "shirath_backfill_rows_total 0") {
		t.Fatalf("no rows counter:\n%s", body)
	}
}

func TestValidToken(t *testing.T) {
	s := New(Config{Store: downStore{}, Token: "s3cret"})
	for h, want := range map[string]bool{
		"Bearer s3cret":   true,
		"bearer s3cret":   true,
		"Bearer  s3cret ": true,
		"Bearer s3cre":    false,
		"Bearer s3cretx":  false,
		"s3cret":          false,
		"Basic s3cret":    false,
		"":                false,
		"Bearer ":         false,
	} {
		if got := s.validToken(h); got != want {
			t.Errorf("validToken(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestParseKey(t *testing.T) {
	for in, want := range map[string]string{
		"mv":         "default.mv",
		"db.mv":      "db.mv",
		"a.b.c":      "",
		"":           "",
		"db.":        "",
		"x;DROP":     "",
		"`x`":        "",
		"db.mv name": "",
	} {
		db, name, err := ParseKey(in)
		got := ""
		if err == nil {
			got = Key(db, name)
		}
		if got != want {
			t.Errorf("ParseKey(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}
