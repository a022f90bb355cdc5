package specs

import (
	"slices"
	"strings"
	"testing"
)

func TestCheckSelectAccepts(t *testing.T) {
	tests := []struct {
		query string
		out   []string
	}{
		{"SELECT category, count() as cnt, sum(price) as total_price FROM {source_table} GROUP BY category",
			[]string{"category", "cnt", "total_price"}},
		{"select category, uniqState(id) AS u FROM {source_table} WHERE price > 0 GROUP BY category", []string{"category", "u"}},
		{"SELECT id, category FROM {source_table}", []string{"id", "category"}},
		{"SELECT id AS id FROM {source_table}", []string{"id"}},
		{"SELECT s.category AS category FROM {source_table} AS s", []string{"category"}},
		{"SELECT {source_table}.category AS c FROM {source_table}", []string{"c"}},
		{"SELECT tag, count() AS n FROM {source_table} ARRAY JOIN tags AS tag GROUP BY tag", []string{"tag", "n"}},
		{"SELECT DISTINCT category FROM {source_table}", []string{"category"}},
		{"SELECT toDate(created_at) AS day, sumIf(price, price > 0) AS s FROM {source_table} WHERE id > 10 GROUP BY day",
			[]string{"day", "s"}},
		{"SELECT `category` FROM {source_table}", []string{"category"}},
		{"SELECT category, '{source_table}' AS s FROM {source_table}", []string{"category", "s"}},
		{"SELECT category, 'a -- b; /* c */ # d' AS s FROM {source_table}", []string{"category", "s"}},
		{"\n  SELECT category\n  FROM {source_table}\n", []string{"category"}},
		{"SELECT category, dictGet('d', 'x', id) AS x FROM {source_table}", []string{"category", "x"}},
		{"SELECT format('{} {}', a, b) AS f FROM {source_table}", []string{"f"}},
	}
	for _, tt := range tests {
		info, probs := checkSelect(tt.query, "id")
		if len(probs) > 0 {
			t.Errorf("checkSelect(%q): unexpected problems %+v", tt.query, probs)
			continue
		}
		var got []string
		for _, o := range info.outputs {
			got = append(got, o.name)
		}
		if !slices.Equal(got, tt.out) {
			t.Errorf("checkSelect(%q) outputs = %v, want %v", tt.query, got, tt.out)
		}
	}
}

