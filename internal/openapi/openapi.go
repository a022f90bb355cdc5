// Package openapi holds an HTTP API to its OpenAPI 3.1 description. Load
// reads a document and checks what a reader of it relies on (every $ref
// resolves, every schema compiles as JSON Schema 2020-12, every operation
// has responses, path parameters are declared); Check then checks one
// request and its response against it: the route is documented, the status
// is documented for it, the response carries the documented content type
// and required headers, and the JSON bodies (the response's, and the
// request's when the server took it) validate against their schemas.
//
// The tests use it to keep a hand-written document true to the server: a
// document that only describes is soon wrong.
package openapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// UnroutedKey is the document's extension field that maps statuses to the
// responses of requests that no operation takes (no such path, a path
// without this method, a missing token checked before routing). OpenAPI
// has no place for those, and an API answers them all the same.
const UnroutedKey = "x-unrouted-responses"

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// Doc is a loaded document.
type Doc struct {
	root     map[string]any
	ops      []*operation
	unrouted map[string]any
	schemas  map[string]*jsonschema.Schema // compiled by Load, by JSON pointer
}

type operation struct {
	method string // upper case
	path   string // the template, "/api/mv/{name}"
	segs   []string
	node   map[string]any
	ptr    string
}

// Key is "METHOD /path/{param}".
func (o *operation) key() string { return o.method + " " + o.path }

// docURL names the document for the schema compiler; nothing is loaded
// from it.
const docURL = "openapi.json"

