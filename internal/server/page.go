package server

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// pageHTML is the status page served at /: one static file, its style and
// script inline, no build step. It holds no data: the script reads the
// JSON API with the token the user gives it, so the page itself is served
// without the token.
//
//go:embed page/index.html
var pageHTML []byte

// pageCSP allows exactly the page's own inline style and script (by their
// SHA-256) and requests to this origin, so that an MV name or an error
// message that slipped into the DOM as markup could run nothing.
var pageCSP = contentSecurityPolicy(pageHTML)

// pageETag lets a browser revalidate the page (it is served with no-cache)
// without downloading it again until the binary changes.
var pageETag = func() string {
	sum := sha256.Sum256(pageHTML)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
}()

var inlineBlock = regexp.MustCompile(`(?s)<(script|style)>(.*?)</(?:script|style)>`)

func contentSecurityPolicy(html []byte) string {
	hashes := map[string][]string{}
	for _, m := range inlineBlock.FindAllSubmatch(html, -1) {
		sum := sha256.Sum256(m[2])
		hashes[string(m[1])] = append(hashes[string(m[1])], "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	src := func(kind string) string {
		if len(hashes[kind]) == 0 {
			return "'none'"
		}
		return strings.Join(hashes[kind], " ")
	}
	return "default-src 'none'; script-src " + src("script") + "; style-src " + src("style") +
		"; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", pageETag)
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(pageHTML))
}
