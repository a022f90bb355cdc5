package specs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Seeds from every spec file in the repository, so the fuzzers start from
// realistic documents and mutate toward the edges.
func addFileSeeds(f *testing.F) {
	for _, pattern := range []string{"testdata/good/*", "testdata/bad/*", "../examples/*"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
}

// FuzzLoad feeds arbitrary bytes to both loaders and checks they never
// panic, that accepted specs stay valid, and that errors are well formed.
func FuzzLoad(f *testing.F) {
	addFileSeeds(f)
	f.Add([]byte(designJSON))
	f.Add([]byte(minimalYAML + "---\n" + minimalYAML))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("{\"name\": [[[[[[[[[[]]]]]]]]]]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := strings.Count(string(data), "\n") + 1
		checkErrs := func(err error, withLines bool) {
			if err == nil {
				return
			}
			es, ok := err.(Errors)
			if !ok || len(es) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
			}
			for _, e := range es {
				if e.Msg == "" {
					t.Fatalf("error without a message: %#v", e)
				}
				if e.Line < 0 || e.Line > lines || (!withLines && e.Line != 0) {
					t.Fatalf("error line %d outside the input (%d lines): %v", e.Line, lines, e)
				}
			}
		}
		specs, err := ParseYAML("fuzz.yaml", data)
		checkErrs(err, true)
		for _, s := range specs {
			if errs := s.Validate(); len(errs) > 0 {
				t.Fatalf("accepted spec fails Validate: %v", errs)
			}
			if h := Hash(s); h != Hash(s) {
				t.Fatal("Hash is not stable")
			}
			if _, err := s.OutputColumns(); err != nil {
				t.Fatalf("accepted spec has no output columns: %v", err)
			}
		}
		s, err := ParseJSON(data)
		checkErrs(err, false)
		if err == nil {
			if errs := s.Validate(); len(errs) > 0 {
				t.Fatalf("accepted JSON spec fails Validate: %v", errs)
			}
		}
	})
}

// FuzzSelectQuery checks the query, key-expression, type and engine
// checkers on arbitrary text: no panics, problem offsets inside the text,
// and accepted queries with named outputs.
func FuzzSelectQuery(f *testing.F) {
	for _, q := range []string{
		"SELECT category, count() as cnt, sum(price) as total_price FROM {source_table} GROUP BY category",
		"SELECT a FROM {source_table} WHERE x IN (SELECT y FROM url('http://x', CSV))",
		"SELECT a FROM (SELECT a FROM {source_table})",
		"SELECT {source_table}.a AS b FROM {source_table} AS s ARRAY JOIN arr AS c",
		"SELECT a FROM {source_table} UNION ALL SELECT b FROM t",
		"SELECT `a``b` FROM {source_table} -- x",
		"SELECT sum(x AS id) AS s FROM {source_table} FINAL SAMPLE 0.1 SETTINGS a=1 FORMAT JSON",
		"toYYYYMM(created_at)", "Decimal(18,2)", "SummingMergeTree((a, b))",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		inside := func(off int) bool { return off >= -1 && off <= len(q) }
		info, probs := checkSelect(q, "id")
		for _, p := range probs {
			if !inside(p.off) || p.msg == "" || p.hint == "" {
				t.Fatalf("bad problem %+v for %q", p, q)
			}
		}
		if len(probs) == 0 {
			if info == nil || len(info.outputs) == 0 {
				t.Fatalf("accepted %q without outputs", q)
			}
			for _, o := range info.outputs {
				if o.name == "" || !inside(o.off) {
					t.Fatalf("accepted %q with output %+v", q, o)
				}
			}
			if !strings.Contains(q, SourcePlaceholder) {
				t.Fatalf("accepted %q without the placeholder", q)
			}
		}
		for _, p := range checkKeyExpr(q, map[string]bool{"a": true, "created_at": true}, []string{"a", "created_at"}, "order_by") {
			if !inside(p.off) || p.msg == "" {
				t.Fatalf("bad key problem %+v for %q", p, q)
			}
		}
		if norm, err := ParseType(q); err == nil {
			if again, err := ParseType(norm); err != nil || again != norm {
				t.Fatalf("ParseType(%q) = %q, which reparses as %q, %v", q, norm, again, err)
			}
			if !strings.Contains(norm, "'") && (strings.ContainsAny(norm, ";`\"") || strings.Contains(norm, "--")) {
				t.Fatalf("ParseType(%q) = %q lets SQL through", q, norm)
			}
		} else if _, perr := parseTypeNode(q); !inside(asLexError(perr).off) {
			t.Fatalf("ParseType(%q) error offset outside the text", q)
		}
		if e, err := ParseEngine(q); err == nil {
			again, err := ParseEngine(e.String())
			if err != nil || again.String() != e.String() {
				t.Fatalf("ParseEngine(%q) = %s, which reparses as %s, %v", q, e, again, err)
			}
		}
	})
}
