package specs

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const minimalYAML = `name: products_by_category
source_table: products
engine: SummingMergeTree()
order_by: [category]
columns:
  - name: category
    type: String
  - name: cnt
    type: UInt64
select_query: SELECT category, count() AS cnt FROM {source_table} GROUP BY category
`

// errorsOf returns err as Errors, failing the test otherwise.
func errorsOf(t *testing.T, err error) Errors {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	return es
}

func TestApplyDefaults(t *testing.T) {
	specs, err := ParseYAML("x.yaml", []byte(minimalYAML))
	if err != nil {
		t.Fatal(err)
	}
	s := specs[0]
	b := s.Backfill
	if s.Database != "default" || s.TargetTable != "products_by_category_data" || s.DistributedTable != "products_by_category_dist" ||
		b.KeyColumn != "id" || b.Optimize == nil || !*b.Optimize || b.SettleDelay.Duration != time.Second ||
		b.BatchDuration.Duration != 2*time.Second || b.InitialBatchRows != 1_000_000 || b.MaxBatchRows != 0 || b.Disabled {
		t.Errorf("defaults not applied: %+v", s)
	}
	if !s.OptimizeAfterBackfill() {
		t.Error("OptimizeAfterBackfill() = false by default")
	}
	before := Hash(s)
	s.ApplyDefaults()
	if Hash(s) != before {
		t.Error("ApplyDefaults is not idempotent")
	}
}

