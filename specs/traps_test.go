package specs

import (
	"strings"
	"testing"
)

// trapBase is the design's example, one field per line, so that each case
// below replaces a line and knows where the error must point.
const trapBase = `name: products_by_category
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
`

// trapFlowColumns is trapBase with the columns written as flow mappings.
var trapFlowColumns = strings.Replace(trapBase, `  - name: category
    type: String
  - name: cnt
    type: UInt64
  - name: total_price
    type: Decimal(18,2)
`, `  - {name: category, type: String}
  - {name: cnt, type: UInt64}
  - {name: total_price, type: Decimal(18,2)}
`, 1)

// TestTraps feeds YAML that reads as something else than its author meant
// (or fails with a message about YAML's grammar) and checks that the loader
// names the cause, at the right place, with a hint saying what to write.
func TestTraps(t *testing.T) {
	replace := func(src, old, new string) string {
		t.Helper()
		if !strings.Contains(src, old) {
			t.Fatalf("case source has no %q", old)
		}
		return strings.Replace(src, old, new, 1)
	}
	base := func(old, new string) string { return replace(trapBase, old, new) }
	const query = "select_query: SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} GROUP BY category"
	tests := []struct {
		name      string
		src       string
		line, col int
		field     string
		msg, hint string
		at        string // the file's text at line:col starts with this
		errors    int    // 0: exactly one
	}{
		// A comma inside parentheses ends an unquoted value in {...} and [...].
		{"flow mapping comma", trapFlowColumns, 8, 31, "columns[2].type",
			`unquoted value "Decimal(18,2)" is cut at ','`, `quote it: type: "Decimal(18,2)"`, "Decimal(18,2)}", 0},
		{"flow mapping comma and space", replace(trapFlowColumns, "Decimal(18,2)", "Decimal(18, 2)"), 8, 31, "columns[2].type",
			`unquoted value "Decimal(18, 2)" is cut at ','`, `quote it: type: "Decimal(18, 2)"`, "Decimal(18, 2)}", 0},
		{"flow mapping comma, type first", replace(trapFlowColumns, "{name: total_price, type: Decimal(18,2)}", "{type: Decimal(18,2), name: total_price}"), 8, 12, "columns[2].type",
			`unquoted value "Decimal(18,2)" is cut at ','`, `quote it: type: "Decimal(18,2)"`, "Decimal(18,2),", 0},
		{"flow mapping, nested commas", replace(trapFlowColumns, "Decimal(18,2)", "AggregateFunction(sum, Decimal(18,2))"), 8, 31, "columns[2].type",
			`unquoted value "AggregateFunction(sum, Decimal(18,2))" is cut at ','`, `quote it: type: "AggregateFunction(sum, Decimal(18,2))"`, "AggregateFunction(sum, D", 0},
		{"flow mapping over two lines", replace(trapFlowColumns, "{name: total_price, type: Decimal(18,2)}", "{name: total_price, type: Decimal(18,\n      2)}"), 8, 31, "columns[2].type",
			`unquoted value "Decimal(18, 2)" is cut at ','`, `quote it: type: "Decimal(18, 2)"`, "Decimal(18,", 0},
		{"flow mapping comma that YAML cannot parse", replace(trapFlowColumns, "Decimal(18,2)", "Enum8('a' = 1, 'b' = 2)"), 8, 31, "",
			"not valid YAML", `quote it: type: "Enum8('a' = 1, 'b' = 2)"`, "Enum8('a'", 0},
		{"flow list comma", base("order_by: [category]", "order_by: [category, round(total_price, 2)]"), 4, 22, "order_by[1]",
			`unquoted item "round(total_price, 2)" is cut at ','`, `quote it: "round(total_price, 2)"`, "round(total_price, 2)]", 0},

		// Tabs: YAML indents with spaces only.
		{"tab indenting a field", base("\n    type: UInt64", "\n\ttype: UInt64"), 9, 1, "",
			"not valid YAML", "YAML indents with spaces only", "\ttype", 0},
		{"tab indenting a list item", base("\n  - name: cnt", "\n\t- name: cnt"), 8, 1, "",
			"not valid YAML", "YAML indents with spaces only", "\t- name", 0},
		{"tab after spaces", trapBase + "backfill:\n  \tkey_column: id\n", 14, 3, "",
			"not valid YAML", "YAML indents with spaces only", "\tkey_column", 0},

		// YAML 1.1 booleans are text in YAML 1.2; quoted booleans are text.
		{"yes for a boolean", trapBase + "backfill:\n  disabled: yes\n", 14, 13, "backfill.disabled",
			`must be true or false, got a string ("yes")`, `YAML 1.2, where only true and false are booleans and yes is the text "yes": write true`, "yes", 0},
		{"off for a boolean", trapBase + "backfill:\n  optimize: off\n", 14, 13, "backfill.optimize",
			`must be true or false, got a string ("off")`, `off is the text "off": write false`, "off", 0},
		{"On for a boolean", trapBase + "allow_mutable_source: On\n", 13, 23, "allow_mutable_source",
			`got a string ("On")`, "write true", "On", 0},
		{"quoted false", trapBase + "backfill:\n  optimize: \"false\"\n", 14, 13, "backfill.optimize",
			`got a string ("false")`, "write false without quotes", `"false"`, 0},
		{"column named true", base("  - name: cnt", "  - name: true"), 8, 11, "columns[1].name",
			"must be a string, got a boolean (true)", `quote it if you mean the text: "true"`, "true", 0},
		{"column named null", base("  - name: cnt", "  - name: null"), 8, 11, "columns[1].name",
			"missing required field", `YAML reads null as no value: quote it if you mean the text: "null"`, "null", 0},
		{"name ~", base("name: products_by_category", "name: ~"), 1, 7, "name",
			"missing required field", `YAML reads ~ as no value`, "~", 0},

		// select_query is one SELECT.
		{"trailing semicolon", base(" GROUP BY category\n", " GROUP BY category;\n"), 12, 111, "select_query",
			"a trailing ';' is not allowed", "remove the ';' at the end", ";", 0},
		{"trailing semicolon and spaces, quoted", base(query, `select_query: "`+strings.TrimPrefix(query, "select_query: ")+`;  "`), 12, 112, "select_query",
			"a trailing ';' is not allowed", "remove the ';' at the end", ";  \"", 0},
		{"trailing semicolon in a block", base(query, "select_query: |\n  SELECT category, count() AS cnt, sum(price) AS total_price\n  FROM {source_table}\n  GROUP BY category;"), 15, 20, "select_query",
			"a trailing ';' is not allowed", "remove the ';' at the end", ";", 0},

		// '{' at the start of a value opens a flow mapping.
		{"{name} in target_table", trapBase + "target_table: {name}_data\n", 13, 15, "",
			"not valid YAML", `a value that starts with '{' is a YAML mapping: quote it: target_table: "{name}_data"; {name} is not replaced`, "{name}_data", 0},
		{"quoted {name} in target_table", trapBase + "target_table: \"{name}_data\"\n", 13, 15, "target_table",
			`"{name}_data" is not a plain identifier`, "{name} and {source_table} are not replaced here", `"{name}_data"`, 0},
		{"{source_table} as a value", base("source_table: products", "source_table: {source_table}"), 2, 15, "source_table",
			"must be a string, got a mapping", `a value that starts with '{' is a YAML mapping: quote it: source_table: "{source_table}"`, "{source_table}", 0},
		{"{source_table} starting a query", base(query, "select_query: {source_table} SELECT category"), 12, 15, "",
			"not valid YAML", `quote it: select_query: "{source_table} SELECT category"`, "{source_table} SELECT", 0},

		// Other characters YAML gives a meaning to inside an unquoted value.
		{"' #' cuts a value", base(" GROUP BY category\n", " WHERE note != 'a #1' GROUP BY category\n"), 12, 108, "select_query",
			"unterminated ' quote", `YAML ended this unquoted value at the " #" on line 12, column 111, which starts a comment: quote the whole value`, "'a #1'", 0},
		{"': ' in a value", base(" GROUP BY category\n", " WHERE note != 'k: v' GROUP BY category\n"), 12, 110, "",
			"not valid YAML: mapping values are not allowed", `an unquoted value cannot contain ": "`, ": v'", 0},
		{"': ' in a continued value", base(" GROUP BY category\n", "\n  WHERE note != 'k: v' GROUP BY category\n"), 13, 19, "",
			"not valid YAML: mapping values are not allowed", `an unquoted value cannot contain ": "`, ": v'", 0},
		{"SQL quotes in a '...' value", base(query, `select_query: 'SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} WHERE note != 'x' GROUP BY category'`), 12, 109, "",
			"not valid YAML", "inside a '...' YAML value write each ' as ''", "'x' GROUP", 0},
		{"double quotes in a \"...\" value", base(query, `select_query: "SELECT category, count() AS cnt, sum(price) AS total_price FROM {source_table} WHERE note != "x" GROUP BY category"`), 12, 109, "",
			"not valid YAML", `inside a "..." YAML value write each " as \"`, `"x" GROUP`, 0},
		{"backquoted name", base("order_by: [category]", "order_by: [`category`]"), 4, 12, "",
			"not valid YAML", "YAML cannot start an unquoted value with '`'", "`category`]", 0},

		// Layout.
		{"two specs without ---", trapBase + trapBase, 13, 1, "name",
			"field is set twice (first at line 1, column 1)", "put a line --- before it", "name: products_by_category", 0},
		{"field indented too far", base("\n    type: UInt64", "\n     type: UInt64"), 9, 6, "",
			"not valid YAML", "indent type like name on line 8 (column 5)", "type: UInt64", 0},
		{"field not indented enough", base("\n    type: UInt64", "\n   type: UInt64"), 9, 4, "",
			"not valid YAML", "indent type like name on line 8 (column 5)", "type: UInt64", 0},
		{"list item out of line", base("\n  - name: cnt", "\n   - name: cnt"), 8, 4, "",
			"not valid YAML", "align this '-' with the '-' of the item above (line 6, column 3)", "- name: cnt", 0},

		// Characters pasted from web pages, chats and word processors.
		{"non-breaking space after a colon", base("  - name: cnt", "  - name:\u00a0cnt"), 8, 10, "",
			"not valid YAML", "non-breaking space (U+00A0", "\u00a0cnt", 0},
		{"non-breaking space in indentation", base("\n    type: UInt64", "\n\u00a0   type: UInt64"), 9, 1, "",
			"not valid YAML", "non-breaking space (U+00A0", "\u00a0   type", 0},
		{"non-breaking space in indentation, last line", trapBase + "backfill:\n\u00a0 key_column: id\n", 14, 1, "\u00a0 key_column",
			"unknown field", "non-breaking space (U+00A0", "\u00a0 key_column", 0},
		{"non-breaking space in a type", base("Decimal(18,2)", "Decimal(18,\u00a02)"), 11, 22, "columns[2].type",
			"is not a ClickHouse type", "non-breaking space (U+00A0", "\u00a02)", 0},
		{"typographic quotes in a type", base("type: String", "type: “String”"), 7, 11, "columns[0].type",
			"is not a ClickHouse type", "typographic quotes", "“String”", 0},
		{"typographic quotes in a query", base(" GROUP BY category\n", " WHERE note != ‘x’ GROUP BY category\n"), 12, 108, "select_query",
			"typographic quote ‘ outside a string", "typographic quotes", "‘x’", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseYAML("trap.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.src)
			}
			es := errorsOf(t, err)
			want := max(tt.errors, 1)
			if len(es) != want {
				t.Errorf("%d errors, want %d:\n%v", len(es), want, es)
			}
			var found *Error
			for _, e := range es {
				if e.File == "trap.yaml" && e.Line == tt.line && e.Column == tt.col && e.Field == tt.field &&
					strings.Contains(e.Msg, tt.msg) && strings.Contains(e.Hint, tt.hint) {
					found = e
				}
			}
			if found == nil {
				t.Fatalf("no error trap.yaml:%d:%d: %s: %q (hint %q); got:\n%v", tt.line, tt.col, tt.field, tt.msg, tt.hint, es)
			}
			lines := strings.Split(tt.src, "\n")
			if text := string([]rune(lines[tt.line-1])[tt.col-1:]); !strings.HasPrefix(text, tt.at) {
				t.Errorf("%d:%d points at %q, want %q", tt.line, tt.col, text, tt.at)
			}
		})
	}
}