func TestCheckSelectRefuses(t *testing.T) {
	tests := []struct {
		query string
		want  string // substring of the first problem
		at    string // the problem points at the first occurrence of this text ("" = no offset)
	}{
		{"", "is empty", ""},
		{"SELECT a FROM products", `reads table "products" instead of {source_table}`, "products"},
		{"SELECT a FROM db.products", `reads table "db.products" instead of {source_table}`, "db.products"},
		{"SELECT a FROM {source_table} WHERE", "does not parse", ""},
		{"SELECT a FROM products WHERE", "does not parse", ""},
		{"SELECT a FROM products -- x", "SQL comments are not allowed", "--"},
		{"SELECT a FROM {source_table}; DROP TABLE x", "';' is not allowed", "; DROP"},
		{"SELECT a FROM {source_table};", "';' is not allowed", ";"},
		{"SELECT a FROM {source_table} -- comment", "SQL comments are not allowed", "-- comment"},
		{"SELECT a /* x */ FROM {source_table}", "SQL comments are not allowed", "/* x */"},
		{"SELECT a FROM {source_table} # x", "SQL comments are not allowed", "# x"},
		{"SELECT a FROM {source_table} INTO OUTFILE '/tmp/x'", "INTO OUTFILE is not allowed", "INTO"},
		{"SELECT a FROM {source_table} FORMAT JSON", "FORMAT is not allowed", "FORMAT"},
		{"SELECT a FROM {source_table} SETTINGS max_threads = 1", "SETTINGS is not allowed", "SETTINGS"},
		{"SELECT a FROM {source_table} UNION ALL SELECT a FROM {source_table}", "UNION and EXCEPT are not allowed", ""},
		{"SELECT a FROM {source_table} EXCEPT SELECT a FROM {source_table}", "UNION and EXCEPT are not allowed", ""},
		{"SELECT a FROM (SELECT a FROM {source_table} WHERE id > 5)", "a subquery in FROM is not allowed", "SELECT a FROM {source_table} WHERE"},
		{"SELECT a FROM {source_table} JOIN other ON a = b", "JOIN is not allowed", "JOIN other"},
		{"SELECT a FROM {source_table}, other", "JOIN is not allowed", "{source_table}, other"},
		{"SELECT a FROM {source_table} AS s LEFT JOIN other AS o USING (a)", "JOIN is not allowed", "JOIN other"},
		{"SELECT a FROM url('http://evil/', CSV, 'a String') WHERE '{source_table}' != ''", "table function url is not allowed", "url("},
		{"SELECT a FROM file('/etc/passwd', CSV, 'a String') AS x WHERE '{source_table}' = ''", "table function file is not allowed", "file("},
		{"SELECT a FROM {source_table} WHERE a IN (SELECT a FROM s3('http://x', 'CSV'))", "subqueries are not allowed", "SELECT a"},
		{"SELECT a FROM {source_table} WHERE a IN (SELECT a FROM remote('h', db.t))", "subqueries are not allowed", "SELECT a"},
		{"SELECT file('/etc/passwd') AS a FROM {source_table}", "function file is not allowed", "file("},
		{"SELECT a FROM {source_table} WHERE a = (SELECT max(a) FROM mysql('h:3306', 'db', 't', 'u', 'p'))", "subqueries are not allowed", "SELECT max(a)"},
		{"SELECT a FROM {source_table} ORDER BY a", "ORDER BY is not allowed", "ORDER"},
		{"SELECT a FROM {source_table} LIMIT 10", "LIMIT is not allowed", "LIMIT"},
		{"SELECT a FROM {source_table} LIMIT 1 BY a", "LIMIT BY is not allowed", "LIMIT"},
		{"SELECT a, count() AS n FROM {source_table} GROUP BY a HAVING n > 1", "HAVING is not allowed", "HAVING"},
		{"SELECT a, count() AS n FROM {source_table} GROUP BY a WITH TOTALS", "WITH TOTALS is not allowed", "WITH"},
		{"WITH 1 AS x SELECT x AS a FROM {source_table}", "WITH is not allowed", "WITH"},
		{"SELECT a FROM {source_table} FINAL", "FINAL is not allowed", "FINAL"},
		{"SELECT a FROM {source_table} AS s FINAL", "FINAL is not allowed", "FINAL"},
		{"SELECT a FROM {source_table} SAMPLE 0.1", "SAMPLE is not allowed", "SAMPLE"},
		{"SELECT * FROM {source_table}", "SELECT * is not allowed", "*"},
		{"SELECT a, count() FROM {source_table} GROUP BY a", "output count() has no name", "count()"},
		{"SELECT a, b AS a FROM {source_table}", `output column "a" appears twice`, "a FROM"},
		{"SELECT max(id) AS id FROM {source_table}", `alias "id" shadows the backfill key column`, "id FROM"},
		{"SELECT sum(price AS id) AS total FROM {source_table}", `alias "id" shadows the backfill key column`, "id)"},
		{"SELECT a FROM {source_table} ARRAY JOIN arr AS id", `alias "id" shadows the backfill key column`, "id"},
		{"SELECT a FROM other", `reads table "other" instead of {source_table}`, "other"},
		{"SELECT 1 AS a", "has no FROM clause", ""},
		{"SELECT a FROM other WHERE b = '{source_table}'", `reads table "other" instead of {source_table}`, "other"},
		{"SELECT a FROM `{source_table}`", "placeholder must not be quoted", "{source_table}`"},
		{"SELECT a FROM \"{source_table}\"", "placeholder must not be quoted", "{source_table}\""},
		{"SELECT '{source_table}' AS a", "has no FROM clause", ""},
		{"SELECT a FROM db.{source_table}", "must not be qualified with a database", "db."},
		{"INSERT INTO t SELECT a FROM {source_table}", "must be a SELECT, got Insert", "INSERT"},
		{"DROP TABLE {source_table}", "must be a SELECT, got Drop", "DROP"},
		{"SELECT a FROM {source_table} WHERE x = 'unterminated", "unterminated ' quote", "'unterminated"},
		{"SELECT `a``b` FROM {source_table}", "escapes in quoted names are not supported", "`a"},
		{"SELECT a FROM {source_table} WHERE shirath_x = 1", "reserved", "shirath_x"},
		{"SELECT a FROM __shirath_source__", "reserved", "shirath_source"},
		{"SELECT count() OVER (PARTITION BY a) AS w FROM {source_table}", "window functions are not allowed", "count()"},
		{"SELECT TOP 1 a FROM {source_table}", "TOP is not allowed", "TOP"},
		{"SELECT a FROM {source_table} PREWHERE a > 1", "PREWHERE is not allowed", "PREWHERE"},
		{"SELECT a FROM {source_table} WHERE", "does not parse", ""},
		{"SELECT a\x00 FROM {source_table}", "control character", "\x00"},
		{"SELECT a FROM {source_table} WITH TOTALS", "WITH TOTALS is not allowed", "WITH"},
	}
	for _, tt := range tests {
		_, probs := checkSelect(tt.query, "id")
		if len(probs) == 0 {
			t.Errorf("checkSelect(%q) accepted it, want %q", tt.query, tt.want)
			continue
		}
		p := probs[0]
		if !strings.Contains(p.msg, tt.want) {
			t.Errorf("checkSelect(%q) = %q, want it to contain %q (all: %+v)", tt.query, p.msg, tt.want, probs)
		}
		if p.hint == "" {
			t.Errorf("checkSelect(%q) = %q without a hint", tt.query, p.msg)
		}
		if tt.at != "" {
			// The problem sits at the first occurrence of `at` at or after
			// the problem's offset within the same token.
			if p.off < 0 || !strings.HasPrefix(tt.query[p.off:], tt.at) {
				got := "<none>"
				if p.off >= 0 && p.off <= len(tt.query) {
					got = tt.query[p.off:]
				}
				t.Errorf("checkSelect(%q) points at %q, want %q", tt.query, got, tt.at)
			}
		}
	}
}

