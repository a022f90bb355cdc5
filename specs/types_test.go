package specs

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTypeNormalises(t *testing.T) {
	tests := []struct{ in, want string }{
		{"String", "String"},
		{"  UInt64 ", "UInt64"},
		{"Decimal(18,2)", "Decimal(18, 2)"},
		{"Decimal( 18 , 2 )", "Decimal(18, 2)"},
		{"Decimal64(4)", "Decimal(18, 4)"},
		{"Decimal32(0)", "Decimal(9, 0)"},
		{"Array(Decimal128(3))", "Array(Decimal(38, 3))"},
		{"DateTime", "DateTime"},
		{"DateTime('UTC')", "DateTime('UTC')"},
		{"DateTime64(3,'Europe/Paris')", "DateTime64(3, 'Europe/Paris')"},
		{"FixedString(16)", "FixedString(16)"},
		{"LowCardinality(Nullable(String))", "LowCardinality(Nullable(String))"},
		{"Array(Array(UInt8))", "Array(Array(UInt8))"},
		{"Map(String,UInt64)", "Map(String, UInt64)"},
		{"Tuple(UInt8,String)", "Tuple(UInt8, String)"},
		{"Tuple(a UInt8, b Nullable(String))", "Tuple(a UInt8, b Nullable(String))"},
		{"Nested(k String, v UInt64)", "Nested(k String, v UInt64)"},
		{"Enum8('a'=1,'b' = -2)", "Enum8('b' = -2, 'a' = 1)"},
		{"Enum8('x' = 5, 'y' = 1, 'z' = 3)", "Enum8('y' = 1, 'z' = 3, 'x' = 5)"},
		{"AggregateFunction(quantile(0.50), Float64)", "AggregateFunction(quantile(0.5), Float64)"},
		{"AggregateFunction(quantiles(0.5, 1.0), Float64)", "AggregateFunction(quantiles(0.5, 1), Float64)"},
		{"AggregateFunction(sequenceMatch('(?1)(?2)'), DateTime, UInt8, UInt8)", "AggregateFunction(sequenceMatch('(?1)(?2)'), DateTime, UInt8, UInt8)"},
		{"Enum16('it''s' = 1000)", `Enum16('it\'s' = 1000)`},
		{"AggregateFunction(uniq, UInt64)", "AggregateFunction(uniq, UInt64)"},
		{"AggregateFunction(count)", "AggregateFunction(count)"},
		{"AggregateFunction(quantiles(0.5,0.9), Float64)", "AggregateFunction(quantiles(0.5, 0.9), Float64)"},
		{"AggregateFunction(sum, Decimal(18,2))", "AggregateFunction(sum, Decimal(18, 2))"},
		{"AggregateFunction(argMax, String, DateTime)", "AggregateFunction(argMax, String, DateTime)"},
		{"SimpleAggregateFunction(sum, UInt64)", "SimpleAggregateFunction(sum, UInt64)"},
		{"IPv4", "IPv4"},
		{"UUID", "UUID"},
		{"Date32", "Date32"},
	}
	for _, tt := range tests {
		got, err := ParseType(tt.in)
		if err != nil {
			t.Errorf("ParseType(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseType(%q) = %q, want %q", tt.in, got, tt.want)
		}
		// The normalised form is a fixed point.
		if again, err := ParseType(got); err != nil || again != got {
			t.Errorf("ParseType(%q) = %q, %v: not a fixed point", got, again, err)
		}
	}
}

