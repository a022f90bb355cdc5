package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/shirath/shirath/internal/openapi"
	"github.com/shirath/shirath/internal/verify"
	"github.com/shirath/shirath/planner"
	"github.com/shirath/shirath/specs"
	"github.com/shirath/shirath/state"
)

var loadDocOnce = sync.OnceValues(func() (*openapi.Doc, error) { return openapi.Load(openapiDoc) })

func loadDoc(t *testing.T) *openapi.Doc {
	t.Helper()
	d, err := loadDocOnce()
	if err != nil {
		t.Fatalf("the OpenAPI document: %v", err)
	}
	return d
}

// checkDocumented checks an answer of the handler against the document.
func checkDocumented(t *testing.T, req *http.Request, body []byte, w *httptest.ResponseRecorder) {
	t.Helper()
	err := loadDoc(t).Check(openapi.Exchange{
		Method: req.Method, Path: req.URL.Path, RequestHeader: req.Header, RequestBody: body,
		Status: w.Code, Header: w.Header(), Body: w.Body.Bytes(),
	})
	if err != nil {
		t.Errorf("the OpenAPI document does not describe this answer: %v", err)
	}
}

var patternRE = regexp.MustCompile(`^([A-Z]+) (/[^ ]*)$`)

// operationOf turns a net/http pattern ("GET /api/mv/{name}", "GET /{$}")
// into the document's "METHOD /path/{param}".
func operationOf(pattern string) (string, error) {
	m := patternRE.FindStringSubmatch(pattern)
	if m == nil {
		return "", fmt.Errorf("pattern %q has no method or a host: the document cannot say so", pattern)
	}
	path := m[2]
	if strings.HasSuffix(path, "/{$}") {
		path = strings.TrimSuffix(path, "{$}")
	} else if strings.HasSuffix(path, "/") {
		return "", fmt.Errorf("pattern %q matches a whole subtree, which OpenAPI cannot describe", pattern)
	}
	path = strings.ReplaceAll(path, "...}", "}")
	return m[1] + " " + path, nil
}

// TestOpenAPIRoutes holds the document to the routes the server registers:
// each registered route is documented and each documented one registered;
// the document routes a concrete path to the operation the mux picks; and
// every route's answer here (without servers: most are errors) is one the
// document describes, with and without a token configured.
func TestOpenAPIRoutes(t *testing.T) {
	d := loadDoc(t)
	mux, patterns := New(Config{Store: downStore{}}).routes()
	if len(patterns) == 0 {
		t.Fatal("no route registered")
	}
	registered := map[string]string{} // operation -> pattern
	for _, p := range patterns {
		op, err := operationOf(p)
		if err != nil {
			t.Fatal(err)
		}
		registered[op] = p
	}
	documented := d.Operations()
	for _, op := range documented {
		if _, ok := registered[op]; !ok {
			t.Errorf("%s is documented but the server does not register it", op)
		}
	}
	var ops []string
	for op := range registered {
		ops = append(ops, op)
		if !slices.Contains(documented, op) {
			t.Errorf("the server registers %s (%q) but the OpenAPI document does not describe it", op, registered[op])
		}
	}
	sort.Strings(ops)
	for _, token := range []string{"", "tok"} {
		h := testServer(token)
		for _, op := range ops {
			method, path, _ := strings.Cut(op, " ")
			path = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(path, "x")
			t.Run(fmt.Sprintf("%s token=%q", op, token), func(t *testing.T) {
				req := httptest.NewRequest(method, path, nil)
				if _, pattern := mux.Handler(req); pattern != registered[op] {
					t.Fatalf("the mux routes %s %s to %q", method, path, pattern)
				}
				if got := d.Route(method, path); got != op {
					t.Fatalf("the document routes %s %s to %q", method, path, got)
				}
				w := serve(t, h, method, path, "", "")
				t.Logf("%d %.200s", w.Code, w.Body)
			})
		}
	}
}

// GET /api/openapi.json serves the embedded document, behind the token.
func TestOpenAPIServed(t *testing.T) {
	h := testServer("tok")
	w := serve(t, h, "GET", "/api/openapi.json", "Bearer tok", "")
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), openapiDoc) {
		t.Fatalf("%d %.300s", w.Code, w.Body)
	}
	if w := serve(t, h, "GET", "/api/openapi.json", "", ""); w.Code != 401 {
		t.Fatalf("without the token: %d", w.Code)
	}
}

// The status page answers conditional and range requests (http.ServeContent);
// each of those answers is documented too.
func TestOpenAPIPageAnswers(t *testing.T) {
	h := testServer("tok")
	for _, tc := range []struct {
		header, value string
		status        int
	}{
		{"", "", 200},
		{"If-None-Match", pageETag, 304},
		{"If-Match", `"other"`, 412},
		{"Range", "bytes=0-9", 206},
		{"Range", "bytes=0-9,20-29", 206},
		{"Range", "bytes=99999999-", 416},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			req.Header.Set(tc.header, tc.value)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tc.status {
			t.Errorf("%s %q: %d, want %d", tc.header, tc.value, w.Code, tc.status)
		}
		checkDocumented(t, req, nil, w)
	}
}

// jsonFields lists the JSON fields a Go type encodes, embedded structs
// flattened (a field of the outer type wins, as encoding/json does), with
// whether each is left out when empty.
func jsonFields(t reflect.Type) map[string]bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	out := map[string]bool{}
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			embedded = append(embedded, f.Type)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
	}
	for _, e := range embedded {
		for k, v := range jsonFields(e) {
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
	}
	return out
}

// The document's schemas have exactly the fields of the Go types that write
// (or read) those bodies, so that a field added to a type and not to the
// document fails here, without servers. For the types the server writes, a
// field is required exactly when it is never left out.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
				Required   []string                   `json:"required"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		schema  string
		typ     any
		written bool // by the server, so that omitempty decides what is required
	}{
		{"Spec", specs.Spec{}, false},
		{"Column", specs.Column{}, false},
		{"Backfill", specs.Backfill{}, false},
		{"BackfillRequest", backfillRequest{}, false},
		{"Error", Error{}, true},
		{"MV", MV{}, true},
		{"Shard", state.ShardView{}, true},
		{"Condition", Condition{}, true},
		{"Plan", planner.JSONPlan{}, true},
		{"PlanSummary", planner.JSONSummary{}, true},
		{"ResourceChange", planner.ResourceChange{}, true},
		{"Step", planner.Step{}, true},
		{"VerifySummary", state.VerifySummary{}, true},
		{"VerifyReport", verify.Report{}, true},
		{"VerifyScope", verify.Scope{}, true},
		{"VerifyDifference", verify.Difference{}, true},
	} {
		sch, ok := doc.Components.Schemas[tc.schema]
		if !ok {
			t.Errorf("no schema %s", tc.schema)
			continue
		}
		fields := jsonFields(reflect.TypeOf(tc.typ))
		for name, omit := range fields {
			if _, ok := sch.Properties[name]; !ok {
				t.Errorf("%T has the JSON field %q, schema %s does not", tc.typ, name, tc.schema)
			}
			if tc.written && omit == slices.Contains(sch.Required, name) {
				t.Errorf("schema %s: %q required is %v, but %T leaves it out when empty: %v", tc.schema, name, !omit, tc.typ, omit)
			}
		}
		for name := range sch.Properties {
			if _, ok := fields[name]; !ok {
				t.Errorf("schema %s has the property %q, %T has no such JSON field", tc.schema, name, tc.typ)
			}
		}
	}
}
