package specs

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Column types are pasted into CREATE TABLE by sqlgen, so they are parsed
// with a small grammar of their own instead of being trusted as text:
//
//	type  = name [ "(" [ arg { "," arg } ] ")" ]
//	arg   = type | number | string | name type | string "=" number
//
// and then checked family by family (Decimal takes numbers, Nullable takes
// one type, Enum8 takes 'name' = value pairs, ...). The normalised form is
// printed the way ClickHouse prints types (", " between arguments), so that
// the planner can compare it with system.columns.

const (
	maxTypeLen   = 4096
	maxTypeDepth = 32
)

type typeNodeKind int

const (
	nodeName   typeNodeKind = iota // a type or function name, maybe with arguments
	nodeNumber                     // 18
	nodeString                     // 'UTC'
	nodeNamed                      // name Type, in Tuple and Nested
	nodeEnum                       // 'a' = 1
)

type typeNode struct {
	kind   typeNodeKind
	name   string // nodeName, nodeNamed: the name; nodeEnum: the label
	text   string // nodeNumber, nodeEnum: the number; nodeString: the value
	parens bool   // nodeName: written with parentheses
	args   []*typeNode
	elem   *typeNode // nodeNamed: the element's type
	off    int
}

// ParseType parses a ClickHouse column type and returns its normalised
// form, e.g. "Decimal(18,2)" gives "Decimal(18, 2)". It refuses anything
// that is not a well-formed type, such as "String); DROP TABLE x". The
// error is an *Error without position whose Msg and Hint explain the fix.
func ParseType(s string) (string, error) {
	n, err := parseTypeNode(s)
	if err != nil {
		le := asLexError(err)
		return "", &Error{Msg: fmt.Sprintf("%q is not a ClickHouse type: %s", clip(s), le.msg), Hint: le.hint}
	}
	return formatTypeNode(n), nil
}

func parseTypeNode(s string) (*typeNode, error) {
	if strings.TrimSpace(s) == "" {
		return nil, &lexError{msg: "type is empty", hint: "write a ClickHouse type such as String or UInt64"}
	}
	if len(s) > maxTypeLen {
		return nil, &lexError{msg: fmt.Sprintf("type is %d bytes long, more than %d", len(s), maxTypeLen), hint: "simplify the type"}
	}
	p := &typeParser{lx: newLexer(s)}
	n, err := p.arg(0)
	if err != nil {
		return nil, err
	}
	t, err := p.lx.Next()
	if err != nil {
		return nil, err
	}
	if t.kind != tokEOF {
		return nil, p.lx.errAt(t.off, "a column has exactly one type; check for a stray ')' or text after the type",
			"unexpected %s after the type", t)
	}
	if err := checkType(n, 0); err != nil {
		return nil, err
	}
	return n, nil
}

type typeParser struct{ lx *lexer }

func (p *typeParser) arg(depth int) (*typeNode, error) {
	t, err := p.lx.Next()
	if err != nil {
		return nil, err
	}
	if depth > maxTypeDepth {
		return nil, p.lx.errAt(t.off, "flatten the type", "type nests more than %d levels deep", maxTypeDepth)
	}
	switch t.kind {
	case tokNumber:
		return &typeNode{kind: nodeNumber, text: t.text, off: t.off}, nil
	case tokString:
		nx, err := p.lx.Peek()
		if err != nil {
			return nil, err
		}
		if nx.kind != tokEq {
			return &typeNode{kind: nodeString, text: t.text, off: t.off}, nil
		}
		p.lx.Next()
		v, err := p.lx.Next()
		if err != nil {
			return nil, err
		}
		if v.kind != tokNumber {
			return nil, p.lx.errAt(v.off, "write enum values like 'a' = 1", "expected a number after '=', got %s", v)
		}
		return &typeNode{kind: nodeEnum, name: t.text, text: v.text, off: t.off}, nil
	case tokIdent:
		nx, err := p.lx.Peek()
		if err != nil {
			return nil, err
		}
		switch nx.kind {
		case tokLParen:
			p.lx.Next()
			n := &typeNode{kind: nodeName, name: t.text, parens: true, off: t.off}
			if n.args, err = p.args(depth + 1); err != nil {
				return nil, err
			}
			return n, nil
		case tokIdent:
			elem, err := p.arg(depth + 1)
			if err != nil {
				return nil, err
			}
			return &typeNode{kind: nodeNamed, name: t.text, elem: elem, off: t.off}, nil
		}
		return &typeNode{kind: nodeName, name: t.text, off: t.off}, nil
	}
	if t.kind == tokEOF && depth > 0 {
		return nil, p.lx.errAt(t.off, "close every '(' with a ')'", "unbalanced parentheses: missing ')'")
	}
	return nil, p.lx.errAt(t.off, "write a ClickHouse type such as String, Nullable(String) or Decimal(18, 2)",
		"expected a type, got %s", t)
}