func TestExplicitValuesKeepTheirValue(t *testing.T) {
	src := minimalYAML + `target_table: t
distributed_table: d
database: shop
backfill:
  key_column: seq
  optimize: false
  settle_delay: 0s
  batch_duration: 250ms
  initial_batch_rows: 10
  max_batch_rows: 1_000
`
	specs, err := ParseYAML("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s := specs[0]
	b := s.Backfill
	if s.Database != "shop" || s.TargetTable != "t" || s.DistributedTable != "d" || b.KeyColumn != "seq" ||
		*b.Optimize || b.SettleDelay.Duration != 0 || b.BatchDuration.Duration != 250*time.Millisecond ||
		b.InitialBatchRows != 10 || b.MaxBatchRows != 1000 {
		t.Errorf("explicit values changed: %+v", b)
	}
	if s.OptimizeAfterBackfill() {
		t.Error("OptimizeAfterBackfill() with optimize: false")
	}
	// A spec built in code has no field index: zero means unset.
	code := &Spec{Name: "x"}
	code.ApplyDefaults()
	if code.Backfill.SettleDelay.Duration != time.Second || code.TargetTable != "x_data" {
		t.Errorf("defaults of a spec built in code: %+v", code)
	}
	if (&Spec{Backfill: Backfill{Disabled: true}}).OptimizeAfterBackfill() {
		t.Error("OptimizeAfterBackfill() without a backfill")
	}
}

// designJSON is the original design's example as a REST API body.
const designJSON = `{
  "name": "products_by_category",
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

func TestParseJSON(t *testing.T) {
	s, err := ParseJSON([]byte(designJSON))
	if err != nil {
		t.Fatalf("ParseJSON(design example): %v", err)
	}
	if s.Name != "products_by_category" || len(s.Columns) != 3 || s.Backfill.BatchDuration.Duration != 2*time.Second {
		t.Errorf("ParseJSON = %+v", s)
	}
	// The YAML example and the JSON body are the same spec.
	ys, err := LoadPath("../examples/products_by_category.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if Hash(ys[0]) != Hash(s) {
		t.Error("YAML and JSON forms of the design example hash differently")
	}

	withOptions := strings.Replace(designJSON, `"name"`, `"backfill": {"batch_duration": "500ms", "initial_batch_rows": 5000, "optimize": false, "settle_delay": "0s"}, "name"`, 1)
	s, err = ParseJSON([]byte(withOptions))
	if err != nil {
		t.Fatal(err)
	}
	if s.Backfill.BatchDuration.Duration != 500*time.Millisecond || s.Backfill.InitialBatchRows != 5000 ||
		s.OptimizeAfterBackfill() || s.Backfill.SettleDelay.Duration != 0 {
		t.Errorf("backfill options = %+v", s.Backfill)
	}
	// JSON escapes that YAML does not know still decode.
	escaped := strings.Replace(designJSON, `"products"`, `"pro\u0064ucts"`, 1)
	escaped = strings.Replace(escaped, `count() as cnt`, `count() as cnt, '\/\ud83d\ude00' as smile`, 1)
	escaped = strings.Replace(escaped, `{"name": "cnt", "type": "UInt64"}`, `{"name": "cnt", "type": "UInt64"}, {"name": "smile", "type": "String"}`, 1)
	if s, err := ParseJSON([]byte(escaped)); err != nil || s.SourceTable != "products" || !strings.Contains(s.SelectQuery, "'/😀'") {
		t.Errorf("ParseJSON with escapes = %+v, %v", s, err)
	}
}

func TestParseJSONRefuses(t *testing.T) {
	tests := []struct {
		name, body string
		field, msg string
		hint       string
	}{
		{"unknown field", strings.Replace(designJSON, `"source_table"`, `"sourceTable"`, 1), "sourceTable", "unknown field", "did you mean source_table?"},
		{"nested unknown", strings.Replace(designJSON, `"name": "cnt"`, `"nme": "cnt"`, 1), "columns[1].nme", "unknown field", "did you mean name?"},
		{"wrong type", strings.Replace(designJSON, `["category"]`, `"category"`, 1), "order_by", "must be a list", ""},
		{"number for string", strings.Replace(designJSON, `"UInt64"`, `64`, 1), "columns[1].type", "must be a string, got a number (64)", ""},
		{"float for int", strings.Replace(designJSON, `"name"`, `"backfill": {"initial_batch_rows": 1e6}, "name"`, 1), "backfill.initial_batch_rows", "must be a whole number", ""},
		{"duration number", strings.Replace(designJSON, `"name"`, `"backfill": {"batch_duration": 2}, "name"`, 1), "backfill.batch_duration", "must be a duration", `"2s"`},
		{"duplicate field", strings.Replace(designJSON, `"name"`, `"engine": "MergeTree()", "name"`, 1), "engine", "field is set twice", ""},
		{"validation", strings.Replace(designJSON, `Decimal(18,2)`, `String); DROP TABLE x`, 1), "columns[2].type", `"String); DROP TABLE x" is not a ClickHouse type`, ""},
		{"query", strings.Replace(designJSON, `FROM {source_table}`, `FROM url('http://x', CSV)`, 1), "select_query", "table function url is not allowed", ""},
		{"not an object", `[1, 2]`, "", "must be a spec", ""},
		{"syntax", `{"name": "x",}`, "", "body is not valid JSON", ""},
		{"trailing data", designJSON + ` {}`, "", "unexpected data after the JSON object", ""},
		{"empty", ``, "", "body is not valid JSON", ""},
		{"null", `null`, "name", "missing required field", ""},
	}
	for _, tt := range tests {
		_, err := ParseJSON([]byte(tt.body))
		if err == nil {
			t.Errorf("%s: accepted", tt.name)
			continue
		}
		es := errorsOf(t, err)
		found := false
		for _, e := range es {
			if e.Field == tt.field && strings.Contains(e.Msg, tt.msg) && strings.Contains(e.Hint, tt.hint) {
				found = true
			}
			if e.File != "" || e.Line != 0 {
				t.Errorf("%s: JSON error with a file position: %v", tt.name, e)
			}
		}
		if !found {
			t.Errorf("%s: want %s: %q (hint %q), got:\n%v", tt.name, tt.field, tt.msg, tt.hint, err)
		}
	}
	// All problems come at once.
	multi := strings.NewReplacer(`"sourceTable"`, `"x"`, `"products"`, `"bad name"`, `"UInt64"`, `"Uint64"`).Replace(designJSON)
	if es := errorsOf(t, func() error { _, err := ParseJSON([]byte(multi)); return err }()); len(es) != 2 {
		t.Errorf("want 2 errors (source_table, type), got:\n%v", es)
	}
}

func TestLoadPathDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	second := strings.Replace(minimalYAML, "products_by_category", "b_view", 1)
	write("b.yml", second)
	write("a.yaml", minimalYAML+"---\n"+strings.Replace(minimalYAML, "products_by_category", "a_second", 1))
	write("notes.txt", "not a spec")
	write(".hidden.yaml", "garbage: [")
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	specs, err := LoadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	if want := []string{"products_by_category", "a_second", "b_view"}; !slices.Equal(names, want) {
		t.Errorf("names = %v, want %v (file order, then document order)", names, want)
	}
	if o := specs[1].Origin; o.File != filepath.Join(dir, "a.yaml") || o.Line != 12 {
		t.Errorf("origin of the second document = %+v", o)
	}

	// The same name in two files: the error names both places.
	write("c.yaml", strings.Replace(second, "engine: SummingMergeTree()", "engine: SummingMergeTree", 1))
	_, err = LoadPath(dir)
	es := errorsOf(t, err)
	want := filepath.Join(dir, "c.yaml") + `:1:7: name: "b_view" is already defined at ` + filepath.Join(dir, "b.yml") + ":1:7"
	if len(es) != 1 || !strings.HasPrefix(es[0].Error(), want) {
		t.Errorf("duplicate across files:\n%v\nwant prefix\n%s", es, want)
	}
}

func TestLoadPathReportsEveryFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "1.yaml"), []byte(strings.Replace(minimalYAML, "String", "Strng", 1)), 0o644)
	os.WriteFile(filepath.Join(dir, "2.yaml"), []byte("name: [\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "3.yaml"), []byte(strings.Replace(minimalYAML, "name: products_by_category", "name: p\nsourcetable: x", 1)), 0o644)
	_, err := LoadPath(dir)
	es := errorsOf(t, err)
	var got []string
	for _, e := range es {
		got = append(got, filepath.Base(e.File))
	}
	if !slices.Equal(got, []string{"1.yaml", "2.yaml", "3.yaml"}) {
		t.Errorf("errors from files %v, want one from each file:\n%v", got, es)
	}
}

func TestLoadPathEmptyAndMissing(t *testing.T) {
	if _, err := LoadPath(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no specs found") {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := LoadPath(filepath.Join(t.TempDir(), "nope.yaml")); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("missing path: %v", err)
	}
	if specs, err := ParseYAML("empty.yaml", []byte("# nothing\n---\n")); err != nil || len(specs) != 0 {
		t.Errorf("ParseYAML of an empty stream = %v, %v", specs, err)
	}
}

func TestTableCollisionsAcrossSpecs(t *testing.T) {
	other := strings.Replace(minimalYAML, "name: products_by_category", "name: other\ntarget_table: products_by_category_data", 1)
	_, err := ParseYAML("x.yaml", []byte(minimalYAML+"---\n"+other))
	es := errorsOf(t, err)
	if len(es) != 1 || es[0].Field != "target_table" || es[0].Line != 13 ||
		!strings.Contains(es[0].Msg, `table "products_by_category_data" is also the target_table of spec "products_by_category"`) {
		t.Errorf("collision:\n%v", es)
	}
	// A different database is a different table.
	other = strings.Replace(other, "name: other", "name: other\ndatabase: elsewhere", 1)
	if _, err := ParseYAML("x.yaml", []byte(minimalYAML+"---\n"+other)); err != nil {
		t.Errorf("same table name in another database: %v", err)
	}
}

func TestAnchorsAndNulls(t *testing.T) {
	src := strings.Replace(minimalYAML, "columns:", "partition_by: ~\ncluster:\ncolumns:", 1) + "backfill: {key_column: id, settle_delay: null}\n"
	specs, err := ParseYAML("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if s := specs[0]; s.PartitionBy != "" || s.Cluster != "" || s.Backfill.SettleDelay.Duration != time.Second {
		t.Errorf("null values are not treated as absent: %+v", s)
	}
	_, err = ParseYAML("x.yaml", []byte("name: &n products_by_category\n"+strings.Replace(minimalYAML, "name: products_by_category\n", "", 1)+"target_table: *n\n"))
	if es := errorsOf(t, err); len(es) != 1 || es[0].Field != "target_table" || !strings.Contains(es[0].Msg, "same table as name") {
		t.Errorf("alias value: %v", es)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "examples/x.yaml", Line: 12, Column: 5, Field: "columns[1].type", Msg: `"String); DROP TABLE x" is not a ClickHouse type`, Hint: "write a type"},
			`examples/x.yaml:12:5: columns[1].type: "String); DROP TABLE x" is not a ClickHouse type (hint: write a type)`},
		{Error{File: "x.yaml", Line: 3, Msg: "not valid YAML"}, "x.yaml:3: not valid YAML"},
		{Error{File: "x.yaml", Msg: "cannot read"}, "x.yaml: cannot read"},
		{Error{Field: "order_by", Msg: "must be a list", Hint: "h"}, "order_by: must be a list (hint: h)"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	es := Errors{&tests[0].e, &tests[1].e}
	if got := es.Error(); got != tests[0].want+"\n"+tests[1].want {
		t.Errorf("Errors.Error() = %q", got)
	}
	if Errors(nil).Err() != nil || es.Err() == nil {
		t.Error("Errors.Err")
	}
}

func TestErrorAt(t *testing.T) {
	specs, err := ParseYAML("x.yaml", []byte(minimalYAML))
	if err != nil {
		t.Fatal(err)
	}
	e := specs[0].ErrorAt("columns[1].type", "source has no column price", "check the source")
	if got := e.Error(); got != "x.yaml:9:11: columns[1].type: source has no column price (hint: check the source)" {
		t.Errorf("ErrorAt = %q", got)
	}
	// A field that was not written points at the document.
	if e := specs[0].ErrorAt("backfill.key_column", "m", ""); e.Line != 1 || e.Column != 1 {
		t.Errorf("ErrorAt(defaulted field) = %v", e)
	}
}

func TestDurationEncoding(t *testing.T) {
	var b Backfill
	if err := json.Unmarshal([]byte(`{"batch_duration": "1m30s", "settle_delay": "500ms"}`), &b); err != nil {
		t.Fatal(err)
	}
	if b.BatchDuration.Duration != 90*time.Second || b.SettleDelay.Duration != 500*time.Millisecond {
		t.Errorf("json decode = %+v", b)
	}
	out, err := json.Marshal(b)
	if err != nil || !strings.Contains(string(out), `"batch_duration":"1m30s"`) || !strings.Contains(string(out), `"settle_delay":"500ms"`) {
		t.Errorf("json encode = %s, %v", out, err)
	}
	for _, bad := range []string{`{"batch_duration": 2}`, `{"batch_duration": "2"}`, `{"batch_duration": "soon"}`} {
		if err := json.Unmarshal([]byte(bad), &b); err == nil {
			t.Errorf("json accepted %s", bad)
		}
	}
	if err := yaml.Unmarshal([]byte("batch_duration: 2s\nsettle_delay: 1ms\n"), &b); err != nil || b.BatchDuration.Duration != 2*time.Second {
		t.Errorf("yaml decode = %+v, %v", b, err)
	}
	if err := yaml.Unmarshal([]byte("batch_duration: 2\n"), &b); err == nil {
		t.Error("yaml accepted a duration without a unit")
	}
	y, err := yaml.Marshal(Backfill{BatchDuration: Duration{2 * time.Second}})
	if err != nil || !strings.Contains(string(y), "batch_duration: 2s") {
		t.Errorf("yaml encode = %s, %v", y, err)
	}
}

func TestHash(t *testing.T) {
	load := func(src string) *Spec {
		t.Helper()
		specs, err := ParseYAML("x.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return specs[0]
	}
	base := load(minimalYAML)
	h := Hash(base)
	if len(h) != 64 || Hash(base) != h {
		t.Fatalf("Hash = %q, not a stable sha256", h)
	}
	same := []string{
		minimalYAML + "database: default\nbackfill:\n  batch_duration: 2000ms\n  optimize: true\n",
		strings.Replace(minimalYAML, "SummingMergeTree()", "SummingMergeTree", 1),
		strings.Replace(minimalYAML, "type: UInt64", "type: ' UInt64 '", 1),
		strings.Replace(minimalYAML, "select_query: SELECT", "select_query: |\n  SELECT", 1),
		"# a comment moves every line\n" + minimalYAML,
	}
	for _, src := range same {
		if got := Hash(load(src)); got != h {
			t.Errorf("equivalent spec hashes differently:\n%s", src)
		}
	}
	different := []string{
		minimalYAML + "database: shop\n",
		strings.Replace(minimalYAML, "count()", "count(id)", 1),
		strings.Replace(minimalYAML, "SummingMergeTree()", "AggregatingMergeTree()", 1),
		minimalYAML + "backfill:\n  optimize: false\n",
		minimalYAML + "cluster: auto\n",
	}
	for _, src := range different {
		if got := Hash(load(src)); got == h {
			t.Errorf("different spec hashes the same:\n%s", src)
		}
	}
	// Hashing neither mutates the spec nor depends on its origin.
	code := &Spec{Name: "x", Columns: []Column{{"a", "Decimal(18,2)"}}}
	Hash(code)
	if code.TargetTable != "" || code.Columns[0].Type != "Decimal(18,2)" {
		t.Errorf("Hash mutated its argument: %+v", code)
	}
	moved := *base
	moved.Origin = Origin{File: "elsewhere.yaml", Line: 99}
	if Hash(&moved) != h {
		t.Error("Hash depends on Origin")
	}
	if Hash(nil) != "" {
		t.Error("Hash(nil)")
	}
}

func TestOutputColumnsAndParsedQuery(t *testing.T) {
	specs, err := LoadPath("../examples/products_stats_by_category.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := specs[0]
	cols, err := s.OutputColumns()
	if err != nil || !slices.Equal(cols, []string{"category", "products", "total_price", "last_created"}) {
		t.Errorf("OutputColumns = %v, %v", cols, err)
	}
	sel, err := s.ParsedQuery("shop.products")
	if err != nil {
		t.Fatal(err)
	}
	if got := sel.From.String(); got != "FROM shop.products" {
		t.Errorf("ParsedQuery FROM = %q", got)
	}
	if _, err := s.ParsedQuery("products; DROP TABLE x"); err == nil {
		t.Error("ParsedQuery accepted a non-identifier source")
	}
	bad := *s
	bad.SelectQuery = "SELECT a FROM {source_table} LIMIT 1"
	if _, err := bad.OutputColumns(); err == nil || !strings.Contains(err.Error(), "LIMIT is not allowed") {
		t.Errorf("OutputColumns of a bad query: %v", err)
	}
	if _, err := bad.ParsedQuery("products"); err == nil {
		t.Error("ParsedQuery of a bad query")
	}
}

// TestRoundTrip checks that a loaded spec written out as JSON (how the
// server stores it) or YAML reads back as the same spec.
func TestRoundTrip(t *testing.T) {
	var all []*Spec
	for _, path := range []string{"testdata/good", "../examples"} {
		specs, err := LoadPath(path)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, specs...)
	}
	for _, s := range all {
		doc, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseJSON(doc)
		if err != nil {
			t.Errorf("%s: JSON %s does not parse back:\n%v", s.Name, doc, err)
			continue
		}
		if Hash(back) != Hash(s) {
			t.Errorf("%s: JSON round trip changes the hash:\n%s", s.Name, doc)
		}
		y, err := yaml.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		ys, err := ParseYAML("roundtrip.yaml", y)
		if err != nil {
			t.Errorf("%s: YAML does not parse back:\n%s\n%v", s.Name, y, err)
			continue
		}
		if Hash(ys[0]) != Hash(s) {
			t.Errorf("%s: YAML round trip changes the hash:\n%s", s.Name, y)
		}
	}
}