func TestSubstitutionOffsets(t *testing.T) {
	q := "SELECT {source_table}.a AS x FROM {source_table} WHERE b"
	text, sub := substitute(q, SourcePlaceholder, sourceSentinel)
	for _, word := range []string{"SELECT", ".a AS x", "FROM", "WHERE b"} {
		i := strings.Index(text, word)
		if got, want := sub.orig(i), strings.Index(q, word); got != want {
			t.Errorf("orig(%d) for %q = %d, want %d", i, word, got, want)
		}
	}
	// An offset inside the stand-in maps to the placeholder's start.
	if got := sub.orig(strings.Index(text, sourceSentinel) + 3); got != strings.Index(q, SourcePlaceholder) {
		t.Errorf("orig inside the sentinel = %d", got)
	}
}

func TestCheckKeyExpr(t *testing.T) {
	cols := map[string]bool{"category": true, "created_at": true, "id": true, "ts": true}
	names := []string{"category", "created_at", "id", "ts"}
	good := []string{
		"category", "toDate(created_at)", "(category, id)", "tuple()", "intHash32(id) % 16",
		"toStartOfInterval(ts, INTERVAL 1 DAY)", "CAST(id AS String)", "if(id > 10, category, '')",
		"`category`",
	}
	for _, e := range good {
		if probs := checkKeyExpr(e, cols, names, "order_by"); len(probs) > 0 {
			t.Errorf("checkKeyExpr(%q) = %+v, want no problem", e, probs)
		}
	}
	bad := []struct{ expr, want, at string }{
		{"", "is empty", ""},
		{"categroy", `"categroy" is not a declared column`, "categroy"},
		{"toDate(created)", `"created" is not a declared column`, "created)"},
		{"category, id", "must be a single expression", "id"},
		{"category); DROP TABLE x", "';' is not allowed", ";"},
		{"category -- x", "SQL comments are not allowed", "--"},
		{"category AS c", "aliases are not allowed", ""},
		{"(SELECT 1)", "subqueries are not allowed", ""},
		{"t.category", "qualified name", "t.category"},
		{"file('/etc/passwd')", "function file is not allowed", "file"},
		{"category FROM system.tables", "must be a single expression", ""},
		{"category)", "does not parse", ""},
	}
	for _, tt := range bad {
		probs := checkKeyExpr(tt.expr, cols, names, "order_by")
		if len(probs) == 0 {
			t.Errorf("checkKeyExpr(%q) accepted it, want %q", tt.expr, tt.want)
			continue
		}
		if !strings.Contains(probs[0].msg, tt.want) {
			t.Errorf("checkKeyExpr(%q) = %q, want %q", tt.expr, probs[0].msg, tt.want)
		}
		if tt.at != "" && (probs[0].off < 0 || !strings.HasPrefix(tt.expr[probs[0].off:], tt.at)) {
			t.Errorf("checkKeyExpr(%q) points at offset %d, want %q", tt.expr, probs[0].off, tt.at)
		}
	}
	if probs := checkKeyExpr("categroy", cols, names, "order_by"); len(probs) != 1 || !strings.Contains(probs[0].hint, "did you mean category?") {
		t.Errorf("typo hint: %+v", probs)
	}
}