// args parses the arguments after an opening parenthesis up to and
// including the closing one.
func (p *typeParser) args(depth int) ([]*typeNode, error) {
	t, err := p.lx.Peek()
	if err != nil {
		return nil, err
	}
	args := []*typeNode{}
	if t.kind == tokRParen {
		p.lx.Next()
		return args, nil
	}
	for {
		a, err := p.arg(depth)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		t, err := p.lx.Next()
		if err != nil {
			return nil, err
		}
		switch t.kind {
		case tokComma:
			continue
		case tokRParen:
			return args, nil
		case tokEOF:
			return nil, p.lx.errAt(t.off, "close every '(' with a ')'", "unbalanced parentheses: missing ')'")
		}
		return nil, p.lx.errAt(t.off, "separate arguments with ','", "expected ',' or ')', got %s", t)
	}
}

type typeRule int

const (
	ruleSimple          typeRule = iota // no parameters: UInt64, String
	ruleDecimal                         // Decimal(P, S), Decimal(P)
	ruleDecimalN                        // Decimal64(S)
	ruleFixedString                     // FixedString(N)
	ruleDateTime                        // DateTime, DateTime('tz')
	ruleDateTime64                      // DateTime64(p[, 'tz'])
	ruleEnum8                           // Enum8('a' = 1, ...)
	ruleEnum16                          // Enum16('a' = 1, ...)
	ruleWrap                            // Nullable(T), LowCardinality(T), Array(T)
	ruleMap                             // Map(K, V)
	ruleTuple                           // Tuple(T, ...), Tuple(name T, ...)
	ruleNested                          // Nested(name T, ...)
	ruleAggregate                       // AggregateFunction(f[(params)], T...)
	ruleSimpleAggregate                 // SimpleAggregateFunction(f, T...)
	ruleTypes                           // Variant(T, ...)
	ruleOptString                       // Object('json'), JSON
)