func TestParseTypeRefuses(t *testing.T) {
	tests := []struct {
		in   string
		want string // substring of the message
		at   string // the error's offset points here ("" = not checked)
	}{
		{"", "type is empty", ""},
		{"String); DROP TABLE x", "unexpected ')' after the type", ") DROP"[:1]},
		{"String; DROP TABLE x", "unexpected ';'", ";"},
		{"String -- comment", "unexpected comment", "--"},
		{"String /* c */", "unexpected comment", "/*"},
		{"Nullable(String", "missing ')'", ""},
		{"Nullable(", "missing ')'", ""},
		{"Nullable(String))", "unexpected ')' after the type", ")"},
		{"string", `unknown type name "string"`, "string"},
		{"VARCHAR(10)", `unknown type name "VARCHAR"`, "VARCHAR"},
		{"Strng", `unknown type name "Strng"`, "Strng"},
		{"Array(Strin)", `unknown type name "Strin"`, "Strin"},
		{"UInt64(8)", "UInt64 takes no parameters", ""},
		{"Decimal", "Decimal needs a precision and a scale", ""},
		{"Decimal(9)", "Decimal needs a precision and a scale", ""},
		{"FixedString(016)", "number with a leading zero", "016"},
		{"Decimal(018, 2)", "number with a leading zero", "018"},
		{"Decimal(+18, 2)", "unexpected \"+18", "+"},
		{"Decimal(18, 20)", "scale must be a whole number in [0, 18]", "20"},
		{"Decimal(0, 0)", "precision must be a whole number in [1, 76]", "0"},
		{"Decimal(18, 'x')", "scale must be a whole number", "'x'"},
		{"FixedString(0)", "length must be a whole number", "0"},
		{"DateTime(UTC)", "DateTime takes one optional time zone string", ""},
		{"DateTime64(12)", "precision must be a whole number in [0, 9]", "12"},
		{"Enum8('a')", "values must be 'name' = number pairs", "'a'"},
		{"Enum8('a' = 300)", "out of range [-128, 127]", "'a'"},
		{"Enum8('a' = 1, 'a' = 2)", "repeats 'a'", ""},
		{"Enum8('a' = 'b')", "expected a number after '='", "'b'"},
		{"Nullable(String, UInt8)", "Nullable needs exactly one type", ""},
		{"Nullable(1)", "expected a type, got 1", "1"},
		{"Map(String)", "Map needs a key type and a value type", ""},
		{"Tuple(a String, UInt8)", "must all be named or all unnamed", "UInt8"},
		{"Tuple(a String, a UInt8)", `repeats element "a"`, ""},
		{"Nested(String)", "must all be named", ""},
		{"AggregateFunction()", "needs a function name", ""},
		{"AggregateFunction(1, UInt64)", "expected an aggregate function name", "1"},
		{"AggregateFunction(uniq, Strng)", `unknown type name "Strng"`, "Strng"},
		{"AggregateFunction(quantiles(level), Float64)", "parameters of quantiles must be numbers or strings", "level"},
		{"SimpleAggregateFunction(sum)", "needs a function name and argument types", ""},
		{"`String`", "unexpected quoted identifier", "`"},
		{"String\x00", "unexpected", "\x00"},
		{"DateTime('UTC\n')", "control character in string", "\n"},
		{"DateTime('UTC)", "unterminated string", "'UTC"},
		{"DateTime('a\\nb')", `unsupported escape \n`, "\\n"},
		{"String String", "expected a type, got String String", ""},
		{strings.Repeat("Array(", 40) + "UInt8" + strings.Repeat(")", 40), "nests more than 32 levels", ""},
		{"Decimal(1e)", "malformed number", ")"},
		{"Decimal(18x, 2)", "malformed number", "x"},
	}
	for _, tt := range tests {
		_, err := ParseType(tt.in)
		if err == nil {
			t.Errorf("ParseType(%q) accepted it, want %q", tt.in, tt.want)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Hint == "" {
			t.Errorf("ParseType(%q) = %v, want an *Error with a hint", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseType(%q) = %q, want it to contain %q", tt.in, err, tt.want)
		}
		if tt.at == "" {
			continue
		}
		_, perr := parseTypeNode(tt.in)
		le := asLexError(perr)
		if le.off < 0 || le.off > len(tt.in) || !strings.HasPrefix(tt.in[le.off:], tt.at) {
			t.Errorf("ParseType(%q) error at offset %d, want at %q", tt.in, le.off, tt.at)
		}
	}
}

func TestParseEngine(t *testing.T) {
	tests := []struct {
		in         string
		name, base string
		params     []string
		replicated bool
		str        string
	}{
		{"SummingMergeTree()", "SummingMergeTree", "SummingMergeTree", nil, false, "SummingMergeTree()"},
		{"SummingMergeTree", "SummingMergeTree", "SummingMergeTree", nil, false, "SummingMergeTree()"},
		{" MergeTree ( ) ", "MergeTree", "MergeTree", nil, false, "MergeTree()"},
		{"SummingMergeTree((cnt,total))", "SummingMergeTree", "SummingMergeTree", []string{"(cnt, total)"}, false, "SummingMergeTree((cnt, total))"},
		{"SummingMergeTree(cnt)", "SummingMergeTree", "SummingMergeTree", []string{"cnt"}, false, "SummingMergeTree(cnt)"},
		{"ReplacingMergeTree(ver)", "ReplacingMergeTree", "ReplacingMergeTree", []string{"ver"}, false, "ReplacingMergeTree(ver)"},
		{"CollapsingMergeTree(sign)", "CollapsingMergeTree", "CollapsingMergeTree", []string{"sign"}, false, "CollapsingMergeTree(sign)"},
		{"VersionedCollapsingMergeTree(sign, ver)", "VersionedCollapsingMergeTree", "VersionedCollapsingMergeTree", []string{"sign", "ver"}, false, "VersionedCollapsingMergeTree(sign, ver)"},
		{"ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/t', '{replica}')", "ReplicatedSummingMergeTree", "SummingMergeTree",
			[]string{"'/clickhouse/tables/{shard}/t'", "'{replica}'"}, true, "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/t', '{replica}')"},
		{"ReplicatedCollapsingMergeTree('/p', '{replica}', sign)", "ReplicatedCollapsingMergeTree", "CollapsingMergeTree",
			[]string{"'/p'", "'{replica}'", "sign"}, true, "ReplicatedCollapsingMergeTree('/p', '{replica}', sign)"},
	}
	for _, tt := range tests {
		e, err := ParseEngine(tt.in)
		if err != nil {
			t.Errorf("ParseEngine(%q): %v", tt.in, err)
			continue
		}
		if e.Name != tt.name || e.Base() != tt.base || e.Replicated != tt.replicated || e.String() != tt.str ||
			strings.Join(e.Params, "|") != strings.Join(tt.params, "|") {
			t.Errorf("ParseEngine(%q) = %+v (base %s, %s)", tt.in, e, e.Base(), e)
		}
	}
	if e, _ := ParseEngine("ReplicatedCollapsingMergeTree('/p', '{replica}', sign)"); strings.Join(e.BaseParams(), ",") != "sign" {
		t.Errorf("BaseParams = %v", e.BaseParams())
	}
}

func TestParseEngineRefuses(t *testing.T) {
	tests := []struct{ in, want, hint string }{
		{"", "engine is empty", ""},
		{"summingmergetree()", `engine "summingmergetree" is not supported`, "did you mean SummingMergeTree?"},
		{"Log", `engine "Log" is not supported`, "MergeTree"},
		{"Distributed(c, db, t)", `engine "Distributed" is not supported`, ""},
		{"URL('http://evil/', CSV)", `engine "URL" is not supported`, ""},
		{"File(CSV)", `engine "File" is not supported`, ""},
		{"SummingMergeTree(); DROP TABLE x", "unexpected ';'", ""},
		{"SummingMergeTree() ORDER BY a", "unexpected name ORDER after the engine parameters", "order_by"},
		{"SummingMergeTree() -- x", "unexpected comment", ""},
		{"SummingMergeTree(", "missing ')'", ""},
		{"SummingMergeTree(a b)", "expected ',' or ')'", ""},
		{"SummingMergeTree(a, b)", "SummingMergeTree takes 0 to 1 column parameter(s)", ""},
		{"SummingMergeTree(sum(x))", "function call sum(...) is not allowed", ""},
		{"SummingMergeTree((SELECT 1))", "expected ',' or ')', got number 1", ""},
		{"SummingMergeTree('x')", "parameters must be column names", ""},
		{"MergeTree(date, (a, b), 8192)", "MergeTree takes no parameters", "order_by"},
		{"CollapsingMergeTree", "CollapsingMergeTree takes exactly 1 column parameter(s)", "sign"},
		{"VersionedCollapsingMergeTree(sign)", "exactly 2 column parameter(s)", ""},
		{"ReplicatedSummingMergeTree", "needs the ZooKeeper path and the replica name", "{replica}"},
		{"ReplicatedSummingMergeTree(a, b)", "needs the ZooKeeper path and the replica name", ""},
		{"ReplicatedMergeTree('/p', '{replica}', x)", "MergeTree takes no parameters", ""},
		{"SummingMergeTree() SETTINGS index_granularity = 1", "unexpected name SETTINGS after the engine parameters", ""},
		{"SummingMergeTree(('x', y))", "parameters must be column names, got ('x', y)", ""},
		{"SummingMergeTree(`a`)", "unexpected quoted identifier", ""},
		{"ReplicatedSummingMergeTree('/p\\x', 'r')", `unsupported escape \x`, ""},
	}
	for _, tt := range tests {
		_, err := ParseEngine(tt.in)
		if err == nil {
			t.Errorf("ParseEngine(%q) accepted it", tt.in)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(e.Msg, tt.want) || !strings.Contains(e.Hint, tt.hint) || e.Hint == "" {
			t.Errorf("ParseEngine(%q) = %v, want message %q and hint with %q", tt.in, err, tt.want, tt.hint)
		}
	}
}
