package specs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// badCorpus lists, for every file of testdata/bad, every error it must
// produce: where (line, column, field), what (a substring of the message)
// and the text of the file at that position, which pins the column to
// the offending token rather than just a number.
var badCorpus = []struct {
	file      string
	line, col int
	field     string
	msg       string
	at        string // prefix of the file's text at line:col
}{
	{"bad_batch_rows", 13, 23, "backfill.initial_batch_rows", "must be a whole number >= 0, got a number (-5)", "-5"},
	{"bad_duration_negative", 13, 17, "backfill.settle_delay", "settle_delay -1s is out of range [0s, 10m0s]", "-1s"},
	{"bad_duration_text", 13, 17, "backfill.settle_delay", "\"soon\" is not a duration", "soon"},
	{"bad_duration_unit", 13, 19, "backfill.batch_duration", "must be a duration, got a number (2)", "2"},
	{"cluster_injection", 12, 10, "cluster", "\"c ON CLUSTER x; DROP TABLE products\" is not a clu", "\"c ON CLUSTER "},
	{"column_name_injection", 7, 11, "columns[0].name", "\"category` String, x String) ENGINE = Log…\" is n", "\"category` Str"},
	{"columns_mismatch", 9, 11, "columns[1].name", "column \"cnt\" is not an output of select_query (out", "cnt"},
	{"columns_mismatch", 11, 43, "select_query", "output column \"count\" is not declared in columns", "count FROM {so"},
	{"duplicate_column", 11, 11, "columns[2].name", "column \"cnt\" is already declared at columns[1]", "cnt"},
	{"duplicate_key", 12, 1, "name", "field is set twice (first at line 2, column 1)", "name: other"},
	{"duplicate_names", 13, 7, "name", "\"products_by_category\" is already defined at testd", "products_by_ca"},
	{"engine_injection", 4, 28, "engine", "\"SummingMergeTree(); DROP TABLE products\" is not a", "; DROP TABLE p"},
	{"engine_missing_sign", 4, 9, "engine", "\"CollapsingMergeTree\" is not a valid engine: Colla", "CollapsingMerg"},
	{"engine_old_syntax", 4, 18, "engine", "\"MergeTree(created_at, (category), 8192)\" is not a", "(created_at, ("},
	{"engine_param_undeclared", 4, 32, "engine", "\"total\" is not a declared column", "total))"},
	{"engine_unsupported", 4, 10, "engine", "\"URL('http://evil.example/', CSV)\" is not a valid ", "URL('http://ev"},
	{"invalid_yaml", 9, 2, "", "not valid YAML: did not find expected key", "- name: cnt"},
	{"key_column_injection", 13, 15, "backfill.key_column", "\"id > 0 OR 1\" is not a plain identifier", "\"id > 0 OR 1\""},
	{"max_rows_below_initial", 14, 19, "backfill.max_batch_rows", "max_batch_rows 10 is below initial_batch_rows 1000", "10"},
	{"merge_key", 13, 3, "backfill", "YAML merge keys (<<) are not supported", "<<: {key_colum"},
	{"missing_required", 2, 1, "engine", "missing required field", "name: products"},
	{"missing_required", 2, 1, "columns", "missing required field", "name: products"},
	{"missing_required", 2, 1, "select_query", "missing required field", "name: products"},
	{"name_injection", 2, 7, "name", "\"x`; DROP TABLE products; --\" is not a plain ident", "\"x`; DROP TABL"},
	{"not_a_mapping", 2, 1, "", "must be a spec (a mapping with name, source_table,", "- name: produc"},
	{"order_by_injection", 5, 54, "order_by[0]", "SQL comments are not allowed", "--\"]"},
	{"order_by_undeclared", 5, 29, "order_by[1]", "\"created_at\" is not a declared column", "created_at)]"},
	{"partition_by_injection", 12, 24, "partition_by", "';' is not allowed", "; DROP TABLE p"},
	{"query_comment", 13, 23, "select_query", "SQL comments are not allowed", "-- everything "},
	{"query_file", 11, 22, "select_query", "function file is not allowed", "file('/etc/pas"},
	{"query_final", 11, 67, "select_query", "FINAL is not allowed", "FINAL GROUP BY"},
	{"query_format", 11, 85, "select_query", "FORMAT is not allowed", "FORMAT JSONEac"},
	{"query_having", 11, 85, "select_query", "HAVING is not allowed", "HAVING cnt > 1"},
	{"query_insert", 11, 15, "select_query", "must be a SELECT, got Insert", "INSERT INTO pr"},
	{"query_into_outfile", 11, 85, "select_query", "INTO OUTFILE is not allowed", "INTO OUTFILE '"},
	{"query_join", 11, 86, "select_query", "JOIN is not allowed", "JOIN secrets A"},
	{"query_key_alias", 13, 62, "select_query", "alias \"id\" shadows the backfill key column", "id FROM {sourc"},
	{"query_limit", 11, 85, "select_query", "LIMIT is not allowed", "LIMIT 10"},
	{"query_missing_placeholder", 11, 52, "select_query", "reads table \"products\" instead of {source_table}", "products GROUP"},
	{"query_mysql", 11, 52, "select_query", "table function mysql is not allowed", "mysql('db:3306"},
	{"query_remote", 11, 52, "select_query", "table function remote is not allowed", "remote('10.0.0"},
	{"query_s3_subquery", 11, 86, "select_query", "subqueries are not allowed", "SELECT c FROM "},
	{"query_s3_subquery", 11, 100, "select_query", "table function s3 is not allowed", "s3('https://bu"},
	{"query_settings", 11, 85, "select_query", "SETTINGS is not allowed", "SETTINGS max_e"},
	{"query_subquery_from", 11, 54, "select_query", "a subquery in FROM is not allowed", "SELECT * FROM "},
	{"query_two_statements", 11, 85, "select_query", "';' is not allowed", "; DROP TABLE p"},
	{"query_union", 11, 95, "select_query", "UNION and EXCEPT are not allowed", "SELECT name AS"},
	{"query_unnamed_output", 11, 32, "select_query", "output count() has no name", "count() FROM {"},
	{"query_url", 11, 52, "select_query", "table function url is not allowed", "url('http://ev"},
	{"query_window", 11, 32, "select_query", "window functions are not allowed", "count() OVER ("},
	{"replicated_no_path", 4, 9, "engine", "\"ReplicatedSummingMergeTree\" is not a valid engine", "ReplicatedSumm"},
	{"same_as_source", 12, 15, "target_table", "target_table \"products\" is the same table as sourc", "products"},
	{"type_injection", 8, 18, "columns[0].type", "\"String); DROP TABLE x\" is not a ClickHouse type: ", "); DROP TABLE "},
	{"type_nested", 10, 17, "columns[1].type", "Nested is not supported", "Nested(k String"},
	{"type_octal", 8, 23, "columns[0].type", "number with a leading zero", "016)"},
	{"type_unknown", 8, 11, "columns[0].type", "\"string\" is not a ClickHouse type: unknown type na", "string"},
	{"unknown_field", 12, 1, "sourcetable", "unknown field", "sourcetable: p"},
	{"unknown_nested_field", 13, 3, "backfill.batch_size", "unknown field", "batch_size: 10"},
	{"wrong_type_bool", 13, 13, "backfill.disabled", "must be true or false, got a string (\"yes\")", "yes"},
	{"wrong_type_columns", 7, 3, "columns", "must be a list, got a mapping", "category: Stri"},
	{"wrong_type_name", 2, 7, "name", "must be a string, got a number (12345)", "12345"},
	{"wrong_type_order_by", 5, 11, "order_by", "must be a list, got a string (\"category\")", "category"},
	{"zero_batch_duration", 13, 19, "backfill.batch_duration", "batch_duration 0s is out of range (0, 1h0m0s]", "0s"},
}