// typeFamilies lists the type names ClickHouse accepts, spelled as it
// prints them. Names are case-sensitive there, and the planner compares
// normalised types with what the server prints, so aliases such as
// "VARCHAR" or "string" are refused with a hint instead of being mapped.
var typeFamilies = map[string]typeRule{
	"UInt8": ruleSimple, "UInt16": ruleSimple, "UInt32": ruleSimple, "UInt64": ruleSimple,
	"UInt128": ruleSimple, "UInt256": ruleSimple,
	"Int8": ruleSimple, "Int16": ruleSimple, "Int32": ruleSimple, "Int64": ruleSimple,
	"Int128": ruleSimple, "Int256": ruleSimple,
	"Float32": ruleSimple, "Float64": ruleSimple, "BFloat16": ruleSimple,
	"Bool": ruleSimple, "String": ruleSimple, "UUID": ruleSimple, "IPv4": ruleSimple, "IPv6": ruleSimple,
	"Date": ruleSimple, "Date32": ruleSimple, "Nothing": ruleSimple,
	"Point": ruleSimple, "Ring": ruleSimple, "LineString": ruleSimple, "MultiLineString": ruleSimple,
	"Polygon": ruleSimple, "MultiPolygon": ruleSimple,
	"IntervalNanosecond": ruleSimple, "IntervalMicrosecond": ruleSimple, "IntervalMillisecond": ruleSimple,
	"IntervalSecond": ruleSimple, "IntervalMinute": ruleSimple, "IntervalHour": ruleSimple,
	"IntervalDay": ruleSimple, "IntervalWeek": ruleSimple, "IntervalMonth": ruleSimple,
	"IntervalQuarter": ruleSimple, "IntervalYear": ruleSimple,
	"Decimal":   ruleDecimal,
	"Decimal32": ruleDecimalN, "Decimal64": ruleDecimalN, "Decimal128": ruleDecimalN, "Decimal256": ruleDecimalN,
	"FixedString": ruleFixedString,
	"DateTime":    ruleDateTime, "DateTime64": ruleDateTime64,
	"Enum8": ruleEnum8, "Enum16": ruleEnum16,
	"Nullable": ruleWrap, "LowCardinality": ruleWrap, "Array": ruleWrap,
	"Map":   ruleMap,
	"Tuple": ruleTuple, "Nested": ruleNested,
	"AggregateFunction": ruleAggregate, "SimpleAggregateFunction": ruleSimpleAggregate,
	"Variant": ruleTypes, "Dynamic": ruleSimple,
	"Object": ruleOptString, "JSON": ruleSimple,
}

