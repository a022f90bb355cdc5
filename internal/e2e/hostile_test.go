//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shirath/shirath/internal/testenv"
	"github.com/shirath/shirath/specs"
)

// hostileMarker is in every hostile spec: a query or a table of the server
// that holds it came from one of them.
const hostileMarker = "zq9hostile"

type hostileSpec struct {
	name string // what it tries
	doc  []byte // YAML
}

// hostileBase is a valid spec, as a document to mutate.
func hostileBase(db string) map[string]any {
	return map[string]any{
		"name": "by_category", "database": db, "source_table": "products",
		"engine": "SummingMergeTree()", "order_by": []any{"category"}, "partition_by": "category",
		"columns": []any{
			map[string]any{"name": "category", "type": "String"},
			map[string]any{"name": "cnt", "type": "UInt64"},
		},
		"select_query": "SELECT category, count() AS cnt FROM {source_table} GROUP BY category",
		"backfill":     map[string]any{"key_column": "id"},
	}
}

// hostileSpecs generates malformed and malicious specs: injections in every
// field, table functions and system tables in the query, several
// statements, comment tricks, oversized documents and YAML alias bombs,
// plus every file of specs/testdata/bad.
func hostileSpecs(t *testing.T, db string) []hostileSpec {
	t.Helper()
	m := hostileMarker
	idents := []string{
		"x_" + m + "; DROP TABLE t", "x_" + m + "` ; DROP TABLE t; --", "x_" + m + "' OR '1'='1", "x_" + m + "/*c*/",
		"x_" + m + " -- c", "system.users_" + m, "x_" + m + "\nDROP TABLE t", "{source_table}_" + m,
		strings.Repeat("a", 80) + m, "x_" + m + "\x00y", "x_" + m + "$(touch /tmp/p)", "1_" + m, "x-" + m, "`" + m + "`",
	}
	types := []string{
		"String); DROP TABLE " + m + "; --", "Nullable(String)) ENGINE = Log; DROP TABLE " + m, "String COMMENT '" + m + "'",
		"String DEFAULT (SELECT name FROM system.users) " + m, "Array(String" + m, "String -- " + m, "UInt64' " + m,
		"AggregateFunction(sum, (SELECT " + m + "))", "Decimal(18, 2); SELECT " + m, "Enum8('" + m + "' = 1) ); DROP TABLE x",
	}
	engines := []string{
		"SummingMergeTree(); DROP TABLE " + m, "MergeTree() SETTINGS " + m + " = 1", "Distributed(c, system, users, " + m + ")",
		"Merge(system, '" + m + "')", "File(TSV, '/etc/" + m + "')", "URL('http://127.0.0.1/" + m + "', CSV)",
		"MySQL('h:3306', 'db', '" + m + "', 'u', 'p')", "SummingMergeTree() -- " + m, "SummingMergeTree((SELECT " + m + "))",
		"Dictionary(" + m + ")", "SummingMergeTree() ORDER BY " + m,
	}
	keys := []string{
		"category); DROP TABLE " + m + "; --", "(SELECT " + m + ")", m, "category -- " + m, "category, (SELECT count() FROM system.users) AS " + m,
		"toString(category) || '" + m + "'; DROP TABLE x", "arrayJoin([1]) AS " + m,
	}
	queries := []string{
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category; DROP TABLE " + m,
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category -- " + m + "\n; DROP TABLE x",
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category UNION ALL SELECT name AS category, 1 AS cnt FROM system.users WHERE name = '" + m + "'",
		"SELECT category, count() AS cnt FROM remote('127.0.0.1', system, users) AS " + m + " GROUP BY category",
		"SELECT category, count() AS cnt FROM file('/etc/passwd', CSV, 'category String') AS " + m + " GROUP BY category",
		"SELECT category, count() AS cnt FROM url('http://127.0.0.1/" + m + "', CSV, 'category String') GROUP BY category",
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category INTO OUTFILE '/tmp/" + m + "'",
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category SETTINGS " + m + " = 1",
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category FORMAT " + m,
		"SELECT category, count() AS cnt FROM (SELECT name AS category FROM system.users) AS " + m + " GROUP BY category",
		"SELECT category, count() AS cnt FROM {source_table} JOIN system.users AS " + m + " USING (category) GROUP BY category",
		"WITH (SELECT count() FROM system.users) AS " + m + " SELECT category, count() AS cnt FROM {source_table} GROUP BY category",
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category /* " + m + " */; SELECT 1",
		"SELECT category, count() AS cnt FROM system.tables AS " + m + " GROUP BY category",
		"SELECT category, (SELECT count() FROM system.users) AS cnt FROM {source_table} AS " + m + " GROUP BY category",
		"INSERT INTO x SELECT category, count() AS cnt FROM {source_table} AS " + m,
		"DROP TABLE " + m,
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category LIMIT 1 -- " + m,
		"SELECT category, count() AS cnt FROM {source_table} FINAL GROUP BY category -- " + m,
		"SELECT category, count() AS cnt FROM {source_table} PREWHERE 1 GROUP BY category -- " + m,
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category HAVING 1 -- " + m,
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category ORDER BY category -- " + m,
		"SELECT category, count() AS cnt FROM {source_table} SAMPLE 0.1 GROUP BY category -- " + m,
		"SELECT category, count() AS cnt FROM db2.{source_table} GROUP BY category -- " + m,
		"SELECT category, count() AS cnt FROM `{source_table}` GROUP BY category -- " + m,
		"SELECT category, count() AS cnt FROM products GROUP BY category -- " + m,
		"SELECT category, count() AS " + m + " FROM {source_table} GROUP BY category",
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category\x00" + m,
		"SELECT category, count() AS cnt FROM {source_table} GROUP BY category; " + m,
	}
	intervals := []string{"1 HOUR; DROP TABLE " + m, "1 HOUR DEPENDS ON system." + m, m, "-1 hour " + m, "1 HOUR APPEND TO " + m}

	var out []hostileSpec
	add := func(what string, mutate func(doc map[string]any)) {
		doc := hostileBase("db_" + m)
		mutate(doc)
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hostileSpec{what, b})
	}
	for _, field := range []string{"name", "database", "source_table", "target_table", "distributed_table", "cluster"} {
		for _, v := range idents {
			add(field+" = "+v, func(d map[string]any) { d[field] = v })
		}
	}
	for _, v := range idents {
		add("backfill.key_column = "+v, func(d map[string]any) { d["backfill"] = map[string]any{"key_column": v} })
		add("columns[0].name = "+v, func(d map[string]any) {
			d["columns"] = []any{map[string]any{"name": v, "type": "String"}, map[string]any{"name": "cnt", "type": "UInt64"}}
		})
	}
	for _, v := range types {
		add("columns[1].type = "+v, func(d map[string]any) {
			d["columns"] = []any{map[string]any{"name": "category", "type": "String"}, map[string]any{"name": "cnt", "type": v}}
		})
	}
	for _, v := range engines {
		add("engine = "+v, func(d map[string]any) { d["engine"] = v })
	}
	for _, v := range keys {
		add("order_by = "+v, func(d map[string]any) { d["order_by"] = []any{v} })
		add("partition_by = "+v, func(d map[string]any) { d["partition_by"] = v })
	}
	for _, v := range queries {
		add("select_query = "+v, func(d map[string]any) { d["select_query"] = v })
	}
	for _, v := range intervals {
		add("refresh.every = "+v, func(d map[string]any) { d["refresh"] = map[string]any{"every": v} })
		add("refresh.offset = "+v, func(d map[string]any) { d["refresh"] = map[string]any{"every": "1 hour", "offset": v} })
	}
	add("refresh.depends_on injection", func(d map[string]any) {
		d["refresh"] = map[string]any{"every": "1 hour", "depends_on": []any{"x; DROP TABLE " + m}}
	})
	add("change_strategy", func(d map[string]any) { d["change_strategy"] = m })
	for _, v := range []any{-1, m, 1e30, true} {
		add(fmt.Sprintf("backfill.initial_batch_rows = %v", v), func(d map[string]any) {
			d["backfill"] = map[string]any{"initial_batch_rows": v, "key_column": "id"}
		})
	}
	add("unknown field", func(d map[string]any) { d[m] = "x" })
	add("columns not a list", func(d map[string]any) { d["columns"] = m })

	// Documents no encoder would write.
	out = append(out,
		hostileSpec{"oversized document", []byte("name: by_category\nselect_query: \"" + strings.Repeat("x", 4<<20) + m + "\"\n")},
		hostileSpec{"YAML alias bomb", []byte(aliasBomb(m))},
		hostileSpec{"tab-indented YAML", []byte("name: " + m + "\n\tsource_table: x\n")},
		hostileSpec{"not UTF-8", append([]byte("name: \xff\xfe"+m+"\n"), 0xc3, 0x28)},
		hostileSpec{"several documents, one bad", append(mustYAML(t, hostileBase("db_"+m)), []byte("---\nname: "+m+"; DROP TABLE x\n")...)},
		hostileSpec{"a list instead of a mapping", []byte("- " + m + "\n")},
		hostileSpec{"YAML tags", []byte("name: !!binary " + m + "\n")},
		hostileSpec{"merge key injection", []byte("base: &b {engine: \"Log; DROP TABLE " + m + "\"}\n<<: *b\nname: x\n")},
	)
	files, err := filepath.Glob("../../specs/testdata/bad/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("specs/testdata/bad: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hostileSpec{"testdata/bad/" + filepath.Base(f), b})
	}
	return out
}

