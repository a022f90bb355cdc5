package server

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func getPage(t *testing.T, h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// The page is served without the token (it holds no data), only at /, and
// with a Content-Security-Policy that admits exactly its own inline style
// and script.
func TestPageShell(t *testing.T) {
	h := New(Config{Store: downStore{}, Token: "tok"}).Handler()
	w := getPage(t, h, "GET", "/")
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if w.Body.String() != string(pageHTML) {
		t.Fatal("GET / does not serve the embedded page")
	}
	csp := w.Header().Get("Content-Security-Policy")
	for _, kind := range []string{"script", "style"} {
		blocks := regexp.MustCompile(`(?s)<`+kind+`>(.*?)</`+kind+`>`).FindAllStringSubmatch(w.Body.String(), -1)
		if len(blocks) != 1 {
			t.Fatalf("the page has %d <%s> blocks, want 1", len(blocks), kind)
		}
		sum := sha256.Sum256([]byte(blocks[0][1]))
		want := kind + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "';"
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	// What the policy would block, or what would turn data into markup.
	for _, bad := range []string{"<script src", "<link", " style=\"", " onclick=", " onload=", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(string(pageHTML), bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	if etag := w.Header().Get("ETag"); etag == "" {
		t.Error("no ETag")
	} else if w := getPage(t, h, "GET", "/", "If-None-Match", etag); w.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", w.Code)
	}
	if w := getPage(t, h, "HEAD", "/"); w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("HEAD /: %d with %d bytes", w.Code, w.Body.Len())
	}
	// Only / itself: other paths stay JSON errors, and the data stays
	// behind the token.
	for path, status := range map[string]int{"/index.html": 404, "/x": 404, "/api/mv": 401} {
		if w := getPage(t, h, "GET", path); w.Code != status || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %q, want %d and a JSON error", path, w.Code, w.Header().Get("Content-Type"), status)
		}
	}
	if w := getPage(t, h, "POST", "/"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", w.Code)
	}
}