// Load parses and checks a document. Every problem found is reported.
func Load(b []byte) (*Doc, error) {
	var root map[string]any
	if err := json.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("openapi: not a JSON object: %w", err)
	}
	d := &Doc{root: root, schemas: map[string]*jsonschema.Schema{}}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if v, _ := root["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		fail("openapi is %q, want 3.1.x", root["openapi"])
	}
	info, _ := root["info"].(map[string]any)
	if s, _ := info["title"].(string); s == "" {
		fail("info.title is missing")
	}
	if s, _ := info["version"].(string); s == "" {
		fail("info.version is missing")
	}

	// Every local $ref resolves.
	walk(root, "", func(ptr string, obj map[string]any) {
		ref, ok := obj["$ref"].(string)
		if !ok {
			return
		}
		if !strings.HasPrefix(ref, "#/") {
			fail("%s: $ref %q is not local", ptr, ref)
			return
		}
		if _, err := lookup(root, ref[1:]); err != nil {
			fail("%s: $ref %q: %v", ptr, ref, err)
		}
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	schemes := map[string]bool{}
	comps, _ := root["components"].(map[string]any)
	if ss, ok := comps["securitySchemes"].(map[string]any); ok {
		for name := range ss {
			schemes[name] = true
		}
	}
	checkSecurity := func(ptr string, v any) {
		reqs, ok := v.([]any)
		if v != nil && !ok {
			fail("%s: security is not a list", ptr)
		}
		for _, r := range reqs {
			m, _ := r.(map[string]any)
			for name := range m {
				if !schemes[name] {
					fail("%s: security scheme %q is not declared", ptr, name)
				}
			}
		}
	}
	checkSecurity("/security", root["security"])

	paths, ok := root["paths"].(map[string]any)
	if !ok || len(paths) == 0 {
		fail("paths is missing")
	}
	opIDs := map[string]string{}
	for _, p := range sortedKeys(paths) {
		item, _ := paths[p].(map[string]any)
		iptr := "/paths/" + escape(p)
		if !strings.HasPrefix(p, "/") || item == nil {
			fail("%s: a path starts with / and holds a path item", iptr)
			continue
		}
		segs := strings.Split(p, "/")
		for k := range item {
			if !slices.Contains(methods, k) && !slices.Contains([]string{"parameters", "summary", "description", "servers"}, k) && !strings.HasPrefix(k, "x-") {
				fail("%s: unknown field %q", iptr, k)
			}
		}
		for _, m := range methods {
			node, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			o := &operation{method: strings.ToUpper(m), path: p, segs: segs, node: node, ptr: iptr + "/" + m}
			d.ops = append(d.ops, o)
			if id, _ := node["operationId"].(string); id != "" {
				if prev, dup := opIDs[id]; dup {
					fail("%s: operationId %q is also %s's", o.key(), id, prev)
				}
				opIDs[id] = o.key()
			}
			if v, ok := node["security"]; ok {
				checkSecurity(o.ptr+"/security", v)
			}
			// Path parameters: each {param} of the template is declared,
			// required, and nothing else is declared in the path.
			declared := map[string]bool{}
			for _, src := range []string{iptr, o.ptr} {
				v, _ := lookup(root, src+"/parameters")
				list, _ := v.([]any)
				for i := range list {
					pm, _ := d.resolve(src + "/parameters/" + strconv.Itoa(i))
					if pm["in"] == "path" {
						name, _ := pm["name"].(string)
						declared[name] = true
						if pm["required"] != true {
							fail("%s: path parameter %q is not required", o.key(), name)
						}
					}
				}
			}
			for _, s := range segs {
				if name, ok := param(s); ok {
					if !declared[name] {
						fail("%s: path parameter %q is not declared", o.key(), name)
					}
					delete(declared, name)
				}
			}
			for name := range declared {
				fail("%s: parameter %q is not in the path", o.key(), name)
			}
			resps, _ := node["responses"].(map[string]any)
			if len(resps) == 0 {
				fail("%s: no responses", o.key())
			}
			for status := range resps {
				if !validStatus(status) {
					fail("%s: response key %q is not a status", o.key(), status)
				}
				r, _ := d.resolve(o.ptr + "/responses/" + escape(status))
				if desc, _ := r["description"].(string); desc == "" {
					fail("%s: response %s has no description", o.key(), status)
				}
			}
		}
	}
	if u, ok := root[UnroutedKey]; ok {
		d.unrouted, _ = u.(map[string]any)
		for status := range d.unrouted {
			if !validStatus(status) {
				fail("%s: key %q is not a status", UnroutedKey, status)
			}
		}
	}

	// Every schema compiles, as JSON Schema 2020-12 (the dialect of
	// OpenAPI 3.1), with formats asserted.
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	compile := func(ptr string) {
		s, err := c.Compile(docURL + "#" + ptr)
		if err != nil {
			fail("schema %s: %w", ptr, err)
			return
		}
		d.schemas[ptr] = s
	}
	walk(root, "", func(ptr string, obj map[string]any) {
		if strings.HasPrefix(ptr, "/components/schemas/") && strings.Count(ptr, "/") == 3 {
			compile(ptr)
		}
		if _, ok := obj["schema"]; ok && !strings.Contains(ptr, "/schemas/") {
			compile(ptr + "/schema")
		}
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// Operations lists the documented operations as "METHOD /path/{param}".
func (d *Doc) Operations() []string {
	var out []string
	for _, o := range d.ops {
		out = append(out, o.key())
	}
	sort.Strings(out)
	return out
}

// Exchange is one request and its response.
type Exchange struct {
	Method, Path  string // Path without the query
	RequestHeader http.Header
	RequestBody   []byte
	Status        int
	Header        http.Header
	Body          []byte
}

func (x Exchange) String() string { return fmt.Sprintf("%s %s -> %d", x.Method, x.Path, x.Status) }

// Check checks a response against the document, and the request's body too
// when the server took it (a 2xx answer): a body the server accepts must be
// one the document allows.
func (d *Doc) Check(x Exchange) error {
	method := x.Method
	head := method == http.MethodHead
	if head {
		method = http.MethodGet
	}
	o := d.route(method, x.Path)
	var resps map[string]any
	base, where := "/"+UnroutedKey, "unrouted "+method+" "+x.Path
	if o != nil {
		resps, _ = o.node["responses"].(map[string]any)
		base, where = o.ptr+"/responses", o.key()
	}
	status := strconv.Itoa(x.Status)
	key := ""
	for _, k := range []string{status, status[:1] + "XX", "default"} {
		if _, ok := resps[k]; ok {
			key = k
			break
		}
	}
	if key == "" && o == nil {
		if _, ok := d.unrouted[status]; ok {
			base, key = "/"+UnroutedKey, status
		}
	}
	if key == "" {
		return fmt.Errorf("%s: status %d is not documented for %s", x, x.Status, where)
	}
	resp, rptr := d.resolve(base + "/" + escape(key))
	var errs []error
	if hs, ok := resp["headers"].(map[string]any); ok {
		for _, name := range sortedKeys(hs) {
			if h, _ := d.resolve(rptr + "/headers/" + escape(name)); h["required"] == true && x.Header.Get(name) == "" {
				errs = append(errs, fmt.Errorf("%s: no %s header", x, name))
			}
		}
	}
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(bytes.TrimSpace(x.Body)) > 0 && !head {
			errs = append(errs, fmt.Errorf("%s: a body where the document has none: %.200s", x, x.Body))
		}
	} else if err := d.checkBody(rptr+"/content", content, x.Header.Get("Content-Type"), x.Body, head); err != nil {
		errs = append(errs, fmt.Errorf("%s: response: %w", x, err))
	}
	if o != nil && x.Status/100 == 2 && len(bytes.TrimSpace(x.RequestBody)) > 0 {
		rb, bptr := d.resolve(o.ptr + "/requestBody")
		rc, _ := rb["content"].(map[string]any)
		if len(rc) == 0 {
			errs = append(errs, fmt.Errorf("%s: the server took a request body that the document does not describe", x))
		} else if err := d.checkBody(bptr+"/content", rc, requestType(x.RequestHeader, rc), x.RequestBody, false); err != nil {
			errs = append(errs, fmt.Errorf("%s: the server took a request body that the document refuses: %w", x, err))
		}
	}
	return errors.Join(errs...)
}

// requestType is the request's Content-Type, or the only documented one
// when the client sent none.
func requestType(h http.Header, content map[string]any) string {
	if ct := h.Get("Content-Type"); ct != "" {
		return ct
	}
	if len(content) == 1 {
		for k := range content {
			return k
		}
	}
	return ""
}

// checkBody checks a body against the media type of content (at ptr)
// that its Content-Type names.
func (d *Doc) checkBody(ptr string, content map[string]any, contentType string, body []byte, head bool) error {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", contentType, err)
	}
	var key string
	for k := range content {
		if m, _, err := mime.ParseMediaType(k); err == nil && m == mt {
			key = k
		}
	}
	if key == "" {
		return fmt.Errorf("Content-Type %s is not documented (%s)", mt, strings.Join(sortedKeys(content), ", "))
	}
	media, _ := content[key].(map[string]any)
	if _, ok := media["schema"]; !ok || head {
		return nil
	}
	sptr := ptr + "/" + escape(key) + "/schema"
	sch := d.schemas[sptr]
	if sch == nil { // Load compiles every schema of the document
		return fmt.Errorf("no compiled schema at %s", sptr)
	}
	var inst any
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		inst, err = jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("not JSON: %w: %.200s", err, body)
		}
	} else {
		inst = string(body)
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%w\nbody: %.2000s", err, body)
	}
	return nil
}