func mustYAML(t *testing.T, v any) []byte {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// aliasBomb is the "billion laughs" of YAML: nine levels of nine aliases.
func aliasBomb(m string) string {
	var b strings.Builder
	b.WriteString("a0: &a0 [\"" + m + "\"]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for k := 0; k < 9; k++ {
			if k > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("name: *a9\n")
	return b.String()
}

// TestHostileSpecs: at least 200 malformed or malicious specs, each refused
// by the loader with the same error every time, by `shirath validate` and
// `shirath apply` (exit 1, nothing applied), and by POST /api/mv (400); and
// none of them reached ClickHouse: no query holding the marker in the
// server's query log, no table or database named after it.
func TestHostileSpecs(t *testing.T) {
	t.Parallel()
	var f *fixture
	for _, s := range testenv.Load(t).Singles(t) {
		if !s.ChDB {
			f = newFixture(t, s) // the 18.16 node: it has a query log
			break
		}
	}
	if f == nil {
		t.Fatal("no single node with a query log")
	}
	hs := hostileSpecs(t, f.db)
	if len(hs) < 200 {
		t.Fatalf("%d hostile specs, want at least 200", len(hs))
	}
	start := f.scalar("SELECT toUnixTimestamp(now())")
	d := startDaemon(t, f)
	refusedBy := map[string]int{}
	for i, h := range hs {
		// The loader: refused, with a stable error.
		_, err1 := specs.ParseYAML("hostile.yaml", h.doc)
		_, err2 := specs.ParseYAML("hostile.yaml", h.doc)
		if err1 == nil {
			t.Errorf("%s: accepted by the loader:\n%s", h.name, clipDoc(h.doc))
			continue
		}
		if err1.Error() != err2.Error() {
			t.Errorf("%s: the error is not stable:\n%v\n%v", h.name, err1, err2)
		}
		refusedBy["loader"]++
		dir := filepath.Join(f.dir, fmt.Sprintf("h%03d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hostile.yaml"), h.doc, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"validate", dir}, {"apply", "--auto-approve", dir}} {
			r := f.run(args...)
			if r.code != 1 || !strings.Contains(r.stderr, "hostile.yaml") {
				t.Errorf("%s: shirath %s: exit %d, want 1 naming the file\n%s%s", h.name, args[0], r.code, r.stdout, r.stderr)
				continue
			}
			refusedBy[args[0]]++
		}
		// The API takes the same document as JSON. One that does not
		// convert, or whose JSON form is valid (what was wrong was YAML's:
		// a second document, a merge key), is sent as it is.
		body := h.doc
		var v any
		if yaml.Unmarshal(h.doc, &v) == nil {
			if b, err := json.Marshal(v); err == nil {
				if _, err := specs.ParseJSON(b); err != nil {
					body = b
				}
			}
		}
		if code := d.post(t, body); code != 400 && code != 413 {
			t.Errorf("%s: POST /api/mv answered %d, want 400 (or 413 for an oversized body)", h.name, code)
			continue
		}
		refusedBy["api"]++
	}
	t.Logf("%d hostile specs; refused by: %v", len(hs), refusedBy)

	// Nothing reached ClickHouse.
	f.exec("SYSTEM FLUSH LOGS")
	if n := f.scalar(fmt.Sprintf("SELECT count() FROM system.query_log WHERE event_time >= toDateTime(%s) AND query LIKE '%%%s%%' AND query NOT LIKE '%%system.query_log%%'", start, hostileMarker)); n != "0" {
		t.Errorf("%s queries holding the marker reached the server", n)
	}
	if n := f.scalar(fmt.Sprintf("SELECT count() FROM system.tables WHERE name LIKE '%%%s%%' OR database LIKE '%%%s%%'", hostileMarker, hostileMarker)); n != "0" {
		t.Errorf("%s tables named after the marker exist", n)
	}
}

// hostileDaemon is a `shirath serve` for the test's servers.
type hostileDaemon struct{ url string }

func startDaemon(t *testing.T, f *fixture) *hostileDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := f.command(ctx, "serve", "--listen", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	return &hostileDaemon{url: serveURL(t, out)}
}

// serveURL reads the API's URL from the stdout of `shirath serve`, waiting
// up to a minute for it; the rest of the output is read and dropped.
func serveURL(t testing.TB, out io.Reader) string {
	t.Helper()
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "shirath: serving the API on "); ok {
				urlc <- u
			}
		}
	}()
	select {
	case u := <-urlc:
		return u
	case <-time.After(time.Minute):
		t.Fatal("shirath serve did not start within a minute")
	}
	return ""
}

func (d *hostileDaemon) post(t *testing.T, body []byte) int {
	t.Helper()
	resp, err := http.Post(d.url+"/api/mv", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /api/mv: %v", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func clipDoc(b []byte) string {
	if len(b) > 400 {
		return string(b[:400]) + "..."
	}
	return string(b)
}