func checkType(n *typeNode, depth int) error {
	if n.kind != nodeName {
		return &lexError{off: n.off, msg: fmt.Sprintf("expected a type, got %s", describeNode(n)),
			hint: "write a ClickHouse type such as String or UInt64"}
	}
	rule, ok := typeFamilies[n.name]
	if !ok {
		hint := "write a ClickHouse type such as String, UInt64, DateTime or Decimal(18, 2)"
		if s := suggest(n.name, typeNames()); s != "" {
			hint = fmt.Sprintf("did you mean %s? ClickHouse type names are case-sensitive", s)
		}
		return &lexError{off: n.off, msg: fmt.Sprintf("unknown type name %q", n.name), hint: hint}
	}
	bad := func(hint, format string, args ...any) error {
		return &lexError{off: n.off, msg: fmt.Sprintf(format, args...), hint: hint}
	}
	args := n.args
	switch rule {
	case ruleSimple:
		if n.parens {
			return bad("write "+n.name+" without parentheses", "%s takes no parameters", n.name)
		}
	case ruleDecimal:
		// Decimal(P) without a scale is refused: ClickHouse 18.16 does not
		// know it.
		if len(args) != 2 {
			return bad("write Decimal(P, S), e.g. Decimal(18, 2) or Decimal(9, 0)", "Decimal needs a precision and a scale")
		}
		p, err := intArg(args[0], 1, 76, "precision")
		if err != nil {
			return err
		}
		if _, err := intArg(args[1], 0, p, "scale"); err != nil {
			return err
		}
	case ruleDecimalN:
		maxScale := decimalPrecision[n.name]
		if len(args) != 1 {
			return bad("write "+n.name+"(S) with the scale S", "%s needs exactly one parameter, the scale", n.name)
		}
		if _, err := intArg(args[0], 0, maxScale, "scale"); err != nil {
			return err
		}
	case ruleFixedString:
		if len(args) != 1 {
			return bad("write FixedString(N), e.g. FixedString(16)", "FixedString needs its length")
		}
		if _, err := intArg(args[0], 1, 1<<20, "length"); err != nil {
			return err
		}
	case ruleDateTime:
		if n.parens && (len(args) != 1 || args[0].kind != nodeString) {
			return bad("write DateTime or DateTime('UTC')", "DateTime takes one optional time zone string")
		}
	case ruleDateTime64:
		if len(args) < 1 || len(args) > 2 {
			return bad("write DateTime64(3) or DateTime64(3, 'UTC')", "DateTime64 needs a precision and an optional time zone")
		}
		if _, err := intArg(args[0], 0, 9, "precision"); err != nil {
			return err
		}
		if len(args) == 2 && args[1].kind != nodeString {
			return bad("write the time zone as a string, e.g. 'UTC'", "DateTime64 time zone must be a string")
		}
	case ruleEnum8, ruleEnum16:
		lo, hi := -128, 127
		if rule == ruleEnum16 {
			lo, hi = -32768, 32767
		}
		if len(args) == 0 {
			return bad("write "+n.name+"('a' = 1, 'b' = 2)", "%s needs at least one 'name' = value pair", n.name)
		}
		names, values := map[string]bool{}, map[int]bool{}
		for _, a := range args {
			if a.kind != nodeEnum {
				return &lexError{off: a.off, msg: fmt.Sprintf("%s values must be 'name' = number pairs, got %s", n.name, describeNode(a)),
					hint: "write " + n.name + "('a' = 1, 'b' = 2)"}
			}
			v, err := strconv.Atoi(a.text)
			if err != nil || v < lo || v > hi {
				return &lexError{off: a.off, msg: fmt.Sprintf("%s value %s is out of range [%d, %d]", n.name, a.text, lo, hi),
					hint: "use Enum16 for larger values"}
			}
			if names[a.name] || values[v] {
				return &lexError{off: a.off, msg: fmt.Sprintf("%s repeats %s", n.name, quoteString(a.name)),
					hint: "every name and every value must appear once"}
			}
			names[a.name], values[v] = true, true
		}
	case ruleWrap:
		if len(args) != 1 {
			return bad("write "+n.name+"(T), e.g. "+n.name+"(String)", "%s needs exactly one type", n.name)
		}
		return checkType(args[0], depth+1)
	case ruleMap:
		if len(args) != 2 {
			return bad("write Map(K, V), e.g. Map(String, UInt64)", "Map needs a key type and a value type")
		}
		for _, a := range args {
			if err := checkType(a, depth+1); err != nil {
				return err
			}
		}
	case ruleTuple, ruleNested:
		if len(args) == 0 {
			return bad("write "+n.name+"(a String, b UInt64)", "%s needs at least one element", n.name)
		}
		named := args[0].kind == nodeNamed
		seen := map[string]bool{}
		for _, a := range args {
			if (a.kind == nodeNamed) != named || (rule == ruleNested && a.kind != nodeNamed) {
				return &lexError{off: a.off, msg: fmt.Sprintf("%s elements must all be named or all unnamed", n.name),
					hint: "write " + n.name + "(a String, b UInt64)"}
			}
			t := a
			if a.kind == nodeNamed {
				if seen[a.name] {
					return &lexError{off: a.off, msg: fmt.Sprintf("%s repeats element %q", n.name, a.name), hint: "give every element its own name"}
				}
				seen[a.name] = true
				t = a.elem
			}
			if err := checkType(t, depth+1); err != nil {
				return err
			}
		}
	case ruleAggregate, ruleSimpleAggregate:
		minArgs := 1
		if rule == ruleSimpleAggregate {
			minArgs = 2
		}
		if len(args) < minArgs {
			return bad("write "+n.name+"(uniq, UInt64): the function, then its argument types",
				"%s needs a function name and argument types", n.name)
		}
		if err := checkAggregateFunction(args[0], rule == ruleSimpleAggregate); err != nil {
			return err
		}
		for _, a := range args[1:] {
			if err := checkType(a, depth+1); err != nil {
				return err
			}
		}
	case ruleTypes:
		if len(args) == 0 {
			return bad("write "+n.name+"(T, ...)", "%s needs at least one type", n.name)
		}
		for _, a := range args {
			if err := checkType(a, depth+1); err != nil {
				return err
			}
		}
	case ruleOptString:
		if n.parens && (len(args) != 1 || args[0].kind != nodeString) {
			return bad("write "+n.name+"('json')", "%s takes one string parameter", n.name)
		}
	}
	return nil
}