func TestBadCorpus(t *testing.T) {
	want := map[string]int{}
	for _, c := range badCorpus {
		want[c.file]++
	}
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 35 {
		t.Fatalf("testdata/bad has %d files, want at least 35", len(files))
	}
	for _, f := range files {
		if want[strings.TrimSuffix(filepath.Base(f), ".yaml")] == 0 {
			t.Errorf("%s has no expected errors in badCorpus", f)
		}
	}
	got := map[string]Errors{}
	for name := range want {
		path := filepath.Join("testdata", "bad", name+".yaml")
		specs, err := LoadPath(path)
		if err == nil {
			t.Errorf("%s: loaded %d specs without error", path, len(specs))
			continue
		}
		var es Errors
		if !errors.As(err, &es) {
			t.Fatalf("%s: error %T is not Errors", path, err)
		}
		if len(es) != want[name] {
			t.Errorf("%s: %d errors, want %d:\n%v", path, len(es), want[name], es)
		}
		for _, e := range es {
			if e.Hint == "" {
				t.Errorf("%s: error without a hint: %v", path, e)
			}
		}
		got[name] = es
	}
	for _, c := range badCorpus {
		path := filepath.Join("testdata", "bad", c.file+".yaml")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		found := false
		for _, e := range got[c.file] {
			if e.File != path || e.Line != c.line || e.Column != c.col || e.Field != c.field || !strings.Contains(e.Msg, c.msg) {
				continue
			}
			found = true
			if text := lines[c.line-1][c.col-1:]; !strings.HasPrefix(text, c.at) {
				t.Errorf("%s:%d:%d points at %q, want %q", c.file, c.line, c.col, text, c.at)
			}
		}
		if !found {
			t.Errorf("%s: no error %d:%d %s: %q; got:\n%v", c.file, c.line, c.col, c.field, c.msg, got[c.file])
		}
	}
}

func TestGoodCorpus(t *testing.T) {
	specs, err := LoadPath("testdata/good")
	if err != nil {
		t.Fatalf("LoadPath(testdata/good):\n%v", err)
	}
	if len(specs) < 6 {
		t.Errorf("loaded %d specs, want at least 6", len(specs))
	}
	for _, s := range specs {
		if errs := s.Validate(); len(errs) > 0 {
			t.Errorf("%s: Validate after load: %v", s.Name, errs)
		}
		if s.Origin.File == "" || s.Origin.Line == 0 {
			t.Errorf("%s: origin not set: %+v", s.Name, s.Origin)
		}
	}
}