// TestYAML11WordsAreText checks that the words YAML 1.1 read as booleans
// are plain text in a spec, as YAML 1.2 has it: a column may be named on,
// yes, no or off, and stays so through the JSON and YAML round trips.
func TestYAML11WordsAreText(t *testing.T) {
	for _, word := range []string{"on", "yes", "no", "off", "y", "n", "On", "NO"} {
		src := strings.NewReplacer("- name: cnt", "- name: "+word, "AS cnt", "AS "+word).Replace(trapBase)
		specs, err := ParseYAML("words.yaml", []byte(src))
		if err != nil {
			t.Errorf("column %s: %v", word, err)
			continue
		}
		if got := specs[0].Columns[1].Name; got != word {
			t.Errorf("column %s read as %q", word, got)
		}
	}
}

// TestJSONHintsSayNothingOfYAML: a JSON body has no YAML 1.1 words and
// its null is meant; a quoted boolean is still a string there.
func TestJSONHintsSayNothingOfYAML(t *testing.T) {
	for body, hint := range map[string]string{
		strings.Replace(designJSON, `"name"`, `"backfill": {"optimize": "false"}, "name"`, 1): "write false without quotes",
		strings.Replace(designJSON, `"name"`, `"backfill": {"disabled": "yes"}, "name"`, 1):   "write true or false",
		strings.Replace(designJSON, `"name": "cnt"`, `"name": null`, 1):                       "every column needs a name and a type",
	} {
		_, err := ParseJSON([]byte(body))
		es := errorsOf(t, err)
		if len(es) != 1 || !strings.Contains(es[0].Hint, hint) || strings.Contains(es[0].Hint, "YAML") {
			t.Errorf("want one error with hint %q, got:\n%v", hint, es)
		}
	}
}