// checkAggregateFunction checks the first parameter of AggregateFunction:
// a function name, optionally with literal parameters (quantiles(0.5, 0.9)).
func checkAggregateFunction(f *typeNode, simple bool) error {
	if f.kind != nodeName {
		return &lexError{off: f.off, msg: fmt.Sprintf("expected an aggregate function name, got %s", describeNode(f)),
			hint: "write AggregateFunction(uniq, UInt64): the function comes first"}
	}
	if f.parens && simple {
		return &lexError{off: f.off, msg: "SimpleAggregateFunction takes a function without parameters",
			hint: "write SimpleAggregateFunction(sum, UInt64)"}
	}
	for _, p := range f.args {
		if p.kind != nodeNumber && p.kind != nodeString {
			return &lexError{off: p.off, msg: fmt.Sprintf("parameters of %s must be numbers or strings, got %s", f.name, describeNode(p)),
				hint: "write AggregateFunction(quantiles(0.5, 0.9), Float64)"}
		}
	}
	return nil
}

func intArg(n *typeNode, lo, hi int, what string) (int, error) {
	v, err := strconv.Atoi(n.text)
	if n.kind != nodeNumber || err != nil || v < lo || v > hi {
		return 0, &lexError{off: n.off, msg: fmt.Sprintf("%s must be a whole number in [%d, %d], got %s", what, lo, hi, describeNode(n)),
			hint: "e.g. Decimal(18, 2), FixedString(16), DateTime64(3)"}
	}
	return v, nil
}

func describeNode(n *typeNode) string {
	switch n.kind {
	case nodeNumber:
		return n.text
	case nodeString:
		return quoteString(n.text)
	case nodeEnum:
		return quoteString(n.name) + " = " + n.text
	}
	return formatTypeNode(n)
}

// decimalPrecision is the precision of the fixed-size Decimal aliases,
// which ClickHouse prints as Decimal(P, S).
var decimalPrecision = map[string]int{"Decimal32": 9, "Decimal64": 18, "Decimal128": 38, "Decimal256": 76}

// formatTypeNode prints a checked type the way ClickHouse prints it back in
// system.columns (checked on 18.16): ", " between arguments, Decimal64(4)
// as Decimal(18, 4), enum values sorted by value, 0.50 as 0.5, strings
// with backslash escapes.
func formatTypeNode(n *typeNode) string {
	switch n.kind {
	case nodeNumber:
		return formatNumber(n.text)
	case nodeString:
		return quoteString(n.text)
	case nodeEnum:
		return quoteString(n.name) + " = " + formatNumber(n.text)
	case nodeNamed:
		return n.name + " " + formatTypeNode(n.elem)
	}
	if !n.parens {
		return n.name
	}
	args := n.args
	if p, ok := decimalPrecision[n.name]; ok && len(args) == 1 {
		return "Decimal(" + strconv.Itoa(p) + ", " + formatTypeNode(args[0]) + ")"
	}
	if n.name == "Enum8" || n.name == "Enum16" {
		args = slices.Clone(args)
		slices.SortStableFunc(args, func(a, b *typeNode) int {
			x, _ := strconv.Atoi(a.text)
			y, _ := strconv.Atoi(b.text)
			return cmp.Compare(x, y)
		})
	}
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = formatTypeNode(a)
	}
	return n.name + "(" + strings.Join(parts, ", ") + ")"
}

// formatNumber prints integers without sign noise ("-0" as "0") and
// decimal fractions without trailing zeros ("0.50" as "0.5"), as
// ClickHouse does; numbers with an exponent are kept as written.
func formatNumber(s string) string {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return strconv.FormatInt(v, 10)
	}
	if strings.Contains(s, ".") && !strings.ContainsAny(s, "eE") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		if s == "" || s == "-" || s == "-0" {
			return "0"
		}
	}
	return s
}

func typeNames() []string {
	names := make([]string, 0, len(typeFamilies))
	for k := range typeFamilies {
		names = append(names, k)
	}
	return names
}