// route finds the operation of a concrete path: literal segments match
// themselves, a {param} segment any non-empty segment, and the template
// with the most literal segments wins, as OpenAPI asks.
func (d *Doc) route(method, path string) *operation {
	segs := strings.Split(path, "/")
	var best *operation
	bestLit := -1
	for _, o := range d.ops {
		if o.method != method || len(o.segs) != len(segs) {
			continue
		}
		lit, ok := 0, true
		for i, s := range o.segs {
			if _, isParam := param(s); isParam {
				ok = ok && segs[i] != ""
			} else if s == segs[i] {
				lit++
			} else {
				ok = false
			}
		}
		if ok && lit > bestLit {
			best, bestLit = o, lit
		}
	}
	return best
}

// Route returns the documented operation ("METHOD /path/{param}") of a
// concrete request, or "".
func (d *Doc) Route(method, path string) string {
	if o := d.route(method, path); o != nil {
		return o.key()
	}
	return ""
}

// resolve returns the object at a JSON pointer, following $refs, and the
// pointer of the object it ends at.
func (d *Doc) resolve(ptr string) (map[string]any, string) {
	for range 16 {
		v, _ := lookup(d.root, ptr)
		m, _ := v.(map[string]any)
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, ptr
		}
		ptr = strings.TrimPrefix(ref, "#")
	}
	return nil, ptr
}

// walk calls fn on every object of v, with its JSON pointer.
func walk(v any, ptr string, fn func(ptr string, obj map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(ptr, v)
		for _, k := range sortedKeys(v) {
			walk(v[k], ptr+"/"+escape(k), fn)
		}
	case []any:
		for i, e := range v {
			walk(e, ptr+"/"+strconv.Itoa(i), fn)
		}
	}
}

func lookup(root any, ptr string) (any, error) {
	v := root
	if ptr == "" {
		return v, nil
	}
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := v.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("no %q", tok)
			}
			v = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("no index %q", tok)
			}
			v = c[i]
		default:
			return nil, fmt.Errorf("%q: not a container", tok)
		}
	}
	return v, nil
}

func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

func param(seg string) (string, bool) {
	if len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' {
		return seg[1 : len(seg)-1], true
	}
	return "", false
}

func validStatus(s string) bool {
	if s == "default" {
		return true
	}
	if len(s) == 3 && s[0] >= '1' && s[0] <= '5' && s[1:] == "XX" {
		return true
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 100 && n <= 599
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
